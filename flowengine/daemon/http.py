"""A tiny HTTP/1.1 responder for ``/metrics`` and ``/healthz``, on an anyio TCP listener.

It answers ``GET`` and ``HEAD`` with one response and closes the connection: enough for
Prometheus, curl and health probes, with no thread and no web framework. Each request has
a deadline, so a client that connects and says nothing cannot hold a task for long.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from http import HTTPStatus
from urllib.parse import urlsplit

import anyio
from anyio.abc import Listener, SocketAttribute, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

__all__ = ["Response", "Route", "bound_port", "open_http", "serve_http"]

logger = logging.getLogger("flowengine.daemon.http")

#: (status, Content-Type, body)
Response = tuple[int, str, bytes]
#: Builds the response for one path; called on the event loop, so it must be quick.
Route = Callable[[], Response]

#: Seconds a client has to send its request head.
REQUEST_DEADLINE = 5.0
MAX_HEAD = 16 * 1024


async def open_http(host: str, port: int) -> Listener[SocketStream]:
    """Bind the endpoint's address (``port=0``: any free port).

    Raises:
        OSError: the address cannot be bound (the port is taken, …).
    """
    return await anyio.create_tcp_listener(local_host=host, local_port=port)


def bound_port(listener: Listener[SocketStream]) -> int:
    """The port a listener from :func:`open_http` is bound to."""
    return int(listener.extra(SocketAttribute.local_port))


async def serve_http(listener: Listener[SocketStream], routes: Mapping[str, Route]) -> None:
    """Answer requests on ``listener`` with ``routes`` (path → builder) until cancelled."""

    async def handle(stream: SocketStream) -> None:
        try:
            await _respond(stream, routes)
        except Exception as exc:  # noqa: BLE001 - a client gone away must not stop the server
            logger.debug("HTTP request failed: %r", exc)

    async with listener:
        await listener.serve(handle)


async def _respond(stream: SocketStream, routes: Mapping[str, Route]) -> None:
    async with stream:
        buffered = BufferedByteReceiveStream(stream)
        try:
            with anyio.fail_after(REQUEST_DEADLINE):
                head = await buffered.receive_until(b"\r\n\r\n", MAX_HEAD)
        except (TimeoutError, anyio.IncompleteRead, anyio.DelimiterNotFound,
                anyio.EndOfStream, anyio.BrokenResourceError):
            return
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
        await stream.send(data if method == "HEAD" else data + body)
