"""Exceptions of the RELAY client.

Two families, named for whose fault they are::

    RelayError                 the server answered "no", or never answered
     ├── CallEnded             the call is gone (404 / 410, or it already ended)
     ├── ConnectionLost        the link dropped (or never came up) before the reply
     └── RequestTimeout        no reply within the request deadline (§2.6)

    ProtocolError
     ├── LocalProtocolError    flowengine misused the protocol: a bug, fail loudly
     └── RemoteProtocolError   the server sent something malformed (sans-I/O core)

``RelayError`` is a normal outcome that a flow may branch on: its ``code`` is the
integer form of the server's ``code`` (``-1`` when there was no reply at all) and its
``method`` names the request. ``RemoteProtocolError`` never escapes
:meth:`RelayProtocol.receive_frame <flowengine.relay.protocol.RelayProtocol.receive_frame>`:
it becomes a :class:`~flowengine.relay.events.ProtocolViolation` event.

No exception in this module ever carries a token: messages are built from the method,
the code and the server's ``message`` only.
"""

from __future__ import annotations

__all__ = [
    "CallEnded",
    "ConnectionLost",
    "LocalProtocolError",
    "ProtocolError",
    "RelayError",
    "RemoteProtocolError",
    "RequestTimeout",
]


class RelayError(Exception):
    """Raised when RELAY answers a request with an error, or not at all.

    Attributes:
        code: the server's code as an int (``404``, ``-32002``…), ``-1`` without a reply.
        method: the RELAY method of the request (``calling.play``).
        message: the server's message, or ours when there was no reply.
    """

    def __init__(self, code: int, method: str, message: str) -> None:
        super().__init__(code, method, message)
        self.code = code
        self.method = method
        self.message = message

    def __str__(self) -> str:
        if self.code == -1:
            return f"{self.method}: {self.message}"
        return f"{self.method} failed with code {self.code}: {self.message}"


class CallEnded(RelayError):
    """Raised when a command targets a call that is gone (code 404 or 410, or ended)."""


class ConnectionLost(RelayError):
    """Raised when the link to RELAY dropped before a reply arrived (code -1).

    Whether the server acted on the request is unknown. It also reports a first
    connection that could not be made at all.
    """


class RequestTimeout(RelayError):
    """Raised when no reply arrived within the request deadline (code -1, §2.6).

    Its message is the official SDK's: ``Request timeout for <method>``.
    """

    @classmethod
    def for_method(cls, method: str) -> RequestTimeout:
        """The timeout error of one request."""
        return cls(-1, method, f"Request timeout for {method}")


class ProtocolError(Exception):
    """Base class of the protocol-misuse errors; never raised itself."""


class LocalProtocolError(ProtocolError):
    """Raised when flowengine uses the protocol wrongly (a bug in the caller).

    For example sending a request before the connect result arrived. Fix the caller;
    retrying will fail the same way.
    """


class RemoteProtocolError(ProtocolError):
    """The server sent something that breaks the protocol (bad JSON, wrong shape).

    The sans-I/O core turns it into a ``ProtocolViolation`` event; it is logged and the
    frame is dropped.
    """
