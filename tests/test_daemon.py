"""``flowengine serve``: routing calls to flows, and what a reload changes about it.

Also home of the helpers the other ``test_daemon_*`` files share: a daemon running
in-process against the real simulator over a real websocket, and a tap on its log lines.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from flowengine.daemon import Daemon, FlowEntry, Registry, specificity
from flowengine.daemon.simulate import example_number
from flowengine.engine import FlowRuntime, TraceEntry
from flowengine.flow import compile_flow
from flowengine.relay import RelayClient, RelayConfig
from flowengine.sim import Simulator
from tests.flowtools import variant

pytestmark = pytest.mark.anyio

#: Simulated time runs this much faster than real time.
SCALE = 0.02
PROJECT, TOKEN = "p", "daemon-test-token-9f8e7d"


# ------------------------------------------------------------------------------ helpers

def flow_text(name: str, context: str = "office", *, match: dict[str, str] | None = None,
              say: str = "Hello", on_hangup: str | None = None) -> str:
    """A small flow: answer, a prompt, a recording, hang up; with ``on_hangup``, a log step
    of that name that the caller's hangup leads to."""
    lines = [f"name: {name}", f"context: {context}"]
    if match:
        lines.append("match:")
        lines += [f'  {key}: "{value}"' for key, value in match.items()]
    if on_hangup:
        lines.append(f"on_hangup: {on_hangup}")
    lines += [
        "steps:",
        "  greet:",
        "    answer: {}",
        "  hello:",
        "    play:",
        f'      - say: "{say}"',
        "  message:",
        "    record:",
        "      beep: true",
        '      terminators: "#"',
        "  bye:",
        "    hangup: {}",
    ]
    if on_hangup:
        lines += [f"  {on_hangup}:", '    log: "the caller left during the flow"']
    return "\n".join(lines) + "\n"


def write(path: Path, text: str) -> Path:
    """Write a flow file the safe way (temp file + rename), as a deploy tool would."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def version_of(text: str, path: Path) -> str:
    result = compile_flow(text.encode(), str(path))
    assert result.version is not None, [str(d) for d in result.diagnostics]
    return result.version.version


class LogTap(logging.Handler):
    """Keeps every flowengine log record with the (monotonic) time it was emitted."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[float, logging.LogRecord]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((time.monotonic(), record))

    def find(self, predicate: Callable[[logging.LogRecord], bool]
             ) -> list[tuple[float, logging.LogRecord]]:
        return [(t, r) for t, r in self.records if predicate(r)]

    def events(self, event: str, **fields: Any) -> list[tuple[float, logging.LogRecord]]:
        """Records with ``extra={"event": event, …fields}``."""
        return self.find(lambda r: getattr(r, "event", None) == event and all(
            getattr(r, k, None) == v for k, v in fields.items()))

    async def wait_event(self, event: str, timeout: float = 10.0,
                         **fields: Any) -> tuple[float, logging.LogRecord]:
        with anyio.fail_after(timeout):
            while True:
                found = self.events(event, **fields)
                if found:
                    return found[0]
                await anyio.sleep(0.01)


@contextmanager
def attached(handler: logging.Handler) -> Iterator[None]:
    """``handler`` gets every record of the flowengine loggers from INFO on, for a while."""
    root = logging.getLogger("flowengine")
    level = root.level
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture
def log_tap() -> Iterable[LogTap]:
    tap = LogTap()
    with attached(tap):
        yield tap


async def line_with(stderr: BufferedByteReceiveStream, text: str, timeout: float = 30) -> str:
    """The next line of a daemon's stderr that holds ``text`` (the test fails if none does
    within ``timeout``)."""
    with anyio.fail_after(timeout):
        while True:
            line = (await stderr.receive_until(b"\n", 1 << 20)).decode()
            if text in line:
                return line


def simulator(time_scale: float = SCALE, **options: Any) -> Simulator:
    return Simulator(port=0, project=PROJECT, token=TOKEN, time_scale=time_scale, **options)


def relay_config(sim: Simulator) -> RelayConfig:
    # A quick reconnect: the tests drop sockets on purpose.
    return RelayConfig(url=sim.url, project=PROJECT, token=TOKEN, reconnect_delay=0.1)


@asynccontextmanager
async def serving(sim: Simulator, paths: Iterable[Path | str],
                  config: RelayConfig | None = None, **options: Any) -> AsyncIterator[Daemon]:
    """A daemon serving ``paths`` from ``sim`` (with ``config``, else the test credentials),
    drained on the way out (exit code 0)."""
    settings: dict[str, Any] = {"time_scale": sim.core.time_scale, "rescan_interval": 0,
                                "settle": 0.05, "drain_timeout": 10.0}
    settings.update(options)
    daemon = Daemon([str(p) for p in paths], config or relay_config(sim), **settings)
    codes: list[int] = []

    async def run(*, task_status: Any) -> None:
        codes.append(await daemon.run(task_status=task_status))

    async with anyio.create_task_group() as tg:
        with anyio.fail_after(10):
            await tg.start(run)
        try:
            yield daemon
        finally:
            daemon.request_drain()
    assert codes == [0]


def flows_by_call(steps: list[TraceEntry]) -> dict[str, set[str]]:
    """call id → the flow names its steps ran under."""
    found: dict[str, set[str]] = {}
    for entry in steps:
        found.setdefault(entry.call_id, set()).add(entry.flow)
    return found


def only_flow(steps: list[TraceEntry], call_id: str) -> str | None:
    flows = flows_by_call(steps).get(call_id)
    if flows is None:
        return None
    assert len(flows) == 1, flows
    return next(iter(flows))


# ------------------------------------------------------------------- the routing rule

def entry(text: str, file: str = "f.yaml") -> FlowEntry:
    result = compile_flow(text.encode(), file)
    assert result.version is not None, [str(d) for d in result.diagnostics]
    return FlowEntry(result.version, FlowRuntime(result.version), 0.0)


def routed(registry: Registry, context: str, from_number: str, to_number: str) -> str | None:
    found = registry.route(context, from_number, to_number)
    return None if found is None else found.name


def test_an_exact_number_beats_a_glob_which_beats_no_match() -> None:
    registry = Registry([
        entry(flow_text("catch_all")),
        entry(flow_text("from_glob", match={"from": "+1555*"})),
        entry(flow_text("to_exact", match={"to": "+15559870001"})),
        entry(flow_text("both_globs", match={"from": "+1555*", "to": "+1555987*"})),
    ])
    assert routed(registry, "office", "+15551230000", "+15559870001") == "to_exact"
    assert routed(registry, "office", "+15551230000", "+15559870002") == "both_globs"
    assert routed(registry, "office", "+15551230000", "+15550000000") == "from_glob"
    assert routed(registry, "office", "+16660000000", "+15550000000") == "catch_all"
    assert registry.route("sales", "+15551230000", "+15559870001") is None


def test_the_glob_that_fixes_more_characters_wins() -> None:
    registry = Registry([
        entry(flow_text("wide", match={"to": "+1555*"})),
        entry(flow_text("narrow", match={"to": "+1555987*"})),
        entry(flow_text("classes", match={"to": "+1555[0-4]??0000"})),
    ])
    assert specificity({"to": "+1555[0-4]??0000"}) == (0, 1, 10)
    assert routed(registry, "office", "x", "+15559870000") == "narrow"
    assert routed(registry, "office", "x", "+15553120000") == "classes"
    assert routed(registry, "office", "x", "+15556000000") == "wide"


def test_flows_with_the_same_match_tie_by_name_and_are_reported() -> None:
    registry = Registry([entry(flow_text("b_flow")), entry(flow_text("a_flow"))])
    assert routed(registry, "office", "x", "y") == "a_flow"
    assert [(c, won.name, lost.name) for c, won, lost in registry.ties()] == [
        ("office", "a_flow", "b_flow")]


def test_a_flow_for_calls_we_place_takes_no_inbound_calls() -> None:
    """A flow with ``outbound:`` (a reminder the call API starts) on the same context as the
    office line — or with no context at all — is never offered the office's calls, does
    not tie with the office flow, and adds no context for the daemon to subscribe to."""
    outbound = variant(flow_text("a_reminder"),
                       ("context: office\n", "context: office\noutbound: {}\n"))
    no_context = variant(flow_text("b_reminder"), ("context: office\n", "outbound: {}\n"))
    registry = Registry([entry(flow_text("office_line")), entry(outbound),
                         entry(no_context, "b.yaml")])
    assert routed(registry, "office", "x", "y") == "office_line"
    assert registry.route("default", "x", "y") is None
    assert registry.ties() == []
    assert registry.contexts == frozenset({"office"})
    assert set(registry.flows) == {"office_line", "a_reminder", "b_reminder"}


def test_simulated_calls_use_numbers_the_flow_takes() -> None:
    assert example_number("+1555987*", "d") == "+1555987"
    assert example_number("+1555[2-4]?0*", "d") == "+1555200"
    assert example_number("+15551230000", "d") == "+15551230000"
    assert example_number("+1555[!0]*", "d") == "d"
    assert example_number(None, "d") == "d"


# ------------------------------------------------------------- routing over the wire

async def test_calls_are_routed_by_context_and_match_and_unmatched_ones_declined(
        tmp_path: Path, log_tap: LogTap) -> None:
    write(tmp_path / "main.yaml", flow_text("main"))
    write(tmp_path / "vip.yaml", flow_text("vip", match={"from": "+1555000*"}))
    write(tmp_path / "line.yaml", flow_text("line", match={"to": "+15559870001"}))
    write(tmp_path / "sales.yaml", flow_text("sales", "sales", match={"to": "+1666*"}))
    steps: list[TraceEntry] = []
    async with simulator() as sim, serving(sim, [tmp_path], on_step=steps.append):
        main = sim.offer_call("office", "+15551112222", "+15559870000")
        vip = sim.offer_call("office", "+15550001234", "+15559870000")
        line = sim.offer_call("office", "+15550001234", "+15559870001")
        sales = sim.offer_call("sales", "+15551112222", "+16665550000")
        nobody = sim.offer_call("sales", "+15551112222", "+15559870000")
        await sim.wait_all_ended(timeout=10)

    assert only_flow(steps, main.call_id) == "main"
    assert only_flow(steps, vip.call_id) == "vip"
    assert only_flow(steps, line.call_id) == "line"  # an exact `to` beats a `from` glob
    assert only_flow(steps, sales.call_id) == "sales"
    # The unmatched call ran no flow: it was declined without being answered, with a
    # log line that says why.
    assert only_flow(steps, nobody.call_id) is None
    assert nobody.end_reason == "decline"
    assert "calling.answer" not in nobody.commands
    [(_, declined)] = log_tap.events("declined")
    message = declined.getMessage()
    assert nobody.call_id in message
    assert ("no flow on context 'sales' matches from +15551112222 to +15559870000 "
            "(flows there: sales (to=+1666*))") in message


async def test_a_reload_changes_which_flow_takes_new_calls(tmp_path: Path,
                                                           log_tap: LogTap) -> None:
    main = write(tmp_path / "main.yaml", flow_text("main"))
    vip = write(tmp_path / "vip.yaml", flow_text("vip", match={"from": "+1555000*"}))
    sales = write(tmp_path / "sales.yaml", flow_text("sales", "sales"))
    steps: list[TraceEntry] = []

    async def call(sim: Simulator, context: str, from_number: str) -> str | None:
        placed = sim.offer_call(context, from_number, "+15559870000")
        await placed.wait_ended(timeout=10)
        await anyio.sleep(0.05)  # the daemon's last step line comes after the end event
        return only_flow(steps, placed.call_id)

    async with simulator() as sim, serving(sim, [tmp_path], on_step=steps.append) as daemon:
        assert await call(sim, "office", "+15550001234") == "vip"

        # A deleted flow takes no new calls: the catch-all gets them.
        vip.unlink()
        await log_tap.wait_event("removed", flow="vip")
        assert await call(sim, "office", "+15550001234") == "main"

        # A new file starts taking calls.
        write(tmp_path / "new.yaml", flow_text("new", match={"from": "+1777*"}))
        await log_tap.wait_event("loaded", flow="new")
        assert await call(sim, "office", "+17770000000") == "new"
        assert await call(sim, "office", "+15550001234") == "main"

        # A changed context is subscribed, and the old one unsubscribed, over RELAY.
        write(sales, flow_text("sales", "billing"))
        await log_tap.wait_event("unreceive")
        await log_tap.wait_event("receive")
        assert daemon.relay is not None and set(daemon.relay.contexts) == {"office", "billing"}
        assert await call(sim, "billing", "+15551112222") == "sales"
        # Nobody else takes "sales" now. Were the daemon still subscribed, the simulator's
        # round-robin would give it one of these two calls.
        async with RelayClient(relay_config(sim), ["sales"]) as other:
            placed = [sim.offer_call("sales", "+15551112222", "+15559870000") for _ in range(2)]
            taken = []
            with anyio.fail_after(10):
                async for offered in other.incoming_calls():
                    taken.append(offered.call_id)
                    await offered.hangup()
                    if len(taken) == 2:
                        break
            assert taken == [p.call_id for p in placed]
        assert main.exists()
