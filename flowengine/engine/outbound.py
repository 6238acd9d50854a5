"""A call we place, run through its flow: dial (§5.9), then the step its outcome leads to.

:func:`run_outbound` is the one place that does it, for ``flowengine dial`` and for the
daemon's call API and campaigns alike:

1. the call's inputs are checked (:func:`~flowengine.flow.inputs.validate_inputs`), and its
   numbers: nothing is dialled when they are wrong (:class:`InputError`, by field);
2. the caller id and the devices of the flow's ``outbound:`` are rendered over ``call``
   (``to``, ``from``), ``vars`` (the inputs and the flow's ``vars:``) and ``flow``;
3. :meth:`RelayClient.dial` places the call, with the flow's ring timeout, ``max_duration``
   and machine detection;
4. ``answered`` runs the flow from its start on the answered call; ``machine`` from
   ``outbound.on.machine`` (else as answered); ``busy``, ``no_answer`` and ``failed`` from
   their ``on:`` step in a :class:`Session` without a call (none: no step runs).

Every call ends: a cancelled dial hangs up the legs still ringing (the client does,
shielded), a cancelled flow hangs up its call (the session does), and a failure between
the two hangs up the answered call here.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from flowengine.actions.call_control import relay_device
from flowengine.engine.machine import FlowRuntime
from flowengine.engine.runner import lost_or_failed
from flowengine.engine.session import Session, SessionReport, TraceEntry
from flowengine.flow import TemplateRenderError, initial_vars, render
from flowengine.flow.inputs import InputError, parse_number, validate_inputs
from flowengine.flow.schedules import WALL_CLOCK, CallTime, Clock
from flowengine.flow.templates import FlowParams, StepResults, template_context
from flowengine.redact import redact, redact_text, redact_vars
from flowengine.relay import RelayError

if TYPE_CHECKING:
    from flowengine.flow import FlowVersion
    from flowengine.relay import Call, DialResult, RelayClient

__all__ = ["Dialed", "OutboundReport", "dial_devices", "run_outbound"]

logger = logging.getLogger("flowengine.engine")

#: Seconds a device rings when the flow does not say (RELAY's default).
DEFAULT_RING = 30.0
#: Seconds a machine detector may take on top of the ringing (RELAY's detect default).
DETECT_ALLOWANCE = 30.0
#: Real seconds added to a dial's bound for the round trips.
DIAL_SLACK = 10.0


@dataclass(frozen=True, slots=True)
class Dialed:
    """What the dial came to, as :func:`run_outbound` tells ``on_dialed`` before the flow
    runs (the call API's ``dialing`` → ``in_progress``)."""

    outcome: str
    #: The answered call (answered, machine), live; None otherwise.
    call: Call | None
    to: str
    from_: str
    tag: str
    reason: str | None
    detected: str | None
    #: The step the flow starts at for this outcome; None: no step runs.
    start: str | None
    dialed_at: float
    answered_at: float | None


@dataclass(frozen=True, slots=True)
class OutboundReport:
    """How one call we placed went.

    Attributes:
        outcome: the dial's: ``answered``, ``machine``, ``busy``, ``no_answer`` or
            ``failed`` (``relay.dial.OUTCOMES``).
        report: the flow's run — path, ``steps`` results, status — on the answered call
            (answered, machine) or without a call (busy, no_answer, failed with an ``on:``
            step); None when no step ran.
        to: the number the call was placed to. from_: the caller id used.
        tag: the dial's tag (RELAY routes the dial's events by it).
        call_id: the answered leg's call id; None when nobody answered.
        reason: why it was not answered: RELAY's (``busy``, ``noAnswer``, ``decline``,
            ``error``…), ``timeout``, or the error a refused dial gave.
        detected: with machine detection, what the detector heard (``HUMAN``, ``MACHINE``,
            ``READY``…).
        dialed_at, answered_at, ended_at: wall-clock times (seconds since the epoch);
            ``answered_at`` None when nobody answered.
    """

    outcome: str
    report: SessionReport | None
    to: str
    from_: str
    tag: str
    call_id: str | None
    reason: str | None
    detected: str | None
    dialed_at: float
    answered_at: float | None
    ended_at: float

    @property
    def answered(self) -> bool:
        """True when a person or a machine took the call."""
        return self.outcome in ("answered", "machine")

    @property
    def path(self) -> list[str]:
        """The steps the flow ran, in order (empty when none ran or the trace was not kept)."""
        return [] if self.report is None else [e.step for e in self.report.trace]

    @property
    def ok(self) -> bool:
        """True when the call's flow ran as it should: the steps its outcome leads to ran
        to their end (a busy line whose path logged it is fine) and the call was not lost."""
        return self.report is None or not lost_or_failed(self.report)

    @property
    def dial_to_answer(self) -> float | None:
        """Seconds from the dial to the answer (None when nobody answered)."""
        return None if self.answered_at is None else self.answered_at - self.dialed_at

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values (the call API's view of a call that is over):
        the dial, the flow's ``status``, ``path``, ``steps`` results, ``vars`` (secret-looking
        ones masked), ``error`` and ``note``, and the times."""
        report = self.report
        return {
            "outcome": self.outcome, "reason": self.reason, "detected": self.detected,
            "to": self.to, "from": self.from_, "tag": self.tag, "call_id": self.call_id,
            "status": None if report is None else report.status,
            "ok": self.ok, "path": self.path,
            "steps": {} if report is None else redact(report.steps),
            "vars": {} if report is None else redact_vars(report.vars),
            "error": None if report is None else redact_text(report.error or "") or None,
            "note": None if report is None else report.note,
            "end_reason": None if report is None else report.end_reason,
            "dialed_at": self.dialed_at, "answered_at": self.answered_at,
            "ended_at": self.ended_at, "dial_to_answer": self.dial_to_answer,
        }


def dial_devices(version: FlowVersion, *, to: str, from_: str | None,
                 inputs: Mapping[str, Any], clock: Clock = WALL_CLOCK,
                 ring: float | None = None
                 ) -> tuple[str, list[list[dict[str, Any]]], dict[str, Any]]:
    """The caller id, the RELAY devices (§5.6) and the ``call`` of templates for one call
    of ``version`` to ``to``, from the flow's ``outbound:`` rendered over the inputs;
    ``ring``: seconds each device rings, instead of ``outbound.timeout``.

    Raises:
        InputError: ``to`` or the caller id is not a number, or there is no caller id
            (field ``to`` / ``from``), or a device renders to something that is not one
            (field ``devices``).
        TemplateRenderError: a template of ``outbound:`` fails.
    """
    outbound = version.outbound
    to = parse_number("to", to)
    call = {"id": "", "from": from_ or "", "to": to, "direction": "outbound",
            "context": version.contexts[0], "state": "dialing", "dial": None}
    # A vars: value that fails here fails again in the session, which runs on_error for it.
    # The flow's schedules and the clock: `outbound:` may ask is_open() like any template.
    time = CallTime(clock, version.schedules)
    variables = {**inputs, **initial_vars(version, call, errors=[], time=time)}
    context = template_context(call, StepResults(), variables, version.template_flow, time)
    context["params"] = FlowParams()
    if from_ is None and outbound is not None and outbound.from_ is not None:
        from_ = str(render(outbound.from_, context))
        if not from_:
            raise InputError([("from", "the flow's outbound.from rendered empty")])
    if not from_:
        raise InputError([("from", f"no caller id: flow {version.name} has no outbound.from, "
                                   "so the call needs a from number")])
    from_ = parse_number("from", from_)
    call["from"] = from_
    if ring is None:
        ring = outbound.timeout if outbound is not None else None
    groups: list[list[Any]] = ([list(g) for g in outbound.devices]
                               if outbound is not None and outbound.devices else [[to]])
    devices: list[list[dict[str, Any]]] = []
    for group in groups:
        rendered = []
        for item in group:
            address = str(render(item, context)).strip()
            try:
                rendered.append(relay_device(address, from_, ring))
            except ValueError as exc:
                raise InputError([("devices", str(exc))]) from None
        devices.append(rendered)
    return from_, devices, call


async def run_outbound(
    client: RelayClient,
    version: FlowVersion,
    *,
    to: str,
    from_: str | None = None,
    vars: Mapping[str, Any] | None = None,
    on_step: Callable[[TraceEntry], None] | None = None,
    on_dialed: Callable[[Dialed], None] | None = None,
    runtime: FlowRuntime | None = None,
    tag: str | None = None,
    time_scale: float = 1.0,
    keep_trace: bool = True,
    clock: Clock = WALL_CLOCK,
    ring: float | None = None,
) -> OutboundReport:
    """Place a call to ``to`` for ``version`` and run the flow its dial outcome leads to.

    Args:
        from_: the caller id; default the flow's ``outbound.from``.
        vars: the call's inputs (checked and converted, defaults applied, here too).
        on_step: called with each step's :class:`TraceEntry` as it ends.
        on_dialed: called once the dial has its outcome, before the flow runs.
        runtime: the version's :class:`FlowRuntime` when the caller keeps one (built here
            otherwise).
        tag: the dial's tag (a uuid4 by default).
        time_scale: on the simulator, its time scale (ring timeouts and the flow's clocks
            run at its pace).
        keep_trace: False keeps no :class:`TraceEntry` in the report (``on_step`` still
            sees each).
        clock: where the call's templates read the time (``now()``, ``is_open()``).
        ring: seconds each device rings, instead of the flow's ``outbound.timeout``.

    Raises:
        InputError: the inputs, the number or the caller id are wrong; nothing was dialled.
    """
    inputs = validate_inputs(version, vars or {})
    try:
        from_number, devices, call_info = dial_devices(version, to=to, from_=from_,
                                                       inputs=inputs, clock=clock, ring=ring)
    except TemplateRenderError as exc:
        raise InputError([("outbound", str(exc))]) from None
    to_number = call_info["to"]
    runtime = runtime or FlowRuntime(version)
    outbound = version.outbound
    tag = tag or str(uuid.uuid4())
    call_info["id"] = tag
    detect = dict(outbound.detect_machine) if outbound is not None and \
        outbound.detect_machine is not None else None
    if ring is None:
        ring = (outbound.timeout if outbound is not None and outbound.timeout
                else DEFAULT_RING)
    bound = (len(devices) * ring + (DETECT_ALLOWANCE if detect is not None else 0.0)
             ) * time_scale + DIAL_SLACK
    max_duration = outbound.max_duration if outbound is not None else None
    limit = version.max_duration if max_duration is None else (
        max_duration if version.max_duration is None else min(max_duration,
                                                              version.max_duration))
    dialed_at = time.time()
    logger.info("dialling %s from %s (flow %s, tag %s)", to_number, from_number, version.name,
                tag, extra={"flow": version.name, "flow_version": version.version})
    result: DialResult | None = None
    reason: str | None = None
    try:
        result = await client.dial(
            devices, tag=tag, timeout=bound, detect_machine=detect,
            max_duration=None if max_duration is None else max(1, math.ceil(max_duration / 60)))
    except RelayError as exc:
        # Refused (bad devices, RELAY's error) or lost before RELAY's reply: not placed.
        reason = str(exc)
        outcome = "failed"
    else:
        outcome, reason = result.outcome, result.reason
    answered_at = time.time() if result is not None and result.call is not None else None
    call = result.call if result is not None else None
    report: SessionReport | None = None
    try:
        target = (outbound.edges.get(outcome) if outbound is not None
                  else version.start if outcome in ("answered", "machine") else None)
        if call is not None and target is None:  # cannot happen: answered starts at start
            target = version.start
        if on_dialed is not None:
            on_dialed(Dialed(outcome, call, to_number, from_number, tag, reason,
                             result.detected if result is not None else None, target,
                             dialed_at, answered_at))
        if call is not None:
            session = Session(runtime, call, on_step=on_step, time_scale=time_scale,
                              inputs=inputs, start=target, max_duration=limit,
                              keep_trace=keep_trace, call_info={"dial": outcome}, clock=clock)
            report = await session.run()
        elif target is not None:
            call_info.update(state="ended", dial=outcome)
            session = Session(runtime, None, client=client, call_info=call_info,
                              on_step=on_step, time_scale=time_scale, inputs=inputs,
                              start=target, max_duration=limit, keep_trace=keep_trace,
                              clock=clock)
            report = await session.run()
    finally:
        if call is not None and not call.ended:
            # The session did not get to run (or to end it): the call must not stay up.
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                try:
                    await call.hangup("hangup")
                except RelayError:
                    pass
    ended_at = time.time()
    logger.info("call to %s: %s%s", to_number, outcome, f" ({reason})" if reason else "",
                extra={"flow": version.name, "flow_version": version.version,
                       "call_id": call.call_id if call is not None else tag})
    return OutboundReport(
        outcome=outcome, report=report, to=to_number, from_=from_number, tag=tag,
        call_id=call.call_id if call is not None else None, reason=reason,
        detected=result.detected if result is not None else None, dialed_at=dialed_at,
        answered_at=answered_at, ended_at=ended_at)
