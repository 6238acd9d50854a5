"""Fuzzing RELAY frames: mutated copies of *real* frames, in a real call's order, fed to
the client core (``RelayProtocol`` and ``Call``) and to a live client over the simulator.

tests/test_relay_protocol.py feeds random text and random JSON to a fresh core, and
tests/test_relay_call.py random events to a call; the simulator's noise
(flowengine/sim/noise.py) is a fixed list of junk kinds. Here each junk frame is a real
frame of the call, mutated (cut short, bytes inserted or deleted, a value replaced by one
of another type, a huge number, deep nesting or unicode, a key dropped or added), arriving
just before the real one, so it looks almost right. Whatever comes: nothing raises, every
request is settled exactly once, the link stays up, and every call ends.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowengine.engine import FlowRuntime
from flowengine.engine.runner import run_calls
from flowengine.flow import load_flow
from flowengine.relay import RelayClient, RelayConfig
from flowengine.relay.events import CallEvent, Event, RequestFailed, RequestSucceeded
from flowengine.sim import Simulator
from tests.flowtools import FLOWS
from tests.test_relay_call import ScriptedClient, new_call
from tests.test_relay_protocol import open_protocol

#: A generous bound that tells a hang from slowness.
BOUND = 20.0
SCALE = 0.002
_DEEP = "__deep__"

# ------------------------------------------------------------------------ mutations

_KINDS = ("cut", "insert", "delete", "value", "drop_key", "add_key", "deep")
_SNIPPETS = ['"', "{", "}", "[", "]", ",", ":", "\\", "\\u0000", "\\ud800", "null", "-",
             "1e999", "9" * 40, "\u00e9", "\U0001f389", "\u202e", " ", "\n", "\x00"]

_values = st.recursive(
    st.none() | st.booleans() | st.sampled_from([10**30, -2**64, 2**63, -1, 0, 1.5e308])
    | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
    | st.just(_DEEP),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                  max_size=3),
    max_leaves=8)


@dataclass(frozen=True)
class Mutation:
    """One way to spoil a frame; ``at`` (0 to 1) picks the place, whatever the frame."""

    kind: str
    at: float
    snippet: str
    value: Any
    key: str
    depth: int


mutations = st.builds(Mutation, kind=st.sampled_from(_KINDS), at=st.floats(0, 1),
                      snippet=st.sampled_from(_SNIPPETS), value=_values,
                      key=st.text(max_size=8) | st.sampled_from(["id", "params", "result",
                                                                 "error", "method"]),
                      depth=st.sampled_from([2, 40, 3000]))


def _paths(node: Any, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every (container, key) in a JSON tree, in document order."""
    items = node.items() if isinstance(node, dict) else enumerate(node) \
        if isinstance(node, list) else ()
    for key, child in items:
        out.append((node, key))
        _paths(child, out)
    return out


def mutate(text: str, m: Mutation) -> str:
    """``text`` (a real frame) spoiled by ``m``."""
    at = int(m.at * len(text))
    if m.kind == "cut":
        return text[:at]
    if m.kind == "insert":
        return text[:at] + m.snippet + text[at:]
    if m.kind == "delete":
        return text[:at] + text[at + 1 + int(m.at * 7):]
    message = json.loads(text)
    paths = _paths(message, [])
    container, key = paths[int(m.at * (len(paths) - 1))]
    if m.kind == "value":
        container[key] = m.value
    elif m.kind == "drop_key" and isinstance(container, dict):
        del container[key]
    elif m.kind == "add_key":
        target = container[key] if isinstance(container[key], dict) else message
        target[m.key] = m.value
    else:  # deep: a value nested thousands of levels down
        container[key] = _DEEP
    deep = "[" * m.depth + "]" * m.depth if m.kind == "deep" else "[[]]"
    return json.dumps(message, ensure_ascii=False).replace(f'"{_DEEP}"', deep)


# -------------------------------------------------- the client core, one real call

def real_transcript(call_id: str, play_id: str, record_id: str,
                    replies: list[str]) -> list[str]:
    """The frames a RELAY server sends during one voicemail call, as the simulator sends
    them: the offer, the replies to ``replies`` (request ids), the call's and its actions'
    events, the hang-up."""
    n = iter(range(10**6))

    def event(event_type: str, **params: Any) -> str:
        return json.dumps({"jsonrpc": "2.0", "id": f"ev-{next(n)}", "method": "signalwire.event",
                           "params": {"event_type": event_type, "timestamp": 1764000000.5,
                                      "event_channel": "proto-1", "project_id": "p-1",
                                      "space_id": "s-1", "params": {"call_id": call_id,
                                                                    "node_id": "n1", **params}}})

    def reply(request_id: str, **extra: Any) -> str:
        return json.dumps({"jsonrpc": "2.0", "id": request_id,
                           "result": {"code": "200", "message": "OK", **extra}})

    device = {"type": "phone", "params": {"from_number": "+15551230000",
                                          "to_number": "+15559870000"}}
    answer, play, record, end = replies
    return [
        event("calling.call.receive", call_state="created", context="office",
              direction="inbound", device=device),
        reply(answer),
        event("calling.call.state", call_state="answered", direction="inbound", device=device),
        reply(play, control_id=play_id),
        event("calling.call.play", control_id=play_id, state="playing"),
        event("calling.call.play", control_id=play_id, state="finished"),
        reply(record, control_id=record_id),
        event("calling.call.record", control_id=record_id, state="recording"),
        event("calling.call.record", control_id=record_id, state="finished",
              record={"audio": {"format": "mp3"}}, url="http://127.0.0.1:1/recordings/x.mp3",
              duration=3.0, size=12000),
        reply(end),
        event("calling.call.state", call_state="ending", end_reason="hangup"),
        event("calling.call.state", call_state="ended", end_reason="hangup"),
    ]


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(0, 11), mutations), min_size=1, max_size=8))
def test_mutated_copies_of_a_real_calls_frames_never_break_the_client_core(
        spoilers: list[tuple[int, Mutation]]) -> None:
    async def main() -> None:
        proto = open_protocol()
        requests = [proto.send_request(method, {"call_id": "c1"})[0]
                    for method in ("calling.answer", "calling.play", "calling.record",
                                   "calling.end")]
        # The call as the flow holds it once answered, with its play and record going.
        call = new_call(ScriptedClient(), "answered")
        actions = [await call.play([{"type": "silence", "params": {"duration": 1}}]),
                   await call.record({"beep": True})]
        frames = real_transcript(call.call_id, actions[0].control_id, actions[1].control_id,
                                 requests)
        # Each spoiled copy arrives just before the real frame it copies.
        before: dict[int, list[str]] = {}
        for index, m in spoilers:
            before.setdefault(index, []).append(mutate(frames[index], m))
        settled: Counter[str] = Counter()
        events: list[Event] = []
        for index, real in enumerate(frames):
            for text in [*before.get(index, []), real]:
                got = proto.receive_frame(text)
                for reply in proto.frames_to_send():
                    json.loads(reply)  # every automatic reply is JSON
                events += got
                for ev in got:
                    if type(ev) in (RequestSucceeded, RequestFailed):
                        settled[ev.id] += 1  # type: ignore[attr-defined]
                    elif type(ev) is CallEvent and ev.call_id == call.call_id:
                        call._handle_event(ev)
        for ev in proto.receive_eof():
            settled[ev.id] += 1  # type: ignore[attr-defined]
        # Every request is settled once: by its reply (real or a spoiled copy) or the EOF.
        assert settled == Counter(requests), (settled, spoilers)
        # The real hang-up ends the call, whatever came before; every action ends with it.
        assert call.ended
        for action in actions:
            with anyio.fail_after(BOUND):
                result = await action.wait()
            assert isinstance(result.state, str)
            assert result.url is None or isinstance(result.url, str)
            assert result.duration is None or isinstance(result.duration, float)
            assert result.size is None or isinstance(result.size, int)

    anyio.run(main, backend="asyncio")


# ------------------------------------------------------------ a live client, the sim

def spoil_events(sim: Simulator, plan: list[Mutation], seed: int) -> Counter[str]:
    """Before each call event the simulator sends (offers excepted: a spoiled offer could
    be a real new call), a spoiled copy of it, using the simulator's noise hook."""
    core = sim.core
    rng = random.Random(seed)
    sent: Counter[str] = Counter()
    turn = iter(range(10**9))

    def add_noise(conn: Any, _noise: Any, event_type: str, params: dict[str, Any]) -> None:
        if event_type == "calling.call.receive" or rng.random() < 0.3:
            return
        m = plan[next(turn) % len(plan)]
        real = json.dumps({"jsonrpc": "2.0", "id": core._new_id(), "method": "signalwire.event",
                           "params": {"event_type": event_type, "params": params}})
        conn.push(mutate(real, m), False)
        sent[m.kind] += 1

    core.inject_noise(1.0, seed=seed)  # on, so that _send_event calls the hook
    core._add_noise = add_noise  # type: ignore[method-assign]
    return sent


class ErrorLog(logging.Handler):
    """The log records of level ERROR and above."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(plan=st.lists(mutations, min_size=1, max_size=12), seed=st.integers(0, 2**16),
       caller=st.sampled_from(["speak:3", "silent", "hangup:2", "speak:1:quiet"]))
def test_spoiled_copies_of_real_events_on_a_live_link_cost_no_call(
        plan: list[Mutation], seed: int, caller: str) -> None:
    flow = load_flow(FLOWS / "voicemail.yaml")
    calls = 3

    async def main() -> tuple[dict[str, Any], int, Counter[str], list[Any]]:
        with anyio.fail_after(BOUND):
            async with Simulator(port=0, project="p", token="t", time_scale=SCALE) as sim:
                sent = spoil_events(sim, plan, seed)
                offered = [sim.offer_call(context=flow.contexts[0], caller=caller)
                           for _ in range(calls)]
                async with RelayClient(RelayConfig(url=sim.url, project="p", token="t"),
                                       flow.contexts) as client:
                    reports = await run_calls(FlowRuntime(flow), client, calls,
                                              time_scale=SCALE)
                    reconnects = client.reconnects
                for call in offered:
                    await call.wait_ended()
                return sim.summary(), reconnects, sent, reports

    errors = ErrorLog()
    logging.getLogger().addHandler(errors)
    try:
        summary, reconnects, sent, reports = anyio.run(main, backend="asyncio")
    finally:
        logging.getLogger().removeHandler(errors)
    # Junk is dropped with a warning; nothing is an error (a traceback, a crashed task).
    assert not errors.records, [r.getMessage() for r in errors.records]
    assert summary["offered"] == calls and summary["ended"] == calls, summary
    assert summary["leaked"] == 0 and summary["active"] == 0
    assert reconnects == 0  # the link went on: no junk frame made the client drop it
    assert len(reports) == calls
    assert all(r.status in ("completed", "failed") for r in reports)
    assert sum(sent.values()) > 0  # the junk did go out


# ------------------------------------------------ the simulator's side of the link

def _client_frames(call_id: str, node_id: str) -> list[str]:
    """The requests a flow's client sends during a voicemail call, in order."""
    ids = {"call_id": call_id, "node_id": node_id}
    requests: list[tuple[str, dict[str, Any]]] = [
        ("calling.answer", ids),
        ("calling.play", {**ids, "control_id": "play-1",
                          "play": [{"type": "tts", "params": {"text": "Hi"}}]}),
        ("calling.record", {**ids, "control_id": "record-1",
                            "record": {"audio": {"beep": True, "format": "mp3",
                                                 "terminators": "#"}}}),
        ("calling.play_and_collect", {**ids, "control_id": "collect-1",
                                      "play": [{"type": "silence", "params": {"duration": 1}}],
                                      "collect": {"digits": {"max": 2}}}),
        ("calling.record.stop", {**ids, "control_id": "record-1"}),
        ("calling.end", {**ids, "reason": "hangup"}),
    ]
    return [json.dumps({"jsonrpc": "2.0", "id": f"req-{n}", "method": method,
                        "params": params}) for n, (method, params) in enumerate(requests)]


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(0, 5), mutations), min_size=1, max_size=8))
def test_mutated_copies_of_a_clients_requests_never_break_the_simulator(
        spoilers: list[tuple[int, Mutation]]) -> None:
    from flowengine.sim import SimCore
    from tests.simpeer import FakeClock, Peer

    clock = FakeClock()
    core = SimCore(project="p", token="secret-token", time_scale=1.0, clock=clock,
                   http_url="http://sim.test")
    peer = Peer(core, clock)
    peer.connect(["office"])
    call = core.offer_call("office", caller="speak:3")
    peer.frames()
    frames = _client_frames(call.call_id, call.node_id)
    before: dict[int, list[str]] = {}
    for index, m in spoilers:
        before.setdefault(index, []).append(mutate(frames[index], m).replace("req-", "junk-"))
    replies: Counter[Any] = Counter()
    for index, real in enumerate(frames):
        for text in [*before.get(index, []), real]:
            core.receive_frame(peer.conn, text)  # never raises
            peer.advance(1.0)
            for frame in peer.frames():
                if "method" not in frame:
                    replies[frame.get("id")] += 1
    peer.advance(60.0)
    peer.frames()
    # Every real request got exactly one reply, the junk notwithstanding, and the real
    # calling.end ended the call.
    assert all(replies[f"req-{n}"] == 1 for n in range(len(frames))), replies
    assert call.ended and core.summary()["active"] == 0


def test_a_frame_nested_too_deep_gets_a_parse_error_and_the_link_stays() -> None:
    # Found by the test above: json.loads raised RecursionError out of receive_frame, so
    # the simulator's reader task died and the client's socket was closed, with a traceback.
    from websockets.asyncio.client import connect

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        async with Simulator(port=0, project="p", token="t") as sim, connect(sim.url) as ws:
            await ws.send('{"jsonrpc": "2.0", "id": "deep", "method": "x", "params": '
                          + "[" * 5000 + "]" * 5000 + "}")
            with anyio.fail_after(BOUND):
                error = json.loads(await ws.recv())
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": "after", "method":
                                          "signalwire.ping", "params": {}}))
                after = json.loads(await ws.recv())
            return error, after

    error, after = anyio.run(main, backend="asyncio")
    assert error["error"]["message"] == "Parse error"
    assert after["id"] == "after"  # the same socket still answers


def test_a_request_id_with_a_lone_surrogate_gets_its_reply_and_the_link_stays() -> None:
    # Found by the fuzzing above: an id holding a lone surrogate made orjson refuse the
    # reply, and the TypeError ended the simulator's reader (and closed the socket).
    from websockets.asyncio.client import connect

    async def main() -> list[dict[str, Any]]:
        async with Simulator(port=0, project="p", token="t") as sim, connect(sim.url) as ws:
            replies = []
            for request_id in ('"odd\\ud800id"', '"after"'):
                await ws.send('{"jsonrpc": "2.0", "id": ' + request_id
                              + ', "method": "signalwire.ping", "params": {}}')
                with anyio.fail_after(BOUND):
                    replies.append(json.loads(await ws.recv()))
            return replies

    odd, after = anyio.run(main, backend="asyncio")
    # Each gets its reply (not connected yet: an error), the odd id echoed as it came.
    assert odd["id"] == "odd\ud800id" and "error" in odd
    assert after["id"] == "after"  # the same socket still answers
