"""The simulator's RELAY methods for the actions beyond voicemail, without a socket (a fake
clock, frames in and out): connect/disconnect and the caller script's peers.

Section numbers refer to docs/relay-protocol.md.
"""

from __future__ import annotations

from typing import Any

import pytest

from flowengine.sim import CallerScript, CallerScriptError, SimCore
from tests.simpeer import Peer, answered_call, events


def phone(number: str, **params: Any) -> dict[str, Any]:
    return {"type": "phone", "params": {"to_number": number, "from_number": "+15559870000",
                                        **params}}


def connects(frames: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    return [(p["connect_state"], p.get("failed_reason") or (p.get("peer") or {}).get("device"))
            for t, p in events(frames) if t == "calling.call.connect"]


# -- connect (§4.6, §5.7) -------------------------------------------------------------------------

def test_connect_dials_groups_in_series_and_a_group_in_parallel(core: SimCore, peer: Peer) -> None:
    _, ids = answered_call(core, peer, "peer:busy/noanswer/answer:5")
    reply = peer.request("calling.connect", {**ids, "devices": [
        [phone("+15550000001")], [phone("+15550000002"), phone("+15550000003")]]})
    assert reply["result"]["code"] == "200" and reply["result"]["message"] == "Connecting"
    assert connects(peer.frames()) == [("connecting", None)]
    peer.advance(1.0)   # the first device is busy: the second group rings
    assert connects(peer.frames()) == []
    peer.advance(3.0)   # …and its second device answers after 3 s
    assert connects(peer.frames()) == [("connected", phone("+15550000003"))]
    peer.advance(5.0)   # talks 5 s, then hangs up; the caller stays
    assert connects(peer.frames()) == [("disconnected", None)]
    assert core.active_calls == 1


def test_connect_fails_with_the_reason_of_the_last_device(core: SimCore, peer: Peer) -> None:
    _, ids = answered_call(core, peer, "peer:decline/noanswer")
    peer.request("calling.connect", {**ids, "devices": [
        [phone("+15550000001")], [phone("+15550000002", timeout=12)]]})
    peer.advance(2.0 + 12.0)
    assert connects(peer.frames()) == [("connecting", None), ("failed", "noAnswer")]


def test_disconnect_ends_the_bridge_and_hanging_up_reports_it_before_ended(
        core: SimCore, peer: Peer) -> None:
    _, ids = answered_call(core, peer, "peer:answer:60")
    peer.request("calling.connect", {**ids, "devices": [[phone("+15550000001")]]})
    peer.advance(3.0)
    peer.frames()
    assert peer.request("calling.disconnect", ids)["result"]["code"] == "200"
    assert connects(peer.frames()) == [("disconnected", None)]
    assert peer.request("calling.disconnect", ids)["result"]["code"] == "409"
    peer.request("calling.connect", {**ids, "devices": [[phone("+15550000001")]]})
    peer.frames()
    peer.request("calling.end", ids)  # while dialling: the connect fails, cancelled
    order = [(t, p.get("connect_state") or p.get("call_state"), p.get("failed_reason"))
             for t, p in events(peer.frames())]
    assert order == [("calling.call.state", "ending", None),
                     ("calling.call.connect", "failed", "cancel"),
                     ("calling.call.state", "ended", None)]


@pytest.mark.parametrize(("params", "code"), [
    ({"devices": []}, "400"),
    ({"devices": [phone("+15550000001")]}, "400"),          # a group must be a list
    ({"devices": [[{"type": "carrier-pigeon"}]]}, "400"),
    ({"devices": [[phone("+15550000001")]], "ringback": [{"type": "kazoo"}]}, "400"),
])
def test_bad_connects_are_refused(core: SimCore, peer: Peer, params: dict[str, Any],
                                  code: str) -> None:
    _, ids = answered_call(core, peer)
    assert peer.request("calling.connect", {**ids, **params})["result"]["code"] == code


def test_a_second_connect_while_bridged_is_a_conflict(core: SimCore, peer: Peer) -> None:
    _, ids = answered_call(core, peer)
    peer.request("calling.connect", {**ids, "devices": [[phone("+15550000001")]]})
    again = peer.request("calling.connect", {**ids, "devices": [[phone("+15550000001")]]})
    assert again["result"]["code"] == "409"


def test_peer_clauses_parse_and_print_back() -> None:
    script = CallerScript.parse("peer:busy/answer:20/noanswer,hangup@connect:5")
    assert script.peers == (("busy", None), ("answer", 20.0), ("noanswer", None))
    assert (script.hangup_during, script.hangup_offset) == ("connect", 5.0)
    assert str(CallerScript(peers=(("decline", None), ("answer", 3.0)))) == \
        "speak:3,peer:decline/answer:3"
    for bad in ("peer:busy:3", "peer:maybe", "peer:"):
        with pytest.raises(CallerScriptError, match="grammar"):
            CallerScript.parse(bad)


def test_a_dash_gives_a_collect_nothing() -> None:
    script = CallerScript.parse("digits:-/12#,say:-/sales")
    assert (script.digits, script.say) == (("-", "12#"), ("-", "sales"))
    with pytest.raises(CallerScriptError, match="bad digit group"):
        CallerScript.parse("digits:1//2")


# -- detect (§4.8, §5.7) ---------------------------------------------------------------------------

def detections(frames: list[dict[str, Any]]) -> list[str]:
    return [p["detect"]["params"]["event"] for t, p in events(frames) if t == "calling.call.detect"]


def test_a_machine_is_heard_then_its_beep_then_the_detector_finishes(core: SimCore,
                                                                     peer: Peer) -> None:
    _, ids = answered_call(core, peer, "machine:6")
    reply = peer.request("calling.detect", {**ids, "control_id": "d1", "detect": {
        "type": "machine", "params": {"detect_message_end": True}}})
    assert reply["result"]["message"] == "Detecting"
    peer.advance(2.5)
    assert detections(peer.frames()) == ["MACHINE"]
    peer.advance(3.5)
    assert detections(peer.frames()) == ["READY", "finished"]


def test_a_person_is_heard_as_human(core: SimCore, peer: Peer) -> None:
    _, ids = answered_call(core, peer, "speak:2")
    peer.request("calling.detect", {**ids, "control_id": "d1", "detect": {"type": "machine"}})
    peer.advance(1.5)
    assert detections(peer.frames()) == ["HUMAN", "finished"]


def test_a_silent_caller_is_unknown_and_a_stopped_detector_finishes(core: SimCore,
                                                                    peer: Peer) -> None:
    _, ids = answered_call(core, peer, "silent")
    peer.request("calling.detect", {**ids, "control_id": "d2", "timeout": 60,
                                    "detect": {"type": "machine", "params": {}}})
    peer.advance(4.5)
    assert detections(peer.frames()) == ["UNKNOWN", "finished"]
    peer.request("calling.detect", {**ids, "control_id": "d3", "detect": {"type": "fax"}})
    peer.frames()
    assert peer.request("calling.detect.stop", {**ids, "control_id": "d3"})["result"][
        "code"] == "200"
    assert detections(peer.frames()) == ["finished"]


def test_fax_tones_and_keys(core: SimCore, peer: Peer) -> None:
    _, ids = answered_call(core, peer, "fax,digits:5#")
    peer.request("calling.detect", {**ids, "control_id": "f", "detect": {
        "type": "fax", "params": {"tone": "CNG"}}})
    peer.advance(1.0)
    assert detections(peer.frames()) == ["CNG", "finished"]
    peer.request("calling.detect", {**ids, "control_id": "k", "detect": {
        "type": "digit", "params": {"digits": "0123456789"}}})
    peer.advance(0.5)
    assert detections(peer.frames()) == ["5"]       # '#' is not among the digits asked for
    peer.advance(0.25)
    assert detections(peer.frames()) == ["finished"]
    assert peer.request("calling.detect", {**ids, "control_id": "x", "detect": {
        "type": "voice"}})["result"]["code"] == "400"


# -- record with timeouts of 0 (§5.4) -------------------------------------------------------------

def test_a_recording_with_timeouts_of_0_runs_until_stopped(core: SimCore, peer: Peer) -> None:
    _, ids = answered_call(core, peer, "speak:3")
    peer.request("calling.record", {**ids, "control_id": "r", "record": {"audio": {
        "initial_timeout": 0, "end_silence_timeout": 0, "terminators": ""}}})
    peer.advance(60.0)
    assert [p["state"] for t, p in events(peer.frames()) if t == "calling.call.record"] == [
        "recording"]
    peer.request("calling.record.stop", {**ids, "control_id": "r"})
    [(_, done)] = [(t, p) for t, p in events(peer.frames()) if t == "calling.call.record"]
    assert (done["state"], done["duration"]) == ("finished", 60.0)


# -- messaging (§5.8) ------------------------------------------------------------------------------

def message_states(frames: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    return [(p["message_state"], p.get("reason")) for t, p in events(frames)
            if t == "messaging.state"]


def test_a_message_is_accepted_then_delivered(core: SimCore, peer: Peer) -> None:
    peer.connect(["office"])
    reply = peer.request("messaging.send", {"context": "office", "to_number": "+15550001111",
                                            "from_number": "+15559870000", "body": "hi"})
    assert reply["result"]["code"] == "200" and reply["result"]["message_id"]
    peer.advance(1.0)
    frames = peer.frames()
    assert message_states(frames) == [("queued", None), ("initiated", None), ("sent", None),
                                      ("delivered", None)]
    assert {p["message_id"] for t, p in events(frames)} == {reply["result"]["message_id"]}


def test_messages_to_a_caller_end_as_the_script_says(core: SimCore, peer: Peer) -> None:
    peer.connect(["office"])
    core.offer_call("office", from_number="+15551230000", caller="sms:undelivered")
    peer.frames()
    peer.request("messaging.send", {"to_number": "+15551230000", "from_number": "+15559870000",
                                    "media": ["https://example.com/a.png"]})
    peer.advance(1.0)
    states = message_states(peer.frames())
    assert states[-1] == ("undelivered", "the handset did not accept the message")


@pytest.mark.parametrize("params", [
    {"to_number": "5550001111", "from_number": "+15559870000", "body": "hi"},
    {"to_number": "+15550001111", "from_number": "+15559870000"},
])
def test_bad_messages_are_refused(core: SimCore, peer: Peer, params: dict[str, Any]) -> None:
    peer.connect(["office"])
    assert peer.request("messaging.send", params)["result"]["code"] == "400"


def test_new_clauses_parse_and_print_back() -> None:
    script = CallerScript.parse("machine:6,sms:failed,hangup@detect:2")
    assert (script.answered_by, script.greeting, script.sms) == ("machine", 6.0, "failed")
    assert str(CallerScript(answered_by="fax", sms="sent")) == "speak:3,fax,sms:sent"
    with pytest.raises(CallerScriptError, match="grammar"):
        CallerScript.parse("sms:lost")
