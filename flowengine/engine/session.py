"""One call running through one FlowVersion.

A Session is the model of its flow's shared machine (``machine.py``) and the only code that
moves it, from the call's own task: no locks, no re-entry. Per-call state lives here and
nowhere else; what is shared between calls (the FlowVersion, its machine) is immutable.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import anyio

from flowengine.actions.base import StepResult
from flowengine.engine.machine import END, FlowRuntime
from flowengine.engine.resolver import DirectoryResolver, FlowResolver, directory_of
from flowengine.flow import (
    FlowParams,
    TemplateRenderError,
    initial_params,
    initial_vars,
    render_params,
)
from flowengine.flow.actions import ACTIONS
from flowengine.flow.schedules import TIME_KEY, WALL_CLOCK, CallTime, Clock
from flowengine.flow.templates import QUEUE_BOARD

if TYPE_CHECKING:
    from flowengine.flow import FlowVersion, Step
    from flowengine.relay import Action, Call, RelayClient

logger = logging.getLogger("flowengine.engine")
#: The context max_duration timers run in: they read no context variable, and a shared
#: one spares a copy of the caller's per call.
_TIMER_CONTEXT = contextvars.Context()

#: How long the end of a flow waits for RELAY to confirm that the call has ended.
HANGUP_WAIT = 10.0
#: How many times one call may be transferred to another flow (a loop of transfers ends).
MAX_TRANSFERS = 20
#: ``call.sip_headers`` of a call without any (most): one shared empty view, not one per call.
_NO_HEADERS: Mapping[str, str] = MappingProxyType({})
#: ``max_duration=`` not given: the flow's ``limits.max_duration``.
_FLOW_LIMIT: Any = object()


@dataclass(slots=True)
class TraceEntry:
    """One step of one call, as the trace and the log show it."""

    call_id: str
    flow: str
    version: str
    step: str
    action: str
    outcome: str
    next_step: str | None
    started: float  # seconds since the call's flow started
    duration: float
    method: str | None = None
    control_id: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    #: The parameters as rendered for this call (None when rendering failed).
    params: Any = None
    #: Wall-clock time the step started (seconds since the epoch).
    at: float = 0.0
    #: The media items the step played when they differ from ``params`` (a prompt that
    #: re-prompted), else None.
    played: list[dict[str, Any]] | None = None
    #: For a subflow's steps: the id of the calling step (``ask/inner`` for nested calls);
    #: None for the flow's own steps.
    within: str | None = None


@dataclass(slots=True)
class SessionReport:
    """How a call's flow ended."""

    #: "completed" (reached its end, the caller's hangup handled or not, or cut at the
    #: flow's max_duration) or "failed" (an error no edge handled, or max_steps).
    status: str
    steps: dict[str, dict[str, Any]]
    vars: dict[str, Any]
    #: Every step, in order, when the session kept them (``keep_trace``), else empty.
    trace: list[TraceEntry]
    caller_hung_up: bool
    end_reason: str | None
    error: str | None = None
    #: Set when a limit ended the flow, e.g. "max_duration (900 s) reached: hung up".
    note: str | None = None
    #: How many steps ran, a subflow's included (kept or not in ``trace``).
    steps_run: int = 0
    #: ``name@version`` of every flow the call ran in, in order: more than one after a
    #: ``transfer``. ``steps`` and ``vars`` are the first flow's (the one the call came
    #: to); the others' results are in ``trace``.
    flows: tuple[str, ...] = ()


@dataclass(slots=True, eq=False)
class _Handoff:
    """A call's transfers (``transfer`` steps), made on the first one."""

    #: What finds flows by name.
    resolver: FlowResolver | None = None
    #: The runtime the call goes on in once the current flow has ended.
    to: FlowRuntime | None = None
    #: How many times the call was transferred.
    count: int = 0
    #: The first flow's steps and vars (the report's).
    origin: tuple[dict[str, dict[str, Any]], dict[str, Any]] | None = None
    #: Every flow the call ran in, in order.
    flows: list[FlowVersion] = field(default_factory=list)


class Session:
    """The state of one call in its flow: current step, ``steps`` results, ``vars``."""

    # Attributes most sessions never set are class-level defaults: CPython 3.11 keeps at
    # most 29 attributes in a class's shared-key instance dicts, and a Session with a 30th
    # carries a full dict of its own, ~1.6 KB more per call in flight (bench/memory.py).
    #: What the calling step passed (a subflow's params before its defaults are added).
    _given_params: Mapping[str, Any] = MappingProxyType({})
    #: The call's inputs (an outbound call's), ``vars.<name>`` from the start.
    _inputs: Mapping[str, Any] = MappingProxyType({})
    #: ``max_duration=`` when given (else the flow's ``limits.max_duration``).
    _max_duration: float | None = _FLOW_LIMIT

    def __init__(
        self,
        runtime: FlowRuntime,
        call: Call | None,
        *,
        on_step: Callable[[TraceEntry], None] | None = None,
        time_scale: float = 1.0,
        params: Mapping[str, Any] | None = None,
        within: str | None = None,
        keep_trace: bool = True,
        client: RelayClient | None = None,
        call_info: Mapping[str, Any] | None = None,
        inputs: Mapping[str, Any] | None = None,
        start: str | None = None,
        max_duration: float | None = _FLOW_LIMIT,
        resolver: FlowResolver | None = None,
        clock: Clock = WALL_CLOCK,
    ) -> None:
        """``keep_trace=False`` keeps no :class:`TraceEntry` once ``on_step`` has seen it
        (the daemon's calls: ~1 KB less per call in flight); the report's ``trace`` is then
        empty and ``steps_run`` still counts.

        ``call=None`` is a session without a call (an outbound call's busy, no answer or
        failed path): ``client`` is the RELAY client its steps use (send_sms) and
        ``call_info`` what templates see as ``call`` (with a call: what to add to the
        call's own, such as ``dial``); a step that needs a call fails, and
        ``on_error``/``on_hangup`` are not taken (an error ends the flow). ``inputs``: the
        call's inputs (``validate_inputs``), ``vars.<name>`` from the start (default: each
        input's default). ``start``: the step to start at (default the flow's start).
        ``max_duration``: seconds, instead of the flow's ``limits.max_duration``. ``clock``
        is where ``now()`` and ``is_open()`` read the time (``run --at`` and a scenario's
        ``at:`` set one). ``resolver`` finds the flows ``transfer`` steps name (None: the
        flow files in this flow's folder)."""
        self.runtime = runtime
        self.flow = runtime.flow
        self._call = call
        if client is None:
            if call is None:
                raise ValueError("a session without a call needs the client")
            client = call.client
        #: The RELAY client this session's call came on (or, without a call, its steps use).
        self.client: RelayClient = client
        if inputs is not None:
            self._inputs = dict(inputs)
        elif self.flow.inputs:
            self._inputs = {name: spec.default for name, spec in self.flow.inputs.items()}
        if max_duration is not _FLOW_LIMIT:
            self._max_duration = max_duration
        self.on_step = on_step
        #: On the simulator, the flow's own clocks (step timeouts, max_duration) run at the
        #: simulator's pace, so a simulated call behaves as the real one would.
        self.time_scale = time_scale
        #: The machine's model attribute: the id of the step running now.
        self.state = start or self.flow.start
        self.steps: dict[str, dict[str, Any]] = {}
        self.vars: dict[str, Any] = {}
        self.trace: list[TraceEntry] = []
        self._keep_trace = keep_trace
        #: Steps run so far (on the top session: its subflows' steps included).
        self.steps_run = 0
        #: The top session, for a subflow's (None on the top one: no reference cycle).
        self._top: Session | None = None
        #: step id → how many times it has run on this call, for the steps a goto targets
        #: (``runtime.counted``; goto's ``visits`` and ``max_visits``).
        self.visits: dict[str, int] = {}
        self.hangup_handled = False
        self.error_handled = False
        #: True once a step ended with outcome `hangup`: the caller left.
        self.caller_hung_up = False
        #: True once a `hangup` step sent calling.end: the flow's end must not send another.
        self.hangup_sent = False
        #: Background recordings (record_call) not known to be over: (the ``steps`` of
        #: the flow that started it, its step id, the RELAY action). Shared with subflows.
        self.background: list[tuple[dict[str, dict[str, Any]], str, Action]] = []
        #: What a ``return`` step gave (a subflow's result), None until one ran.
        self.returned: dict[str, Any] | None = None
        #: The outcome of the step after which the flow ended (None while it runs).
        self.end_outcome: str | None = None
        #: The calling step's id when this session runs a subflow, else None.
        self.within = within
        if params:
            self._given_params = dict(params)
        self.params = FlowParams()
        self._call_info: dict[str, Any]
        if call is not None:
            self._call_info = {
                "id": call.call_id,
                "from": call.from_number,
                "to": call.to_number,
                "direction": call.direction,
                "context": call.context,
                "state": call.state,
                # Read-only: a flow reads what the caller's SIP INVITE carried, never edits it.
                "sip_headers": _sip_headers(call),
                "dial": None,
            }
            if call_info:
                self._call_info.update(call_info)
        else:
            self._call_info = {"id": "", "from": "", "to": "", "direction": "outbound",
                               "context": "", "state": "ended", "dial": None,
                               "sip_headers": _NO_HEADERS,
                               **(call_info or {})}
            # The handlers may need the call: on this path they are not taken.
            self.hangup_handled = self.error_handled = True
        # The clock and this flow's schedules, as templates read them (flow/schedules.py),
        # are kept in the template context only (see `time`): no attribute of their own.
        self._context = {"call": self._call_info, "steps": self.steps, "vars": self.vars,
                         "flow": self.flow.template_flow, "params": self.params,
                         TIME_KEY: CallTime(clock, self.flow.schedules),
                         # queue_size()/queue_wait() read what the client saw (§5.10).
                         QUEUE_BOARD: getattr(getattr(call, "client", None), "queues", None)}
        self._t0 = 0.0
        self._wall0 = 0.0
        #: While a max_duration timer runs: the task it cancels (None once it fired).
        self._limited: asyncio.Task[Any] | None = None
        # The resolver until the first transfer, then a _Handoff that holds it: one
        # attribute, and no object per call that never transfers. (A 30th attribute would
        # cost every call in flight ~1.3 KB: CPython 3.11 keeps up to 29 in the class's
        # shared-key instance dicts.)
        self._handoff: _Handoff | FlowResolver | None = resolver

    # -- what actions and templates use ------------------------------------------------

    @property
    def call(self) -> Call:
        """The live call, for the runners of steps that need one (``needs_call``).

        Raises:
            RuntimeError: on a session without a call (the session runs no such step).
        """
        if self._call is None:
            raise RuntimeError("this session has no call (an outbound call's failure path)")
        return self._call

    @property
    def has_call(self) -> bool:
        """False for a session without a call (an outbound call's busy/no answer/failed
        path)."""
        return self._call is not None

    def template_context(self) -> dict[str, Any]:
        """The names templates see: ``call``, ``steps``, ``vars``, ``flow``, ``params``
        (live views)."""
        if self._call is not None:
            self._call_info["state"] = self.call.state
        return self._context

    @property
    def call_info(self) -> Mapping[str, Any]:
        """What templates see as ``call`` (id, from, to, direction, context, state, dial)."""
        return self._call_info

    def collect_background(self) -> None:
        """Write what each ended background recording reported (state, url, duration,
        size) into its record_call step's result. Called before every step and at the end,
        so a recording's url is there for the first step after it ended."""
        running = []
        for steps, sid, action in self.background:
            if action.result is None or sid not in steps:
                running.append((steps, sid, action))
                continue
            done = action.result
            steps[sid].update(state=done.state, url=done.url or steps[sid].get("url"),
                              duration=done.duration, size=done.size)
        self.background[:] = running

    def step_timeout(self, step: Step) -> float | None:
        """The step's ``timeout`` in real seconds (scaled on the simulator)."""
        return None if step.timeout is None else step.timeout * self.time_scale

    def log(self, text: str) -> None:
        """A ``log`` step's line: to the engine's logger, tagged with call, flow and version."""
        logger.info("%s", text, extra=self._log_extra())

    def _limit_reached(self) -> None:
        """max_duration's timer: cancel the flow's task, marked as this limit's doing."""
        task, self._limited = self._limited, None
        if task is not None:
            task.cancel()

    def _log_extra(self) -> dict[str, Any]:
        return {"call_id": self._call_info["id"], "flow": self.flow.name,
                "flow_version": self.flow.version}

    # -- running -------------------------------------------------------------------------

    async def run(self) -> SessionReport:
        """Run the flow to its end and make sure the call ends too."""
        # The loop's clock (time.monotonic() on asyncio's loops): on a virtual clock
        # (flowengine.testing) the trace's times are the simulated ones, exact.
        self._t0 = _loop_time()
        self._wall0 = time.time()
        error: str | None = None
        note: str | None = None
        failed = False
        try:
            error = self._init_vars()
            if error is None or self._vars_failed(error):
                error = None
                limit = self.max_duration
                if limit:
                    # One timer handle that cancels this task, not an anyio cancel scope
                    # (~1.1 KB per call in flight) nor asyncio.timeout() (~0.45 KB): most
                    # flows set a limit. The cancellation arrives at the await the flow
                    # waits at; it is told from any other by the flag the timer sets.
                    loop = asyncio.get_running_loop()
                    task = asyncio.current_task()
                    assert task is not None
                    self._limited = task
                    timer = loop.call_at(loop.time() + limit * self.time_scale,
                                         self._limit_reached, context=_TIMER_CONTEXT)
                    try:
                        failed, error = await self._run_steps()
                        if isinstance(self._handoff, _Handoff):
                            failed, error = await self._run_transfers(failed, error)
                        await self._wait_for_bridge()
                    except asyncio.CancelledError:
                        # Not the limit's (the flag), or someone cancelled too: let it go on.
                        if self._limited is not None or task.uncancel() > 0:
                            raise
                        # A configured limit, not a failure: the call is hung up below.
                        note = f"max_duration ({limit:g} s) reached: hung up"
                        logger.info("%s", note, extra=self._log_extra())
                    finally:
                        timer.cancel()
                        self._limited = None
                else:
                    failed, error = await self._run_steps()
                    if isinstance(self._handoff, _Handoff):
                        failed, error = await self._run_transfers(failed, error)
                    await self._wait_for_bridge()
            else:
                failed = True
        finally:
            # Every call ends: if the flow stopped while the call is live, hang it up.
            call = self._call
            if call is not None:
                with anyio.move_on_after(HANGUP_WAIT, shield=True):
                    if not call.ended and not self.hangup_sent:
                        try:
                            await call.hangup("hangup")
                        except Exception as exc:  # the call may have gone meanwhile
                            logger.debug("hangup at flow end failed: %s", exc)
                    await call.wait_for_ended()
        self.collect_background()
        handoff = self._handoff if isinstance(self._handoff, _Handoff) else None
        steps, vars_ = (handoff.origin if handoff is not None and handoff.origin is not None
                        else (self.steps, self.vars))
        return SessionReport(
            status="failed" if failed else "completed",
            steps=steps,
            vars=vars_,
            trace=self.trace,
            caller_hung_up=self.caller_hung_up,
            end_reason=self._call.end_reason if self._call is not None else None,
            error=error,
            note=note,
            steps_run=self.steps_run,
            flows=tuple(f"{f.name}@{f.short_version}"
                        for f in (handoff.flows if handoff is not None and handoff.flows
                                  else (self.flow,))),
        )

    async def _wait_for_bridge(self) -> None:
        """A flow that ends while its call is bridged (``connect`` with ``wait: false``)
        leaves the two talking: the call is hung up only once the bridge ends. Likewise a
        call left in a conference (``conference`` with ``wait: false``) stays in it."""
        if self._call is None:
            return
        bridge = self.call.bridge
        if bridge is not None and bridge.state == "connected" and not self.call.ended:
            logger.info("flow ended while the call is connected: waiting for the bridge to end",
                        extra=self._log_extra())
            await bridge.wait()
        conference = self.call.conference
        if conference is not None and not conference.done and not self.call.ended:
            logger.info("flow ended while the call is in a conference: waiting for it to leave",
                        extra=self._log_extra())
            await conference.wait()

    # -- transfers -----------------------------------------------------------------------

    @property
    def time(self) -> CallTime:
        """The clock and this flow's schedules, as templates read them (``now()``,
        ``is_open()``)."""
        time = self._context[TIME_KEY]
        assert isinstance(time, CallTime)
        return time

    @property
    def clock(self) -> Clock:
        """Where ``now()`` and ``is_open()`` read the time."""
        return self.time.clock

    @property
    def max_duration(self) -> float | None:
        """Seconds the call may last: ``max_duration=``, else the flow's
        ``limits.max_duration`` (None: no limit)."""
        given = self._max_duration
        return self.flow.max_duration if given is _FLOW_LIMIT else given

    @property
    def resolver(self) -> FlowResolver | None:
        """What finds the flows ``transfer`` steps name (None: not made yet)."""
        handoff = self._handoff
        return handoff.resolver if isinstance(handoff, _Handoff) else handoff

    @property
    def transfer_to(self) -> FlowRuntime | None:
        """The runtime a ``transfer`` step handed the call to, until the switch to it."""
        handoff = self._handoff
        return handoff.to if isinstance(handoff, _Handoff) else None

    @transfer_to.setter
    def transfer_to(self, runtime: FlowRuntime | None) -> None:
        self._transfers().to = runtime

    def _transfers(self) -> _Handoff:
        handoff = self._handoff
        if not isinstance(handoff, _Handoff):
            handoff = self._handoff = _Handoff(resolver=handoff)
        return handoff

    async def resolve_flow(self, name: str) -> FlowRuntime:
        """The runtime of the flow named ``name`` as it is now (for a ``transfer`` step).

        Raises:
            LookupError: there is no such flow (the message says where it looked).
        """
        resolver = self.resolver
        if resolver is None:
            resolver = self._transfers().resolver = DirectoryResolver(directory_of(self.flow))
        return await resolver(name)

    async def call_out(self, runtime: FlowRuntime, to: str, *, from_: str | None = None,
                       ring: float | None = None, vars: Mapping[str, Any] | None = None,
                       on_dialed: Callable[[Any], None] | None = None) -> Any:
        """Place a call to ``to`` running ``runtime``'s flow (one :meth:`resolve_flow`
        found) on this session's client and clocks, for an ``enqueue``'s ``call_agents``;
        its :class:`~flowengine.engine.outbound.OutboundReport`. ``vars``: inputs offered,
        passed on only where the flow declares them.

        Raises:
            InputError: the number or the caller id is wrong (nothing was dialled).
        """
        # Imported here: outbound builds sessions, so it imports this module.
        from flowengine.engine.outbound import run_outbound

        declared = runtime.flow.inputs
        inputs = {k: v for k, v in (vars or {}).items() if k in declared}
        return await run_outbound(self.client, runtime.flow, to=to, from_=from_, vars=inputs,
                                  on_dialed=on_dialed, runtime=runtime, ring=ring,
                                  time_scale=self.time_scale, clock=self.clock,
                                  keep_trace=self._keep_trace)

    async def _run_transfers(self, failed: bool, error: str | None) -> tuple[bool, str | None]:
        """After the flow's steps (which ended ``failed``, ``error``): while a ``transfer``
        step handed the call on, the steps of the flow it named — that version, pinned,
        from its start, with its own vars. What ran before stays in the trace; nothing of
        a flow runs after its transfer (its on_hangup included). (Awaited only once a
        transfer happened: no extra coroutine per call in flight otherwise.)"""
        while not failed and isinstance(handoff := self._handoff, _Handoff) and (
                runtime := handoff.to) is not None:
            handoff.to = None
            handoff.count += 1
            if handoff.count > MAX_TRANSFERS:
                return True, f"more than {MAX_TRANSFERS} transfers on one call: a loop?"
            logger.info("transferred to flow %s@%s", runtime.flow.name,
                        runtime.flow.short_version, extra=self._log_extra())
            self._switch(runtime)
            error = self._init_vars()
            if error is not None and not self._vars_failed(error):
                return True, error
            failed, error = await self._run_steps()
        return failed, error

    def _switch(self, runtime: FlowRuntime) -> None:
        """Make ``runtime``'s flow this call's, from its start, with fresh state."""
        handoff = self._transfers()
        if handoff.origin is None:
            handoff.origin = (self.steps, self.vars)
        if not handoff.flows:
            handoff.flows.append(self.flow)
        handoff.flows.append(runtime.flow)
        self.runtime = runtime
        self.flow = runtime.flow
        self.state = self.flow.start
        self.steps = {}
        self.vars = {}
        self.visits = {}
        self.params = FlowParams()
        self._given_params = MappingProxyType({})
        # The call's inputs were the first flow's; the next one starts from its own defaults.
        self._inputs = {name: spec.default for name, spec in self.flow.inputs.items()}
        # hangup_handled / error_handled stay as they are: each handler is taken once per
        # call, so a first flow's on_hangup that transfers does not lead to a second one.
        self.returned = self.end_outcome = None
        self._context = {"call": self._call_info, "steps": self.steps, "vars": self.vars,
                         "flow": self.flow.template_flow, "params": self.params,
                         TIME_KEY: CallTime(self.clock, self.flow.schedules),
                         QUEUE_BOARD: self._context.get(QUEUE_BOARD)}

    def _init_vars(self) -> str | None:
        """Render ``params`` defaults and ``vars``: the first error, or None. A value that
        cannot be rendered is None (so the error handler's templates can still run)."""
        errors: list[TemplateRenderError] = []
        self.params.update(initial_params(self.flow, self._call_info, self._given_params,
                                          errors=errors, time=self.time))
        self.vars.update(self._inputs)
        self.vars.update(initial_vars(self.flow, self._call_info, self.params, errors=errors,
                                      time=self.time))
        return str(errors[0]) if errors else None

    def _vars_failed(self, error: str) -> bool:
        """A ``vars``/``params`` value could not be rendered: like a step's error, this runs
        the flow's ``on_error`` (once per call). True when it does; False when the flow has
        none and so fails."""
        target = self.flow.on_error
        logger.warning("vars -> error: %s%s", error,
                       f"; running on_error ({target})" if target else "",
                       extra={**self._log_extra(), "outcome": "error"})
        if target is None:
            return False
        # The machine's state is this attribute (as at the start); the handler's own errors
        # end the flow, as for any error after on_error was taken.
        self.state = target
        self.error_handled = True
        return True

    # -- subflows ------------------------------------------------------------------------

    def subflow(self, step: Step, flow: str, params: Mapping[str, Any]) -> Session:
        """A session for the subflow a ``call`` step runs: the same call, clocks and trace,
        its own steps, vars and params."""
        child = Session(self.runtime.subflows[flow], self._call, on_step=self.on_step,
                        time_scale=self.time_scale, params=params,
                        within=step.id if self.within is None else f"{self.within}/{step.id}",
                        keep_trace=self._keep_trace, client=self.client,
                        call_info=self._call_info if self._call is None else None,
                        resolver=self.resolver, clock=self.clock)
        child.hangup_handled = child.error_handled = self._call is None
        child.trace = self.trace
        child._top = self._top or self
        child._t0, child._wall0 = self._t0, self._wall0
        child.caller_hung_up = self.caller_hung_up
        child.background = self.background
        return child

    async def run_subflow(self) -> tuple[str, str | None]:
        """Run as a subflow, inside its calling step: the outcome for that step
        (``returned``, ``hangup`` or ``error``) and the error, if any. The call is left as
        it is (a subflow's end does not hang up)."""
        error = self._init_vars()
        failed = error is not None and not self._vars_failed(error)
        if not failed:
            failed, error = await self._run_steps()
        if failed:
            return "error", error
        if self.returned is None and self.end_outcome == "hangup":
            return "hangup", None
        return "returned", None

    async def _run_steps(self) -> tuple[bool, str | None]:
        flow, runtime = self.flow, self.runtime
        count = 0
        while self.state != END:
            count += 1
            if count > flow.max_steps:
                return True, (f"more than max_steps ({flow.max_steps}) steps ran: "
                              "a loop without exit?")
            step = flow.steps[self.state]
            self.collect_background()
            if step.id in runtime.counted:
                self.visits[step.id] = self.visits.get(step.id, 0) + 1
            started = _loop_time()
            result = await self._run_step(step)
            outcome = result.outcome
            if outcome == "hangup":
                self.caller_hung_up = True
            self.steps[step.id] = self._result_fields(step, result.result)
            # Which edge the outcome takes is the machine's business; the flags its
            # conditions read change only after it moved.
            runtime.fire(self, outcome)
            if self.state == END:
                self.end_outcome = outcome
            if outcome == "hangup" and self.state == flow.on_hangup:
                self.hangup_handled = True
            if outcome == "error" and flow.on_error and self.state == flow.on_error:
                self.error_handled = True
            self._record(step, result, started)
            if outcome == "error" and self.state == END:
                return True, result.error or f"step '{step.id}' failed"
        return False, None

    @staticmethod
    def _result_fields(step: Step, result: dict[str, Any]) -> dict[str, Any]:
        # Every declared field has a value (None when the step did not produce it), so
        # `steps.rec.url` after a timeout or an error is None, not a run-time error.
        fields = step.result_fields
        if all(name in result for name in fields):
            return result
        return {**dict.fromkeys(fields), **result}

    async def _run_step(self, step: Step) -> StepResult:
        spec = ACTIONS[step.action]
        if spec.needs_call and self._call is None:
            # `check` refuses such a step on a call-less path; a subflow's step may still
            # get here if its file changed under a loaded flow.
            if spec.ends_flow:
                return StepResult("next", {"reason": None})
            return StepResult("error", {}, error=f"{step.action} needs a call, and this "
                              "path has none (the outbound call was not answered)")
        if spec.needs_call and self.call.ended and not spec.ends_flow:
            # From a hangup on, a step that needs the live call ends at once (contract).
            return StepResult("hangup", {"state": "ended"})
        if spec.needs_call and self.call.ended:
            return StepResult("next", {"reason": self.call.end_reason})
        try:
            params = render_params(step, self.template_context())
            runner = self.runtime.runners[step.action]
            if step.timeout is not None and spec.waits and not spec.own_timeout:
                # Actions with their own timeout (play, record…) stop their RELAY action
                # themselves and keep its result; the others are cancelled here.
                with anyio.move_on_after(self.step_timeout(step)):
                    result = self._settle(step, await runner(self, step, params))
                    result.params = params
                    return result
                return StepResult("timeout", {}, error=f"step ran longer than {step.timeout} s",
                                  params=params)
            result = self._settle(step, await runner(self, step, params))
            result.params = params
            return result
        except TemplateRenderError as exc:
            return StepResult("error", {}, error=str(exc))
        except Exception as exc:
            # A bug or a malformed reply must not kill the call: the step fails, the flow's
            # error edges decide what happens next, and the call still ends.
            logger.exception("step %s (%s) raised", step.id, step.action, extra=self._log_extra())
            return StepResult("error", {}, error=f"internal error in {step.action}: {exc!r}")

    def _settle(self, step: Step, result: StepResult) -> StepResult:
        """Map what the action saw onto the step's outcomes."""
        spec = ACTIONS[step.action]
        if (spec.needs_call and not spec.ends_flow and self._call is not None
                and self.call.ended and result.outcome != "timeout"
                and result.outcome not in spec.hands_off):
            # The caller hung up during the step: its outcome is `hangup`, its result
            # (a recording's url, say) is kept.
            result.outcome = "hangup"
        if result.outcome not in self.runtime.outcomes[step.id]:
            result.error = (result.error
                            or f"unexpected outcome '{result.outcome}' from {step.action}")
            result.outcome = "error"
        return result

    def _record(self, step: Step, result: StepResult, started: float) -> None:
        entry = TraceEntry(
            call_id=self._call_info["id"],
            flow=self.flow.name,
            version=self.flow.version,
            step=step.id,
            action=step.action,
            outcome=result.outcome,
            next_step=None if self.state == END else self.state,
            started=started - self._t0,
            duration=_loop_time() - started,
            method=result.method,
            control_id=result.control_id,
            result=result.result,
            error=result.error,
            params=result.params,
            at=self._wall0 + (started - self._t0),
            played=result.played,
            within=self.within,
        )
        if self._keep_trace:
            self.trace.append(entry)
        (self._top or self).steps_run += 1
        # DEBUG: a line per step costs as much as the rest of the step's bookkeeping; at INFO
        # the daemon writes one line per call (its path of steps) instead.
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "step %s (%s) -> %s%s", step.id, step.action, result.outcome,
                f": {result.error}" if result.error else "",
                extra={**self._log_extra(), "step": step.id, "action": step.action,
                       "outcome": result.outcome, "next_step": entry.next_step,
                       "duration": entry.duration},
            )
        if self.on_step is not None:
            self.on_step(entry)


def _sip_headers(call: Call) -> Mapping[str, str]:
    headers = call.sip_headers
    return MappingProxyType(headers) if headers else _NO_HEADERS


def _loop_time() -> float:
    """The running loop's clock (time.monotonic() on asyncio's loops; on a virtual clock,
    flowengine.testing's, the simulated time, so the trace's times are exact). Read, not
    kept: a Session attribute for it would be the 30th (see tests/test_engine_memory.py)."""
    return asyncio.get_running_loop().time()
