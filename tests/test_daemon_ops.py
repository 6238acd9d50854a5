"""Running ``flowengine serve`` in production: drain on SIGTERM, a dropped socket, two
daemons sharing a context, the metrics and health endpoints, JSON logs."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from prometheus_client.parser import text_string_to_metric_families

from flowengine.daemon import Daemon
from flowengine.engine import TraceEntry
from flowengine.engine.trace import read_trace
from flowengine.flow import compile_flow
from flowengine.relay import RelayClient
from flowengine.sim import Simulator
from flowengine.sim.calls import SimCall
from tests.flowtools import variant
from tests.test_daemon import (  # noqa: F401
    PROJECT,
    SCALE,
    TOKEN,
    LogTap,
    flow_text,
    log_tap,
    relay_config,
    serving,
    simulator,
    write,
)

pytestmark = pytest.mark.anyio

FULL_PATH = ["greet", "hello", "message", "bye"]
#: The path of a call hung up during its recording: on_hangup leads to `gone`.
HUNG_UP_PATH = ["greet", "hello", "message", "gone"]


def desk(tmp_path: Path) -> Path:
    """A directory with one flow on context `desk` whose on_hangup logs a line."""
    directory = tmp_path / "flows"
    directory.mkdir()
    write(directory / "desk.yaml", flow_text("desk", "desk", on_hangup="gone"))
    return directory


async def all_recording(calls: list[SimCall]) -> None:
    """Wait until every call's flow is in its recording, waiting for the caller."""
    with anyio.fail_after(20):
        while not all("calling.record" in call.commands for call in calls):
            await anyio.sleep(0.01)
    await anyio.sleep(0.1)  # the record replies reach the daemon


async def link_quiet(sim: Simulator, calls: list[SimCall]) -> None:
    """Wait until each call's recording was announced to the client and every event ACKed."""
    def announced(call: SimCall) -> bool:
        return any(kind == "calling.call.record" and params.get("state") == "recording"
                   for kind, params in call.events)

    with anyio.fail_after(20):
        while not (all(announced(call) for call in calls)
                   and not any(link.conn.unacked or link.conn.outbox
                               for link in sim._links.values())):
            await anyio.sleep(0.001)


def paths_by_call(steps: list[TraceEntry] | list[dict[str, Any]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for step in steps:
        if isinstance(step, dict):
            found.setdefault(step["call"], []).append(step["step"])
        else:
            found.setdefault(step.call_id, []).append(step.step)
    return found


class Lines:
    """The lines a subprocess writes to a stream, read as they come."""

    def __init__(self, stream: Any) -> None:
        self._stream = BufferedByteReceiveStream(stream)
        self.lines: list[str] = []

    async def read_all(self) -> None:
        try:
            while True:
                line = await self._stream.receive_until(b"\n", 1 << 20)
                self.lines.append(line.decode())
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.ClosedResourceError):
            pass

    async def wait_for(self, text: str, timeout: float = 20) -> str:
        with anyio.fail_after(timeout):
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                await anyio.sleep(0.01)


# --------------------------------------------------------------------------- SIGTERM

async def test_sigterm_lets_calls_finish_ends_the_rest_cleanly_and_exits_0(tmp_path: Path) -> None:
    directory = desk(tmp_path)
    trace = tmp_path / "trace.jsonl"
    env = {**os.environ, "SIGNALWIRE_PROJECT_ID": PROJECT, "SIGNALWIRE_API_TOKEN": TOKEN}
    async with simulator(time_scale=0.01) as sim:
        command = [sys.executable, "-m", "flowengine.cli", "serve", str(directory),
                   "--relay-url", sim.url, "--time-scale", "0.01", "--drain-timeout", "2",
                   "--trace", str(trace)]
        async with await anyio.open_process(command, env=env, stdout=subprocess.DEVNULL) \
                as process, anyio.create_task_group() as tg:
            assert process.stderr is not None
            stderr = Lines(process.stderr)
            tg.start_soon(stderr.read_all)
            await stderr.wait_for("flowengine.daemon: serving 1 flow(s)")
            # 25 callers who finish within the drain timeout, 25 who would talk for 30 s.
            short = [sim.offer_call("desk", caller="speak:50") for _ in range(25)]
            long = [sim.offer_call("desk", caller="speak:3000") for _ in range(25)]
            await all_recording(short + long)
            process.send_signal(signal.SIGTERM)
            await stderr.wait_for("draining: 50 call(s) in flight")

            # New calls go to the other daemons now (here: a plain client on the context).
            async with RelayClient(relay_config(sim), ["desk"]) as other:
                later = [sim.offer_call("desk", caller="speak:1") for _ in range(3)]
                taken = []
                with anyio.fail_after(20):
                    async for call in other.incoming_calls():
                        taken.append(call.call_id)
                        await call.hangup()
                        if len(taken) == len(later):
                            break
            with anyio.fail_after(30):
                code = await process.wait()
        summary = sim.summary()

    assert code == 0
    assert sorted(taken) == sorted(c.call_id for c in later)
    # Every call ended, nothing leaked.
    assert summary["offered"] == 53 and summary["ended"] == 53 and summary["leaked"] == 0
    assert summary["by_end_reason"] == {"hangup": 53}
    records, problems = read_trace(trace)
    assert not problems
    paths = paths_by_call(records)
    # The short calls finished their flow; the long ones were hung up by the drain and
    # their flow's on_hangup ran; the calls offered during the drain never reached it.
    assert {c.call_id: paths.get(c.call_id) for c in short} == {c.call_id: FULL_PATH for c in short}
    assert {c.call_id: paths.get(c.call_id) for c in long} == {
        c.call_id: HUNG_UP_PATH for c in long}
    assert not set(paths) & {c.call_id for c in later}
    text = "\n".join(stderr.lines)
    assert "drain: hanging up 25 call(s) still in flight" in text
    assert "flowengine.daemon: stopped" in text
    assert TOKEN not in text


# ------------------------------------------------------------------ a dropped socket

async def test_calls_in_flight_survive_a_dropped_socket(tmp_path: Path) -> None:
    steps: list[TraceEntry] = []
    async with simulator(time_scale=0.01) as sim, \
            serving(sim, [desk(tmp_path)], on_step=steps.append) as daemon:
        # 2.5 s of real time per recording: ten times what starting 50 takes here.
        calls = [sim.offer_call("desk", caller="speak:250") for _ in range(50)]
        await all_recording(calls)
        # Not a sleep: the link is quiet — every call's "recording" event (sent after its
        # record reply) was ACKed — so the drop cuts no request short, however loaded the
        # machine. (The daemon stays on real time: it compiles in threads and watches files.)
        await link_quiet(sim, calls)
        assert not any(call.recordings for call in calls), "a recording ended before the drop"
        dropped_at = time.time()
        await sim.drop_connections()
        await sim.wait_all_ended(timeout=30)
        await anyio.sleep(0.1)
        assert daemon.relay is not None and daemon.relay.reconnects == 1
        completed = [s.value for f in text_string_to_metric_families(
            daemon.metrics.render().decode()) for s in f.samples
            if s.name == "flowengine_calls_total" and s.labels["ended"] == "completed"]
    assert sim.summary()["by_end_reason"] == {"hangup": 50}
    paths = paths_by_call(steps)
    assert {c.call_id: paths[c.call_id] for c in calls} == {c.call_id: FULL_PATH for c in calls}
    assert completed == [50]
    # The recordings were under way when the socket dropped and ended after the resume.
    assert all(e.at + e.duration > dropped_at for e in steps if e.step == "message")


# ----------------------------------------------------------------------- scaling out

async def test_two_daemons_on_one_context_share_the_calls(tmp_path: Path) -> None:
    directory = desk(tmp_path)
    first: list[TraceEntry] = []
    second: list[TraceEntry] = []
    async with simulator() as sim, serving(sim, [directory], on_step=first.append), \
            serving(sim, [directory], on_step=second.append):
        calls = [sim.offer_call("desk") for _ in range(40)]
        await sim.wait_all_ended(timeout=20)
        await anyio.sleep(0.1)
    ids_first, ids_second = set(paths_by_call(first)), set(paths_by_call(second))
    assert ids_first and ids_second and not ids_first & ids_second
    assert ids_first | ids_second == {c.call_id for c in calls}
    assert sim.summary()["by_end_reason"] == {"hangup": 40}


# ------------------------------------------------------------------ /metrics, /healthz

async def http_get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        with anyio.fail_after(10):
            try:
                while True:
                    data += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
    assert int(headers["content-length"]) == (len(body) if method == "GET" else
                                               int(headers["content-length"]))
    return int(status_line.split()[1]), headers, body


def samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples}


async def test_metrics_and_health_endpoints(tmp_path: Path, log_tap: LogTap) -> None:  # noqa: F811
    directory = desk(tmp_path)
    path = directory / "desk.yaml"
    write(directory / "vip.yaml", flow_text("vip", "vip", match={"from": "+1999*"}))
    async with simulator() as sim, serving(sim, [directory], metrics_port=0) as daemon:
        port = daemon.metrics_port
        assert isinstance(port, int) and port > 0
        for call in [sim.offer_call("desk") for _ in range(3)]:
            await call.wait_ended(timeout=10)
        declined = sim.offer_call("vip", "+15551230000", "+15559870000")
        await declined.wait_ended(timeout=10)
        await anyio.sleep(0.1)
        version = daemon.registry.flows["desk"].flow
        short = version.short_version

        status, headers, body = await http_get(port, "/metrics")
        assert status == 200 and headers["content-type"].startswith("text/plain")
        found = samples(body)
        flow = (("flow", "desk"), ("version", short))
        assert found[("flowengine_calls_total", (("ended", "completed"), *flow))] == 3
        assert found[("flowengine_calls_active", flow)] == 0
        assert found[("flowengine_calls_declined_total",
                      (("context", "vip"), ("reason", "no_flow")))] == 1
        assert found[("flowengine_step_duration_seconds_count",
                      (("flow", "desk"), ("outcome", "answered"), ("step", "greet")))] == 3
        assert found[("flowengine_step_duration_seconds_count",
                      (("flow", "desk"), ("outcome", "finished"), ("step", "message")))] == 3
        assert found[("flowengine_reloads_total", (("result", "ok"),))] == 2  # two files
        assert found[("flowengine_reloads_total", (("result", "failed"),))] == 0
        assert found[("flowengine_flow_info", (("file", str(path)), *flow))] == 1
        assert found[("flowengine_relay_reconnects_total", ())] == 0
        assert found[("flowengine_relay_connected", ())] == 1

        status, headers, body = await http_get(port, "/healthz")
        health = json.loads(body)
        assert status == 200 and headers["content-type"] == "application/json"
        assert health["status"] == "serving"
        desk_health = health["flows"]["desk"]
        assert desk_health["version"] == version.version
        assert desk_health["file"] == str(path)
        assert desk_health["last_reload_error"] is None
        assert desk_health["loaded_at"].endswith("+00:00")
        assert health["relay"]["connected"] and health["relay"]["reconnects"] == 0

        # An invalid edit: the old version keeps serving, the errors show up per flow.
        bad = variant(flow_text("desk", "desk", on_hangup="gone"), ("beep: true", "beep: 3"))
        write(path, bad)
        await log_tap.wait_event("rejected", file=str(path))
        status, _, body = await http_get(port, "/healthz")
        health = json.loads(body)
        assert status == 200 and health["flows"]["desk"]["version"] == version.version
        error = health["flows"]["desk"]["last_reload_error"]
        wrong = [d for d in compile_flow(bad.encode(), str(path)).diagnostics if d.is_error]
        # Where, not what: the messages quote the file, and /healthz has no auth.
        assert error["locations"] == [d.location for d in wrong]
        assert error["error_count"] == len(wrong) and "errors" not in error
        assert error["locations"][0].startswith(f"{path}:")
        found = samples((await http_get(port, "/metrics"))[2])
        assert found[("flowengine_reloads_total", (("result", "failed"),))] == 1

        assert (await http_get(port, "/nothing"))[0] == 404
        assert (await http_get(port, "/metrics", "POST"))[0] == 405
        status, _, body = await http_get(port, "/healthz", "HEAD")
        assert status == 200 and body == b""
        every_body = (await http_get(port, "/metrics"))[2] + (await http_get(port, "/healthz"))[2]
        assert TOKEN.encode() not in every_body

        # While draining, the health check fails: a supervisor can tell.
        busy = sim.offer_call("desk", caller="speak:3000")
        await all_recording([busy])
        daemon.request_drain()
        await log_tap.wait_event("drain")
        status, _, body = await http_get(port, "/healthz")
        health = json.loads(body)
        assert status == 503 and health["status"] == "draining"
        assert health["calls_in_flight"] == 1
        assert health["flows"]["desk"]["calls_in_flight"] == {short: 1}


# ------------------------------------------------------- --simulate and JSON log lines

async def test_simulate_streams_calls_and_logs_json_lines(tmp_path: Path) -> None:
    directory = desk(tmp_path)
    trace = tmp_path / "trace.jsonl"
    command = [sys.executable, "-m", "flowengine.cli", "serve", str(directory), "--simulate",
               "--sim-calls", "4", "--sim-rate", "40", "--time-scale", "0.01",
               "--log-format", "json", "--log-level", "debug", "--trace", str(trace)]
    async with await anyio.open_process(command, stdout=subprocess.DEVNULL) as process, \
            anyio.create_task_group() as tg:
        assert process.stderr is not None
        stderr = Lines(process.stderr)
        tg.start_soon(stderr.read_all)
        with anyio.fail_after(30):
            code = await process.wait()
    assert code == 0
    lines = [json.loads(line) for line in stderr.lines]  # every line is one JSON object
    steps = [line for line in lines if line["logger"] == "flowengine.engine"
             and line["message"].startswith("step ")]
    assert len(steps) == 4 * 4 and len({s["call_id"] for s in steps}) == 4
    version = compile_flow((directory / "desk.yaml").read_bytes(), "x").version
    assert version is not None
    for step in steps:
        assert step["flow"] == "desk" and step["version"] == version.version
        assert step["step"] in FULL_PATH and step["outcome"] and "duration_ms" in step
        assert step["level"] == "debug" and step["ts"].endswith("Z")
    ended = [line for line in lines if line.get("event") == "call_ended"]
    assert [line["ended"] for line in ended] == ["completed"] * 4
    assert all(line["path"] == FULL_PATH and "duration_ms" in line for line in ended)
    records, _ = read_trace(trace)
    paths = paths_by_call(records)
    assert sorted(paths) == sorted({s["call_id"] for s in steps})
    assert all(path == FULL_PATH for path in paths.values())


# ------------------------------------------------------------- a bug in one call

async def test_a_call_that_crashes_does_not_take_the_daemon_down(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_tap: LogTap) -> None:  # noqa: F811
    from flowengine.daemon import server
    from flowengine.engine import Session, SessionReport

    class Buggy(Session):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if self.call.from_number == "+1777":
                raise RuntimeError("a bug in the engine's set-up")

        async def run(self) -> SessionReport:
            if self.call.from_number == "+1666":
                raise RuntimeError("a bug in the engine")
            return await super().run()

    monkeypatch.setattr(server, "Session", Buggy)
    steps: list[TraceEntry] = []
    async with simulator() as sim, serving(sim, [desk(tmp_path)], on_step=steps.append) as daemon:
        bad = sim.offer_call("desk", "+1666", "+15559870000")
        worse = sim.offer_call("desk", "+1777", "+15559870000")
        good = [sim.offer_call("desk") for _ in range(3)]
        await sim.wait_all_ended(timeout=10)
        await anyio.sleep(0.1)
        ended = {s.labels["ended"]: s.value for f in text_string_to_metric_families(
            daemon.metrics.render().decode()) for s in f.samples
            if s.name == "flowengine_calls_total"}
        assert daemon.state == "serving"
    for broken in (bad, worse):
        assert broken.end_reason == "error" and "calling.answer" not in broken.commands
    paths = paths_by_call(steps)
    assert all(paths[c.call_id] == FULL_PATH for c in good)
    assert ended == {"failed": 2, "completed": 3}
    crashes = log_tap.find(lambda r: r.getMessage() == "call crashed")
    assert sorted(getattr(r, "call_id", None) for _, r in crashes) == sorted(
        [bad.call_id, worse.call_id])
    assert all(r.exc_info for _, r in crashes)


# ------------------------------------------------------- the calls' tasks at the end

def call_tasks() -> list[str]:
    """The names of the daemon's call tasks still alive in this event loop."""
    import asyncio

    return sorted(t.get_name() for t in asyncio.all_tasks()
                  if t.get_name().startswith("call ") and not t.done())


async def test_flows_that_outlast_the_hangup_grace_are_cancelled_and_the_daemon_exits_0(
        tmp_path: Path, log_tap: LogTap) -> None:  # noqa: F811
    held = []

    async def hold(stream: Any) -> None:  # a webhook that never answers
        held.append(stream)
        await anyio.sleep_forever()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    directory = tmp_path / "flows"
    directory.mkdir()
    # The caller's hangup leads to a webhook that takes 10 minutes to answer.
    write(directory / "desk.yaml", variant(flow_text("desk", "desk", on_hangup="gone"), (
        '    log: "the caller left during the flow"',
        f"    request: {{url: 'http://127.0.0.1:{port}/slow', read_timeout: 600}}")))
    async with simulator() as sim, anyio.create_task_group() as webhook:
        webhook.start_soon(listener.serve, hold)
        async with serving(sim, [directory], drain_timeout=0.2, hangup_grace=0.5) as daemon:
            calls = [sim.offer_call("desk", caller="speak:3000") for _ in range(5)]
            await all_recording(calls)
            assert len(call_tasks()) == 5
            started = time.monotonic()
        took = time.monotonic() - started  # `serving` drained and checked the exit code 0
        await sim.wait_all_ended(timeout=5)
        webhook.cancel_scope.cancel()
    assert took < 5 and len(held) == 5
    assert call_tasks() == [] and daemon.calls_in_flight == 0
    assert all(c.end_reason == "hangup" for c in calls)
    assert log_tap.find(lambda r: "5 call(s) did not end within 0.5 s: cancelled"
                        in r.getMessage())
    cancelled = log_tap.find(lambda r: r.getMessage().startswith("call cancelled after"))
    assert sorted(getattr(r, "call_id", None) for _, r in cancelled) == sorted(
        c.call_id for c in calls)


async def test_cancelling_the_daemon_ends_its_calls_tasks_at_once(tmp_path: Path) -> None:
    # A hard stop (the clean one is request_drain): the link goes with the daemon, so the
    # calls are left to RELAY, but no task of theirs outlives it or waits for a reply.
    async with simulator() as sim:
        daemon = Daemon([str(desk(tmp_path))], relay_config(sim), time_scale=SCALE,
                        rescan_interval=0, watch=False)
        async with anyio.create_task_group() as tg:
            await tg.start(daemon.run)
            calls = [sim.offer_call("desk", caller="speak:3000") for _ in range(5)]
            await all_recording(calls)
            assert len(call_tasks()) == 5
            started = time.monotonic()
            tg.cancel_scope.cancel()
        took = time.monotonic() - started
        assert call_tasks() == [] and daemon.state == "stopped"
        assert took < 2  # not the 10 s a hang-up waits for its reply
        for call in calls:
            call.end("hangup")


# ---------------------------------------------------------------- garbage collector

def test_serve_runs_the_garbage_collector_less_often_and_the_environment_can_say_otherwise(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import gc

    from flowengine.daemon.cli import GC_THRESHOLDS, tune_gc

    before = gc.get_threshold()
    try:
        monkeypatch.delenv("FLOWENGINE_GC_THRESHOLDS", raising=False)
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS and GC_THRESHOLDS[0] > before[0]
        monkeypatch.setenv("FLOWENGINE_GC_THRESHOLDS", "700,10,10")
        tune_gc()
        assert gc.get_threshold() == (700, 10, 10)
        for bad in ("lots", "1,2,3,4", "-5"):
            monkeypatch.setenv("FLOWENGINE_GC_THRESHOLDS", bad)
            with caplog.at_level(logging.WARNING, "flowengine.daemon"):
                tune_gc()
            assert gc.get_threshold() == GC_THRESHOLDS
            assert f"FLOWENGINE_GC_THRESHOLDS='{bad}': expected up to three" in caplog.text
    finally:
        gc.set_threshold(*before)


# ------------------------------------------------------------------ noise on the wire

async def test_junk_frames_on_the_wire_cost_no_call(tmp_path: Path,
                                                    log_tap: LogTap) -> None:  # noqa: F811
    steps: list[TraceEntry] = []
    async with simulator() as sim, serving(sim, [desk(tmp_path)], on_step=steps.append) as daemon:
        sim.inject_noise(0.6, seed=20261126)
        calls = [sim.offer_call("desk") for _ in range(30)]
        await sim.wait_all_ended(timeout=20)
        await anyio.sleep(0.1)
        assert daemon.state == "serving"
        summary = sim.summary()
    # Every call went through its whole flow, as without the noise.
    assert summary["by_end_reason"] == {"hangup": 30} and summary["leaked"] == 0
    assert summary["noise_frames"] > 50
    paths = paths_by_call(steps)
    assert {c.call_id: paths.get(c.call_id) for c in calls} == {
        c.call_id: FULL_PATH for c in calls}
    assert all(c.commands == ["calling.answer", "calling.play", "calling.record",
                              "calling.end"] for c in calls)
    # The junk was seen and dropped, with a warning each, not a crash.
    dropped = log_tap.find(lambda r: r.getMessage().startswith("! dropped a frame from RELAY"))
    assert dropped
    assert not log_tap.find(lambda r: r.levelno >= logging.ERROR)


async def test_no_call_is_lost_when_sockets_drop_while_calls_are_offered(
        tmp_path: Path) -> None:
    # Calls keep coming while the link drops again and again (and junk frames fly): an
    # offer written just before a drop never reached the daemon, so the simulator offers it
    # again on resume, as RELAY does with events that were not ACKed. Every call is taken
    # and ends; none is left ringing.
    async with simulator(time_scale=0.01) as sim, serving(sim, [desk(tmp_path)]) as daemon:
        sim.inject_noise(0.2, seed=4)
        calls = []
        for n in range(80):
            calls.append(sim.offer_call("desk", caller=["speak:1", "silent", "hangup:1"][n % 3]))
            if n % 16 == 8:
                await sim.drop_connections()
            await anyio.sleep(0.005)
        with anyio.move_on_after(30):
            while not all(c.ended for c in calls):
                await anyio.sleep(0.05)
        left = [(c.caller, c.state, c.commands, [e for e, _ in c.events][-3:])
                for c in calls if not c.ended]
        assert not left, left
        assert daemon.relay is not None and daemon.relay.reconnects >= 2
    assert all("calling.answer" in c.commands for c in calls)
    assert {c.end_reason for c in calls} == {"hangup"}
