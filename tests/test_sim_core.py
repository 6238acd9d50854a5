"""The simulator's protocol core without a socket: frames in, frames out, a fake clock.

Section numbers refer to docs/relay-protocol.md.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest

from flowengine.sim import CallerScript, CallerScriptError, SimCore
from tests.simpeer import FakeClock, Peer, answered_call, events, states

# -- session -------------------------------------------------------------------------------------


def test_connect_returns_a_new_protocol_per_session(core: SimCore, clock: FakeClock,
                                                    peer: Peer) -> None:
    reply = peer.connect(["office"])
    result = reply["result"]
    assert Peer(core, clock).connect()["result"]["protocol"] != result["protocol"]
    assert result["protocol"].startswith("signalwire_")
    assert result["session_restored"] is False
    for key in ("identity", "sessionid", "nodeid", "master_nodeid", "authorization"):
        assert result[key]


def test_connect_sends_authorization_state_and_never_the_token(core: SimCore,
                                                               clock: FakeClock) -> None:
    p = Peer(core, clock)
    p.send("signalwire.connect", {"authentication": {"project": "p", "token": "secret-token"}})
    frames = p.frames()
    assert "secret-token" not in json.dumps(frames)
    assert "result" in frames[0]
    assert events(frames)[0][0] == "signalwire.authorization.state"
    assert events(frames)[0][1]["authorization_state"]


def test_every_event_carries_the_section_3_envelope(core: SimCore, peer: Peer) -> None:
    peer.connect(["office"])
    core.offer_call("office")
    frame = next(f for f in peer.frames() if f.get("method") == "signalwire.event")
    assert frame["id"]
    outer = frame["params"]
    for key in ("event_type", "timestamp", "event_channel", "project_id", "space_id", "params"):
        assert key in outer
    assert outer["project_id"] == "p"


@pytest.mark.parametrize("auth", [
    {"project": "p", "token": "wrong"},
    {"project": "other", "token": "secret-token"},
    {"jwt_token": "not-it"},
    "not-a-dict",
    None,
])
def test_wrong_credentials_get_the_authentication_error(peer: Peer, auth: Any) -> None:
    rid = peer.send("signalwire.connect", {"authentication": auth})
    [reply] = peer.frames()
    assert reply == {"jsonrpc": "2.0", "id": rid,
                     "error": {"code": -32002, "message": "Authentication failed"}}
    assert peer.conn.session is None


def test_jwt_equal_to_the_token_is_accepted(peer: Peer) -> None:
    peer.send("signalwire.connect", {"authentication": {"jwt_token": "secret-token"}})
    assert "result" in peer.frames()[0]


def test_requests_before_connect_are_refused_and_the_connection_still_works(peer: Peer) -> None:
    reply = peer.request("signalwire.ping")
    assert reply["error"]["code"] == -32000
    assert "result" in peer.connect()
    assert peer.request("signalwire.ping")["result"] == {}


def test_bad_frames_get_json_rpc_errors(core: SimCore, peer: Peer) -> None:
    peer.connect()
    cases: list[tuple[str | bytes, int]] = [
        ("{not json", -32700),
        (b"\xff\xfe", -32700),
        ("[1, 2]", -32600),
        ('{"jsonrpc":"2.0","id":"x"}', -32600),
        ('{"jsonrpc":"2.0","id":"x","method":5}', -32600),
        ('{"jsonrpc":"2.0","id":"x","method":"signalwire.ping","params":[1]}', -32602),
        ('{"jsonrpc":"2.0","id":"x","method":"calling.teleport","params":{}}', -32601),
    ]
    for raw, code in cases:
        core.receive_frame(peer.conn, raw)
        [reply] = peer.frames()
        assert reply["error"]["code"] == code, raw
    # Event ACKs are bare responses: silently accepted.
    core.receive_frame(peer.conn, '{"jsonrpc":"2.0","id":"ev-1","result":{}}')
    assert peer.frames() == []


def test_receive_and_unreceive_change_which_calls_are_offered(core: SimCore, peer: Peer) -> None:
    peer.connect()
    call = core.offer_call("billing")
    assert events(peer.frames()) == []
    assert peer.request("signalwire.receive", {"context": "billing"})["result"]["code"] == "200"
    assert [e for e, p in events(peer.frames())] == ["calling.call.receive"]
    assert call.protocol == peer.protocol
    unreceived = peer.request("signalwire.unreceive", {"contexts": ["billing"]})
    assert unreceived["result"]["code"] == "200"
    core.offer_call("billing")
    assert events(peer.frames()) == []


# -- calls ---------------------------------------------------------------------------------------


def test_receive_event_describes_the_inbound_call(core: SimCore, peer: Peer) -> None:
    peer.connect(["office"])
    call = core.offer_call("office", from_number="+15550001", to_number="+15550002")
    [(etype, p)] = events(peer.frames())
    assert etype == "calling.call.receive"
    assert p["call_id"] == call.call_id and p["node_id"] == call.node_id
    assert p["call_state"] == "created" and p["direction"] == "inbound"
    assert p["context"] == "office"
    assert p["device"] == {"type": "phone", "params": {"from_number": "+15550001",
                                                       "to_number": "+15550002"}}


def test_record_sequence_with_a_speaking_caller(core: SimCore, peer: Peer) -> None:
    call, ids = answered_call(core, peer, "speak:3")
    reply = peer.request("calling.record", {**ids, "control_id": "k1",
                                            "record": {"audio": {"terminators": "#",
                                                                 "format": "wav"}}})
    result = reply["result"]
    assert result["code"] == "200" and result["url"].startswith("http://sim.test/recordings/")
    assert result["url"].endswith(".wav")
    peer.advance(2.9)
    assert states(peer.frames()) == ["calling.call.record recording"]
    peer.advance(0.2)
    [(etype, p)] = events(peer.frames())
    assert etype == "calling.call.record"
    assert p["state"] == "finished" and p["control_id"] == "k1"
    assert p["url"] == result["url"] and p["duration"] == 3.0
    assert p["size"] == 44 + 3 * 8000 * 2
    assert p["record"]["url"] == p["url"] and p["record"]["audio"]["format"] == "wav"
    assert call.recordings[0].data()[:4] == b"RIFF"


def test_answer_then_client_hangup_sequence(core: SimCore, peer: Peer) -> None:
    peer.connect(["office"])
    call = core.offer_call("office")
    peer.frames()
    ids = {"node_id": call.node_id, "call_id": call.call_id}
    peer.send("calling.answer", ids)
    frames = peer.frames()
    assert frames[0]["result"] == {"code": "200", "message": "Answered"}
    assert states(frames) == ["calling.call.state answered"]
    peer.send("calling.play", {**ids, "control_id": "k1",
                               "play": [{"type": "tts", "params": {"text": "hello there"}}]})
    peer.send("calling.end", {**ids, "reason": "hangup"})
    frames = peer.frames()
    assert [f["result"]["message"] for f in frames if "result" in f] == ["Playing",
                                                                       "Disconnecting call"]
    assert states(frames) == ["calling.call.play playing", "calling.call.state ending",
                              "calling.call.play finished", "calling.call.state ended"]
    assert events(frames)[-1][1]["end_reason"] == "hangup"
    assert call.end_reason == "hangup" and call.commands == [
        "calling.answer", "calling.play", "calling.end"]


def test_caller_hangs_up_mid_recording_and_the_recording_arrives_before_ended(
        core: SimCore, peer: Peer) -> None:
    call, ids = answered_call(core, peer, "hangup@record:2")
    peer.request("calling.record", {**ids, "control_id": "k1", "record": {"audio": {}}})
    peer.advance(5)
    frames = peer.frames()
    assert states(frames) == ["calling.call.record recording", "calling.call.state ending",
                              "calling.call.record finished", "calling.call.state ended"]
    record = events(frames)[2][1]
    assert record["duration"] == 2.0 and record["url"]
    assert call.end_reason == "hangup"


def test_silent_caller_gives_no_input_after_the_initial_timeout(core: SimCore, peer: Peer) -> None:
    _, ids = answered_call(core, peer, "silent")
    peer.request("calling.record", {**ids, "control_id": "k1",
                                    "record": {"audio": {"initial_timeout": 4}}})
    peer.advance(3.9)
    assert states(peer.frames()) == ["calling.call.record recording"]
    peer.advance(0.2)
    [(_, p)] = events(peer.frames())
    assert p["state"] == "no_input" and "url" not in p


def test_quiet_caller_is_ended_by_end_silence_timeout(core: SimCore, peer: Peer) -> None:
    _, ids = answered_call(core, peer, "speak:2:quiet")
    peer.request("calling.record", {**ids, "control_id": "k1",
                                    "record": {"audio": {"end_silence_timeout": 3,
                                                         "beep": True}}})
    peer.advance(5.4)  # beep 0.5 + speech 2 + silence 3 = 5.5
    assert states(peer.frames()) == ["calling.call.record recording"]
    peer.advance(0.2)
    [(_, p)] = events(peer.frames())
    assert p["state"] == "finished" and p["duration"] == 5.0


def test_a_key_that_is_not_a_terminator_does_not_end_the_recording(core: SimCore,
                                                                   peer: Peer) -> None:
    _, ids = answered_call(core, peer, "speak:2")
    peer.request("calling.record", {**ids, "control_id": "k1",
                                    "record": {"audio": {"terminators": "*"}}})
    peer.advance(2.5)
    assert states(peer.frames()) == ["calling.call.record recording"]
    peer.advance(1)
    assert [p["duration"] for _, p in events(peer.frames())] == [3.0]


def test_record_stop_keeps_what_was_said(core: SimCore, peer: Peer) -> None:
    _, ids = answered_call(core, peer, "speak:10")
    peer.request("calling.record", {**ids, "control_id": "k1", "record": {"audio": {}}})
    peer.advance(4)
    peer.send("calling.record.stop", {**ids, "control_id": "k1"})
    frames = peer.frames()
    assert frames[1]["result"]["code"] == "200"
    assert [(p["state"], p["duration"]) for _, p in events(frames)[1:]] == [("finished", 4.0)]
    # A second stop: the action is gone, and the SDK reads 404 as "gone" (§5.1).
    again = peer.request("calling.record.stop", {**ids, "control_id": "k1"})
    assert again["result"]["code"] == "404"


def test_record_paused_during_the_beep_starts_when_resumed(core: SimCore, peer: Peer) -> None:
    _, ids = answered_call(core, peer, "speak:2")
    peer.request("calling.record", {**ids, "control_id": "k1",
                                    "record": {"audio": {"beep": True}}})
    peer.request("calling.record.pause", {**ids, "control_id": "k1", "behavior": "skip"})
    peer.advance(10)
    peer.request("calling.record.resume", {**ids, "control_id": "k1"})
    peer.advance(2.1)
    assert states(peer.frames()) == ["calling.call.record recording", "calling.call.record paused",
                                     "calling.call.record recording",
                                     "calling.call.record finished"]


def test_paused_play_does_not_finish_until_resumed(core: SimCore, peer: Peer) -> None:
    _, ids = answered_call(core, peer)
    peer.request("calling.play", {**ids, "control_id": "k1",
                                  "play": [{"type": "silence", "params": {"duration": 2}}]})
    peer.advance(1)
    peer.request("calling.play.pause", {**ids, "control_id": "k1"})
    peer.advance(10)
    peer.request("calling.play.resume", {**ids, "control_id": "k1"})
    peer.advance(0.9)
    peer.advance(0.2)
    assert states(peer.frames()) == ["calling.call.play playing", "calling.call.play paused",
                                     "calling.call.play playing", "calling.call.play finished"]


def test_action_verbs_reply_non_empty_2xx_and_bad_params_get_400(core: SimCore, peer: Peer) -> None:
    _, ids = answered_call(core, peer)
    bad = peer.request("calling.play", {**ids, "control_id": "k1", "play": []})
    assert bad["result"]["code"] == "400"
    bad = peer.request("calling.play", {**ids, "control_id": "k1",
                                        "play": [{"type": "hologram"}]})
    assert bad["result"]["code"] == "400"
    good = peer.request("calling.play", {**ids, "control_id": "k1",
                                         "play": [{"type": "audio", "params": {"url": "x"}}]})
    assert good["result"]["code"] == "200" and good["result"]["control_id"] == "k1"


def test_commands_for_unknown_and_ended_calls(core: SimCore, peer: Peer) -> None:
    call, ids = answered_call(core, peer)
    assert peer.request("calling.answer", {"node_id": "n", "call_id": "nope"})["result"][
        "code"] == "404"
    peer.request("calling.end", ids)
    assert peer.request("calling.play", {**ids, "control_id": "k",
                                         "play": [{"type": "audio"}]})["result"]["code"] == "410"
    assert call.commands[-1] == "calling.play"


def test_another_session_cannot_command_a_call(core: SimCore, clock: FakeClock, peer: Peer) -> None:
    _, ids = answered_call(core, peer)
    other = Peer(core, clock)
    other.connect(["office"])
    assert other.request("calling.end", ids)["result"]["code"] == "404"


def test_collect_digits_with_a_terminator(core: SimCore, peer: Peer) -> None:
    _, ids = answered_call(core, peer, "digits:12#/9")
    peer.request("calling.collect", {**ids, "control_id": "c1",
                                     "digits": {"max": 5, "terminators": "#"}})
    peer.advance(5)
    [(etype, p)] = events(peer.frames())
    assert etype == "calling.call.collect" and p["state"] == "finished"
    assert p["result"] == {"type": "digit", "params": {"digits": "12", "terminator": "#"}}
    peer.request("calling.play_and_collect", {
        **ids, "control_id": "c2", "play": [{"type": "tts", "params": {"text": "Press one"}}],
        "collect": {"digits": {"max": 1}}})
    peer.advance(5)
    assert states(peer.frames()) == ["calling.call.play playing", "calling.call.play finished",
                                     "calling.call.collect finished"]
    peer.request("calling.collect", {**ids, "control_id": "c3", "digits": {"max": 1},
                                     "initial_timeout": 2})
    peer.advance(3)
    [(_, p)] = events(peer.frames())
    assert p["result"] == {"type": "no_input"}


def test_speech_collect_hears_the_callers_phrase(core: SimCore, peer: Peer) -> None:
    _, ids = answered_call(core, peer, "say:billing please")
    peer.request("calling.collect", {**ids, "control_id": "c1", "speech": {}})
    peer.advance(10)
    [(_, p)] = events(peer.frames())
    assert p["result"]["type"] == "speech"
    assert p["result"]["params"]["text"] == "billing please"


def test_hangup_after_n_seconds_from_answer(core: SimCore, peer: Peer) -> None:
    call, _ = answered_call(core, peer, "hangup:4")
    peer.advance(3.9)
    assert call.state == "answered"
    peer.advance(0.2)
    assert states(peer.frames()) == ["calling.call.state ending", "calling.call.state ended"]
    assert call.end_reason == "hangup"


def test_hangup_during_the_first_play_ends_it_before_ended(core: SimCore, peer: Peer) -> None:
    call, ids = answered_call(core, peer, "hangup@play")
    peer.request("calling.play", {**ids, "control_id": "k1",
                                  "play": [{"type": "silence", "params": {"duration": 4}}]})
    peer.advance(1.9)
    assert call.state == "answered"
    peer.advance(0.2)
    assert states(peer.frames()) == ["calling.call.play playing", "calling.call.state ending",
                                     "calling.call.play finished", "calling.call.state ended"]


def test_pass_offers_the_call_to_another_session(core: SimCore, clock: FakeClock) -> None:
    a, b = Peer(core, clock), Peer(core, clock)
    a.connect(["office"])
    b.connect(["office"])
    call = core.offer_call("office")
    first, second = (a, b) if call.protocol == a.protocol else (b, a)
    first.frames()
    second.frames()
    ids = {"node_id": call.node_id, "call_id": call.call_id}
    assert first.request("calling.pass", ids)["result"]["code"] == "200"
    assert [e for e, _ in events(second.frames())] == ["calling.call.receive"]
    assert call.protocol == second.protocol


# -- sessions without a socket ---------------------------------------------------------------------


def test_events_while_disconnected_are_delivered_on_resume(core: SimCore, clock: FakeClock) -> None:
    p = Peer(core, clock)
    p.connect(["office"], keep=True)
    state = events(p.frames())[0][1]["authorization_state"]
    call = core.offer_call("office", caller="hangup:1")
    p.frames()
    p.request("calling.answer", {"node_id": call.node_id, "call_id": call.call_id})
    protocol = p.protocol
    core.connection_lost(p.conn)
    p.advance(2)  # the caller hangs up while nobody is listening
    assert call.state == "ended"
    back = Peer(core, clock)
    reply = back.connect(["office"], keep=True, protocol=protocol,
                         authorization_state=state)
    assert reply["result"]["protocol"] == protocol
    assert reply["result"]["session_restored"] is True
    assert states(back.frames()) == ["signalwire.authorization.state",
                                     "calling.call.state ending", "calling.call.state ended"]


def test_an_unknown_protocol_starts_a_new_session(core: SimCore, peer: Peer) -> None:
    reply = peer.connect(protocol="signalwire_unknown", authorization_state="x")
    assert reply["result"]["protocol"] != "signalwire_unknown"
    assert reply["result"]["session_restored"] is False


def test_calls_end_with_error_when_the_resume_window_passes(clock: FakeClock) -> None:
    core = SimCore(project="p", token="secret-token", clock=clock, resume_window=30)
    p = Peer(core, clock)
    p.connect(["office"])
    call = core.offer_call("office")
    core.connection_lost(p.conn)
    p.advance(29)
    assert call.state == "created"
    p.advance(2)
    assert call.end_reason == "error"
    assert core.summary()["by_end_reason"] == {"error": 1}


def test_offers_wait_for_a_subscriber_and_shutdown_counts_leaks(core: SimCore, peer: Peer) -> None:
    call = core.offer_call("office")
    assert core.summary() == {"offered": 1, "ended": 0, "by_end_reason": {}, "leaked": 0,
                              "active": 1}
    peer.connect(["office"], keep=True)
    assert "calling.call.receive" in [e for e, _ in events(peer.frames())]
    assert core.shutdown() == 1
    assert call.leaked and call.state == "ended"
    assert states(peer.frames()) == ["calling.call.state ending", "calling.call.state ended"]
    assert core.summary() == {"offered": 1, "ended": 0, "by_end_reason": {}, "leaked": 1,
                              "active": 0}


def test_fail_next_and_delayed_replies(core: SimCore, peer: Peer) -> None:
    _, ids = answered_call(core, peer)
    core.fail_next("calling.play", code="503", message="Busy")
    reply = peer.request("calling.play", {**ids, "control_id": "k", "play": [{"type": "audio"}]})
    assert reply["result"] == {"code": "503", "message": "Busy"}
    core.fail_next("signalwire.ping", code="-32050", message="nope")
    assert peer.request("signalwire.ping")["error"] == {"code": -32050, "message": "nope"}
    core.delay_replies(2.0, "signalwire.ping")
    rid = peer.send("signalwire.ping")
    peer.advance(1.9)
    assert peer.frames() == []
    peer.advance(0.2)
    assert peer.frames() == [{"jsonrpc": "2.0", "id": rid, "result": {}}]


def test_server_ping_resolves_on_the_clients_reply(core: SimCore, peer: Peer) -> None:
    peer.connect()
    peer.frames()
    answers: list[bool] = []
    rid = core.send_ping(peer.conn, answers.append)
    [ping] = peer.frames()
    assert ping["method"] == "signalwire.ping" and ping["id"] == rid
    core.receive_frame(peer.conn, json.dumps({"jsonrpc": "2.0", "id": rid, "result": {}}))
    assert answers == [True]


def test_time_scale_shrinks_every_duration(clock: FakeClock) -> None:
    core = SimCore(project="p", token="secret-token", clock=clock, time_scale=0.001)
    p = Peer(core, clock)
    _, ids = answered_call(core, p, "speak:30")
    p.request("calling.record", {**ids, "control_id": "k", "record": {"audio": {}}})
    p.advance(0.031)
    [_, (_, fin)] = events(p.frames())
    assert fin["duration"] == 30.0  # simulated seconds, reached in 30 ms of real time


# -- caller scripts --------------------------------------------------------------------------------


def test_caller_script_grammar() -> None:
    s = CallerScript.parse("speak:3:quiet,hangup:20,digits:12#/3,say:sales/billing")
    assert (s.speak, s.after_speech, s.hangup_after) == (3.0, "", 20.0)
    assert s.digits == ("12#", "3") and s.say == ("sales", "billing")
    assert CallerScript.parse("silent").speak is None
    assert CallerScript.parse("speak:1.5:*").after_speech == "*"
    during = CallerScript.parse("hangup@record:2")
    assert (during.hangup_during, during.hangup_offset, during.speak) == ("record", 2.0, math.inf)
    assert CallerScript.parse("hangup@play").hangup_offset is None
    assert CallerScript.parse(None) == CallerScript()


@pytest.mark.parametrize("bad", ["speak", "speak:x", "hangup@dance", "digits:12x", "sing",
                                 "speak:3,,silent", "say:"])
def test_bad_caller_scripts_name_the_clause(bad: str) -> None:
    with pytest.raises(CallerScriptError, match="grammar"):
        CallerScript.parse(bad)


def test_hangup_ordinal_picks_which_action_of_a_kind():
    from flowengine.sim.caller import CallerScript

    script = CallerScript.parse("hangup@play2:1.5")
    assert (script.hangup_during, script.hangup_ordinal, script.hangup_offset) == ("play", 2, 1.5)
    assert str(CallerScript(hangup_during="play", hangup_ordinal=2)) == "speak:3,hangup@play2"
    assert CallerScript.parse("hangup@record").hangup_ordinal == 1


def test_record_defaults_to_mp3_as_relay_does(core: SimCore, peer: Peer) -> None:
    _call, ids = answered_call(core, peer, "speak:2")
    reply = peer.request("calling.record", {**ids, "control_id": "k9",
                                            "record": {"audio": {}}})
    assert reply["result"]["url"].endswith(".mp3")


def test_noise_puts_a_junk_frame_before_events_at_the_rate_asked(core: SimCore,
                                                                  peer: Peer) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        core.inject_noise(1.5)
    _call, ids = answered_call(core, peer, "speak:2")
    play = {"type": "silence", "params": {"duration": 1}}
    core.inject_noise(1.0, seed=3)
    peer.send("calling.play", {**ids, "control_id": "p1", "play": [play]})
    peer.advance(2)
    texts = peer.conn.take_frames()
    # The reply, then each event (playing, finished) with a junk frame before it.
    assert core.noise_sent == 2 and len(texts) == 1 + 2 * core.noise_sent
    assert core.summary()["noise_frames"] == 2
    core.inject_noise(0)
    peer.send("calling.play", {**ids, "control_id": "p2", "play": [play]})
    peer.advance(2)
    assert core.noise_sent == 2 and len(peer.conn.take_frames()) == 3


def test_noise_with_a_seed_repeats(clock: FakeClock) -> None:
    def run() -> list[str]:
        core = SimCore(project="p", token="secret-token", time_scale=1.0, clock=clock,
                       http_url="http://sim.test")
        peer = Peer(core, clock)
        _call, ids = answered_call(core, peer, "speak:2")
        core.inject_noise(0.5, seed=11)
        for n in range(10):
            peer.send("calling.play", {**ids, "control_id": f"p{n}",
                                       "play": [{"type": "silence", "params": {"duration": 1}}]})
            peer.advance(2)
        # The junk, with the ids (a random prefix per simulator) left out.
        return [re.sub(r"[0-9a-f]{8}-\d+", "ID", t) for t in peer.conn.take_frames()
                if "nobody" in t or not t.startswith("{")]

    first = run()
    assert first and first == run()


def test_events_not_acked_when_the_socket_went_come_again_on_resume(core: SimCore,
                                                                    clock: FakeClock) -> None:
    # §3: a client that asked for event_acks ACKs every event; what it had not ACKed when
    # its socket went (written or not) may never have reached it, so the resumed session
    # gets it again, before what happened while it was away.
    p = Peer(core, clock)
    p.connect(["office"], keep=True)
    state = events(p.frames())[0][1]["authorization_state"]  # read, so ACKed
    first = core.offer_call("office", caller="speak:1")
    p.frames()  # read and ACKed
    second = core.offer_call("office", caller="speak:1")
    unread = p.conn.take_frames()  # written to the socket, never ACKed
    assert len(unread) == 1 and second.call_id in unread[0]
    protocol = p.protocol
    core.connection_lost(p.conn)
    third = core.offer_call("office", caller="speak:1")  # while nobody is connected
    back = Peer(core, clock)
    back.connect(["office"], keep=True, protocol=protocol, authorization_state=state)
    offers = [params["call_id"] for etype, params in events(back.frames())
              if etype == "calling.call.receive"]
    assert offers == [second.call_id, third.call_id] and first.call_id not in offers


def test_without_event_acks_only_events_never_written_come_again(core: SimCore,
                                                                 clock: FakeClock) -> None:
    p = Peer(core, clock)
    p.connect(["office"], keep=True, event_acks=False)
    p.conn.take_frames()
    written = core.offer_call("office", caller="speak:1")
    p.conn.take_frames()  # written, and without ACKs taken as delivered
    protocol, state = p.protocol, p.conn.session.authorization_state  # type: ignore[union-attr]
    core.connection_lost(p.conn)
    assert not p.conn.unacked
    back = Peer(core, clock)
    back.connect(["office"], keep=True, protocol=protocol, authorization_state=state)
    assert all(params.get("call_id") != written.call_id for _, params in events(back.frames()))
