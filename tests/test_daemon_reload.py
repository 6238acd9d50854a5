"""Hot reload under load: flow files rewritten every way editors and deploy tools do it
while calls stream through the daemon, and the other ways a reload is triggered."""

from __future__ import annotations

import gc
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from flowengine.daemon import Daemon, FlowLoader
from flowengine.engine.trace import TraceWriter, read_trace
from flowengine.flow import compile_flow
from flowengine.sim.calls import SimCall
from tests.flowtools import variant
from tests.test_daemon import (  # noqa: F401
    LogTap,
    flow_text,
    line_with,
    log_tap,
    serving,
    simulator,
    write,
)

pytestmark = pytest.mark.anyio

TOTAL_CALLS, CONCURRENCY, EDITS = 300, 30, 20
#: Which of the 20 edits are invalid: one of each kind `broken` makes (number % 5).
INVALID = {3, 7, 10, 14, 16}
#: Calls offered after an edit went live (or was rejected) before the next edit is written.
CALLS_BETWEEN = 5


def support(edition: int, say: str | None = None) -> str:
    """The edited flow; every edition has different bytes, so a different version."""
    say = say or f'"Edition {edition}"'
    return f"""# edition {edition}
name: support
context: support
steps:
  greet:
    answer: {{}}
  hello:
    play:
      - say: {say}
  message:
    record:
      beep: true
      terminators: "#"
  bye:
    hangup: {{}}
"""


def broken(edition: int) -> str:
    """Five kinds of invalid edit: template, unknown action, YAML, reference, type."""
    text = support(edition)
    kind = edition % 5
    if kind == 0:
        return support(edition, say='"{{ vars.edition "')
    if kind == 1:
        return variant(text, ("    play:", "    plya:"))
    if kind == 2:
        return variant(text, ("  message:\n    record:", "  message:\n\trecord:"))
    if kind == 3:
        return variant(text, ("    answer: {}", "    answer: {}\n    next: nowhere"))
    return variant(text, ("beep: true", 'beep: "yes"'))


# The three ways a file gets rewritten (each looks different to the watcher).

def save_atomic(path: Path, data: bytes) -> None:
    """A deploy tool: a temp file in the same directory, fsync, os.replace."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_in_place(path: Path, data: bytes) -> None:
    """Truncate and write the same inode."""
    with open(path, "r+b") as f:
        f.truncate(0)
        f.write(data)


def save_like_vim(path: Path, data: bytes) -> None:
    """Rename the original to a backup, write a new file, delete the backup."""
    backup = path.with_name(path.name + "~")
    os.rename(path, backup)
    path.write_bytes(data)
    os.unlink(backup)


SAVES = (save_atomic, save_in_place, save_like_vim)


@dataclass
class Edit:
    number: int
    text: str
    valid: bool
    written_at: float = 0.0
    #: When the daemon logged that it went live (valid) or was rejected (invalid).
    done_at: float = 0.0

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


async def test_rewriting_a_flow_under_load_never_drops_a_call(tmp_path: Path,
                                                              log_tap: LogTap) -> None:  # noqa: F811
    path = tmp_path / "support.yaml"
    first = support(0)
    path.write_text(first)
    edits = [Edit(n, broken(n) if n in INVALID else support(n), n not in INVALID)
             for n in range(1, EDITS + 1)]
    trace_file = tmp_path / "trace.jsonl"
    writer = TraceWriter(trace_file)
    offers: list[tuple[float, SimCall]] = []

    def processed(edit: Edit) -> float | None:
        found = (log_tap.events("reloaded", flow_version=edit.sha256) if edit.valid
                 else log_tap.events("rejected", sha256=edit.sha256))
        return found[0][0] if found else None

    async with simulator(time_scale=0.1) as sim, \
            serving(sim, [tmp_path], on_step=writer) as daemon:
        slots = anyio.Semaphore(CONCURRENCY)

        async def until_ended(call: SimCall) -> None:
            try:
                await call.wait_ended(timeout=60)
            finally:
                slots.release()

        async with anyio.create_task_group() as tg:
            todo = list(edits)
            pending: Edit | None = None
            since_done = CALLS_BETWEEN
            for i in range(TOTAL_CALLS):
                if pending is not None:
                    # Near the end, wait for the edit rather than run out of calls to
                    # show that it went live.
                    if TOTAL_CALLS - i <= (len(todo) + 1) * (CALLS_BETWEEN + 1):
                        with anyio.fail_after(10):
                            while processed(pending) is None:
                                await anyio.sleep(0.005)
                    done = processed(pending)
                    if done is not None:
                        pending.done_at, pending, since_done = done, None, 0
                if pending is None and todo and since_done >= CALLS_BETWEEN \
                        and i >= 10 + 14 * (EDITS - len(todo)):
                    pending = todo.pop(0)
                    SAVES[pending.number % 3](path, pending.text.encode())
                    pending.written_at = time.monotonic()
                    if not pending.valid:
                        version_before = daemon.registry.flows["support"].flow.version
                await slots.acquire()
                call = sim.offer_call("support", caller="speak:3")
                offers.append((time.monotonic(), call))
                since_done += 1
                tg.start_soon(until_ended, call)
                if pending is not None and not pending.valid and processed(pending):
                    # A rejected edit changes nothing.
                    assert daemon.registry.flows["support"].flow.version == version_before
            assert not todo and pending is None, "every edit was made and handled"
        await anyio.sleep(0.1)  # the last step lines follow the simulator's end events
        writer.close()
        summary = sim.summary()
        reloads = {s.labels["result"]: s.value for s in _samples(daemon, "flowengine_reloads")}
        completed = sum(s.value for s in _samples(daemon, "flowengine_calls")
                        if s.labels["ended"] == "completed")
        active_series = {s.labels["version"]: s.value
                         for s in _samples(daemon, "flowengine_calls_active")}
        gc.collect()
        in_memory = {v.version for v in daemon.loader.versions_in_memory()}
        serving_now = daemon.registry.flows["support"].flow.version

    # Every call completed, none leaked, none failed.
    assert summary == {"offered": 300, "ended": 300, "by_end_reason": {"hangup": 300},
                       "leaked": 0, "active": 0}
    assert completed == 300
    records, problems = read_trace(trace_file)
    assert not problems
    steps: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        steps.setdefault(record["call"], []).append(record)
    assert set(steps) == {call.call_id for _, call in offers}
    # Each call's trace names exactly one version, and ran the whole flow.
    versions = {call_id: {r["version"] for r in rs} for call_id, rs in steps.items()}
    assert all(len(v) == 1 for v in versions.values())
    assert all([r["step"] for r in rs] == ["greet", "hello", "message", "bye"]
               for rs in steps.values())

    # Every valid edit went live, in order: a call offered after a reload was logged ran
    # that version or a later one, and every version ran calls.
    valid = [Edit(0, first, True, done_at=0.0)] + [e for e in edits if e.valid]
    index = {edit.sha256: n for n, edit in enumerate(valid)}
    ran = {call.call_id: index[next(iter(versions[call.call_id]))] for _, call in offers}
    for offered_at, call in offers:
        live = max(n for n, edit in enumerate(valid) if edit.done_at < offered_at)
        assert ran[call.call_id] >= live, (call.call_id, ran[call.call_id], live)
    assert set(ran.values()) == set(range(len(valid)))
    latencies = [e.done_at - e.written_at for e in edits if e.valid]
    assert max(latencies) < 1.0, latencies  # "live within a second"

    # Every invalid edit was rejected with its errors, as `flowengine check` reports them.
    for edit in edits:
        if edit.valid:
            continue
        expected = [str(d) for d in compile_flow(edit.text.encode(), str(path)).diagnostics]
        assert expected and all(re.match(r".*support\.yaml:\d+:\d+: error: ", e) for e in expected)
        [(_, summary_line)] = log_tap.events("rejected", sha256=edit.sha256)
        assert getattr(summary_line, "errors", None) == expected
        assert "flow support keeps serving" in summary_line.getMessage()
        logged = {r.getMessage() for _, r in log_tap.events("rejected", file=str(path))}
        assert set(expected) <= logged
    assert reloads == {"ok": 1 + 15, "failed": 5}
    # Only the version taking calls keeps a calls_active series; the replaced ones went
    # away with their last call.
    assert active_series == {valid[-1].sha256[:12]: 0}
    # Replaced versions are freed once their last call ended.
    assert in_memory == {serving_now} == {valid[-1].sha256}


def _samples(daemon: Daemon, name: str) -> list[Sample]:
    """The samples of one metric (a counter's ``_total`` series) from the daemon's /metrics."""
    for family in text_string_to_metric_families(daemon.metrics.render().decode()):
        if family.name == name:
            return [s for s in family.samples if s.name in (name, name + "_total")]
    return []


# -------------------------------------------------------------- the other triggers

async def test_the_periodic_rescan_catches_what_no_watcher_saw(tmp_path: Path,
                                                              log_tap: LogTap) -> None:  # noqa: F811
    path = write(tmp_path / "flow.yaml", flow_text("flow", say="One"))
    async with simulator() as sim, serving(sim, [tmp_path], watch=False,
                                           rescan_interval=0.2) as daemon:
        before = daemon.registry.flows["flow"].flow.version
        write(path, flow_text("flow", say="Two"))
        _, record = await log_tap.wait_event("reloaded", flow="flow")
        assert "(periodic rescan)" in record.getMessage()
        assert daemon.registry.flows["flow"].flow.version != before


async def test_a_flow_name_used_by_two_files_is_refused_for_the_newcomer(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", flow_text("shared"))
    loader = FlowLoader([str(tmp_path)], settle=0)
    await loader.rescan("test")
    write(tmp_path / "b.yaml", flow_text("shared", "sales", on_hangup="gone"))
    report = await loader.rescan("test")
    [(file, edit)] = report.rejected
    assert file == str(tmp_path / "b.yaml")
    assert edit.errors == ((f"{tmp_path / 'b.yaml'}:1:1: error: flow name 'shared' is also "
                            f"used by {tmp_path / 'a.yaml'}; flow names must be unique among "
                            "the flows one daemon serves"),)
    assert loader.registry.flows["shared"].flow.file == str(tmp_path / "a.yaml")
    # The same bytes are not compiled (nor reported) again.
    assert not (await loader.rescan("test")).rejected


async def test_a_file_caught_mid_save_is_not_taken_for_an_edit(tmp_path: Path) -> None:
    path = write(tmp_path / "flow.yaml", flow_text("flow"))
    loader = FlowLoader([str(tmp_path)], settle=0.05)
    await loader.rescan("test")
    backup = path.with_name("flow.yaml~")
    os.rename(path, backup)  # an editor's save, between its rename and its write

    async def finish_saving() -> None:
        await anyio.sleep(0.02)
        path.write_text(flow_text("flow", say="Saved"))
        backup.unlink()

    async with anyio.create_task_group() as tg:
        tg.start_soon(finish_saving)
        report = await loader.rescan("test")
    assert not report.removed and not report.rejected
    [(old, new)] = report.updated
    assert old.name == new.name == "flow"


# --------------------------------------------------------------------------- SIGHUP

async def test_sighup_reloads_at_once(tmp_path: Path) -> None:
    path = write(tmp_path / "flow.yaml", flow_text("flow", say="One"))
    command = [sys.executable, "-m", "flowengine.cli", "serve", str(tmp_path), "--simulate",
               "--sim-rate", "20", "--time-scale", "0.01", "--no-watch",
               "--rescan-interval", "0"]
    async with await anyio.open_process(command, stdout=subprocess.DEVNULL) as process:
        assert process.stderr is not None
        stderr = BufferedByteReceiveStream(process.stderr)

        await line_with(stderr, "flowengine.daemon: serving 1 flow(s)")
        write(path, flow_text("flow", say="Two"))
        process.send_signal(signal.SIGHUP)
        reloaded = await line_with(stderr, "reloaded flow flow from")
        assert "(SIGHUP)" in reloaded
        process.send_signal(signal.SIGTERM)
        await line_with(stderr, "flowengine.daemon: stopped")
        with anyio.fail_after(20):
            assert await process.wait() == 0
