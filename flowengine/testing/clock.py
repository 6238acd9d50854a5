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
* while bytes are under way on a real socket (connecting, or bytes in asyncio's write
  buffer or the kernel's queues: unread, unsent, unacknowledged), an idle loop first waits
  for them, up to :attr:`VirtualClockLoop.io_grace` *real* seconds, before jumping, so a
  local HTTP exchange (a webhook receiver in the same process) is never overtaken by a
  timeout; a connection made less than ``io_grace`` ago counts as busy (its peer may be a
  thread still writing its request); an idle open connection costs nothing.

Threads started otherwise (``anyio.to_thread``) are not seen: the clock may jump while
they run. Code under test that reads ``time.monotonic()`` directly does not see virtual
time; everything in flowengine reads the loop's clock.
"""

from __future__ import annotations

import array
import asyncio
import fcntl
import selectors
import socket
import termios
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Executor
from typing import Any, TypeVar, TypeVarTuple

__all__ = ["VirtualClockLoop", "run"]

#: Real seconds an idle loop sleeps between two looks at the bytes in flight.
_SLICE = 0.001


def _kernel_queues(fd: int) -> bool:
    """True when the kernel holds bytes for socket ``fd``: received and not read, or sent
    and not acknowledged (``FIONREAD``/``TIOCOUTQ``, Linux); True when it cannot tell."""
    buffer = array.array("i", [0])
    try:
        for request in (termios.FIONREAD, termios.TIOCOUTQ):
            fcntl.ioctl(fd, request, buffer, True)
            if buffer[0]:
                return True
    except (OSError, AttributeError):
        return True
    return False

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
            # Bytes still on their way between real sockets: wait for them (in short real
            # slices, as long as they are under way, at most io_grace), then jump anyway.
            give_up = time.perf_counter() + min(timeout, loop.io_grace)
            while True:
                ready = self._selector.select(_SLICE)
                if ready:
                    return ready
                if time.perf_counter() >= give_up or not loop.real_io_in_flight():
                    break
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
        #: Open real socket transports, with the real instant each was made.
        self._real_transports: weakref.WeakKeyDictionary[asyncio.Transport, float] = (
            weakref.WeakKeyDictionary())

    def time(self) -> float:
        """The virtual time, in seconds since the loop was made."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (what an idle loop does by itself)."""
        if seconds > 0:
            self._now += seconds
            self.jumps += 1

    def real_io_in_flight(self) -> bool:
        """True while bytes may be under way on a real socket: one is connecting, or an open
        one has bytes in asyncio's write buffer or in the kernel's queues (unread, unsent or
        not yet acknowledged by the peer), or was made less than ``io_grace`` ago. An idle
        open connection is not in flight."""
        if self._connecting > 0:
            return True
        young = time.perf_counter() - self.io_grace
        for transport, made in list(self._real_transports.items()):
            if transport.is_closing():
                continue
            # A connection just made (accepted from a client that is still writing its
            # first request, maybe from a thread) counts as busy for io_grace.
            if made > young or transport.get_write_buffer_size():
                return True
            sock = transport.get_extra_info("socket")
            if sock is None or _kernel_queues(sock.fileno()):
                return True
        return False

    # -- what the loop must know about real I/O ---------------------------------------------

    def _make_socket_transport(self, sock: socket.socket, protocol: asyncio.BaseProtocol,
                               waiter: asyncio.Future[Any] | None = None, *,
                               extra: dict[str, Any] | None = None,
                               server: Any = None) -> asyncio.Transport:
        transport: asyncio.Transport = super()._make_socket_transport(  # type: ignore[misc]
            sock, protocol, waiter, extra=extra, server=server)
        self._real_transports[transport] = time.perf_counter()
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
