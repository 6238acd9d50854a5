"""The RELAY client: a sans-I/O protocol core, the websocket connection, Call handles.

Public API (see docs/internals.md and docs/relay-client.md)::

    from flowengine.relay import RelayConfig, RelayClient, Call, Action, ActionResult
    from flowengine.relay import RelayError, CallEnded, ConnectionLost, RequestTimeout
"""

from .call import CLIENT_CLOSED, HANGUP_RESULT, SESSION_LOST, Action, ActionResult, Bridge, Call
from .client import RelayClient
from .config import RelayConfig
from .dial import DIAL_TIMEOUT, DialResult, outcome_of, phone_device
from .errors import (
    CallEnded,
    ConnectionLost,
    LocalProtocolError,
    ProtocolError,
    RelayError,
    RemoteProtocolError,
    RequestTimeout,
)
from .messaging import Message
from .protocol import RelayProtocol
from .queues import QueueBoard, QueueFigures, QueueWait

__all__ = [
    "CLIENT_CLOSED",
    "DIAL_TIMEOUT",
    "HANGUP_RESULT",
    "SESSION_LOST",
    "Action",
    "ActionResult",
    "Bridge",
    "Call",
    "CallEnded",
    "ConnectionLost",
    "DialResult",
    "LocalProtocolError",
    "Message",
    "ProtocolError",
    "QueueBoard",
    "QueueFigures",
    "QueueWait",
    "RelayClient",
    "RelayConfig",
    "RelayError",
    "RelayProtocol",
    "RemoteProtocolError",
    "RequestTimeout",
    "outcome_of",
    "phone_device",
]
