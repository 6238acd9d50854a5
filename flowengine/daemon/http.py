"""A tiny HTTP/1.1 responder for ``/metrics`` and ``/healthz``, on an anyio TCP listener.

It answers ``GET`` and ``HEAD`` with one response and closes the connection: enough for
Prometheus, curl and health probes, with no thread and no web framework.

The listener never ends the daemon: the calls must not depend on the HTTP side. So it
sheds load instead of failing. Each connection has a deadline for its request head and
one for its response, so a client that connects and says nothing (slowloris) cannot hold
a descriptor for long; at most ``max_connections`` are open at once, and one more closes
the oldest that has not sent its request yet (or, when every one is being answered, is
refused); when ``accept()`` fails for want of resources (EMFILE, ENFILE, ENOBUFS, ENOMEM)
the oldest idle connection is closed and the loop backs off briefly, then goes on. Each
kind of trouble logs one warning per ``WARN_INTERVAL`` seconds at most, with a count.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import cast
from urllib.parse import urlsplit

import anyio
import anyio.lowlevel
from anyio.abc import Listener, SocketAttribute, SocketListener, SocketStream, TaskGroup
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.stapled import MultiListener

__all__ = ["Response", "Route", "bound_port", "open_http", "serve_http"]

logger = logging.getLogger("flowengine.daemon.http")

#: (status, Content-Type, body)
Response = tuple[int, str, bytes]
#: Builds the response for one path; called on the event loop, so it must be quick.
Route = Callable[[], Response]

#: Seconds a client has to send its request head.
REQUEST_DEADLINE = 5.0
#: Seconds a client has to take the response (one that never reads cannot hold a task).
SEND_DEADLINE = 10.0
MAX_HEAD = 16 * 1024
#: Connections open at once; Prometheus and probes need a handful, so this only bounds
#: a flood, well below the 1,024 descriptors a process gets by default.
MAX_CONNECTIONS = 128
#: accept() errors that mean "no resources now", not "this listener is broken".
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: First and longest pause after such an error (doubling in between).
BACKOFF_MIN = 0.05
BACKOFF_MAX = 1.0
#: At most one warning of each kind per this many seconds.
WARN_INTERVAL = 10.0
#: Pause before an accept loop that failed in an unforeseen way starts again.
RESTART_DELAY = 1.0


async def open_http(host: str, port: int) -> Listener[SocketStream]:
    """Bind the endpoint's address (``port=0``: any free port).

    Raises:
        OSError: the address cannot be bound (the port is taken, …).
    """
    return await anyio.create_tcp_listener(local_host=host, local_port=port)


def bound_port(listener: Listener[SocketStream]) -> int:
    """The port a listener from :func:`open_http` is bound to."""
    return int(listener.extra(SocketAttribute.local_port))


class _RateLimitedWarning:
    """A warning logged at most once per ``interval`` seconds, with the count in between."""

    def __init__(self, text: str, interval: float = WARN_INTERVAL) -> None:
        self._text = text
        self._interval = interval
        self._last = -float("inf")
        self._count = 0

    def __call__(self, detail: str) -> None:
        self._count += 1
        now = time.monotonic()
        if now - self._last >= self._interval:
            logger.warning("%s (%d time(s) since the last such warning; now: %s)",
                           self._text, self._count, detail)
            self._last, self._count = now, 0


class _Connection:
    """One accepted connection: its task's cancel scope and whether it is still idle
    (its request head not read yet), the only kind that is shed."""

    __slots__ = ("idle", "scope")

    def __init__(self) -> None:
        self.scope = anyio.CancelScope()
        self.idle = True


class _Server:
    """The accept loops of one listener and the connections they opened."""

    def __init__(self, routes: Mapping[str, Route], max_connections: int) -> None:
        self.routes = routes
        self.max_connections = max(1, max_connections)
        #: Insertion order = age: the first idle one is the oldest.
        self.open: dict[_Connection, None] = {}
        self.warn_full = _RateLimitedWarning(
            f"HTTP endpoint: more than {self.max_connections} connections at once; "
            "closing the oldest idle ones")
        self.warn_exhausted = _RateLimitedWarning(
            "HTTP endpoint: accept() failed for want of resources; shedding idle "
            "connections and backing off (raise LimitNOFILE, see docs/daemon.md)")

    def shed_oldest_idle(self) -> bool:
        """Close the oldest idle connection; False if none is idle."""
        for conn in self.open:
            if conn.idle:
                conn.idle = False  # shed once
                conn.scope.cancel()
                return True
        return False

    async def accept_loop(self, listener: SocketListener, tg: TaskGroup) -> None:
        """Accept until the listener is closed or the loop cancelled; only a closed
        listener ends it, and nothing it meets propagates."""
        while True:
            try:
                await self._accept(listener, tg)
                return
            except Exception as exc:  # the HTTP side must never end the daemon
                logger.error("HTTP endpoint: the accept loop failed (%r); restarting it", exc)
                await anyio.sleep(RESTART_DELAY)

    async def _accept(self, listener: SocketListener, tg: TaskGroup) -> None:
        backoff = BACKOFF_MIN
        while True:
            try:
                stream = await listener.accept()
            except (anyio.ClosedResourceError, anyio.EndOfStream):
                return
            except (OSError, anyio.BrokenResourceError) as exc:
                cause = exc if isinstance(exc, OSError) else exc.__cause__
                code = cause.errno if isinstance(cause, OSError) else None
                if code not in _EXHAUSTED:
                    # ECONNABORTED and friends: that client is gone, the listener is fine.
                    logger.debug("HTTP endpoint: accept() failed: %r", exc)
                    await anyio.lowlevel.checkpoint()
                    continue
                self.warn_exhausted(f"{errno.errorcode.get(code, code)}, "
                                    f"{len(self.open)} connection(s) open")
                self.shed_oldest_idle()
                # The shed task closes its socket while this one sleeps; the pending
                # connections wait in the kernel's backlog meanwhile.
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            backoff = BACKOFF_MIN
            if len(self.open) >= self.max_connections and not self.shed_oldest_idle():
                self.warn_full("every connection is being answered: refused a new one")
                tg.start_soon(_close, stream)
                continue
            if len(self.open) >= self.max_connections:
                self.warn_full(f"{len(self.open)} open")
            conn = _Connection()
            self.open[conn] = None
            tg.start_soon(self._handle, conn, stream)

    async def _handle(self, conn: _Connection, stream: SocketStream) -> None:
        try:
            with conn.scope:
                await _respond(stream, self.routes, conn)
        except Exception as exc:  # a client gone away must not stop the server
            logger.debug("HTTP request failed: %r", exc)
        finally:
            self.open.pop(conn, None)


async def _close(stream: SocketStream) -> None:
    with anyio.CancelScope(shield=True):
        try:
            await stream.aclose()
        except Exception as exc:  # a refused client's socket: nothing to do
            logger.debug("closing a refused HTTP connection failed: %r", exc)


async def serve_http(listener: Listener[SocketStream], routes: Mapping[str, Route], *,
                     max_connections: int = MAX_CONNECTIONS) -> None:
    """Answer requests on ``listener`` with ``routes`` (path → builder) until cancelled.

    It never raises (short of cancellation): a flood of connections, idle ones, or a lack
    of descriptors or memory are met by shedding connections (see the module's doc), so
    a task group that runs it is never ended by the HTTP side.
    """
    server = _Server(routes, max_connections)
    # The accept loops are ours (anyio's serve() lets an accept() error end its group).
    listeners = list(listener.listeners) if isinstance(listener, MultiListener) else [listener]
    if not all(isinstance(one, SocketListener) for one in listeners):
        raise TypeError("serve_http needs a TCP listener from open_http")
    async with listener, anyio.create_task_group() as tg:
        for one in listeners:
            tg.start_soon(server.accept_loop, cast(SocketListener, one), tg)


async def _respond(stream: SocketStream, routes: Mapping[str, Route],
                   conn: _Connection | None = None) -> None:
    async with stream:
        buffered = BufferedByteReceiveStream(stream)
        try:
            with anyio.fail_after(REQUEST_DEADLINE):
                head = await buffered.receive_until(b"\r\n\r\n", MAX_HEAD)
        except (TimeoutError, anyio.IncompleteRead, anyio.DelimiterNotFound,
                anyio.EndOfStream, anyio.BrokenResourceError):
            return
        if conn is not None:
            conn.idle = False
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        method = parts[0] if parts else ""
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            response: Response = (400, "text/plain; charset=utf-8", b"bad request\n")
        elif method not in ("GET", "HEAD"):
            response = (405, "text/plain; charset=utf-8", b"only GET and HEAD\n")
        else:
            route = routes.get(urlsplit(parts[1]).path)
            if route is None:
                known = " ".join(sorted(routes))
                response = (404, "text/plain; charset=utf-8", f"not found; try {known}\n".encode())
            else:
                try:
                    response = route()
                except Exception:
                    logger.exception("building the response to %s failed", parts[1])
                    response = (500, "text/plain; charset=utf-8", b"internal error\n")
        status, content_type, body = response
        headers = [
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
            "Cache-Control: no-store",
            "Connection: close",
        ]
        if status == 405:
            headers.append("Allow: GET, HEAD")
        data = ("\r\n".join(headers) + "\r\n\r\n").encode("latin-1")
        with anyio.move_on_after(SEND_DEADLINE):
            await stream.send(data if method == "HEAD" else data + body)
