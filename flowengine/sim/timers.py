"""One timer heap for the whole simulator: no task, no thread per timer.

The core asks for callbacks at absolute times; the I/O driver sleeps until
:meth:`TimerHeap.next_deadline` and then calls :meth:`TimerHeap.run_due`. With 5,000 calls
in flight that is one sleeping task instead of tens of thousands.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable


class Timer:
    """A scheduled callback; :meth:`cancel` is cheap (the heap skips it later)."""

    __slots__ = ("callback", "cancelled", "deadline")

    def __init__(self, deadline: float, callback: Callable[[], None]) -> None:
        self.deadline = deadline
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        """Forget the callback; safe to call twice or after it ran."""
        self.cancelled = True
        self.callback = _noop


def _noop() -> None:
    return None


class TimerHeap:
    """Timers ordered by deadline, ties in scheduling order (so scripts are deterministic)."""

    def __init__(self, on_earlier: Callable[[], None] = _noop) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        #: Called when a new timer becomes the earliest one: the driver must wake up.
        self.on_earlier = on_earlier

    def __len__(self) -> int:
        return len(self._heap)

    def call_at(self, deadline: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` once ``run_due`` is called with a time at or past ``deadline``."""
        timer = Timer(deadline, callback)
        earliest = self._heap[0][0] if self._heap else None
        heapq.heappush(self._heap, (deadline, next(self._seq), timer))
        if earliest is None or deadline < earliest:
            self.on_earlier()
        return timer

    def next_deadline(self) -> float | None:
        """The earliest pending deadline, or ``None`` when nothing is scheduled."""
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> Timer | None:
        """Remove and return the earliest live timer due at ``now``, or ``None``."""
        heap = self._heap
        while heap:
            deadline, _, timer = heap[0]
            if timer.cancelled:
                heapq.heappop(heap)
                continue
            if deadline > now:
                return None
            heapq.heappop(heap)
            return timer
        return None
