"""Our websocket I/O: websockets' public sans-I/O protocols on our own asyncio ``Protocol``.

websockets' asyncio connection costs about 4.5 us of bookkeeping per ``await send()``
(an async context manager, flow control), a third of the cost of a RELAY frame; the
earlier way around it read that connection's private fields. Here the I/O class is ours
and only moves bytes, as websockets' own asyncio connection does: ``data_received``
feeds :meth:`~websockets.protocol.Protocol.receive_data`, the events it yields are
handled, and :meth:`~websockets.protocol.Protocol.data_to_send` is flushed to a
:class:`CoalescingTransport` (the writes of one loop turn leave in one ``send()``).
Everything this module touches in websockets is its documented sans-I/O API
(``ClientProtocol``, ``ServerProtocol``, ``Frame``, ``Request``, ``Response``), so any
websockets >= 14 works.

One :class:`WsLink` class serves both sides:

* the client: :func:`connect` (``ws://`` or ``wss://`` with ``server_hostname``);
* the server: :func:`serve`; each HTTP request is handed to ``on_request``, which
  answers it (recordings, 404) or lets the websocket upgrade through.

Incoming messages (fragments assembled; pings answered by the sans-I/O protocol itself)
wait in a bounded queue: past ``max_queue`` messages the socket stops being read. Writes
never block; :meth:`WsLink.drain` waits while asyncio's write buffer is above its high
mark, so a slow reader makes the writer wait rather than the buffer grow.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, cast

from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

__all__ = ["CoalescingTransport", "WsLink", "connect", "serve"]

logger = logging.getLogger("flowengine.relay")

_OPEN = State.OPEN
_CONNECTING = State.CONNECTING
_CLOSED = State.CLOSED
_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY
_CONT = Opcode.CONT
_CLOSE = Opcode.CLOSE
#: What websockets' frames carry (``bytes`` here: no extension rewrites them).
_Bytes = bytes | bytearray | memoryview

#: asyncio's write buffer marks: above HIGH, :meth:`WsLink.drain` waits until below LOW.
WRITE_LIMIT_HIGH = 64 * 1024
WRITE_LIMIT_LOW = 16 * 1024


class CoalescingTransport:
    """A transport whose writes of one event-loop turn leave in one ``send()``.

    Every event is ACKed (§3) and every command is its own frame, so a call is about 15
    frames; one system call per frame was the largest single cost of the client
    (docs/benchmarks.md). Here a write only appends to a buffer and, for the first
    one of the turn, schedules a flush with ``call_soon``: the frames written by every task
    that runs in this turn (the reader's ACKs, the commands of the calls it woke) go out
    together at the start of the next turn, in order. Closing, half-closing and aborting
    see the buffer first; everything else is the real transport's.
    """

    __slots__ = ("_buffer", "_limit", "_loop", "_size", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop,
                 limit: int = 64 * 1024) -> None:
        self._transport = transport
        self._loop = loop
        self._buffer: list[bytes] = []
        self._size = 0
        #: Past this many bytes held, a write flushes at once: a task that writes without
        #: awaiting must still reach the real transport, whose flow control (pause_writing)
        #: then makes it wait; otherwise the buffer would grow without bound in one turn.
        self._limit = limit

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._buffer:
            self._loop.call_soon(self._flush)
        self._buffer.append(bytes(data))
        self._size += len(data)
        if self._size > self._limit:
            self._flush()

    def _flush(self) -> None:
        buffer = self._buffer
        if buffer:
            self._buffer = []
            self._size = 0
            if not self._transport.is_closing():
                self._transport.write(buffer[0] if len(buffer) == 1 else b"".join(buffer))

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._buffer = []
        self._size = 0
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._size

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class WsLink(asyncio.Protocol):
    """One websocket, client or server side, driven through websockets' sans-I/O protocol.

    Args:
        protocol: a fresh ``ClientProtocol`` or ``ServerProtocol``.
        close_timeout: after the closing handshake starts, how long the peer has to
            finish it (and close TCP) before the connection is aborted.
        max_queue: incoming messages held before the socket stops being read.
        on_request: server side: called with the HTTP request; returns the response to
            send (a rejection, or any plain HTTP answer) or ``None`` to accept the
            websocket upgrade.
        on_open: server side: called once the upgrade is accepted.
        open_timeout: server side: a client still in its handshake this many seconds
            after connecting is dropped (``None``: no limit).
        on_made, on_lost: called with the link when its TCP connection is made and lost.
    """

    def __init__(self, protocol: ClientProtocol | ServerProtocol, *,
                 close_timeout: float = 2.0, max_queue: int = 64,
                 on_request: Callable[[WsLink, Request], Response | None] | None = None,
                 on_open: Callable[[WsLink], None] | None = None,
                 open_timeout: float | None = None,
                 on_made: Callable[[WsLink], None] | None = None,
                 on_lost: Callable[[WsLink], None] | None = None) -> None:
        self.protocol = protocol
        self._open_timeout = open_timeout
        self._on_made = on_made
        self._on_lost = on_lost
        self._open_timer: asyncio.TimerHandle | None = None
        self.close_timeout = close_timeout
        self._max_queue = max_queue
        self._on_request = on_request
        self._on_open = on_open
        self._loop = asyncio.get_running_loop()
        self.transport: CoalescingTransport | None = None
        #: True while asyncio's write buffer is above its high mark.
        self.write_paused = False
        self._reading_paused = False
        self._messages: deque[str | bytes] = deque()
        self._fragments: list[_Bytes] = []
        self._fragment_opcode: Opcode | None = None
        self._recv_waiter: asyncio.Future[None] | None = None
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._close_timer: asyncio.TimerHandle | None = None
        self._lost = False
        #: Done when the handshake succeeded; its exception when it failed.
        self.opened: asyncio.Future[None] = self._loop.create_future()
        #: Done once the TCP connection is gone.
        self.closed: asyncio.Future[None] = self._loop.create_future()
        self.request: Request | None = None
        self.remote_address: Any = None

    # -- what users call ------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The websocket's state (``websockets.protocol.State``)."""
        return self.protocol.state

    @property
    def is_open(self) -> bool:
        """True while messages can be sent."""
        return self.protocol.state is _OPEN

    def send_text(self, text: str) -> None:
        """Queue one text message for sending, at once (no await; see :meth:`drain`).

        Raises:
            ConnectionClosed: the websocket is closing or closed.
        """
        protocol = self.protocol
        if protocol.state is not _OPEN:
            raise self._closed_error()
        protocol.send_text(text.encode())
        self._send_data()

    async def drain(self) -> None:
        """Wait while the socket's write buffer is above its high mark (a slow reader).

        Raises:
            ConnectionClosed: the connection was lost meanwhile.
        """
        if self.write_paused:
            waiter = self._loop.create_future()
            self._drain_waiters.append(waiter)
            try:
                await waiter
            finally:
                self._drain_waiters.remove(waiter)
            if self._lost:
                raise self._closed_error()

    async def send(self, text: str) -> None:
        """Send one text message, with flow control."""
        self.send_text(text)
        if self.write_paused:
            await self.drain()

    async def recv(self) -> str | bytes:
        """The next message: ``str`` for text, ``bytes`` for binary (one reader at a time).

        Messages that arrived before the link closed are still returned.

        Raises:
            ConnectionClosed: no message is left and the connection is closed.
        """
        messages = self._messages
        while not messages:
            if self._lost:
                raise self._closed_error()
            waiter = self._recv_waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._recv_waiter = None
        message = messages.popleft()
        if self._reading_paused and len(messages) <= self._max_queue // 4:
            self._reading_paused = False
            if self.transport is not None and not self._lost:
                self.transport.resume_reading()
        return message

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """The closing handshake, then wait until TCP is closed.

        Bounded: past ``close_timeout`` the connection is aborted. Idempotent.
        """
        protocol = self.protocol
        if protocol.state is _OPEN:
            protocol.send_close(code, reason)
            self._send_data()
        elif protocol.state is _CONNECTING:
            self.abort()
        self._arm_close_timer()
        await asyncio.shield(self.closed)

    def respond(self, status: HTTPStatus | int, text: str) -> Response:
        """Server side: a plain-text HTTP response for ``on_request`` to return."""
        protocol = self.protocol
        assert isinstance(protocol, ServerProtocol), "a client does not answer HTTP"
        return protocol.reject(status, text)

    def abort(self) -> None:
        """Drop the TCP connection at once: no close frame, nothing more written."""
        if self.transport is not None:
            self.transport.abort()

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        raw = cast(asyncio.Transport, transport)
        raw.set_write_buffer_limits(WRITE_LIMIT_HIGH, WRITE_LIMIT_LOW)
        self.transport = CoalescingTransport(raw, self._loop)
        self.remote_address = raw.get_extra_info("peername")
        protocol = self.protocol
        if isinstance(protocol, ClientProtocol):
            protocol.send_request(protocol.connect())
            self._send_data()
        elif self._open_timeout is not None:
            self._open_timer = self._loop.call_later(self._open_timeout, self._open_expired)
        if self._on_made is not None:
            self._on_made(self)

    def data_received(self, data: bytes) -> None:
        protocol = self.protocol
        protocol.receive_data(data)
        events = protocol.events_received()
        self._send_data()
        for event in events:
            if isinstance(event, Frame):
                self._frame(event)
            else:
                self._handshake(event)
        if protocol.state is _CONNECTING and protocol.handshake_exc is not None:
            self._fail_opening(protocol.handshake_exc)
        if protocol.close_expected():
            self._arm_close_timer()

    def eof_received(self) -> bool | None:
        protocol = self.protocol
        protocol.receive_eof()
        events = protocol.events_received()
        self._send_data()
        for event in events:  # an HTTP response read until EOF
            if not isinstance(event, Frame):
                self._handshake(event)
        # The websocket has its own closing handshake: nothing is written after EOF,
        # so the transport may close (returning True would not work over TLS anyway).
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self.protocol.receive_eof()  # idempotent: the state is CLOSED from here on
        for timer in (self._close_timer, self._open_timer):
            if timer is not None:
                timer.cancel()
        self._close_timer = self._open_timer = None
        if self._on_lost is not None:
            self._on_lost(self)
        self._fail_opening(ConnectionClosed(None, None) if exc is None else exc)
        if not self.closed.done():
            self.closed.set_result(None)
        self._wake_reader()
        self.write_paused = False
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- internal ------------------------------------------------------------------------------

    def _send_data(self) -> None:
        transport = self.transport
        if transport is None:
            return
        for data in self.protocol.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():
                transport.write_eof()
            else:  # TLS has no half-close
                transport.close()

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is _TEXT or opcode is _BINARY:
            if frame.fin:
                self._deliver(opcode, frame.data)
            else:
                self._fragment_opcode = opcode
                self._fragments = [frame.data]
        elif opcode is _CONT:
            # The sans-I/O protocol rejects a continuation that starts nothing.
            self._fragments.append(frame.data)
            if frame.fin:
                fragments, self._fragments = self._fragments, []
                kind, self._fragment_opcode = self._fragment_opcode, None
                assert kind is not None
                self._deliver(kind, b"".join(fragments))
        elif opcode is _CLOSE:
            # The protocol already queued the answering close frame; nothing more will
            # arrive, and recv() raises once the queue is empty and TCP is closed.
            self._arm_close_timer()
        # PING: the protocol queued the pong itself; PONG: we send no pings.

    def _deliver(self, opcode: Opcode, payload: _Bytes) -> None:
        # Without extensions the payload is bytes already; the type allows any buffer.
        data = payload if type(payload) is bytes else bytes(payload)
        message: str | bytes
        if opcode is _TEXT:
            try:
                message = data.decode()
            except UnicodeDecodeError:
                self.protocol.fail(CloseCode.INVALID_DATA, "invalid UTF-8 in a text frame")
                self._send_data()
                self._arm_close_timer()
                return
        else:
            message = data
        messages = self._messages
        messages.append(message)
        self._wake_reader()
        if (len(messages) >= self._max_queue and not self._reading_paused
                and self.transport is not None):
            self._reading_paused = True
            self.transport.pause_reading()

    def _handshake(self, event: Request | Response) -> None:
        protocol = self.protocol
        if type(event) is Request:
            server = cast(ServerProtocol, protocol)
            self.request = event
            try:
                response = None if self._on_request is None else self._on_request(self, event)
            except Exception:
                # A bug answering one HTTP request: that request gets a 500, the server
                # goes on.
                logger.exception("! could not answer the HTTP request for %s", event.path)
                response = server.reject(HTTPStatus.INTERNAL_SERVER_ERROR, "Internal error\n")
            if response is None:
                response = server.accept(event)
            server.send_response(response)
            self._send_data()
            if server.state is _OPEN:
                if self._open_timer is not None:
                    self._open_timer.cancel()
                    self._open_timer = None
                if not self.opened.done():
                    self.opened.set_result(None)
                if self._on_open is not None:
                    self._on_open(self)
            else:
                # Answered over plain HTTP (and half-closed): the client has close_timeout
                # to close its side.
                self._arm_close_timer()
                self._fail_opening(server.handshake_exc or ConnectionClosed(None, None))
        elif type(event) is Response:
            if protocol.handshake_exc is not None:
                self._fail_opening(protocol.handshake_exc)
            elif not self.opened.done():
                self.opened.set_result(None)

    def _open_expired(self) -> None:
        self._open_timer = None
        if self.protocol.state is _CONNECTING:
            self.abort()  # a slow or idle client (slowloris): its descriptor is freed

    def _fail_opening(self, exc: BaseException) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)
            self.opened.exception()  # retrieved: a server-side failure has no awaiter

    def _wake_reader(self) -> None:
        waiter = self._recv_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _arm_close_timer(self) -> None:
        if self._close_timer is None and not self._lost:
            self._close_timer = self._loop.call_later(self.close_timeout, self.abort)

    def _closed_error(self) -> ConnectionClosed:
        protocol = self.protocol
        if protocol.state is _CLOSED:
            return protocol.close_exc
        # Closing (the peer has not closed TCP yet): what is known of the handshake.
        rcvd, sent = protocol.close_rcvd, protocol.close_sent
        if rcvd is None or sent is None:
            return ConnectionClosed(rcvd, sent)
        return ConnectionClosed(rcvd, sent, protocol.close_rcvd_then_sent)


async def connect(url: str, *, ssl: ssl_module.SSLContext | None = None,
                  max_size: int | None = 1024 * 1024, close_timeout: float = 2.0,
                  max_queue: int = 64) -> WsLink:
    """Open a websocket to ``url`` (``ws://`` or ``wss://``) and finish its handshake.

    No extensions (no compression), no websocket-level keepalive pings. Unbounded in
    time: the caller sets the deadline (cancelling aborts the connection).

    Raises:
        OSError: the server cannot be reached.
        InvalidHandshake: the server refused the upgrade (``InvalidStatus``: its status).
        ConnectionClosed: the connection dropped during the handshake.
        ValueError: ``url`` is not a websocket URL.
    """
    wsuri = parse_uri(url)
    loop = asyncio.get_running_loop()
    options: dict[str, Any] = {}
    if wsuri.secure:
        options["ssl"] = ssl if ssl is not None else ssl_module.create_default_context()
        options["server_hostname"] = wsuri.host
    _, link = await loop.create_connection(
        lambda: WsLink(ClientProtocol(wsuri, max_size=max_size),
                       close_timeout=close_timeout, max_queue=max_queue),
        wsuri.host, wsuri.port, **options)
    try:
        await link.opened
    except BaseException:
        link.abort()
        raise
    return link


async def serve(host: str, port: int, *, max_size: int | None = 1024 * 1024,
                close_timeout: float = 2.0, max_queue: int = 64,
                open_timeout: float | None = 10.0,
                on_request: Callable[[WsLink, Request], Response | None] | None = None,
                on_open: Callable[[WsLink], None],
                on_made: Callable[[WsLink], None] | None = None,
                on_lost: Callable[[WsLink], None] | None = None) -> asyncio.Server:
    """Listen for websockets (and plain HTTP, through ``on_request``) on ``host:port``.

    ``on_open`` is called, synchronously, with each link whose upgrade was accepted;
    ``on_made``/``on_lost`` with every connection as it comes and goes. A client still in
    its handshake after ``open_timeout`` seconds is dropped.
    """
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: WsLink(ServerProtocol(max_size=max_size), close_timeout=close_timeout,
                       max_queue=max_queue, on_request=on_request, on_open=on_open,
                       open_timeout=open_timeout, on_made=on_made, on_lost=on_lost),
        host, port)

