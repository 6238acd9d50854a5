"""``calling.dial`` in the simulator's core: frames in, frames out, a fake clock (§4.9, §5.9).

The events of each callee script, in order, for serial and parallel devices; the callee
grammar; what a client ending a leg, a lost session and a shutdown do to a dial; and the
summary's counts.
"""

from __future__ import annotations

from typing import Any

import pytest

from flowengine.sim import CallerScript, CallerScriptError, SimCore
from flowengine.sim.cli import parse_callees
from tests.simpeer import FakeClock, Peer, events

OURS = "+15559870000"


def phone(to: str, timeout: float | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"to_number": to, "from_number": OURS}
    if timeout is not None:
        params["timeout"] = timeout
    return {"type": "phone", "params": params}


def dial(peer: Peer, devices: list[list[dict[str, Any]]], tag: str = "t1",
         **extra: Any) -> dict[str, Any]:
    peer.connect()
    return peer.request("calling.dial", {"tag": tag, "devices": devices, **extra})


def trace(peer: Peer) -> list[str]:
    """Each event as ``to_number state`` for legs, ``dial STATE`` for dial events."""
    out = []
    for etype, p in events(peer.frames()):
        if etype == "calling.call.dial":
            out.append(f"dial {p['dial_state']}" + (f" {p['reason']}" if "reason" in p else ""))
        elif etype == "calling.call.state":
            to = p["device"]["params"]["to_number"]
            reason = f" {p['end_reason']}" if "end_reason" in p else ""
            out.append(f"{to[-1]} {p['call_state']}{reason}")
        else:
            out.append(etype)
    return out


def test_answer_rings_then_answers_and_the_dial_names_the_winner(core: SimCore,
                                                                 peer: Peer) -> None:
    reply = dial(peer, [[phone("+15550000001")]])
    # §5.9: the reply carries no call id; the legs are announced by events with the tag.
    assert reply["result"] == {"code": "200", "message": "Dialing"}
    frames = peer.frames()
    first = next(p for e, p in events(frames) if e == "calling.call.state")
    assert first["tag"] == "t1" and first["direction"] == "outbound"
    assert first["device"]["params"] == {"to_number": "+15550000001", "from_number": OURS}
    assert [f"{e} {p.get('call_state') or p.get('dial_state')}" for e, p in events(frames)] == [
        "calling.call.state created", "calling.call.dial dialing"]
    peer.advance(3)
    frames = peer.frames()
    assert [f"{e} {p.get('call_state') or p.get('dial_state')}" for e, p in events(frames)] == [
        "calling.call.state ringing", "calling.call.state answered", "calling.call.dial answered"]
    answered = events(frames)[-1][1]
    leg = core.dials[0].legs[0]
    assert answered["tag"] == "t1" and "call_id" not in answered  # routed by tag (§4.9)
    assert answered["call"] == {"call_id": leg.call_id, "node_id": leg.node_id, "tag": "t1",
                                "device": phone("+15550000001"), "dial_winner": True}
    assert core.dials[0].state == "answered" and core.dials[0].winner is leg


@pytest.mark.parametrize(("script", "ends_after", "reason", "rings"), [
    ("busy", 1.0, "busy", False),
    ("fail", 0.5, "error", False),
    ("decline", 2.0, "decline", True),
    ("noanswer", 30.0, "noAnswer", True),
    ("answer:40", 30.0, "noAnswer", True),  # rings longer than the device's timeout
])
def test_a_callee_that_does_not_answer_fails_the_dial_with_its_reason(
        core: SimCore, peer: Peer, script: str, ends_after: float, reason: str,
        rings: bool) -> None:
    core.set_callee("+15550000001", script)
    dial(peer, [[phone("+15550000001")]])
    peer.frames()
    peer.advance(ends_after - 0.01)
    assert core.dials[0].state == "dialing"
    peer.advance(0.02)
    assert trace(peer) == [*(["1 ringing"] if rings else []), "1 ending", f"1 ended {reason}",
                           f"dial failed {reason}"]
    assert core.dials[0].reason == reason
    assert core.summary()["by_end_reason"] == {reason: 1}


def test_the_device_timeout_bounds_the_ringing(core: SimCore, peer: Peer) -> None:
    core.set_callee("+15550000001", "noanswer")
    dial(peer, [[phone("+15550000001", timeout=5)]])
    peer.frames()
    peer.advance(5)
    assert trace(peer)[-1] == "dial failed noAnswer"


def test_serial_groups_are_tried_in_order_until_one_answers(core: SimCore,
                                                            peer: Peer) -> None:
    core.set_callee("+15550000001", "busy")
    core.set_callee("+15550000002", "noanswer")
    dial(peer, [[phone("+15550000001")], [phone("+15550000002", timeout=4)],
                [phone("+15550000003")]])
    for _ in range(20):
        peer.advance(1)
    assert trace(peer) == [
        "1 created", "dial dialing", "1 ending", "1 ended busy",
        "2 created", "2 ringing", "2 ending", "2 ended noAnswer",
        "3 created", "3 ringing", "3 answered", "dial answered"]
    assert [leg.to_number[-1] for leg in core.dials[0].legs] == ["1", "2", "3"]


def test_parallel_devices_the_first_to_answer_wins_and_the_others_end_cancel(
        core: SimCore, peer: Peer) -> None:
    core.set_callee("+15550000001", "answer:5")
    core.set_callee("+15550000002", "answer:2")
    core.set_callee("+15550000003", "busy")
    dial(peer, [[phone("+15550000001"), phone("+15550000002"), phone("+15550000003")]])
    for _ in range(10):
        peer.advance(1)
    assert trace(peer) == [
        "1 created", "2 created", "3 created", "dial dialing", "1 ringing", "2 ringing",
        "3 ending", "3 ended busy",
        # The winner answers; the loser still ringing ends before the dial names the winner.
        "2 answered", "1 ending", "1 ended cancel", "dial answered"]
    winner = core.dials[0].winner
    assert winner is not None and winner.to_number == "+15550000002"


def test_a_failed_parallel_group_reports_the_last_leg_to_end(core: SimCore,
                                                             peer: Peer) -> None:
    core.set_callee(None, "busy")
    core.set_callee("+15550000002", "decline")
    dial(peer, [[phone("+15550000001"), phone("+15550000002")]])
    peer.advance(3)
    assert trace(peer)[-1] == "dial failed decline"


def test_the_answered_leg_follows_the_callee_script_like_an_inbound_caller(
        core: SimCore, peer: Peer) -> None:
    core.set_callee(None, "answer:1,machine:6,hangup:20")
    dial(peer, [[phone("+15550000001")]])
    peer.advance(1)
    leg = core.dials[0].legs[0]
    ids = {"call_id": leg.call_id, "node_id": leg.node_id}
    peer.frames()
    reply = peer.request("calling.detect", {**ids, "control_id": "d1", "detect": {
        "type": "machine", "params": {"detect_message_end": True}}})
    assert reply["result"]["code"] == "200"
    peer.advance(2.5)
    peer.advance(3.5)
    detected = [p["detect"]["params"]["event"] for e, p in events(peer.frames())
                if e == "calling.call.detect"]
    assert detected == ["MACHINE", "READY", "finished"]
    peer.advance(14)
    assert leg.end_reason == "hangup"  # hangup:20 counts from the answer
    assert leg.commands == ["calling.detect"]


def test_max_duration_in_minutes_ends_the_answered_call(core: SimCore, peer: Peer) -> None:
    dial(peer, [[phone("+15550000001")]], max_duration=1)
    peer.advance(3)
    leg = core.dials[0].winner
    assert leg is not None and leg.state == "answered"
    peer.advance(59)
    assert leg.state == "answered"
    peer.advance(1)
    assert leg.end_reason == "max_duration"


def test_a_client_hanging_up_a_ringing_leg_ends_the_whole_dial(core: SimCore,
                                                               peer: Peer) -> None:
    core.set_callee(None, "noanswer")
    dial(peer, [[phone("+15550000001"), phone("+15550000002")], [phone("+15550000003")]])
    peer.advance(1)
    leg = core.dials[0].legs[0]
    peer.frames()
    peer.request("calling.end", {"call_id": leg.call_id, "node_id": leg.node_id,
                                 "reason": "cancel"})
    assert trace(peer) == ["1 ending", "1 ended cancel", "2 ending", "2 ended cancel",
                           "dial failed cancel"]
    peer.advance(60)
    assert trace(peer) == []  # the next group is never rung
    assert core.active_calls == 0 and len(core.dials[0].legs) == 2


def test_dial_legs_belong_to_the_dialling_session_only(core: SimCore, clock: FakeClock,
                                                       peer: Peer) -> None:
    dial(peer, [[phone("+15550000001")]])
    peer.advance(3)
    leg = core.dials[0].legs[0]
    other = Peer(core, clock)
    other.connect()
    reply = other.request("calling.play", {"call_id": leg.call_id, "node_id": leg.node_id,
                                           "control_id": "p", "play": [{"type": "audio"}]})
    assert reply["result"]["code"] == "404"
    assert peer.request("calling.pass", {"call_id": leg.call_id, "node_id": leg.node_id}
                        )["result"]["code"] == "409"


@pytest.mark.parametrize("devices", [
    None, [], [[]], [["x"]], [[{"type": "call", "params": {}}]],
    [[{"type": "phone", "params": {"to_number": "5550001", "from_number": OURS}}]],
    [[{"type": "phone", "params": {"to_number": "+15550000001"}}]],
    [[{"type": "sip", "params": {"to": "sip:a@b"}}]],
])
def test_bad_devices_are_refused_with_400_and_nothing_is_dialled(
        core: SimCore, peer: Peer, devices: Any) -> None:
    reply = dial(peer, devices)
    assert reply["result"]["code"] == "400"
    assert list(core.dials) == [] and core.summary().get("dialed") is None


def test_fail_next_refuses_a_dial(core: SimCore, peer: Peer) -> None:
    core.fail_next("calling.dial", "503", "Try later")
    assert dial(peer, [[phone("+15550000001")]])["result"] == {"code": "503",
                                                               "message": "Try later"}


def test_summary_counts_the_legs_and_shutdown_counts_every_leg_left_up(
        core: SimCore, peer: Peer) -> None:
    core.set_callee("+15550000001", "busy")
    core.set_callee("+15550000002", "noanswer")
    dial(peer, [[phone("+15550000001")]], tag="a")
    peer.advance(2)
    dial(peer, [[phone("+15550000002"), phone("+15550000003")]], tag="b")
    # The busy leg ended before the other dial rang: never more than 2 up at once.
    assert core.summary() == {"offered": 0, "ended": 1, "by_end_reason": {"busy": 1},
                              "leaked": 0, "active": 2, "dialed": 3, "dialed_peak": 2}
    # Both legs of the ringing dial are leaks: ending one must not turn the other into a
    # "cancel" that hides it.
    assert core.shutdown() == 2
    summary = core.summary()
    assert summary["leaked"] == 2 and summary["ended"] == 1 and summary["active"] == 0
    assert summary["offered"] + summary["dialed"] == (
        summary["ended"] + summary["leaked"] + summary["active"])


def test_legs_of_a_session_whose_resume_window_passes_end(clock: FakeClock) -> None:
    core = SimCore(project="p", token="secret-token", clock=clock, resume_window=30)
    core.set_callee(None, "noanswer")
    p = Peer(core, clock)
    dial(p, [[phone("+15550000001", timeout=300)]])
    core.connection_lost(p.conn)
    p.advance(31)
    assert core.active_calls == 0 and core.dials[0].state == "failed"


# -- the callee grammar --------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "pickup", "ring"), [
    ("answer", "answer", None), ("answer:8", "answer", 8.0), ("busy", "busy", None),
    ("noanswer", "noanswer", None), ("decline", "decline", None), ("fail", "fail", None),
    ("machine:6", "answer", None), ("", "answer", None),
])
def test_callee_pickups_parse_and_print_back(text: str, pickup: str, ring: float | None) -> None:
    script = CallerScript.parse(text)
    assert (script.pickup, script.ring) == (pickup, ring)
    again = CallerScript.parse(str(CallerScript(pickup=script.pickup, ring=script.ring)))
    assert (again.pickup, again.ring) == (pickup, ring)


def test_callee_pickup_combines_with_the_caller_grammar() -> None:
    script = CallerScript.parse("answer:2,speak:1,digits:5,hangup:9")
    assert (script.pickup, script.ring, script.speak, script.digits, script.hangup_after) == (
        "answer", 2.0, 1.0, ("5",), 9.0)


@pytest.mark.parametrize("text", ["busy,noanswer", "answer,fail", "answer:x", "ring"])
def test_contradictory_or_unknown_pickups_are_refused(text: str) -> None:
    with pytest.raises(CallerScriptError):
        CallerScript.parse(text)


def test_callee_options_by_number_and_default() -> None:
    callees = parse_callees(["busy", "+15550001111=answer:5,speak:2", "sip:a@b.c=noanswer",
                             "say:x=y"])
    assert callees["+15550001111"].ring == 5.0
    assert callees["sip:a@b.c"].pickup == "noanswer"
    assert callees[None].say == ("x=y",)  # the last default wins; '=' in a phrase is kept
    with pytest.raises(CallerScriptError, match="no number"):
        parse_callees(["=busy"])
    with pytest.raises(CallerScriptError, match="dance"):
        parse_callees(["+1555=dance"])
