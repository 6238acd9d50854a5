"""The simulator's I/O: one websocket port that also serves the recordings over HTTP.

This driver owns no protocol logic. Per client socket it runs a reader (frames into
:meth:`SimCore.receive_frame`) and a writer (the connection's outbox onto the socket,
so a slow client never stalls anyone else); one scheduler task runs the core's timers.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import anyio
from anyio.abc import TaskGroup
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol

from flowengine.relay.wslink import WsLink, serve
from flowengine.sim.caller import CallerScript
from flowengine.sim.calls import SimCall
from flowengine.sim.core import Connection, SimCore

logger = logging.getLogger("flowengine.sim")

#: §1: the SDK's own limit; RELAY frames are small, but a play list can be long.
MAX_FRAME_BYTES = 10 * 1024 * 1024
#: The address in :attr:`Simulator.url` (and recording URLs) when it does not listen: port 0,
#: which no socket can connect to, in the form a listening simulator's URLs have.
_NOWHERE = "127.0.0.1:0"
_RECORDING_PATH = re.compile(r"/recordings/([0-9a-f]{32})\.(wav|mp3)")


#: Seconds a client has for its websocket handshake (RELAY clients need milliseconds).
HANDSHAKE_DEADLINE = 5.0
#: Sockets at once still in their handshake; one more closes the oldest. A flood of idle
#: connections (slowloris) so holds only this many descriptors.
MAX_HANDSHAKES = 64
#: At most one warning of each kind per this many seconds.
WARN_INTERVAL = 10.0
_ACCEPT_EXHAUSTED = "socket.accept() out of system resource"


def _loop_time() -> float:
    """The running event loop's clock; ``time.monotonic()`` outside a loop (the same
    clock on asyncio's own loops)."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()


class _Handshakes:
    """The sockets not yet past their websocket handshake, oldest first, and the shedding
    of them: a flood of connections, or accept() failing for want of descriptors, closes
    the oldest instead of taking the listener (or, embedded, the daemon) down."""

    def __init__(self, limit: int = MAX_HANDSHAKES) -> None:
        self.limit = limit
        self.pending: dict[WsLink, None] = {}
        self._warned = -float("inf")
        self._count = 0

    def made(self, ws: WsLink) -> None:
        self.pending[ws] = None
        if len(self.pending) > self.limit:
            self.warn(f"more than {self.limit} connections in their handshake")
            self.shed_oldest()

    def done(self, ws: WsLink) -> None:
        self.pending.pop(ws, None)

    def shed_oldest(self) -> bool:
        """Abort the oldest socket still in its handshake; False if there is none."""
        for ws in self.pending:
            del self.pending[ws]
            ws.abort()
            return True
        return False

    def warn(self, what: str) -> None:
        self._count += 1
        now = time.monotonic()
        if now - self._warned >= WARN_INTERVAL:
            logger.warning("simulator listener: %s: closing the oldest idle connections "
                           "(%d time(s) since the last such warning)", what, self._count)
            self._warned, self._count = now, 0


class _Flag:
    """A re-armable wake-up: ``set`` from sync code, ``wait`` from one task."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = anyio.Event()


def _set_when_settled(event: anyio.Event) -> Callable[[bool], None]:
    """A server-request callback that only wakes ``event`` (answered or not)."""

    def settled(_answered: bool) -> None:
        event.set()

    return settled


class _Link:
    """A live socket and its core-side :class:`Connection`."""

    def __init__(self, ws: WsLink, conn: Connection) -> None:
        self.ws = ws
        self.conn = conn
        self.flag = _Flag()
        self.done = anyio.Event()
        #: True while the writer holds frames it took from the outbox and has not sent yet.
        self.sending = False


class Simulator:
    """A local RELAY server with scripted callers (see docs/simulator.md).

    Use it as an async context manager; it listens once entered::

        async with Simulator(port=0, time_scale=0.01) as sim:
            call = sim.offer_call(context="office", caller="speak:3")
            ...   # point a RELAY client at sim.url with sim's project/token
            await call.wait_ended()

    Args:
        host, port: where to listen; ``port=0`` picks a free port.
        project, token: the credentials clients must present (``jwt_token`` = ``token``
            is accepted too).
        time_scale: every simulated duration is multiplied by it (0.001: a 30 s call
            takes 30 ms).
        resume_window: real seconds a session keeps its calls after its socket is gone.
        ping_interval: send ``signalwire.ping`` to every client this often (real
            seconds); ``None`` = only on :meth:`ping_clients`.
        record_latency: measure the time from each call event to the client's next
            command (``summary()["latency"]``; off by default).
        listen: ``False``: open no port; clients reach the simulator only through
            :meth:`server_link` (an in-memory pair, :mod:`flowengine.testing`), and
            :attr:`url` is ``ws://127.0.0.1:0``, which no socket can reach.

    The simulator's clock is its event loop's (``loop.time()``, which is
    ``time.monotonic()`` on asyncio's loops), so it follows a virtual clock too.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, project: str = "sim-project",
                 token: str = "sim-token", time_scale: float = 1.0, *,
                 resume_window: float = 30.0, ping_interval: float | None = None,
                 record_latency: bool = False, listen: bool = True) -> None:
        self.host = host
        self.port = port
        self.project = project
        self.token = token
        self.listen = listen
        self.ping_interval = ping_interval
        self.core = SimCore(project=project, token=token, time_scale=time_scale,
                            resume_window=resume_window, record_latency=record_latency,
                            clock=_loop_time)
        self._links: dict[Connection, _Link] = {}
        self._server: asyncio.Server | None = None
        self._tg: TaskGroup | None = None
        self._closing = False
        #: Every accepted socket, from its upgrade until its handler ends.
        self._sockets: set[WsLink] = set()
        self._stack: AsyncExitStack | None = None
        self._timer_flag: _Flag | None = None
        self._idle_waiters: list[anyio.Event] = []
        self._handshakes = _Handshakes()
        self._previous_handler: Any = None
        self._started = False

    def __repr__(self) -> str:
        where = self.url if self._started else "not started"
        return f"<Simulator {where} {self.core.summary()}>"

    # -- addresses -------------------------------------------------------------------------

    def _hostport(self) -> str:
        if not self._started:
            raise RuntimeError("the simulator is not running; use 'async with Simulator(...)'")
        if not self.listen:
            return _NOWHERE
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The websocket URL, ``ws://HOST:PORT`` (any path is accepted)."""
        return f"ws://{self._hostport()}"

    @property
    def http_url(self) -> str:
        """``http://HOST:PORT``: recordings are served from the same port."""
        return f"http://{self._hostport()}"

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tg.cancel_scope.cancel)  # runs before the group is exited
            self._timer_flag = _Flag()
            self.core.timers.on_earlier = self._timer_flag.set
            self.core.on_idle = self._wake_idle_waiters
            self._tg = tg
            # §1: no compression, no websocket-level pings (RELAY pings
            # in JSON-RPC), the SDK's 10 MiB frame limit. Our own I/O on websockets'
            # sans-I/O protocol (see flowengine.relay.wslink): the simulator is the peer
            # of every benchmark, so its CPU per frame matters. Sockets still in their
            # handshake are counted (and the oldest shed) by self._handshakes.
            if self.listen:
                self._server = await serve(self.host, self.port, max_size=MAX_FRAME_BYTES,
                                           **self._link_options())
                self.port = self._server.sockets[0].getsockname()[1]
                self._watch_accept_errors()
                stack.callback(self._unwatch_accept_errors)
            self._started = True
            self.core.http_url = self.http_url
            stack.push_async_callback(self._close_server)
            tg.start_soon(self._scheduler, name="sim scheduler")
            if self.ping_interval:
                tg.start_soon(self._pinger, self.ping_interval, name="sim pinger")
        except BaseException:
            await stack.__aexit__(None, None, None)
            self._server = None
            self._started = False
            raise
        self._stack = stack
        if self.listen:
            logger.info("RELAY simulator listening on %s", self.url)
        else:
            logger.debug("RELAY simulator started in memory (no port)")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        stack, self._stack = self._stack, None
        if stack is None:
            return
        try:
            leaked = self.core.shutdown()
            if leaked:
                logger.warning("%d call(s) still up at shutdown: counted as leaked", leaked)
            # Let the writers deliver the final "ended" events before the sockets close,
            # and the clients ACK them (§3): a close frame right behind the events could
            # reach a client before it read them, and a client that fails to ACK (the
            # SDK) drops the rest.
            with anyio.move_on_after(1.0, shield=True):
                while any(link.conn.outbox or link.sending or link.conn.unacked
                          for link in self._links.values()):
                    await anyio.sleep(0.005)
        finally:
            # The body's own exception is not the task group's business: passing it in
            # would come back wrapped in an ExceptionGroup. It propagates unchanged.
            await stack.__aexit__(None, None, None)

    def _watch_accept_errors(self) -> None:
        """asyncio's accept loop already survives EMFILE/ENFILE/ENOBUFS/ENOMEM (it pauses
        for a second), but reports each through the loop's exception handler: an ERROR
        with a traceback every second. For this listener: a rate-limited warning, and the
        oldest idle connection closed so the retry finds a descriptor."""
        loop = asyncio.get_running_loop()
        self._previous_handler = loop.get_exception_handler()
        loop.set_exception_handler(self._on_loop_error)

    def _unwatch_accept_errors(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.get_exception_handler() == self._on_loop_error:
            loop.set_exception_handler(self._previous_handler)

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        sock = context.get("socket")
        ours = self._server is not None and sock is not None and any(
            sock.fileno() == s.fileno() for s in self._server.sockets)
        if ours and context.get("message") == _ACCEPT_EXHAUSTED:
            exc = context.get("exception")
            self._handshakes.warn(f"accept() failed ({exc}); retrying in a second")
            self._handshakes.shed_oldest()
        elif self._previous_handler is not None:
            self._previous_handler(loop, context)
        else:
            loop.default_exception_handler(context)

    async def _close_server(self) -> None:
        server = self._server
        self._closing = True
        if server is not None:
            server.close()  # no new clients
        with anyio.move_on_after(5, shield=True):
            async with anyio.create_task_group() as tg:
                for ws in list(self._sockets):
                    tg.start_soon(ws.close, CloseCode.GOING_AWAY)
            if server is not None:
                await server.wait_closed()

    # -- tasks -----------------------------------------------------------------------------------

    async def _scheduler(self) -> None:
        """Sleep until the core's next timer, run what is due, repeat."""
        core, flag = self.core, self._timer_flag
        assert flag is not None
        while True:
            deadline = core.next_deadline()
            if deadline is None:
                await flag.wait()
            else:
                delay = deadline - _loop_time()
                if delay > 0:
                    with anyio.move_on_after(delay):
                        await flag.wait()
            core.run_due()

    async def _pinger(self, interval: float) -> None:
        while True:
            await anyio.sleep(interval)
            for conn in list(self._links):
                if conn.session is not None and not conn.closed:
                    self.core.send_ping(conn)

    def _link_options(self) -> dict[str, Any]:
        # §1: no compression, no websocket-level pings (RELAY pings in JSON-RPC); sockets
        # still in their handshake are counted (and the oldest shed) by self._handshakes.
        return {"close_timeout": 2, "open_timeout": HANDSHAKE_DEADLINE,
                "on_request": self._process_request, "on_open": self._accepted,
                "on_made": self._handshakes.made, "on_lost": self._handshakes.done}

    def server_link(self) -> WsLink:
        """The server side of one new client connection, for a transport of the caller's.

        Hand it to the transport (``connection_made``): from there it is served exactly as
        a socket accepted on the simulator's port (handshake, frames, faults).
        :func:`flowengine.testing.connector` uses it to join a client in memory.

        Raises:
            RuntimeError: the simulator is not running.
        """
        if not self._started or self._closing:
            raise RuntimeError("the simulator is not running; use 'async with Simulator(...)'")
        return WsLink(ServerProtocol(max_size=MAX_FRAME_BYTES), **self._link_options())

    def _accepted(self, ws: WsLink) -> None:
        """A websocket upgrade went through: its handler runs in the simulator's group."""
        self._handshakes.done(ws)
        tg = self._tg
        if tg is None or self._closing:
            ws.abort()  # shutting down
            return
        self._sockets.add(ws)
        tg.start_soon(self._handle, ws, name="sim client")

    async def _handle(self, ws: WsLink) -> None:
        """One client socket: a reader here, a writer beside it."""
        conn = self.core.connection_made(peer=str(ws.remote_address))
        link = _Link(ws, conn)
        conn.wake = link.flag.set
        self._links[conn] = link
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._writer, link)
                try:
                    while True:
                        self.core.receive_frame(conn, await ws.recv())
                except ConnectionClosed:
                    pass
                finally:
                    tg.cancel_scope.cancel()
        finally:
            self.core.connection_lost(conn)
            self._links.pop(conn, None)
            self._sockets.discard(ws)
            link.done.set()
            ws.abort()  # the handler is gone: nobody reads this socket any more

    async def _writer(self, link: _Link) -> None:
        conn, ws = link.conn, link.ws
        latency = self.core.latency
        try:
            while True:
                if conn.abort_requested:
                    ws.abort()  # no close frame, nothing more written
                    return
                link.sending = True
                while conn.outbox:
                    frame, tag = conn.outbox.popleft()
                    ws.send_text(frame)
                    if latency is not None and type(tag) is str:
                        latency.event_sent(tag)
                    if ws.write_paused:  # a slow client: it waits, nobody else does
                        await ws.drain()
                link.sending = False
                if conn.close_requested:
                    await ws.close()
                    return
                await link.flag.wait()
        except ConnectionClosed:
            return

    def _process_request(self, connection: WsLink, request: Request) -> Response | None:
        """Plain HTTP GETs for recordings; websocket upgrades go through untouched."""
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        match = _RECORDING_PATH.fullmatch(urlsplit(request.path).path)
        if match is None:
            return None  # the upgrade check answers 426 Upgrade Required
        recording = self.core.recording(match[1])
        if recording is None or recording.format != match[2]:
            return connection.respond(HTTPStatus.NOT_FOUND, "No such recording\n")
        body = recording.data()
        headers = Headers([("Content-Type", recording.content_type),
                           ("Content-Length", str(len(body))),
                           ("Connection", "close")])
        return Response(HTTPStatus.OK.value, HTTPStatus.OK.phrase, headers, body)

    def _wake_idle_waiters(self) -> None:
        for event in self._idle_waiters:
            event.set()
        self._idle_waiters.clear()

    # -- calls ---------------------------------------------------------------------------------

    def offer_call(self, context: str = "default", from_number: str = "+15551230000",
                   to_number: str = "+15559870000", caller: str | CallerScript | None = None,
                   *, tag: str | None = None, misrouted: bool = False) -> SimCall:
        """Place an inbound call on ``context``.

        It is offered (``calling.call.receive``) at once to a session subscribed to the
        context — round-robin between several — or queued until one subscribes.
        ``caller`` is a script (``"speak:3"``, see docs/simulator.md) or a
        :class:`CallerScript`; ``None`` is the default caller (``speak:3``).
        ``misrouted=True`` is a fault: the call goes at once to a connected session that did
        not subscribe to ``context`` (see SimCore.offer_call).

        Raises:
            CallerScriptError: the script does not parse.
        """
        return self.core.offer_call(context, from_number, to_number, caller, tag=tag,
                                    misrouted=misrouted)

    def set_callee(self, number: str | None, script: str | CallerScript | None) -> None:
        """What ``number`` does when a client's ``calling.dial`` rings it: a callee script
        (``"answer"``, ``"busy"``, ``"noanswer"``, ``"machine:6"``, ``"answer:5,speak:2"``…,
        see docs/simulator.md); ``number=None`` sets the default for the other numbers.

        Raises:
            CallerScriptError: the script does not parse.
        """
        self.core.set_callee(number, script)

    async def wait_all_ended(self, timeout: float | None = None) -> None:
        """Wait until no offered call is still up.

        Raises:
            TimeoutError: ``timeout`` (real seconds) passed first.
        """
        with anyio.fail_after(timeout):
            while self.core.active_calls:
                event = anyio.Event()
                self._idle_waiters.append(event)
                await event.wait()

    def summary(self) -> dict[str, Any]:
        """``{"offered", "ended", "by_end_reason", "leaked", "active"}`` (see SimCore.summary)."""
        return self.core.summary()

    # -- fault injection -----------------------------------------------------------------------

    async def drop_connections(self) -> None:
        """Abort every client socket (no close frame) and wait until each is seen as gone.
        Sessions stay resumable for ``resume_window``."""
        links = list(self._links.values())
        for link in links:
            link.ws.abort()
        with anyio.move_on_after(5):
            for link in links:
                await link.done.wait()

    def lose_next_reply(self, method: str) -> None:
        """The next ``method`` request is carried out, but the socket is aborted in place of
        its reply (see SimCore.lose_next_reply): the client must resume and find out."""
        self.core.lose_next_reply(method)

    def send_large_event(self, size: int) -> int:
        """An event of about ``size`` bytes to every connected session, sent again on each
        resume while it is not ACKed (see SimCore.send_large_event)."""
        return self.core.send_large_event(size)

    def delay_replies(self, seconds: float, method: str | None = None) -> None:
        """Handle requests of ``method`` (or of every method) ``seconds`` of *real* time
        late, replies and effects alike; ``seconds=0`` undoes it."""
        self.core.delay_replies(seconds, method)

    def fail_next(self, method: str, code: str = "500", message: str = "Internal error") -> None:
        """The next ``method`` request fails with ``code`` (see SimCore.fail_next)."""
        self.core.fail_next(method, code, message)

    def inject_noise(self, rate: float, *, seed: int | None = None) -> None:
        """Before each event, with probability ``rate``, a junk frame a real server never
        sends (see SimCore.inject_noise); 0 stops it."""
        self.core.inject_noise(rate, seed=seed)

    async def send_disconnect(self, restart: bool = False, timeout: float = 2.0) -> None:
        """``signalwire.disconnect`` to every client (§2.7), then close their sockets.

        Waits up to ``timeout`` for the replies, then closes; returns once every socket
        is closed. With ``restart=False`` the sessions stay resumable.
        """
        links = [link for link in self._links.values() if not link.conn.closed]
        events = []
        for link in links:
            event = anyio.Event()
            events.append(event)
            self.core.send_disconnect(link.conn, restart, _set_when_settled(event))
        with anyio.move_on_after(timeout):
            for event in events:
                await event.wait()
        for link in links:
            link.conn.close_requested = True
            link.conn.wake()
        with anyio.move_on_after(5):
            for link in links:
                await link.done.wait()

    async def ping_clients(self, timeout: float = 10.0) -> int:
        """Server ``signalwire.ping`` to every connected session (§2.5).

        Returns once every ping is answered (or its socket closed, or ``timeout`` passed)
        with the number of clients that answered.
        """
        answered = 0
        events = []
        for conn in list(self._links):
            if conn.session is None or conn.closed:
                continue
            event = anyio.Event()
            events.append(event)

            def settled(ok: bool, event: anyio.Event = event) -> None:
                nonlocal answered
                answered += ok
                event.set()

            self.core.send_ping(conn, settled)
        with anyio.move_on_after(timeout):
            for event in events:
                await event.wait()
        return answered
