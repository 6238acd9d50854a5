"""The :class:`~flowengine.api.dispatch.Dialer` the daemon uses: one RELAY dial, then the flow.

A thin adaptor between the dispatcher (when to call, the books) and the engine (what
happens on the call): it dials through the daemon's :class:`~flowengine.relay.RelayClient`
and runs the flow's :class:`~flowengine.engine.Session` on the answered leg. Cancelling
:meth:`RelayDialer.place` hangs the call up (the session's end always does).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from flowengine.engine import Session, TraceEntry
from flowengine.relay import RelayClient
from flowengine.relay.dial import phone_device

from .dispatch import DialReport, FlowRef

__all__ = ["RelayDialer"]

#: Seconds a callee's phone rings before the dial gives up (RELAY's default is 30).
RING_TIMEOUT = 30.0


class RelayDialer:
    """Places calls on ``client()`` (the daemon's RELAY client of the moment).

    Args:
        client: returns the connected client.
        time_scale: the flows' clocks, as the daemon's (simulators only).
        on_step: every step of every call (the daemon's metrics and trace).
        default_from: the caller id when neither the request nor the flow gives one.
    """

    def __init__(self, client: Callable[[], RelayClient | None], *, time_scale: float = 1.0,
                 on_step: Callable[[TraceEntry], None] | None = None,
                 default_from: str | None = None) -> None:
        self._client = client
        self.time_scale = time_scale
        self.on_step = on_step
        self.default_from = default_from

    async def place(self, flow: FlowRef, *, to: str, from_: str | None,
                    vars: Mapping[str, Any],
                    on_answered: Callable[[str | None], None]) -> DialReport:
        client = self._client()
        if client is None:
            return DialReport(outcome="failed", status="failed", reason="not_connected",
                              error="not connected to RELAY", ended_at=time.time())
        caller = from_ or self.default_from or to
        # The ring timeout is RELAY's (simulated seconds on a simulator); the dial's own
        # bound is ours, in real seconds.
        dial = await client.dial([[phone_device(to, caller, timeout=RING_TIMEOUT)]],
                                 timeout=(RING_TIMEOUT + 30.0) * self.time_scale)
        if dial.call is None or dial.outcome not in ("answered", "machine"):
            return DialReport(outcome=dial.outcome, status="completed", reason=dial.reason,
                              ended_at=time.time())
        answered_at = time.time()
        on_answered(dial.call.call_id)
        path: list[str] = []

        def step(entry: TraceEntry) -> None:
            path.append(f"{entry.within}/{entry.step}" if entry.within else entry.step)
            if self.on_step is not None:
                self.on_step(entry)

        session = Session(flow.runtime, dial.call, on_step=step, time_scale=self.time_scale,
                          params=dict(vars), keep_trace=False)
        report = await session.run()
        return DialReport(outcome=dial.outcome, status=report.status, path=path,
                          steps=dict(report.steps), call_id=dial.call.call_id,
                          reason=report.end_reason, error=report.error,
                          answered_at=answered_at, ended_at=time.time())
