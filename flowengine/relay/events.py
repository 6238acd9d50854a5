"""Events the sans-I/O core returns from ``receive_frame`` and ``receive_eof``.

Small frozen, slotted, keyword-only dataclasses, in the manner of h11: dispatch on them
with ``type(event) is X``. ``params`` fields hold the raw inner params of the frame as
parsed (a ``dict``); treat them as read-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "AuthorizationState",
    "CallEvent",
    "CallReceived",
    "ConnectResult",
    "DisconnectRequested",
    "Event",
    "OtherEvent",
    "ProtocolViolation",
    "RequestFailed",
    "RequestSucceeded",
    "ServerPing",
]

@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base class of every event; never produced itself."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectResult(Event):
    """The server accepted ``signalwire.connect`` (§2.2); the session is open."""

    id: str
    #: The session's protocol; send it back on reconnect to resume the session.
    protocol: str
    identity: str
    #: The whole result object (``sessionid``, ``session_restored``, …).
    result: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestSucceeded(Event):
    """A request was answered with a 2xx ``code``, or with no ``code`` at all."""

    id: str
    method: str
    result: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestFailed(Event):
    """A request was answered with a JSON-RPC ``error`` or a non-2xx ``code`` (§7), or
    the link closed before its reply (``code`` -1, from ``receive_eof``)."""

    id: str
    method: str
    code: int
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallReceived(Event):
    """``calling.call.receive``: an inbound call offered to a subscribed context (§4.1)."""

    call_id: str
    params: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEvent(Event):
    """Any other ``calling.*`` event that names a ``call_id`` (§4.2–4.8).

    ``control_id`` is ``None`` for events that do not belong to an action (state
    changes, for instance).
    """

    event_type: str
    call_id: str
    control_id: str | None
    params: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class OtherEvent(Event):
    """An event that is not about one known call: dial progress (routed by ``tag``),
    messaging, conferences, ``calling.error``… (§4.7, §4.8)."""

    event_type: str
    params: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthorizationState(Event):
    """``signalwire.authorization.state``: the opaque blob that speeds up a resume (§2.3)."""

    blob: str

    def __repr__(self) -> str:
        # The blob re-authenticates the session: keep it out of logs and tracebacks.
        return f"AuthorizationState(blob=<{len(self.blob)} chars>)"


@dataclass(frozen=True, slots=True, kw_only=True)
class DisconnectRequested(Event):
    """``signalwire.disconnect``: the server will close the link; reconnect after it (§2.7).

    With ``restart`` true the next connect must start a new session (no resume).
    """

    restart: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerPing(Event):
    """``signalwire.ping`` from the server (§2.5); the reply is already queued."""

    #: The server's request id, any JSON value (``None`` when absent).
    id: Any
    params: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProtocolViolation(Event):
    """A frame that breaks the protocol. It was dropped; log it and carry on.

    ``frame`` is the start of the offending text (at most 200 characters).
    """

    reason: str
    frame: str
