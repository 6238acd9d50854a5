"""The API's HTTP server: uvicorn, run as one task of ``serve``'s event loop.

uvicorn's :class:`uvicorn.Server` normally installs its own SIGINT/SIGTERM handlers; the
daemon owns the signals (a SIGTERM drains the calls), so :class:`_Server` installs none,
and the daemon stops it with :meth:`ApiServer.stop`. The socket is bound by us before the
daemon connects to RELAY, so a taken port is reported at once and port 0 gives a free one.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
from collections.abc import Iterator

import anyio
import uvicorn
from anyio.abc import TaskStatus
from starlette.types import ASGIApp

__all__ = ["ApiServer", "is_loopback"]

logger = logging.getLogger("flowengine.api")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The daemon's signal handlers stay in place: it stops us itself.
        yield


class ApiServer:
    """uvicorn serving ``app`` on ``host``:``port`` (0: any free port, see :attr:`port`)."""

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._sock: socket.socket | None = None
        self._server: _Server | None = None

    def bind(self) -> int:
        """Bind and listen (OSError when the address is taken); the bound port."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self.port = sock.getsockname()[1]
        return self.port

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until :meth:`stop` (or cancelled)."""
        if self._sock is None:
            self.bind()
        assert self._sock is not None
        config = uvicorn.Config(
            self.app, http="h11", lifespan="off", log_config=None, access_log=False,
            server_header=False, timeout_keep_alive=5, limit_concurrency=1000,
            timeout_graceful_shutdown=5, h11_max_incomplete_event_size=16 * 1024)
        self._server = _Server(config)
        task_status.started()
        try:
            await self._server.serve(sockets=[self._sock])
        finally:
            self._sock.close()

    def stop(self) -> None:
        """Stop taking requests; the requests in flight get up to 5 s."""
        if self._server is not None:
            self._server.should_exit = True
