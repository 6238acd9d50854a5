"""A RELAY client and the simulator joined in memory: the same stack, no socket.

:func:`transport_pair` joins two asyncio protocols with two in-memory transports, each
``write`` delivered to the peer on the next loop turn (in order, as TCP would). Over it
the client's :class:`~flowengine.relay.wslink.WsLink` (websockets' sans-I/O
``ClientProtocol``) speaks to the simulator's server-side ``WsLink``: the websocket
handshake, frames, close codes, aborts and resumes are the production code's, only the
kernel is left out. This is h11's ``ConnectionPair`` and httpcore's mock network
backend for our stack: the seam is the ``connect`` argument of
:class:`~flowengine.relay.RelayClient` (production: :func:`flowengine.relay.wslink.connect`).

Together with :class:`~flowengine.testing.clock.VirtualClockLoop` a call of an hour runs
in milliseconds, its timings exact::

    async with Simulator(listen=False) as sim:
        async with RelayClient(config_for(sim), ["office"], connect=connector(sim)) as c:
            ...
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from websockets.client import ClientProtocol
from websockets.uri import parse_uri

from flowengine.relay import RelayClient, RelayConfig
from flowengine.relay.wslink import WsLink
from flowengine.sim import Simulator

__all__ = ["Connect", "MemoryTransport", "config_for", "connector", "simulated", "transport_pair"]

#: What :class:`~flowengine.relay.RelayClient` calls to open a websocket.
Connect = Callable[..., Awaitable[WsLink]]

_ids = itertools.count(1)


class MemoryTransport(asyncio.Transport):
    """One end of an in-memory connection (see :func:`transport_pair`).

    Writes never block and never buffer (no flow control: ``pause_writing`` is never
    called). ``close`` delivers what was written, then the end of the stream, as a TCP
    FIN does; ``abort`` drops the connection at once and the peer sees a reset.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: asyncio.Protocol,
                 name: str) -> None:
        super().__init__()
        self._loop = loop
        self._protocol = protocol
        self.peer: MemoryTransport | None = None
        self._closing = False
        self._lost = False
        self._paused = False
        #: Deliveries held while reading is paused (``None``: the end of the stream).
        self._held: list[bytes | None] = []
        self._extra = {"peername": name, "sockname": name}

    # -- the writing side -------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self.peer is None or not data:
            return
        self._loop.call_soon(self.peer._deliver, bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def write_eof(self) -> None:
        if not self._closing and self.peer is not None:
            self._loop.call_soon(self.peer._deliver, None)

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self.peer is not None:
            self._loop.call_soon(self.peer._deliver, None)  # after what was written
        self._loop.call_soon(self._connection_lost, None)

    def abort(self) -> None:
        if self._lost:
            return
        self._closing = True
        self._held.clear()
        peer = self.peer
        if peer is not None:
            self._loop.call_soon(peer._connection_lost, ConnectionResetError(
                "connection reset by peer"))
        self._loop.call_soon(self._connection_lost, None)

    def is_closing(self) -> bool:
        return self._closing

    def get_write_buffer_size(self) -> int:
        return 0

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (0, 0)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        return None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self._protocol = protocol

    # -- the reading side -------------------------------------------------------------------

    def pause_reading(self) -> None:
        self._paused = True

    def resume_reading(self) -> None:
        if not self._paused:
            return
        self._paused = False
        held, self._held = self._held, []
        for item in held:
            self._loop.call_soon(self._deliver, item)

    def is_reading(self) -> bool:
        return not self._paused and not self._lost

    def _deliver(self, data: bytes | None) -> None:
        if self._lost:
            return
        if self._paused or self._held:
            self._held.append(data)
            return
        if data is not None:
            self._protocol.data_received(data)
        elif not self._protocol.eof_received():
            # As asyncio's socket transport: a protocol that does not keep the
            # half-open connection gets it closed.
            self.close()

    def _connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._closing = True
        self._held.clear()
        self._protocol.connection_lost(exc)


def transport_pair(loop: asyncio.AbstractEventLoop, client: asyncio.Protocol,
                   server: asyncio.Protocol) -> tuple[MemoryTransport, MemoryTransport]:
    """Join ``client`` and ``server`` in memory; each gets ``connection_made`` at once."""
    n = next(_ids)
    a = MemoryTransport(loop, client, f"memory-client-{n}")
    b = MemoryTransport(loop, server, f"memory-server-{n}")
    a.peer, b.peer = b, a
    server.connection_made(b)
    client.connection_made(a)
    return a, b


def connector(sim: Simulator) -> Connect:
    """A ``connect`` for :class:`~flowengine.relay.RelayClient` that reaches ``sim`` in
    memory, whatever the URL (each call is a new connection, as a reconnect is)."""

    async def connect(url: str, *, ssl: Any = None, max_size: int | None = 1024 * 1024,
                      close_timeout: float = 2.0, max_queue: int = 64) -> WsLink:
        loop = asyncio.get_running_loop()
        client = WsLink(ClientProtocol(parse_uri(url), max_size=max_size),
                        close_timeout=close_timeout, max_queue=max_queue)
        transport_pair(loop, client, sim.server_link())
        try:
            await client.opened
        except BaseException:
            client.abort()
            raise
        return client

    return connect


def config_for(sim: Simulator, **options: Any) -> RelayConfig:
    """A :class:`~flowengine.relay.RelayConfig` with ``sim``'s URL and credentials."""
    return RelayConfig(url=sim.url, project=sim.project, token=sim.token, **options)


@asynccontextmanager
async def simulated(contexts: Iterable[str], *, client_options: Mapping[str, Any] | None = None,
                    **sim_options: Any) -> AsyncIterator[tuple[Simulator, RelayClient]]:
    """A simulator (``Simulator(listen=False, **sim_options)``) and a RELAY client for
    ``contexts`` joined to it in memory; both close on leaving, the client first.

    ``client_options`` go to :class:`~flowengine.relay.RelayConfig` (``request_timeout``…).
    """
    async with Simulator(listen=False, **sim_options) as sim:
        config = config_for(sim, **dict(client_options or {}))
        async with RelayClient(config, contexts, connect=connector(sim)) as client:
            yield sim, client
