"""The sans-I/O RELAY core, driven with plain lists of messages: no sockets, no clock.

Section numbers (§n) refer to docs/relay-protocol.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowengine.relay.errors import LocalProtocolError
from flowengine.relay.events import (
    AuthorizationState,
    CallEvent,
    CallReceived,
    ConnectResult,
    DisconnectRequested,
    OtherEvent,
    ProtocolViolation,
    RequestFailed,
    RequestSucceeded,
    ServerPing,
)
from flowengine.relay.protocol import CLOSED, CLOSING, OPEN, RelayProtocol, Resume, mask_secrets

AUTH = {"project": "p-1", "token": "s3cret-token"}


def ids() -> Iterator[str]:
    n = 0
    while True:
        n += 1
        yield f"req-{n}"


def frame(**message: Any) -> str:
    return json.dumps({"jsonrpc": "2.0", **message})


def event(event_type: str, params: dict[str, Any], event_id: str | None = "ev-1") -> str:
    message: dict[str, Any] = {"method": "signalwire.event",
                               "params": {"event_type": event_type, "params": params}}
    if event_id is not None:
        message["id"] = event_id
    return frame(**message)


def new_protocol() -> RelayProtocol:
    return RelayProtocol(new_id=ids().__next__)


def open_protocol() -> RelayProtocol:
    """A core whose connect has been accepted (state OPEN)."""
    proto = new_protocol()
    request_id, _ = proto.connect(AUTH, ["office"])
    [result] = proto.receive_frame(frame(id=request_id, result={"protocol": "proto-1",
                                                                "identity": "p-1@n"}))
    assert type(result) is ConnectResult
    return proto


def sent(proto: RelayProtocol) -> list[dict[str, Any]]:
    return [json.loads(f) for f in proto.frames_to_send()]


class TestConnect:
    """§2.1–2.2: signalwire.connect and its reply."""

    def test_connect_frame_carries_auth_contexts_and_event_acks(self) -> None:
        proto = new_protocol()
        request_id, text = proto.connect(AUTH, ["office", "sales"])
        message = json.loads(text)
        assert request_id == "req-1"
        assert message["id"] == "req-1"
        assert message["jsonrpc"] == "2.0"
        assert message["method"] == "signalwire.connect"
        params = message["params"]
        assert params["authentication"] == AUTH
        assert params["contexts"] == ["office", "sales"]
        assert params["event_acks"] is True
        assert params["version"] == {"major": 2, "minor": 0, "revision": 0}
        assert "protocol" not in params and "authorization_state" not in params

    def test_connect_without_contexts_leaves_the_key_out(self) -> None:
        _, text = new_protocol().connect({"jwt_token": "jwt"})
        params = json.loads(text)["params"]
        assert "contexts" not in params
        assert params["authentication"] == {"jwt_token": "jwt"}

    def test_reconnect_sends_protocol_and_authorization_state(self) -> None:
        _, text = new_protocol().connect(AUTH, ["office"], Resume("proto-1", "blob-1"))
        params = json.loads(text)["params"]
        assert params["protocol"] == "proto-1"
        assert params["authorization_state"] == "blob-1"

    def test_resume_without_blob_sends_only_the_protocol(self) -> None:
        _, text = new_protocol().connect(AUTH, (), Resume("proto-1"))
        params = json.loads(text)["params"]
        assert params["protocol"] == "proto-1"
        assert "authorization_state" not in params

    def test_frames_are_compact_json(self) -> None:
        _, text = new_protocol().connect(AUTH, ["office"])
        assert ", " not in text and '": ' not in text

    def test_connect_result_opens_the_connection(self) -> None:
        proto = new_protocol()
        request_id, _ = proto.connect(AUTH)
        [result] = proto.receive_frame(frame(id=request_id, result={
            "protocol": "proto-9", "identity": "p-1@n1", "sessionid": "s"}))
        assert result == ConnectResult(id=request_id, protocol="proto-9", identity="p-1@n1",
                                       result={"protocol": "proto-9", "identity": "p-1@n1",
                                               "sessionid": "s"})
        assert proto.state is OPEN
        assert proto.pending == {}

    def test_rejected_auth_is_a_failed_request_and_closes(self) -> None:
        proto = new_protocol()
        request_id, _ = proto.connect(AUTH)
        [failed] = proto.receive_frame(frame(id=request_id, error={
            "code": -32002, "message": "Authentication failed"}))
        assert failed == RequestFailed(id=request_id, method="signalwire.connect",
                                       code=-32002, message="Authentication failed")
        assert proto.state is CLOSED

    def test_connect_result_without_protocol_is_a_failure(self) -> None:
        proto = new_protocol()
        request_id, _ = proto.connect(AUTH)
        [failed] = proto.receive_frame(frame(id=request_id, result={"code": "200"}))
        assert type(failed) is RequestFailed
        assert failed.method == "signalwire.connect"
        assert proto.state is CLOSED

    def test_requests_before_the_connect_result_are_a_local_error(self) -> None:
        proto = new_protocol()
        proto.connect(AUTH)
        with pytest.raises(LocalProtocolError):
            proto.send_request("calling.answer", {})

    def test_connect_twice_is_a_local_error(self) -> None:
        proto = open_protocol()
        with pytest.raises(LocalProtocolError):
            proto.connect(AUTH)

    def test_connect_through_send_request_is_a_local_error(self) -> None:
        with pytest.raises(LocalProtocolError):
            open_protocol().send_request("signalwire.connect", {})

    def test_params_that_are_not_json_are_a_local_error(self) -> None:
        proto = open_protocol()
        with pytest.raises(LocalProtocolError):
            proto.send_request("calling.play", {"volume": float("nan")})
        assert proto.pending == {}


class TestReplies:
    """§1, §5.1, §7: replies are matched by id; non-2xx codes are failures."""

    def test_reply_is_matched_by_id_and_names_the_method(self) -> None:
        proto = open_protocol()
        first, _ = proto.send_request("calling.answer", {"call_id": "c1"})
        second, _ = proto.send_request("calling.play", {"call_id": "c1"})
        [reply] = proto.receive_frame(frame(id=second, result={"code": "200",
                                                               "message": "Playing"}))
        assert reply == RequestSucceeded(id=second, method="calling.play",
                                         result={"code": "200", "message": "Playing"})
        assert proto.pending == {first: "calling.answer"}

    def test_any_2xx_code_is_success(self) -> None:
        proto = open_protocol()
        request_id, _ = proto.send_request("calling.end", {})
        [reply] = proto.receive_frame(frame(id=request_id, result={"code": 202}))
        assert type(reply) is RequestSucceeded

    def test_result_without_code_is_success(self) -> None:
        proto = open_protocol()
        request_id, _ = proto.send_request("signalwire.ping", {})
        [reply] = proto.receive_frame(frame(id=request_id, result={}))
        assert reply == RequestSucceeded(id=request_id, method="signalwire.ping", result={})

    @pytest.mark.parametrize(("code", "expected"), [("404", 404), ("410", 410),
                                                    ("500", 500), ("nope", -1)])
    def test_non_2xx_code_in_result_is_a_failure(self, code: str, expected: int) -> None:
        proto = open_protocol()
        request_id, _ = proto.send_request("calling.record", {})
        [reply] = proto.receive_frame(frame(id=request_id, result={"code": code,
                                                                   "message": "No call"}))
        assert reply == RequestFailed(id=request_id, method="calling.record",
                                      code=expected, message="No call")
        assert proto.state is OPEN

    def test_json_rpc_error_is_a_failure(self) -> None:
        proto = open_protocol()
        request_id, _ = proto.send_request("calling.nope", {})
        [reply] = proto.receive_frame(frame(id=request_id, error={
            "code": -32601, "message": "Method not found"}))
        assert reply == RequestFailed(id=request_id, method="calling.nope",
                                      code=-32601, message="Method not found")

    def test_reply_to_an_unknown_id_is_dropped(self) -> None:
        proto = open_protocol()
        assert proto.receive_frame(frame(id="never-sent", result={})) == []

    def test_reply_to_an_abandoned_request_is_dropped(self) -> None:
        proto = open_protocol()
        request_id, _ = proto.send_request("calling.play", {})
        proto.abandon(request_id)
        assert proto.receive_frame(frame(id=request_id, result={"code": "200"})) == []

    def test_eof_fails_every_pending_request(self) -> None:
        proto = open_protocol()
        first, _ = proto.send_request("calling.answer", {})
        second, _ = proto.send_request("calling.record", {})
        failed = proto.receive_eof()
        assert failed == [
            RequestFailed(id=first, method="calling.answer", code=-1,
                          message="Connection closed"),
            RequestFailed(id=second, method="calling.record", code=-1,
                          message="Connection closed"),
        ]
        assert proto.state is CLOSED
        assert proto.receive_eof() == []
        with pytest.raises(LocalProtocolError):
            proto.send_request("calling.play", {})


class TestEvents:
    """§3–4: the event envelope, ACKs and what each event becomes."""

    def test_event_with_an_id_is_acked(self) -> None:
        proto = open_protocol()
        [ev] = proto.receive_frame(event("calling.call.play", {
            "call_id": "c1", "control_id": "k1", "state": "playing"}, event_id="5a8a"))
        assert ev == CallEvent(event_type="calling.call.play", call_id="c1",
                               control_id="k1",
                               params={"call_id": "c1", "control_id": "k1",
                                       "state": "playing"})
        assert sent(proto) == [{"jsonrpc": "2.0", "id": "5a8a", "result": {}}]
        assert proto.frames_to_send() == []

    def test_event_without_an_id_is_not_acked(self) -> None:
        proto = open_protocol()
        [ev] = proto.receive_frame(event("calling.call.state", {
            "call_id": "c1", "call_state": "ended"}, event_id=None))
        assert type(ev) is CallEvent and ev.control_id is None
        assert proto.frames_to_send() == []

    def test_ack_echoes_a_numeric_id_and_escapes_strings(self) -> None:
        proto = open_protocol()
        proto.receive_frame(event("calling.call.state", {"call_id": "c"}, event_id=7))  # type: ignore[arg-type]
        proto.receive_frame(event("calling.call.state", {"call_id": "c"}, event_id='a"\\b'))
        assert [m["id"] for m in sent(proto)] == [7, 'a"\\b']

    def test_malformed_event_is_still_acked(self) -> None:
        proto = open_protocol()
        [ev] = proto.receive_frame(frame(id="ev-9", method="signalwire.event",
                                         params={"event_type": "calling.call.play",
                                                 "params": "not an object"}))
        assert type(ev) is ProtocolViolation
        assert sent(proto) == [{"jsonrpc": "2.0", "id": "ev-9", "result": {}}]

    def test_call_receive_offers_a_call(self) -> None:
        params = {"call_id": "c1", "node_id": "n1", "call_state": "created",
                  "context": "office", "direction": "inbound"}
        [ev] = open_protocol().receive_frame(event("calling.call.receive", params))
        assert ev == CallReceived(call_id="c1", params=params)

    def test_event_for_an_unknown_call_is_just_an_event(self) -> None:
        # The core knows no calls; the client drops events for unknown call_ids (§3).
        [ev] = open_protocol().receive_frame(event("calling.call.record", {
            "call_id": "nobody", "control_id": "k", "state": "finished"}))
        assert type(ev) is CallEvent and ev.call_id == "nobody"

    def test_event_without_call_id_is_an_other_event(self) -> None:
        params = {"node_id": "n9", "tag": "t1", "dial_state": "dialing"}
        [ev] = open_protocol().receive_frame(event("calling.call.dial", params))
        assert ev == OtherEvent(event_type="calling.call.dial", params=params)

    def test_authorization_state_is_kept_out_of_repr(self) -> None:
        [ev] = open_protocol().receive_frame(event("signalwire.authorization.state", {
            "authorization_state": "opaque-blob"}))
        assert ev == AuthorizationState(blob="opaque-blob")
        assert "opaque-blob" not in repr(ev)


class TestServerRequests:
    """§2.5, §2.7: server pings and disconnects are answered automatically."""

    def test_ping_is_answered_with_an_empty_result(self) -> None:
        proto = open_protocol()
        [ev] = proto.receive_frame(frame(id="p-1", method="signalwire.ping",
                                         params={"timestamp": 1.5}))
        assert ev == ServerPing(id="p-1", params={"timestamp": 1.5})
        assert sent(proto) == [{"jsonrpc": "2.0", "id": "p-1", "result": {}}]

    @pytest.mark.parametrize("restart", [False, True])
    def test_disconnect_is_answered_and_moves_to_closing(self, restart: bool) -> None:
        proto = open_protocol()
        [ev] = proto.receive_frame(frame(id="d-1", method="signalwire.disconnect",
                                         params={"restart": restart}))
        assert ev == DisconnectRequested(restart=restart)
        assert sent(proto) == [{"jsonrpc": "2.0", "id": "d-1", "result": {}}]
        assert proto.state is CLOSING
        with pytest.raises(LocalProtocolError):
            proto.send_request("calling.play", {})

    def test_replies_still_arrive_while_closing(self) -> None:
        proto = open_protocol()
        request_id, _ = proto.send_request("calling.answer", {})
        proto.receive_frame(frame(id="d-1", method="signalwire.disconnect", params={}))
        [reply] = proto.receive_frame(frame(id=request_id, result={"code": "200"}))
        assert type(reply) is RequestSucceeded

    def test_unknown_server_method_gets_an_error_reply(self) -> None:
        proto = open_protocol()
        [ev] = proto.receive_frame(frame(id="x-1", method="signalwire.nope", params={}))
        assert type(ev) is ProtocolViolation
        assert sent(proto) == [{"jsonrpc": "2.0", "id": "x-1", "error": {
            "code": -32601, "message": "Method not found"}}]


class TestBadInput:
    """receive_frame never raises: bad input becomes a ProtocolViolation."""

    @pytest.mark.parametrize("text", [
        "", "{", "not json", "[]", "[1, 2]", "42", "null", '"text"',
        '{"jsonrpc":"2.0"}',
        '{"jsonrpc":"2.0","id":"x"}',
        '{"jsonrpc":"2.0","method":"signalwire.event","params":[]}',
        '{"jsonrpc":"2.0","method":"signalwire.event","params":{}}',
        '{"jsonrpc":"2.0","method":"signalwire.event","params":{"event_type":5,"params":{}}}',
        '{"jsonrpc":"2.0","method":"signalwire.event","params":{"event_type":"calling.call.receive","params":{}}}',
        '{"jsonrpc":"2.0","method":"signalwire.event","params":{"event_type":"signalwire.authorization.state","params":{}}}',
        '{"jsonrpc":"2.0","method":7}',
        "[" * 100_000,
    ])
    def test_malformed_frame_becomes_a_violation(self, text: str) -> None:
        proto = open_protocol()
        events = proto.receive_frame(text)
        assert len(events) == 1 and type(events[0]) is ProtocolViolation
        assert proto.state is OPEN
        assert len(events[0].frame) <= 200

    def test_invalid_utf8_bytes_become_a_violation(self) -> None:
        [ev] = open_protocol().receive_frame(b"\xff\xfe")
        assert type(ev) is ProtocolViolation

    def test_violation_excerpt_masks_secrets(self) -> None:
        [ev] = open_protocol().receive_frame('{"token":"s3cret-token", oops')
        assert type(ev) is ProtocolViolation
        assert "s3cret-token" not in ev.frame

    def test_frames_after_eof_are_violations(self) -> None:
        proto = open_protocol()
        proto.receive_eof()
        [ev] = proto.receive_frame(event("calling.call.state", {"call_id": "c"}))
        assert type(ev) is ProtocolViolation
        assert proto.frames_to_send() == []


def test_mask_secrets_hides_token_values_only() -> None:
    _, text = new_protocol().connect(AUTH, ["office"], Resume("proto-1", "blob-1"))
    masked = mask_secrets(text)
    assert "s3cret-token" not in masked and "blob-1" not in masked
    assert "p-1" in masked and "proto-1" in masked and "office" in masked


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
protocol_keys = st.sampled_from(["jsonrpc", "id", "method", "params", "result", "error",
                                 "event_type", "call_id", "control_id", "code", "message",
                                 "protocol", "authorization_state", "restart"])
methods = st.sampled_from(["signalwire.event", "signalwire.ping", "signalwire.disconnect",
                           "signalwire.connect", "calling.call.play"])
envelope_like = st.recursive(
    json_values | methods,
    lambda inner: st.dictionaries(protocol_keys, inner, max_size=6),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_receive_frame_never_raises_on_any_text(text: str) -> None:
    proto = open_protocol()
    proto.receive_frame(text)
    proto.frames_to_send()


@settings(max_examples=500, deadline=None)
@given(message=envelope_like, reply_to_pending=st.booleans())
def test_receive_frame_never_raises_on_any_json(message: Any, reply_to_pending: bool) -> None:
    proto = open_protocol()
    request_id, _ = proto.send_request("calling.play", {})
    if reply_to_pending and isinstance(message, dict):
        message["id"] = request_id
    events = proto.receive_frame(json.dumps(message))
    for f in proto.frames_to_send():
        json.loads(f)  # every automatic reply is valid JSON
    assert all(type(ev).__module__ == "flowengine.relay.events" for ev in events)
