"""The :class:`~flowengine.api.dispatch.Dialer` the daemon uses: the outbound engine.

A thin adaptor between the dispatcher (when to call, the books) and
:func:`~flowengine.engine.outbound.run_outbound` (the dial, then the flow its outcome leads
to), through the daemon's :class:`~flowengine.relay.RelayClient`. Cancelling
:meth:`RelayDialer.place` hangs the call up (run_outbound and the session see to it).
:func:`check_call` is the API's check of one call before it is queued: the flow's inputs
and the numbers, as run_outbound would check them, so nothing bad is ever queued.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from flowengine.engine import TraceEntry
from flowengine.engine.outbound import Dialed, dial_devices, run_outbound
from flowengine.flow import FlowVersion, TemplateRenderError
from flowengine.flow.inputs import InputError, validate_inputs
from flowengine.flow.schedules import WALL_CLOCK, Clock
from flowengine.relay import RelayClient

from .dispatch import DialReport, FlowRef
from .errors import ApiError

__all__ = ["RelayDialer", "check_call"]


def check_call(version: FlowVersion, values: Mapping[str, Any], to: str,
               from_: str | None) -> dict[str, Any]:
    """The inputs of one call of ``version`` (checked, converted, defaults applied);
    ApiError 422 naming the field (``vars.<input>``, ``to``, ``from``) otherwise."""
    try:
        inputs = validate_inputs(version, values)
        dial_devices(version, to=to, from_=from_, inputs=inputs)
    except InputError as exc:
        field, _ = exc.problems[0]
        where = field if field in ("to", "from") else "vars" if field == "devices" \
            else f"vars.{field}"
        raise ApiError.invalid(where, "; ".join(m for _, m in exc.problems)) from None
    except TemplateRenderError as exc:
        raise ApiError.invalid("vars", f"the flow's outbound: cannot be rendered for these "
                                       f"vars: {exc}") from None
    return inputs


class RelayDialer:
    """Places calls on ``client()`` (the daemon's RELAY client of the moment).

    Args:
        client: returns the connected client.
        time_scale: the flows' clocks, as the daemon's (simulators only).
        on_step: every step of every call (the daemon's metrics and trace).
        default_from: the caller id when neither the request nor the flow gives one.
        clock: where the flows' templates read the time (the daemon's).
    """

    def __init__(self, client: Callable[[], RelayClient | None], *, time_scale: float = 1.0,
                 on_step: Callable[[TraceEntry], None] | None = None,
                 default_from: str | None = None, clock: Clock = WALL_CLOCK) -> None:
        self._client = client
        self.clock = clock
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
        if from_ is None and (flow.version.outbound is None
                              or flow.version.outbound.from_ is None):
            from_ = self.default_from
        path: list[str] = []

        def step(entry: TraceEntry) -> None:
            path.append(f"{entry.within}/{entry.step}" if entry.within else entry.step)
            if self.on_step is not None:
                self.on_step(entry)

        def dialed(event: Dialed) -> None:
            if event.call is not None:
                on_answered(event.call.call_id)

        try:
            outbound = await run_outbound(
                client, flow.version, to=to, from_=from_, vars=vars, on_step=step,
                on_dialed=dialed, runtime=flow.runtime, time_scale=self.time_scale,
                keep_trace=False, clock=self.clock)
        except InputError as exc:  # checked when queued; the flow may have changed since
            return DialReport(outcome="failed", status="failed", reason="invalid_input",
                              error=str(exc), ended_at=time.time())
        session = outbound.report
        return DialReport(
            outcome=outbound.outcome,
            status="completed" if session is None else session.status,
            path=path, steps={} if session is None else dict(session.steps),
            call_id=outbound.call_id, reason=outbound.reason,
            error=None if session is None else session.error,
            answered_at=outbound.answered_at, ended_at=outbound.ended_at)
