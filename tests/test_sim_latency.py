"""The simulator's optional event-to-command latency recorder (used by bench/)."""

from __future__ import annotations

import json

import anyio
import pytest
from websockets.asyncio.client import connect

from flowengine.sim import SimCore, Simulator
from flowengine.sim.latency import LatencyRecorder, percentile


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) == 0.0


def test_only_the_latest_event_before_a_command_counts() -> None:
    clock = Clock()
    rec = LatencyRecorder(clock)
    rec.command("a")  # no event yet: no sample
    rec.event_sent("a")
    clock.t += 0.010
    rec.event_sent("a")  # the latest event wins
    clock.t += 0.002
    rec.command("a")
    rec.command("a")  # no new event since the last command: no sample
    assert rec.samples == [pytest.approx(0.002)]
    summary = rec.summary()
    assert summary["count"] == 1 and summary["p99_ms"] == 2.0
    rec.reset()
    assert rec.summary()["count"] == 0


def test_off_by_default_and_the_summary_is_unchanged() -> None:
    core = SimCore()
    assert core.latency is None
    assert "latency" not in core.summary()


def test_the_core_tags_call_events_but_not_ended_or_session_events() -> None:
    clock = Clock()
    core = SimCore(project="p", token="t", clock=clock, record_latency=True)
    conn = core.connection_made()
    auth = {"project": "p", "token": "t"}
    core.receive_frame(conn, json.dumps({"jsonrpc": "2.0", "id": "1",
                                         "method": "signalwire.connect",
                                         "params": {"authentication": auth,
                                                    "contexts": ["office"]}}))
    call = core.offer_call("office")
    tags = [tag for _, tag in conn.outbox]
    # reply, authorization state (a session event), then the call's receive event.
    assert tags == [False, True, call.call_id]
    assert core.latency is not None
    for _, tag in conn.outbox:  # what the driver does after writing each frame
        if type(tag) is str:
            core.latency.event_sent(tag)
    conn.outbox.clear()
    clock.t += 0.005
    core.receive_frame(conn, json.dumps({"jsonrpc": "2.0", "id": "2", "method": "calling.end",
                                         "params": {"call_id": call.call_id,
                                                    "node_id": call.node_id}}))
    assert core.latency.samples == [pytest.approx(0.005)]
    ended = [tag for frame, tag in conn.outbox if '"ended"' in frame]
    assert ended == [True]
    latency = core.summary()["latency"]
    assert latency["count"] == 1 and latency["by_method"]["calling.end"]["count"] == 1


@pytest.mark.anyio
async def test_measured_over_a_socket() -> None:
    async with Simulator(time_scale=0.001, record_latency=True) as sim:
        async with connect(sim.url) as ws:
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": "c", "method": "signalwire.connect",
                                      "params": {"authentication": {"project": "sim-project",
                                                                    "token": "sim-token"},
                                                 "contexts": ["office"]}}))
            call = sim.offer_call("office")
            with anyio.fail_after(5):
                while True:
                    frame = json.loads(await ws.recv())
                    params = frame.get("params", {})
                    if params.get("event_type") == "calling.call.receive":
                        break
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": "a", "method": "calling.answer",
                                      "params": {"call_id": call.call_id,
                                                 "node_id": call.node_id}}))
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": "e", "method": "calling.end",
                                      "params": {"call_id": call.call_id,
                                                 "node_id": call.node_id}}))
            await call.wait_ended(timeout=5)
        latency = sim.summary()["latency"]
        # answer follows the receive event; end follows no new event only if the answered
        # event was not written before it arrived, so one or two samples.
        assert latency["count"] in (1, 2)
        assert 0 <= latency["p50_ms"] < 1000
