"""The I/O driver: one websocket, its :class:`RelayProtocol`, its reader and its waiters.

With :mod:`.wslink` (our websocket I/O on websockets' sans-I/O protocols), the only
module that imports ``websockets``. Its exceptions are mapped to
:class:`~flowengine.relay.errors.ConnectionLost` here, so nothing above sees them.

One :class:`RelayConnection` lives as long as one websocket. The client makes a new
one for every reconnect and hands it the previous session's :class:`Resume`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from ssl import SSLContext
from typing import Any

import anyio
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.frames import CloseCode

from .errors import ConnectionLost, RelayError, RequestTimeout
from .events import ConnectResult, Event, RequestFailed, RequestSucceeded
from .protocol import CONNECT_METHOD, OPEN, RelayProtocol, Resume, mask_secrets
from .wslink import CoalescingTransport, WsLink, connect

__all__ = ["MAX_FRAME_SIZE", "CoalescingTransport", "Deadlines", "LinkOpener", "RelayConnection",
           "backoff", "open_connection"]

logger = logging.getLogger("flowengine.relay")
_DEBUG = logging.DEBUG

#: §1: the official SDK's limit on one frame.
MAX_FRAME_SIZE = 10 * 1024 * 1024
#: How long closing a websocket may take before the TCP connection is aborted.
_CLOSE_TIMEOUT = 2.0
#: Errors that mean "the transport is gone" at this boundary.
_TRANSPORT_ERRORS = (OSError, WebSocketException)


def backoff(initial: float = 1.0, maximum: float = 30.0, factor: float = 2.0) -> Iterator[float]:
    """Reconnect delays: ``initial``, doubled each time, capped at ``maximum`` (§2.8).

    A plain generator (policy only): the caller sleeps.
    """
    delay = initial
    while True:
        yield min(delay, maximum)
        delay = min(delay * factor, maximum)


#: Opens one websocket: ``await connect(url, ssl=…, max_size=…, close_timeout=…)`` returns
#: the open link (:func:`.wslink.connect` has this signature).
LinkOpener = Callable[..., Awaitable[WsLink]]


class _Waiter:
    """One request waiting for its reply: a future to wake its one task, plus a result slot.

    A bare asyncio future rather than an ``anyio.Event``: the Event wraps an
    ``asyncio.Event`` with a 0.6 KB deque of waiters, three objects for the cyclic GC
    per request where one does (the relay runs on anyio's asyncio backend only, as
    websockets' asyncio API does). Cancellation reaches the awaiting task as usual.
    """

    __slots__ = ("conn", "deadline", "error", "future", "method", "request_id", "result",
                 "settled")

    def __init__(self, conn: RelayConnection, request_id: str, method: str,
                 future: asyncio.Future[None]) -> None:
        self.conn = conn
        self.request_id = request_id
        self.method = method
        self.future = future
        self.settled = False
        self.result: dict[str, Any] | None = None
        self.error: RelayError | None = None
        self.deadline = 0.0

    def settle(self, result: dict[str, Any] | None, error: RelayError | None) -> None:
        self.result, self.error = result, error
        self.settled = True
        if not self.future.done():
            self.future.set_result(None)


class Deadlines:
    """The deadlines of requests, enforced by one task instead of a cancel scope each.

    Every request gets the same timeout, so deadlines are added in increasing order and
    an insertion-ordered dict is already sorted: adding and removing are O(1), and
    :meth:`run` sleeps until the oldest. (A cancel scope per request cost about a tenth of
    the client's CPU per call.) A request leaves as soon as it is settled, so only the
    requests still waiting are held: a FIFO that let settled ones wait for the oldest's
    deadline held every request (and its reply) of the last ``timeout`` seconds, 60 MB at
    1,500 calls a second.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._pending: dict[_Waiter, None] = {}
        self._added = anyio.Event()

    def add(self, waiter: _Waiter) -> None:
        waiter.deadline = anyio.current_time() + self.timeout
        if not self._pending:
            self._added.set()
        self._pending[waiter] = None

    def discard(self, waiter: _Waiter) -> None:
        """The request is settled (or abandoned): its deadline no longer matters."""
        self._pending.pop(waiter, None)

    async def run(self, on_expired: Callable[[str], None]) -> None:
        """Fail each request still waiting at its deadline with RequestTimeout (§2.6)."""
        pending = self._pending
        while True:
            if not pending:
                self._added = anyio.Event()
                await self._added.wait()
                continue
            waiter = next(iter(pending))
            if waiter.settled:
                del pending[waiter]
                continue
            delay = waiter.deadline - anyio.current_time()
            if delay > 0:
                await anyio.sleep(delay)
                continue
            del pending[waiter]
            waiter.conn.forget(waiter)
            waiter.settle(None, RequestTimeout.for_method(waiter.method))
            on_expired(waiter.method)


class RelayConnection:
    """One websocket to RELAY, after its ``signalwire.connect`` was accepted.

    Args:
        ws: the open websocket.
        proto: its protocol core.
        on_event: called, synchronously and in order, with every event that is not a
            reply (calls, pings, disconnects, violations). It must not block.
        on_unusable: called once, synchronously, when the connection stops taking
            requests (the server asked to disconnect, or the link is gone).
    """

    def __init__(
        self,
        ws: WsLink,
        proto: RelayProtocol,
        on_event: Callable[[Event], None],
        on_unusable: Callable[[RelayConnection], None],
    ) -> None:
        self.ws = ws
        self.proto = proto
        self.waiters: dict[str, _Waiter] = {}
        self._on_event = on_event
        self._on_unusable = on_unusable
        self._usable = True
        self._loop = asyncio.get_running_loop()
        #: True once the link ended because the server sent a frame over the size limit
        #: (we closed it with 1009): a server that does it once will likely do it again.
        self.frame_too_big = False

    @property
    def accepting(self) -> bool:
        """True while requests may be sent on this connection."""
        return self._usable and self.proto.state is OPEN

    async def request(self, method: str, params: Mapping[str, Any],
                      deadlines: Deadlines | None = None) -> dict[str, Any]:
        """Send one request on this link and wait for its reply.

        Args:
            deadlines: enforces the request's deadline; ``None``: the caller does.

        Raises:
            RelayError: the server answered with an error or a non-2xx code.
            RequestTimeout: no reply before the deadline (with ``deadlines``).
            ConnectionLost: the link is closing, or dropped before the reply.
        """
        if not self.accepting:
            raise ConnectionLost(-1, method, "Connection closed")
        request_id, frame = self.proto.send_request(method, params)
        waiter = _Waiter(self, request_id, method, self._loop.create_future())
        self.waiters[request_id] = waiter
        if deadlines is not None:
            deadlines.add(waiter)
        try:
            if logger.isEnabledFor(_DEBUG):
                logger.debug("> %s", frame)
            try:
                ws = self.ws
                ws.send_text(frame)
                if ws.write_paused:  # a slow server: wait rather than buffer without end
                    await ws.drain()
            except _TRANSPORT_ERRORS:
                # The link is gone though the reader has not seen it yet: from now on
                # requests wait for the next link instead of failing here too.
                self._mark_unusable()
                raise ConnectionLost(-1, method, "Connection closed") from None
            del frame  # sent: not held while the reply is awaited
            await waiter.future
        finally:
            if deadlines is not None:
                deadlines.discard(waiter)
            if not waiter.settled:
                # Cancelled, or the send failed: drop a late reply.
                self.forget(waiter)
                waiter.settled = True
        if waiter.error is not None:
            raise waiter.error
        assert waiter.result is not None
        return waiter.result

    def forget(self, waiter: _Waiter) -> None:
        """Stop waiting for a reply: a late one is dropped silently."""
        if self.waiters.pop(waiter.request_id, None) is not None:
            self.proto.abandon(waiter.request_id)

    async def handshake(self, auth: Mapping[str, str], contexts: Sequence[str],
                        resume: Resume | None) -> ConnectResult:
        """Send ``signalwire.connect`` and read until its reply (before any reader runs).

        Raises:
            RelayError: the server rejected the connect (code and message are its own).
            ConnectionLost: the link dropped first.
        """
        request_id, frame = self.proto.connect(auth, contexts, resume)
        if logger.isEnabledFor(_DEBUG):
            logger.debug("> %s", mask_secrets(frame))  # the token never reaches a log
        try:
            await self.ws.send(frame)
            while True:
                events = self._receive(await self.ws.recv())
                await self._flush()  # §3: ACK before processing
                for event in events:
                    if type(event) is ConnectResult:
                        return event
                    if type(event) is RequestFailed and event.id == request_id:
                        raise RelayError(event.code, CONNECT_METHOD, event.message)
                    self._on_event(event)  # e.g. a call offered before the reply
        except _TRANSPORT_ERRORS:
            raise ConnectionLost(-1, CONNECT_METHOD,
                                 "the server closed the link during signalwire.connect"
                                 ) from None

    async def run(self, closing_grace: float) -> None:
        """The reader: receive frames until the link ends, then fail pending requests.

        Args:
            closing_grace: after ``signalwire.disconnect``, how long to wait for the
                server to close the link (§2.7) before closing it ourselves.
        """
        ws = self.ws
        try:
            while self.proto.state is OPEN:
                events = self._receive(await ws.recv())
                await self._ack_then_dispatch(events)
            # §2.7: the server closes the link after a disconnect; in-flight replies may
            # still arrive meanwhile. If it does not close it in time, we do.
            with anyio.move_on_after(closing_grace):
                while True:
                    events = self._receive(await ws.recv())
                    await self._ack_then_dispatch(events)
        except _TRANSPORT_ERRORS as exc:
            if (isinstance(exc, ConnectionClosed) and exc.sent is not None
                    and exc.sent.code == CloseCode.MESSAGE_TOO_BIG):
                self.frame_too_big = True
            logger.info("= link closed: %s", exc)
            # What the server sent before it closed the link is still ours: a call's last
            # events (its "ended") often come just before a close.
            with anyio.move_on_after(_CLOSE_TIMEOUT):
                try:
                    while True:
                        self._dispatch(self._receive(await ws.recv()))
                except _TRANSPORT_ERRORS:
                    pass
        finally:
            self._mark_unusable()
            for event in self.proto.receive_eof():
                if type(event) is RequestFailed:
                    waiter = self.waiters.pop(event.id, None)
                    if waiter is not None:
                        waiter.settle(None, ConnectionLost(-1, event.method, event.message))
            await self.close()

    async def _ack_then_dispatch(self, events: list[Event]) -> None:
        try:
            await self._flush()  # §3: ACK before processing
        except _TRANSPORT_ERRORS:
            # The link closed under the ACK: the events arrived all the same.
            self._dispatch(events)
            raise
        self._dispatch(events)

    def abort(self) -> None:
        """Drop the link at once (no closing handshake): the peer stopped answering."""
        self._mark_unusable()
        self.ws.abort()

    async def close(self) -> None:
        """Close the websocket, bounded in time and safe to call during cancellation."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_TIMEOUT) as scope:
            await self.ws.close()
        if scope.cancelled_caught:
            self.abort()

    # ----------------------------------------------------------------- internal

    def _receive(self, text: str | bytes) -> list[Event]:
        if logger.isEnabledFor(_DEBUG):
            logger.debug("< %s", mask_secrets(text if isinstance(text, str)
                                              else text.decode("utf-8", "replace")))
        events = self.proto.receive_frame(text)
        if self._usable and self.proto.state is not OPEN:
            self._mark_unusable()  # a disconnect: stop sending before we even ACK it
        return events

    async def _flush(self) -> None:
        ws = self.ws
        for frame in self.proto.frames_to_send():
            if logger.isEnabledFor(_DEBUG):
                logger.debug("> %s", frame)
            ws.send_text(frame)
        if ws.write_paused:
            await ws.drain()

    def _dispatch(self, events: list[Event]) -> None:
        for event in events:
            if type(event) is RequestSucceeded:
                waiter = self.waiters.pop(event.id, None)
                if waiter is not None:
                    waiter.settle(event.result, None)
            elif type(event) is RequestFailed:
                waiter = self.waiters.pop(event.id, None)
                if waiter is not None:
                    waiter.settle(None, RelayError(event.code, event.method, event.message))
            else:
                try:
                    self._on_event(event)
                except Exception:
                    # A bug in handling one event must not take the link, and every call
                    # on it, down with the reader: log it and go on with the next frame.
                    logger.exception("! could not handle %s; the link goes on",
                                     type(event).__name__)

    def _mark_unusable(self) -> None:
        if self._usable:
            self._usable = False
            self._on_unusable(self)


async def open_connection(
    url: str,
    *,
    ssl: SSLContext | None,
    auth: Mapping[str, str],
    contexts: Sequence[str],
    resume: Resume | None,
    timeout: float,
    on_event: Callable[[Event], None],
    on_unusable: Callable[[RelayConnection], None],
    max_size: int = MAX_FRAME_SIZE,
    connect: LinkOpener = connect,
) -> tuple[RelayConnection, ConnectResult]:
    """Open a websocket to ``url`` and authenticate on it, all within ``timeout``.

    ``max_size``: the largest frame taken from the server (bytes). ``connect``: opens the
    websocket (:func:`.wslink.connect`: a TCP or TLS socket; tests join the simulator
    in memory instead, see :mod:`flowengine.testing`).

    Returns:
        the connection (its reader not started yet: call :meth:`RelayConnection.run`)
        and the connect result.

    Raises:
        RelayError: the server rejected ``signalwire.connect``.
        RequestTimeout: no connect result within ``timeout``.
        ConnectionLost: the server could not be reached, or the link dropped.
    """
    try:
        with anyio.fail_after(timeout):
            try:
                # No compression (§1: deflate costs CPU and memory), no websocket-level
                # pings (liveness is JSON-RPC pings); the deadline above covers it all.
                ws = await connect(url, ssl=ssl, max_size=max_size,
                                   close_timeout=_CLOSE_TIMEOUT)
            except (*_TRANSPORT_ERRORS, ValueError) as exc:
                raise ConnectionLost(-1, CONNECT_METHOD, f"cannot reach {url}: {exc}") from None
            conn = RelayConnection(ws, RelayProtocol(), on_event, on_unusable)
            try:
                result = await conn.handshake(auth, contexts, resume)
            except BaseException:
                await conn.close()
                raise
    except TimeoutError:
        raise RequestTimeout.for_method(CONNECT_METHOD) from None
    return conn, result
