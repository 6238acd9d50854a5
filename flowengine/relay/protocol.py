"""The RELAY JSON-RPC protocol without I/O (the websockets / h11 "sans-I/O" pattern).

:class:`RelayProtocol` turns text frames into :mod:`events <flowengine.relay.events>`
and requests into text frames. It never touches a socket, a clock or a task, so it is
tested with plain lists of messages, and the driver in ``connection.py`` stays thin.

Contract for the driver (as in websockets' ``docs/howto/sansio.rst``):

- Feed every received frame to :meth:`~RelayProtocol.receive_frame` and the end of the
  link to :meth:`~RelayProtocol.receive_eof`.
- Right after each ``receive_*`` call, send every frame :meth:`~RelayProtocol.frames_to_send`
  returns (event ACKs, ping and disconnect replies), **then** process the events. That
  order is §3: ACK before processing.
- Frames of our own requests are return values (h11-style): send them yourself.

Connection states::

    CONNECTING ──ConnectResult──▶ OPEN ──DisconnectRequested──▶ CLOSING
        │                                                          │
        └──connect rejected──▶ CLOSED ◀──────── receive_eof ───────┘   (any state)

Requests other than ``signalwire.connect`` are allowed only while OPEN.
"""

from __future__ import annotations

import enum
import itertools
import json
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from .. import __version__
from ..redact import redact_text
from .errors import LocalProtocolError, RemoteProtocolError
from .events import (
    AuthorizationState,
    CallEvent,
    CallReceived,
    ConnectResult,
    DisconnectRequested,
    Event,
    OtherEvent,
    ProtocolViolation,
    RequestFailed,
    RequestSucceeded,
    ServerPing,
)

__all__ = [
    "CONNECT_METHOD",
    "PROTOCOL_VERSION",
    "RelayProtocol",
    "Resume",
    "State",
    "mask_secrets",
]

CONNECT_METHOD = "signalwire.connect"
#: §2.1: the version the official Python SDK 3.7.5 sends.
PROTOCOL_VERSION = {"major": 2, "minor": 0, "revision": 0}
AGENT = f"flowengine/{__version__}"


class State(enum.IntEnum):
    """State of one RELAY connection (one websocket)."""

    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


CONNECTING, OPEN, CLOSING, CLOSED = State.CONNECTING, State.OPEN, State.CLOSING, State.CLOSED


@dataclass(frozen=True, slots=True)
class Resume:
    """What a reconnect sends back to resume its session (§2.1)."""

    protocol: str
    #: The last ``signalwire.authorization.state`` blob; a credential, so never shown.
    authorization_state: str = field(default="", repr=False)


# Compact output and strict JSON: NaN/Infinity are not JSON, so
# a request holding one is our bug and must not reach the wire.
_json_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False,
                                allow_nan=False).encode
_encode_str: Callable[[str], str] = json.encoder.encode_basestring
_json_decode = json.JSONDecoder().decode
_ORJSON_OPTIONS = (orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS
                   | orjson.OPT_PASSTHROUGH_DATETIME)


def _encode(value: Any) -> str:
    """Compact, strict JSON text, as the standard encoder above writes it.

    orjson does the work (15x faster than json on a RELAY request), and
    json judges whatever orjson handles differently: orjson writes NaN and Infinity as
    ``null`` and refuses integers beyond 64 bits, so a frame that holds ``null`` or that
    orjson refuses is encoded again by json, whose text or error is then the answer.
    """
    try:
        data = orjson.dumps(value, option=_ORJSON_OPTIONS)
    except TypeError:
        return _json_encode(value)
    if b"null" in data:
        return _json_encode(value)
    return data.decode()


def _decode(text: str | bytes) -> Any:
    """Parse one frame; what orjson refuses (NaN literals, bad input) goes to json, which
    accepts what it always did and words the errors. One difference remains: orjson reads
    an integer beyond 64 bits as a float (RELAY sends none: ids and codes are strings)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return _json_decode(text if isinstance(text, str) else text.decode())

# §5.1: "Any code matching ^2\d\d$ is success."
_SUCCESS = re.compile(r"2\d\d")
_FRAME_EXCERPT = 200

def mask_secrets(frame: str) -> str:
    """Return ``frame`` with credentials masked (:func:`flowengine.redact.redact_text`): the
    values of token-like keys, and every registered credential wherever it appears.

    Used only for debug logging of frames; never on the hot path otherwise.
    """
    return redact_text(frame)


def _new_id_factory() -> Callable[[], str]:
    # Ids are opaque and only matched (§1). A random prefix per connection plus a
    # counter is unique and much cheaper than a uuid4 per request.
    prefix = uuid.uuid4().hex[:12]
    counter = itertools.count(1)
    return lambda: f"{prefix}-{next(counter)}"


def _reply_frame(request_id: Any) -> str:
    # The same text as _encode({"jsonrpc": "2.0", "id": request_id, "result": {}}), built
    # without the generic encoder: this runs once per event (§3 ACKs).
    encoded_id = _encode_str(request_id) if type(request_id) is str else _encode(request_id)
    return f'{{"jsonrpc":"2.0","id":{encoded_id},"result":{{}}}}'


def _code_of(value: Any) -> int:
    """The integer form of a RELAY ``code`` ("404" → 404); -1 when it is not a number."""
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return -1


class RelayProtocol:
    """Client side of the RELAY protocol for one websocket, with no I/O.

    Args:
        new_id: returns a fresh request id; inject one to make frames predictable in
            tests.

    Attributes:
        state: the connection :class:`State`.
        pending: request id → method, for every request still waiting for its reply.
    """

    def __init__(self, *, new_id: Callable[[], str] | None = None) -> None:
        self.state: State = CONNECTING
        self.pending: dict[str, str] = {}
        self._new_id = new_id or _new_id_factory()
        self._outbox: list[str] = []

    # ---------------------------------------------------------------- sending

    def connect(
        self,
        auth: Mapping[str, str],
        contexts: Sequence[str] = (),
        resume: Resume | None = None,
    ) -> tuple[str, str]:
        """Build the ``signalwire.connect`` request (§2.1), the first frame of a link.

        Args:
            auth: ``{"project": …, "token": …}`` or ``{"jwt_token": …}``.
            contexts: contexts to receive inbound calls for; sent only when non-empty.
            resume: the previous session's protocol and authorization state, to resume it.

        Returns:
            ``(id, frame)``. The reply arrives as :class:`ConnectResult` or, when the
            server rejects the credentials, as :class:`RequestFailed`.

        Raises:
            LocalProtocolError: the connection is not in CONNECTING or already sent it.
        """
        if self.state is not CONNECTING or self.pending:
            raise LocalProtocolError(
                f"signalwire.connect is only sent once, first (state {self.state.name})"
            )
        params: dict[str, Any] = {
            "version": PROTOCOL_VERSION,
            "agent": AGENT,
            "event_acks": True,  # §3: we ACK every event that has an id
            "authentication": dict(auth),
        }
        if contexts:
            params["contexts"] = list(contexts)
        if resume is not None and resume.protocol:
            # §2.1: on reconnect, send the protocol (and the blob) back to resume.
            params["protocol"] = resume.protocol
            if resume.authorization_state:
                params["authorization_state"] = resume.authorization_state
        return self._request(CONNECT_METHOD, params)

    def send_request(self, method: str, params: Mapping[str, Any]) -> tuple[str, str]:
        """Build a request frame and remember it until its reply.

        Returns:
            ``(id, frame)``: send ``frame``; the reply comes back as
            :class:`RequestSucceeded` or :class:`RequestFailed` with the same ``id``.

        Raises:
            LocalProtocolError: the connection is not OPEN, ``method`` is
                ``signalwire.connect`` (use :meth:`connect`), or ``params`` is not JSON.
        """
        if self.state is not OPEN:
            raise LocalProtocolError(f"cannot send {method} in state {self.state.name}")
        if method == CONNECT_METHOD:
            raise LocalProtocolError("use RelayProtocol.connect() for signalwire.connect")
        return self._request(method, params)

    def _request(self, method: str, params: Mapping[str, Any]) -> tuple[str, str]:
        request_id = self._new_id()
        try:
            frame = _encode({"jsonrpc": "2.0", "id": request_id, "method": method,
                             "params": params})
        except (TypeError, ValueError) as exc:
            raise LocalProtocolError(f"{method}: params are not JSON: {exc}") from None
        self.pending[request_id] = method
        return request_id, frame

    def abandon(self, request_id: str) -> None:
        """Forget a request whose caller stopped waiting (deadline, cancellation).

        A late reply to it is then dropped silently.
        """
        self.pending.pop(request_id, None)

    def frames_to_send(self) -> list[str]:
        """Return and clear the automatic replies queued by ``receive_*``.

        Send them before processing the events of the same call (§3).
        """
        frames, self._outbox = self._outbox, []
        return frames

    # -------------------------------------------------------------- receiving

    def receive_frame(self, text: str | bytes) -> list[Event]:
        """Parse one text frame from the server.

        Never raises: a frame that breaks the protocol yields a :class:`ProtocolViolation`
        and is otherwise dropped. Queues the automatic replies (event ACKs, ping and
        disconnect replies, errors for unknown server methods); drain them with
        :meth:`frames_to_send` before processing the returned events.
        """
        if self.state is CLOSED:
            return [self._violation("frame received after the link closed", text)]
        try:
            message = _decode(text)
        except (ValueError, RecursionError, TypeError) as exc:
            # ValueError covers JSONDecodeError and UnicodeDecodeError.
            return [self._violation(f"not JSON: {exc}", text)]
        try:
            return self._receive_message(message)
        except RemoteProtocolError as exc:
            return [self._violation(str(exc), text)]
        except Exception as exc:  # the contract is "never raises"
            return [self._violation(f"unexpected frame ({type(exc).__name__}: {exc})", text)]

    def receive_eof(self) -> list[Event]:
        """Tell the core the link is gone.

        Returns a :class:`RequestFailed` (code -1, "Connection closed") for every pending
        request, and moves to CLOSED. Calling it again returns nothing.
        """
        failed: list[Event] = [
            RequestFailed(id=request_id, method=method, code=-1, message="Connection closed")
            for request_id, method in self.pending.items()
        ]
        self.pending.clear()
        self.state = CLOSED
        return failed

    # ---------------------------------------------------------------- parsing

    def _receive_message(self, message: Any) -> list[Event]:
        if type(message) is not dict:
            raise RemoteProtocolError("a frame must be a JSON object (no batches, §1)")
        method = message.get("method")
        if method is not None:
            return self._receive_server_request(method, message)
        if "id" in message:
            return self._receive_reply(message)
        raise RemoteProtocolError("neither a request (method) nor a reply (id)")

    def _receive_reply(self, message: dict[str, Any]) -> list[Event]:
        has_error, has_result = "error" in message, "result" in message
        if not (has_error or has_result):
            raise RemoteProtocolError("a reply needs a result or an error")
        request_id = message["id"]
        method = self.pending.pop(request_id, None) if type(request_id) is str else None
        if method is None:
            # A reply to a request we stopped waiting for (abandon): normal, drop it.
            return []
        if has_error:
            error = message["error"]
            if type(error) is dict:
                code, text = _code_of(error.get("code")), str(error.get("message", ""))
            else:
                code, text = -1, str(error)
            return [self._failed(request_id, method, code, text or "error")]
        result = message["result"]
        if type(result) is not dict:
            result = {"raw": result}
        if method == CONNECT_METHOD:
            # §2.2: the SDK does not check `code` here; a usable result has a protocol.
            protocol = result.get("protocol")
            if type(protocol) is not str or not protocol:
                return [self._failed(request_id, method, -1,
                                     "the connect result has no protocol")]
            self.state = OPEN
            return [ConnectResult(id=request_id, protocol=protocol,
                                  identity=str(result.get("identity", "")), result=result)]
        result_code = result.get("code")
        if result_code is not None and not _SUCCESS.fullmatch(str(result_code)):
            # §5.1 / §7: a non-2xx code inside `result` is an error.
            text = str(result.get("message", "")) or "error"
            return [RequestFailed(id=request_id, method=method, code=_code_of(result_code),
                                  message=text)]
        return [RequestSucceeded(id=request_id, method=method, result=result)]

    def _failed(self, request_id: str, method: str, code: int, text: str) -> RequestFailed:
        if method == CONNECT_METHOD:
            self.state = CLOSED  # §2.2: a rejected connect ends this link
        return RequestFailed(id=request_id, method=method, code=code, message=text)

    def _receive_server_request(self, method: Any, message: dict[str, Any]) -> list[Event]:
        request_id = message.get("id")
        params = message.get("params", {})
        if type(params) is not dict:
            raise RemoteProtocolError(f"{method}: params must be an object")
        if method == "signalwire.event":
            if request_id is not None:
                # §3: ACK before processing: queued before the event is even parsed, so
                # a malformed event is still acknowledged and never re-sent forever.
                self._outbox.append(_reply_frame(request_id))
            return [self._parse_event(params)]
        if method == "signalwire.ping":
            if request_id is not None:
                self._outbox.append(_reply_frame(request_id))  # §2.5: reply {}
            return [ServerPing(id=request_id, params=params)]
        if method == "signalwire.disconnect":
            if request_id is not None:
                self._outbox.append(_reply_frame(request_id))  # §2.7: reply {}
            if self.state is OPEN:
                self.state = CLOSING
            return [DisconnectRequested(restart=params.get("restart") is True)]
        if request_id is not None:
            # §2.6 asks the server to answer every request; we do the same for it.
            self._outbox.append(_encode({"jsonrpc": "2.0", "id": request_id, "error": {
                "code": -32601, "message": "Method not found"}}))
        raise RemoteProtocolError(f"unknown server method {method!r}")

    @staticmethod
    def _parse_event(envelope: dict[str, Any]) -> Event:
        event_type = envelope.get("event_type")
        params = envelope.get("params")
        if type(event_type) is not str or not event_type:
            raise RemoteProtocolError("signalwire.event without an event_type")
        if type(params) is not dict:
            raise RemoteProtocolError(f"{event_type}: the inner params must be an object")
        if event_type == "signalwire.authorization.state":
            blob = params.get("authorization_state")
            if type(blob) is not str:
                raise RemoteProtocolError("authorization state without a string blob")
            return AuthorizationState(blob=blob)
        call_id = params.get("call_id")
        if type(call_id) is str and call_id:
            if event_type == "calling.call.receive":
                return CallReceived(call_id=call_id, params=params)
            control_id = params.get("control_id")
            return CallEvent(event_type=event_type, call_id=call_id,
                             control_id=control_id if type(control_id) is str else None,
                             params=params)
        if event_type == "calling.call.receive":
            raise RemoteProtocolError("calling.call.receive without a call_id")
        return OtherEvent(event_type=event_type, params=params)

    @staticmethod
    def _violation(reason: str, text: str | bytes) -> ProtocolViolation:
        if not isinstance(text, str):
            text = text.decode("utf-8", "replace")
        # Masked whole, then cut: a credential cut in two by the excerpt would still show
        # its first part.
        return ProtocolViolation(reason=reason, frame=mask_secrets(text)[:_FRAME_EXCERPT])
