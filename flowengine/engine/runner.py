"""The body of ``flowengine run``: load, connect (or simulate), run calls, print traces."""

from __future__ import annotations

import argparse
import logging
import secrets
import sys
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import anyio

from flowengine.engine.machine import FlowRuntime
from flowengine.engine.session import Session, SessionReport, TraceEntry
from flowengine.engine.trace import TraceWriter
from flowengine.flow import FlowError, FlowVersion, load_flow
from flowengine.flow.schedules import WALL_CLOCK, Clock, ScheduleError, SetClock, parse_at
from flowengine.redact import redact_text, redact_vars
from flowengine.relay import SESSION_LOST

if TYPE_CHECKING:
    from flowengine.engine.outbound import Dialed, OutboundReport

EXIT_OK, EXIT_FLOW_FAILED, EXIT_INVALID = 0, 1, 2

logger = logging.getLogger("flowengine.engine")


class TracePrinter:
    """Prints each step as it ends, then what the call's flow produced."""

    def __init__(self, out: IO[str], flow: FlowVersion, *, quiet: bool = False,
                 multi: bool = False) -> None:
        self.out = out
        self.flow = flow
        self.quiet = quiet
        self.multi = multi

    def _p(self, text: str) -> None:
        # Everything `run` prints about a call is masked (flowengine.redact): an error that
        # quotes a URL, a variable holding a token.
        print(redact_text(text), file=self.out, flush=True)

    def call_started(self, call: Any) -> None:
        if not self.quiet:
            self._p(f"call {call.call_id}: {call.from_number} → {call.to_number} "
                    f"(context {call.context})")

    def step(self, entry: TraceEntry) -> None:
        if self.quiet:
            return
        prefix = f"[{entry.call_id[:8]}] " if self.multi else ""
        method = entry.method or "-"
        dest = entry.next_step or "(flow ends)"
        step = f"{entry.within}/{entry.step}" if entry.within else entry.step
        line = (f"{prefix}{entry.started:8.3f}s  {step:<16} {entry.action:<7} "
                f"{method:<16} → {entry.outcome:<9} {_ms(entry.duration):>9}  next: {dest}")
        self._p(line)
        detail = self._result_text(entry)
        if detail:
            self._p(f"{prefix}{'':10}{detail}")
        if entry.error:
            self._p(f"{prefix}{'':10}error: {entry.error}")

    def _result_text(self, entry: TraceEntry) -> str:
        result = entry.result
        if entry.action == "record" and result.get("url"):
            return (f"url={result['url']} duration={result.get('duration')} "
                    f"size={result.get('size')}")
        if entry.action == "log":
            return f"log: {result.get('text', '')}"
        if entry.action == "branch":
            index = result.get("index")
            if index is None:
                return "no condition held"
            if entry.within is not None:  # a subflow's step: not in this flow's table
                return f"choice {index + 1}"
            branch = self.flow.steps[entry.step].branches[index]
            return f"when {branch.when_text}" if branch.when_text else "default choice"
        return ""

    def report(self, call: Any, report: SessionReport) -> None:
        prefix = f"[{call.call_id[:8]}] " if self.multi else ""
        took = report.trace[-1].started + report.trace[-1].duration if report.trace else 0.0
        how = _how_it_ended(report)
        self._p(f"{prefix}flow {report.status} in {_ms(took)}: {how}; call ended "
                f"(end reason {report.end_reason or 'unknown'})")
        if report.error:
            self._p(f"{prefix}  error: {report.error}")
        if report.note:
            self._p(f"{prefix}  {report.note}")
        for step, url in _recordings(report):
            self._p(f"{prefix}  recording ({step}): {url}")
        if report.vars and not self.quiet:
            shown = ", ".join(f"{k}={v!r}" for k, v in redact_vars(report.vars).items())
            self._p(f"{prefix}  vars: {shown}")


    # -- calls we place (flowengine dial) ----------------------------------------------

    def dialed(self, dialed: Dialed) -> None:
        """The dial has its outcome; the flow's path for it runs next."""
        if self.quiet:
            return
        prefix = f"[{(dialed.call.call_id if dialed.call else dialed.tag)[:8]}] " \
            if self.multi else ""
        text = f"{prefix}dial {dialed.to} from {dialed.from_}: {dialed.outcome}"
        if dialed.answered_at is not None:
            text += f" after {_ms(dialed.answered_at - dialed.dialed_at)}"
        if dialed.reason:
            text += f" ({dialed.reason})"
        if dialed.detected and dialed.outcome in ("answered", "machine"):
            text += f"; the machine detector heard {dialed.detected}"
        if dialed.call is not None:
            text += f"; call {dialed.call.call_id}"
        elif dialed.start is not None:
            text += f"; running {dialed.start} without a call"
        else:
            text += f"; the flow has no step for {dialed.outcome}"
        self._p(text)

    def outbound_report(self, result: OutboundReport) -> None:
        """How a call we placed went: the dial's outcome, then the flow's summary."""
        prefix = f"[{(result.call_id or result.tag)[:8]}] " if self.multi else ""
        reason = f" ({result.reason})" if result.reason else ""
        report = result.report
        if report is None:
            self._p(f"{prefix}call to {result.to}: {result.outcome}{reason}; no step ran")
            return
        self._p(f"{prefix}call to {result.to}: {result.outcome}{reason}")
        if result.call_id is not None:
            self.report(_Called(result.call_id), report)
            return
        took = report.trace[-1].started + report.trace[-1].duration if report.trace else 0.0
        self._p(f"{prefix}flow {report.status} in {_ms(took)}, without a call")
        if report.error:
            self._p(f"{prefix}  error: {report.error}")
        if report.vars and not self.quiet:
            shown = ", ".join(f"{k}={v!r}" for k, v in redact_vars(report.vars).items())
            self._p(f"{prefix}  vars: {shown}")


@dataclass(frozen=True)
class _Called:
    """What :meth:`TracePrinter.report` reads of a call (its id) once it is over."""

    call_id: str


def _how_it_ended(report: SessionReport) -> str:
    """Who ended the call, for the summary line."""
    if report.end_reason == SESSION_LOST:
        # Its actions ended "hangup" locally, but the caller did nothing of the kind.
        return "the call was lost with the RELAY session"
    return "the caller hung up" if report.caller_hung_up else "the flow hung up"


def lost_or_failed(report: SessionReport) -> bool:
    """True for a call whose flow did not run to its end: it failed, or the call was lost
    with the RELAY session (the connection failed, exit code 1)."""
    return report.status != "completed" or report.end_reason == SESSION_LOST


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _load(path: str, err: IO[str]) -> FlowVersion | None:
    try:
        return load_flow(path)
    except FlowError as exc:
        for diagnostic in exc.diagnostics:
            print(diagnostic, file=err)
        print(f"{path}: invalid flow, not run", file=err)
        return None
    except OSError as exc:
        print(f"{path}: cannot read: {exc.strerror or exc}", file=err)
        return None


def _default_number(flow: FlowVersion, key: str, default: str) -> str:
    value = flow.match.get(key) if flow.match else None
    # Only an exact number can be dialled; a glob falls back to the default.
    if isinstance(value, str) and not any(c in value for c in "*?["):
        return value
    return default


async def run_calls(
    runtime: FlowRuntime, client: Any, count: int, printer: TracePrinter | None = None,
    *, time_scale: float = 1.0, trace: Callable[[TraceEntry], None] | None = None,
    clock: Clock = WALL_CLOCK,
) -> list[SessionReport]:
    """Take the next ``count`` inbound calls on the flow's contexts from ``client`` and run
    each through the flow, concurrently as they come; returns their reports in the order
    they ended.

    An offer for a context the flow does not name is not ours (a server that routes badly
    sent it): it is left alone, with a warning, and does not count towards ``count`` — the
    run waits for its own calls.

    ``clock`` is what the calls' templates read the time from (``now()``, ``is_open()``).
    """
    reports: list[SessionReport] = []
    hooks = [h for h in (printer.step if printer else None, trace) if h is not None]

    def on_step(entry: TraceEntry) -> None:
        for hook in hooks:
            hook(entry)

    async def run_one(call: Any) -> None:
        if printer is not None:
            printer.call_started(call)
        session = Session(runtime, call, on_step=on_step if hooks else None,
                          time_scale=time_scale, clock=clock)
        report = await session.run()
        reports.append(report)
        if printer is not None:
            printer.report(call, report)

    contexts = frozenset(runtime.flow.contexts)
    async with anyio.create_task_group() as tg:
        taken = 0
        async for call in client.incoming_calls():
            if call.context not in contexts:
                logger.warning("call %s offered on context %r, which this run did not ask "
                               "for (it takes %s): left alone", call.call_id, call.context,
                               ", ".join(sorted(contexts)))
                continue
            tg.start_soon(run_one, call, name=f"call {call.call_id}")
            taken += 1
            if taken >= count:
                break
    return reports


def _recordings(report: SessionReport) -> list[tuple[str, str]]:
    """(step id, url) of every recording a call's flow produced."""
    return [(step, result["url"]) for step, result in report.steps.items()
            if isinstance(result, dict) and result.get("url")]


async def save_recordings(reports: list[SessionReport], directory: Path, out: IO[str],
                          err: IO[str]) -> None:
    """Download every recording into ``directory`` (named after the url's last segment)."""
    import urllib.request

    def fetch(url: str, target: Path) -> None:
        with urllib.request.urlopen(url, timeout=30) as response:
            target.write_bytes(response.read())

    directory.mkdir(parents=True, exist_ok=True)
    for report in reports:
        for _step, url in _recordings(report):
            target = directory / url.rstrip("/").rsplit("/", 1)[-1]
            try:
                await anyio.to_thread.run_sync(fetch, url, target)
            except OSError as exc:
                print(f"could not save {url}: {exc}", file=err)
            else:
                print(f"saved {target}", file=out)


@dataclass
class Relay:
    """Where a command's calls go: its client, and the embedded simulator when there were
    no credentials."""

    client: Any
    #: The simulator's pace (1.0 on real RELAY).
    time_scale: float
    #: The embedded ``Simulator``, or None on real RELAY.
    sim: Any = None


async def open_relay(stack: AsyncExitStack, *, relay_url: str | None, time_scale: float,
                     contexts: list[str], out: IO[str], err: IO[str],
                     on_simulator: Callable[[Any], str], connecting: str) -> Relay | int:
    """Connect to RELAY (credentials in the environment), or start the embedded simulator
    and connect to it; entered on ``stack``. ``on_simulator(sim)`` sets the simulator up
    and says what it does (printed after "running on the embedded simulator at …");
    ``connecting`` is printed when connecting to real RELAY.

    Returns:
        the :class:`Relay`, or an exit code after printing why not: 2 for half the
        credentials or a bad URL, 1 when RELAY refused or could not be reached.
    """
    from flowengine.relay import RelayClient, RelayConfig, RelayError

    try:
        config = RelayConfig.from_env(relay_url)
    except ValueError as exc:  # half the credentials, or a URL that is not ws(s)://
        print(redact_text(f"error: {exc}"), file=err)
        return EXIT_INVALID
    sim = None
    if config is None:
        from flowengine.sim import Simulator

        project, token = "sim-project", secrets.token_hex(16)
        sim = await stack.enter_async_context(
            Simulator(port=0, project=project, token=token, time_scale=time_scale))
        config = RelayConfig(url=sim.url, project=project, token=token)
        what = on_simulator(sim)
        print(f"no RELAY credentials set: running on the embedded simulator at {sim.url}; "
              f"{what}, time scale {time_scale:g}", file=out)
    else:
        time_scale = 1.0  # real RELAY runs in real time
        print(f"connecting to {config.shown_url}; {connecting}", file=out, flush=True)
    try:
        client = await stack.enter_async_context(RelayClient(config, contexts))
    except RelayError as exc:
        print(redact_text(f"error: {exc}"), file=err)
        return EXIT_FLOW_FAILED
    return Relay(client, time_scale, sim)


async def run_command(args: argparse.Namespace) -> int:
    """Run ``args.flow`` for ``args.count`` calls; the exit code says how the flows went."""
    out, err = sys.stdout, sys.stderr
    at = None
    if getattr(args, "at", None) is not None or getattr(args, "tz", None) is not None:
        if args.at is None:
            print("error: --tz says which zone --at is written in; give --at too", file=err)
            return EXIT_INVALID
        try:
            at = parse_at(args.at, args.tz)
        except ScheduleError as exc:
            print(f"error: --at: {exc}", file=err)
            return EXIT_INVALID
    flow = _load(args.flow, err)
    if flow is None:
        return EXIT_INVALID
    runtime = FlowRuntime(flow)
    count = max(1, args.count)
    printer = TracePrinter(out, flow, quiet=args.quiet, multi=count > 1)
    contexts = list(flow.contexts)

    def offer(sim: Any) -> str:
        from_number = args.from_number or _default_number(flow, "from", "+15551230000")
        to_number = args.to_number or _default_number(flow, "to", "+15559870000")
        for _ in range(count):
            sim.offer_call(context=contexts[0], from_number=from_number,
                           to_number=to_number, caller=args.caller)
        return f"caller {args.caller!r}"

    print(f"flow {flow.name} (version {flow.version[:12]}) from {flow.file}", file=out)
    async with AsyncExitStack() as stack:
        relay = await open_relay(
            stack, relay_url=args.relay_url, time_scale=args.time_scale, contexts=contexts,
            out=out, err=err, on_simulator=offer,
            connecting=f"waiting for {count} inbound call(s) on context(s) "
                       f"{', '.join(contexts)}")
        if isinstance(relay, int):
            return relay
        writer = TraceWriter(args.trace) if args.trace else None
        if writer is not None:
            stack.callback(writer.close)
        clock: Clock = WALL_CLOCK
        if at is not None:
            # Set now, it runs with the calls (at the simulator's pace on the simulator).
            clock = SetClock(at, relay.time_scale)
            print(f"clock set to {at.isoformat()} (it runs on from there)", file=out)
        reports = await run_calls(runtime, relay.client, count, printer,
                                  time_scale=relay.time_scale, trace=writer, clock=clock)
        if args.save_recordings:
            await save_recordings(reports, Path(args.save_recordings), out, err)
    failed = sum(1 for r in reports if lost_or_failed(r))
    return EXIT_FLOW_FAILED if failed or len(reports) < count else EXIT_OK
