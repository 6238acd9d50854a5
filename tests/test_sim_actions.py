"""The simulator's RELAY methods for the actions beyond voicemail, without a socket (a fake
clock, frames in and out): connect/disconnect and the caller script's peers.

Section numbers refer to relay-protocol.md.
"""

from __future__ import annotations

from typing import Any

import pytest

from flowengine.sim import CallerScript, CallerScriptError, SimCore
from tests.test_sim_core import FakeClock, Peer, answered_call, events


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def core(clock: FakeClock) -> SimCore:
    return SimCore(project="p", token="secret-token", time_scale=1.0, clock=clock,
                   http_url="http://sim.test")


@pytest.fixture
def peer(core: SimCore, clock: FakeClock) -> Peer:
    return Peer(core, clock)


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
