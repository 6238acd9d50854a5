"""Pacing calls we place: at most N in flight, at most R started per second.

:class:`Pacer` is what ``flowengine dial --csv`` and the daemon's campaigns start each
call through::

    pacer = Pacer(max_concurrent=5, rate=10)
    async with pacer:                 # waits for a free slot, then for the next start
        await run_outbound(...)       # the slot is given back when the block ends

The rate is a token bucket: tokens come at ``rate`` per second up to ``burst`` (1 by
default: starts evenly spaced, 1/rate apart); a start takes one. Waiting is sleeping until
the next token is due — no polling — and the waiters take their turn in order (an anyio
``Lock`` is fair). A start waits for its slot first and for its token second, so a token is
never spent on a call that then waits for a slot.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from types import TracebackType

import anyio

__all__ = ["Pacer"]


class Pacer:
    """At most ``max_concurrent`` holders at once, at most ``rate`` acquisitions per second.

    Args:
        max_concurrent: how many may hold it at once (at least 1).
        rate: acquisitions per second; ``0`` or ``math.inf``: no limit on the rate.
        burst: how many acquisitions may come at once after a quiet spell (at least 1).
        clock / sleep: the time source and how to wait (anyio's by default; tests give a
            fake clock).
    """

    def __init__(self, max_concurrent: int, rate: float, *, burst: int = 1,
                 clock: Callable[[], float] | None = None,
                 sleep: Callable[[float], Awaitable[object]] | None = None) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        if rate < 0 or math.isnan(rate):
            raise ValueError("rate must be a number of calls per second, 0 for no limit")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.max_concurrent = max_concurrent
        self.rate = rate
        self.burst = burst
        self._clock = clock or anyio.current_time
        self._sleep = sleep or anyio.sleep
        self._slots = anyio.Semaphore(max_concurrent)
        self._turn = anyio.Lock()
        self._tokens = float(burst)
        self._stamp: float | None = None
        #: Holders now.
        self.in_flight = 0
        #: Acquisitions so far.
        self.started = 0

    @property
    def limited(self) -> bool:
        """True when the rate is limited."""
        return 0 < self.rate < math.inf

    async def acquire(self) -> None:
        """Wait for a slot, then for the next start the rate allows; hold the slot until
        :meth:`release`. Cancelled while waiting: nothing is held."""
        await self._slots.acquire()
        try:
            if self.limited:
                await self._token()
        except BaseException:
            self._slots.release()
            raise
        self.in_flight += 1
        self.started += 1

    def release(self) -> None:
        """Give the slot back."""
        self.in_flight -= 1
        self._slots.release()

    async def _token(self) -> None:
        async with self._turn:
            while True:
                now = self._clock()
                if self._stamp is not None:
                    self._tokens = min(float(self.burst),
                                       self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                # A sleep of exactly the gap may wake a rounding error short of it.
                if self._tokens >= 1.0 - 1e-9:
                    self._tokens = max(0.0, self._tokens - 1.0)
                    return
                await self._sleep((1.0 - self._tokens) / self.rate)

    async def __aenter__(self) -> Pacer:
        await self.acquire()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
