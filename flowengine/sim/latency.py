"""Event-to-command latency, measured at the simulator (off by default).

How quickly a client reacts: for every call command (``calling.*``) that follows an event
about the same call, the time from the moment that event was written to the client's
socket to the moment the command was read from it. Only the latest event before a command
counts, and a command with no event since the previous one (say, ``calling.record``
sent right after ``calling.play`` without waiting) is not a sample. The ``ended`` state
event never prompts a command, so it is not tracked.

The driver calls :meth:`LatencyRecorder.event_sent` after each write; the core calls
:meth:`LatencyRecorder.command` when a command arrives. With the recorder off
(``Simulator(record_latency=False)``, the default) the only cost is one ``is None`` test
per frame written.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

__all__ = ["LatencyRecorder", "percentile"]


def percentile(sorted_values: list[float], q: float) -> float:
    """The ``q``-th percentile (0–100) of already sorted values, nearest rank."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), math.ceil(q / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


class LatencyRecorder:
    """Per call, the time of the latest event sent; per command, the time since it."""

    __slots__ = ("_clock", "_last", "by_method", "samples")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: dict[str, float] = {}
        #: Seconds from an event to the next command of its call, in arrival order.
        self.samples: list[float] = []
        #: The same samples by the command's method.
        self.by_method: dict[str, list[float]] = {}

    def event_sent(self, call_id: str) -> None:
        """An event about ``call_id`` was just written to the client's socket."""
        self._last[call_id] = self._clock()

    def command(self, call_id: str, method: str = "") -> None:
        """A command (``method``) for ``call_id`` was just read from the client's socket."""
        sent = self._last.pop(call_id, None)
        if sent is not None:
            latency = self._clock() - sent
            self.samples.append(latency)
            samples = self.by_method.get(method)
            if samples is None:
                samples = self.by_method[method] = []
            samples.append(latency)

    def reset(self) -> None:
        """Forget the samples so far (after a warm-up, say)."""
        self.samples.clear()
        self.by_method.clear()

    def summary(self) -> dict[str, Any]:
        """``{"count", "p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms", "by_method"}``;
        ``by_method`` has the same figures for each command method."""
        summary = _stats(self.samples)
        summary["by_method"] = {method: _stats(samples)
                                for method, samples in sorted(self.by_method.items())}
        return summary


def _stats(samples: list[float]) -> dict[str, Any]:
    values = sorted(samples)
    count = len(values)

    def ms(seconds: float) -> float:
        return round(seconds * 1000, 3)

    return {"count": count, "p50_ms": ms(percentile(values, 50)),
            "p90_ms": ms(percentile(values, 90)), "p99_ms": ms(percentile(values, 99)),
            "max_ms": ms(values[-1] if values else 0.0),
            "mean_ms": ms(sum(values) / count if count else 0.0)}
