"""An asyncio event loop on virtual time: the clock jumps to the next timer when idle.

``loop.time()`` starts at 0 and advances only when every task is waiting: instead of
sleeping until its next timer, the loop moves its clock to that timer's deadline and
runs it. An hour of simulated calls takes the CPU time of its callbacks, and every
duration measured on ``loop.time()`` (``anyio.current_time()``, ``asyncio.sleep``,
``anyio.fail_after``, the simulator's timers) is exact and independent of machine load.
It is trio's ``MockClock(autojump_threshold=0)`` for asyncio, which the engine, the RELAY
client and the simulator use directly (so anyio's trio backend is not an option).

Real I/O still works — the loop is a normal selector loop underneath — but time does not
wait for it unless the loop can see it is in flight:

* a thread started with ``loop.run_in_executor`` (``getaddrinfo``, ``asyncio.to_thread``)
  freezes the clock until it finishes (its work then takes no virtual time);
* while a real socket connection is open or connecting, an idle loop first waits up to
  :attr:`VirtualClockLoop.io_grace` *real* seconds for it before jumping, so a local
  HTTP exchange (a webhook receiver in the same process) is never overtaken by a timeout.

Threads started otherwise (``anyio.to_thread``) are not seen: the clock may jump while
they run. Code under test that reads ``time.monotonic()`` directly does not see virtual
time; everything in flowengine reads the loop's clock.
"""

from __future__ import annotations

import asyncio
import selectors
import socket
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Executor
from typing import Any, TypeVar, TypeVarTuple

__all__ = ["VirtualClockLoop", "run"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class _AutojumpSelector(selectors.BaseSelector):
    """The loop's selector, with ``select(timeout)`` turned into a clock jump when idle."""

    def __init__(self, selector: selectors.BaseSelector, loop: VirtualClockLoop) -> None:
        self._selector = selector
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        loop = self._loop
        ready = self._selector.select(0)
        if ready or timeout == 0:
            return ready
        if loop.threads_in_flight:
            # A thread's result wakes the loop through its self-pipe; until then virtual
            # time stands still.
            return self._selector.select(timeout if timeout is None else min(timeout, 0.05))
        if timeout is None:
            # Nothing is scheduled: only real I/O or another thread can wake the loop.
            return self._selector.select(None)
        if loop.real_io_in_flight():
            ready = self._selector.select(min(timeout, loop.io_grace))
            if ready:
                return ready
        loop.advance(timeout)
        return []

    # The rest is the real selector's.
    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._selector.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._selector.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._selector.modify(fileobj, events, data)

    def close(self) -> None:
        self._selector.close()

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._selector.get_key(fileobj)

    def get_map(self) -> Any:
        return self._selector.get_map()


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose ``time()`` is virtual and jumps when the loop is idle.

    Use it as the ``loop_factory`` of :class:`asyncio.Runner`, of ``anyio.run``
    (``backend_options={"loop_factory": VirtualClockLoop}``) or of anyio's pytest plugin
    (see docs/testing.md), or through :func:`run`.

    Attributes:
        io_grace: real seconds an idle loop waits for a real socket in flight before it
            jumps (see the module's docstring).
        jumps: how many times the clock jumped (for benchmarks and curiosity).
    """

    def __init__(self, selector: selectors.BaseSelector | None = None) -> None:
        super().__init__(_AutojumpSelector(selector or selectors.DefaultSelector(), self))
        self._now = 0.0
        self.io_grace = 0.05
        self.jumps = 0
        self.threads_in_flight = 0
        self._connecting = 0
        self._real_transports: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()

    def time(self) -> float:
        """The virtual time, in seconds since the loop was made."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (what an idle loop does by itself)."""
        if seconds > 0:
            self._now += seconds
            self.jumps += 1

    def real_io_in_flight(self) -> bool:
        """True while a real socket connection is open or connecting."""
        return self._connecting > 0 or any(not t.is_closing() for t in self._real_transports)

    # -- what the loop must know about real I/O ---------------------------------------------

    def _make_socket_transport(self, sock: socket.socket, protocol: asyncio.BaseProtocol,
                               waiter: asyncio.Future[Any] | None = None, *,
                               extra: dict[str, Any] | None = None,
                               server: Any = None) -> asyncio.Transport:
        transport: asyncio.Transport = super()._make_socket_transport(  # type: ignore[misc]
            sock, protocol, waiter, extra=extra, server=server)
        self._real_transports.add(transport)
        return transport

    async def sock_connect(self, sock: socket.socket, address: Any) -> None:
        self._connecting += 1
        try:
            await super().sock_connect(sock, address)
        finally:
            self._connecting -= 1

    def run_in_executor(self, executor: Executor | None, func: Callable[[*Ts], T],
                        *args: *Ts) -> asyncio.Future[T]:
        future = super().run_in_executor(executor, func, *args)
        self.threads_in_flight += 1

        def done(_: asyncio.Future[T]) -> None:
            self.threads_in_flight -= 1

        future.add_done_callback(done)
        return future


def run(main: Callable[..., Coroutine[Any, Any, T]] | Awaitable[T], *args: Any) -> T:
    """Run ``main(*args)`` (or the awaitable ``main``) to completion on a fresh
    :class:`VirtualClockLoop`, as :func:`asyncio.run` does on a real one."""
    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        if callable(main):
            return runner.run(main(*args))
        async def wrapped() -> T:
            return await main
        return runner.run(wrapped())
