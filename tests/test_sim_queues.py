"""The simulator's FIFO queues, frame by frame (§5.10): calling.queue.enter / .leave, the
calling.call.queue events each waiting caller gets, and an agent's connect to a queue."""

from __future__ import annotations

from typing import Any

from flowengine.sim import SimCore
from tests.simpeer import Peer, events


def _answered(core: SimCore, peer: Peer, caller: str = "silent") -> tuple[Any, dict[str, Any]]:
    call = core.offer_call("office", caller=caller)
    peer.frames()
    ids = {"node_id": call.node_id, "call_id": call.call_id}
    assert peer.request("calling.answer", ids)["result"]["code"] == "200"
    peer.frames()
    return call, ids


def _enter(peer: Peer, ids: dict[str, Any], cid: str, name: str = "support") -> dict[str, Any]:
    reply: dict[str, Any] = peer.request("calling.queue.enter",
                                         {**ids, "control_id": cid, "queue_name": name})
    return reply


def _queue_events(frames: list[dict[str, Any]]) -> list[tuple[str, str, int, int]]:
    return [(p["control_id"], p["status"], p["position"], p["size"])
            for t, p in events(frames) if t == "calling.call.queue"]


def test_callers_learn_their_place_and_move_up_when_one_ahead_hangs_up(core: SimCore,
                                                                       peer: Peer) -> None:
    peer.connect(["office"])
    calls = [_answered(core, peer) for _ in range(3)]
    for i, (_, ids) in enumerate(calls):
        reply = _enter(peer, ids, f"q{i}")
        assert reply["result"]["code"] == "200"
        assert reply["result"]["control_id"] == f"q{i}"
    assert _queue_events(peer.frames()) == [
        ("q0", "enqueued", 1, 1),
        ("q1", "enqueued", 2, 2), ("q0", "updated", 1, 2),
        ("q2", "enqueued", 3, 3), ("q0", "updated", 1, 3), ("q1", "updated", 2, 3)]
    # The first caller hangs up: out of the queue (left before ended), the others move up.
    peer.request("calling.end", {**calls[0][1], "reason": "hangup"})
    frames = peer.frames()
    assert _queue_events(frames) == [("q0", "left", 1, 2), ("q1", "updated", 1, 2),
                                     ("q2", "updated", 2, 2)]
    assert core.queues.size("support") == 2


def test_an_agent_takes_the_longest_waiting_caller_once(core: SimCore, peer: Peer) -> None:
    peer.connect(["office"])
    (c1, ids1), (c2, ids2) = _answered(core, peer), _answered(core, peer)
    _enter(peer, ids1, "a")
    _enter(peer, ids2, "b")
    agent, agent_ids = _answered(core, peer)
    peer.frames()
    device = {"type": "queue", "params": {"queue_name": "support"}}
    reply = peer.request("calling.connect", {**agent_ids, "devices": [[device]]})
    assert reply["result"]["code"] == "200"
    frames = peer.frames()
    assert _queue_events(frames) == [("a", "dequeued", 1, 1), ("b", "updated", 1, 1)]
    connects = [(p["call_id"], p["connect_state"], p.get("peer", {}).get("call_id"))
                for t, p in events(frames) if t == "calling.call.connect"]
    assert connects == [(agent.call_id, "connecting", None), (c1.call_id, "connected",
                        agent.call_id), (agent.call_id, "connected", c1.call_id)]
    # The caller hangs up: the agent's bridge ends, the agent stays on the line.
    peer.request("calling.end", ids1)
    frames = peer.frames()
    connects = [(p["call_id"], p["connect_state"]) for t, p in events(frames)
                if t == "calling.call.connect"]
    assert connects == [(c1.call_id, "disconnected"), (agent.call_id, "disconnected")]
    assert agent.state == "answered"
    # The next connect takes the second caller; a third finds the queue empty.
    peer.request("calling.connect", {**agent_ids, "devices": [[device]]})
    peer.frames()
    _other, other_ids = _answered(core, peer)
    peer.request("calling.connect", {**other_ids, "devices": [[device]]})
    failed = [p for t, p in events(peer.frames()) if t == "calling.call.connect"]
    assert failed[-1]["connect_state"] == "failed"
    assert failed[-1]["failed_reason"] == "queue_empty"
    assert [(t.caller, t.agent) for t in core.queues.taken] == [
        (c1.call_id, agent.call_id), (c2.call_id, agent.call_id)]


def test_leave_takes_the_caller_out_and_bad_input_is_refused(core: SimCore, peer: Peer) -> None:
    peer.connect(["office"])
    call, ids = _answered(core, peer)
    assert _enter(peer, ids, "x", name="")["result"]["code"] == "400"
    assert _enter(peer, ids, "x")["result"]["code"] == "200"
    assert _enter(peer, ids, "y")["result"]["code"] == "409"   # in a queue already
    wrong = peer.request("calling.queue.leave", {**ids, "control_id": "z", "queue_name": "other"})
    assert wrong["result"]["code"] == "404"
    peer.frames()
    left = peer.request("calling.queue.leave", {**ids, "control_id": "z", "queue_name": "support"})
    assert left["result"]["code"] == "200"
    assert _queue_events(peer.frames()) == [("x", "left", 1, 0)]
    assert core.queues.size("support") == 0 and call.state == "answered"
    unanswered = core.offer_call("office", caller="silent")
    peer.frames()
    code = _enter(peer, {"node_id": unanswered.node_id, "call_id": unanswered.call_id},
                  "u")["result"]["code"]
    assert code == "409"


def test_a_caller_script_hangs_up_while_queued(core: SimCore, peer: Peer) -> None:
    peer.connect(["office"])
    call, ids = _answered(core, peer, caller="hangup@queue:30")
    _enter(peer, ids, "h")
    peer.frames()
    peer.advance(29)
    assert call.state == "answered"
    peer.advance(2)
    assert call.state == "ended"
    assert _queue_events(peer.frames()) == [("h", "left", 1, 0)]
