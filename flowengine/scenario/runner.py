"""Running scenarios over the real simulator, and comparing what happened with ``expect``.

Each scenario gets its own in-process :class:`~flowengine.sim.Simulator` (so faults and
timers of one cannot touch another), one inbound call on the scenario's context — or, for a
flow with ``outbound:``, one call it places (``run_outbound``) to a number that does what the
scenario's ``callee`` says — and a
:class:`~flowengine.relay.RelayClient` whose call runs through the flow exactly as
``flowengine run`` would run it. What the call did (the engine's ``SessionReport`` and its
trace of rendered parameters) is then compared with the scenario's expectations; every
difference becomes a :class:`Mismatch` that shows the expected and the actual value.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import math
import re
import secrets
from collections import deque
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import anyio

from flowengine.engine import FlowRuntime, SessionReport
from flowengine.engine.outbound import Dialed, OutboundReport, run_outbound
from flowengine.engine.runner import run_calls
from flowengine.engine.session import TraceEntry
from flowengine.flow import FlowVersion
from flowengine.flow.schedules import WALL_CLOCK, Clock, SetClock

from .model import (
    APPROX_WITHIN,
    RECEIVER_TOKEN,
    RECORDING_ACTIONS,
    RECORDING_WITHIN,
    CallSpec,
    Fault,
    Scenario,
    ScenarioFile,
)
from .receiver import Received, Receiver, Reply

#: Simulated seconds a scenario may take before it counts as stuck (virtual time: a flow
#: waiting forever reaches it at once).
SCENARIO_TIMEOUT = 3600.0
#: How the end of the flow is shown in a path.
END = "(end)"
#: The step id of an outbound flow's dial in ``ScenarioResult.taken`` and coverage.
DIAL = "(dial)"


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One expectation that did not hold."""

    #: What was compared, e.g. ``path``, ``steps.take_message.duration``, ``said[2]``.
    what: str
    expected: str
    actual: str

    def lines(self) -> list[str]:
        """The mismatch as the test report prints it."""
        return [f"{self.what}:", f"  expected: {self.expected}", f"  actual:   {self.actual}"]


@dataclass(slots=True)
class CallResult:
    """What one call of a scenario with several (``calls:``) did."""

    spec: CallSpec
    report: SessionReport | None = None
    #: (step, outcome, next step or None) for every step the call ran, in order.
    taken: list[tuple[str, str, str | None]] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)


@dataclass(slots=True)
class ScenarioResult:
    """What one scenario did and whether it held."""

    file: str
    flow: FlowVersion
    scenario: Scenario
    report: SessionReport | None = None
    mismatches: list[Mismatch] = field(default_factory=list)
    #: Set when the scenario could not run to the end (stuck, simulator or client failure).
    error: str | None = None
    #: (step, outcome, next step or None) for every step the call ran, in order.
    taken: list[tuple[str, str, str | None]] = field(default_factory=list)
    #: The requests the scenario's HTTP receiver got (None without a receiver).
    received: list[Received] | None = None
    #: For an outbound flow: how the call it placed went.
    dial: OutboundReport | None = None
    #: Each call of a scenario with ``calls:``, in the order written (empty otherwise).
    calls: list[CallResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when the call ran and every expectation held."""
        return self.error is None and not self.mismatches

    def failure_text(self) -> str:
        """Why it failed, followed by the path the call actually took."""
        lines: list[str] = []
        if self.error:
            lines.append(f"error: {self.error}")
        for mismatch in self.mismatches:
            lines.extend(mismatch.lines())
        if self.taken:
            lines.append("the call: " + _shown_taken(self.taken))
        for call in self.calls:
            lines.append(f"call '{call.spec.name}': " + (_shown_taken(call.taken)
                                                          if call.taken else "(nothing ran)"))
        if self.report is not None and self.report.error and not any(
                m.what == "error" for m in self.mismatches):
            lines.append(f"flow error: {self.report.error}")
        return "\n".join(lines)


def _shown_taken(taken: Sequence[tuple[str, str, str | None]]) -> str:
    return (" → ".join(f"dial ({o})" if s == DIAL else f"{s} ({o})" for s, o, _ in taken)
            + (f" → {END}" if taken[-1][2] is None else ""))


# -- running -----------------------------------------------------------------------------------

async def run_scenario(flow: FlowVersion, scenario: Scenario, *, file: str = "",
                       runtime: FlowRuntime | None = None,
                       timeout: float = SCENARIO_TIMEOUT) -> ScenarioResult:
    """Run one scenario on its own simulator (and HTTP receiver, if it has one) and compare
    the call with its expectations.

    It always runs on virtual time (:class:`~flowengine.testing.VirtualClockLoop`): called
    on such a loop (``flowengine test``, a test marked ``virtual_time``) it runs right there;
    called on a real loop (a user's own pytest) it runs on a fresh virtual loop in a worker
    thread, so that its simulated minutes never cost real ones either way. ``timeout`` is in
    simulated seconds.
    """
    from flowengine.testing import VirtualClockLoop, run

    if not isinstance(asyncio.get_running_loop(), VirtualClockLoop):
        return await anyio.to_thread.run_sync(functools.partial(
            run, _run_scenario, flow, scenario, file, runtime, timeout))
    return await _run_scenario(flow, scenario, file, runtime, timeout)


async def _run_scenario(flow: FlowVersion, scenario: Scenario, file: str,
                        runtime: FlowRuntime | None, timeout: float) -> ScenarioResult:
    result = ScenarioResult(file, flow, scenario)
    if scenario.calls:
        await _run_several(scenario, result, timeout)
        for call in result.calls:
            if call.report is not None:
                call.mismatches = compare(call.spec.flow, call.spec.expect, call.report)
                result.mismatches.extend(
                    Mismatch(f"{call.spec.name}: {m.what}", m.expected, m.actual)
                    for m in call.mismatches)
            elif result.error is None:
                result.error = f"call '{call.spec.name}' did not run"
        return result
    async with AsyncExitStack() as stack:
        receiver: Receiver | None = None
        if scenario.receiver is not None:
            spec = scenario.receiver
            receiver = await stack.enter_async_context(Receiver(
                [Reply(status, body_json, body, delay * scenario.time_scale)
                 for status, body_json, body, delay in spec.replies], down=spec.down))
            result.received = receiver.received
        if scenario.vars:
            # The scenario's values replace the flow's initial vars for this call only.
            url = receiver.url if receiver is not None else ""
            values = {name: _with_receiver(value, url) for name, value in scenario.vars.items()}
            flow = dataclasses.replace(flow, vars=MappingProxyType({**flow.vars, **values}))
            runtime = FlowRuntime(flow)
        if flow.outbound is not None:
            url = receiver.url if receiver is not None else ""
            inputs = {k: _with_receiver(v, url) for k, v in scenario.inputs.items()}
            await _place_call(flow, scenario, inputs, runtime or FlowRuntime(flow), result,
                              timeout)
        else:
            await _run_call(flow, scenario, runtime or FlowRuntime(flow), result, timeout)
    if result.report is not None:
        result.mismatches = compare(result.flow, scenario.expect, result.report,
                                    received=result.received)
        if "dial" in scenario.expect and result.dial is not None \
                and result.dial.outcome != scenario.expect["dial"]:
            result.mismatches.insert(0, Mismatch("dial", scenario.expect["dial"],
                                                 result.dial.outcome + (
                                                     f" ({result.dial.reason})"
                                                     if result.dial.reason else "")))
    return result


def _with_receiver(value: Any, url: str) -> Any:
    """``value`` with ``${RECEIVER}`` replaced by the receiver's URL, at any depth."""
    if isinstance(value, str):
        return value.replace(RECEIVER_TOKEN, url)
    if isinstance(value, Mapping):
        return {k: _with_receiver(v, url) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_receiver(v, url) for v in value]
    return value


async def _run_call(flow: FlowVersion, scenario: Scenario, runtime: FlowRuntime,
                    result: ScenarioResult, timeout: float) -> None:
    """One simulated call through the flow; sets ``result.report`` or ``result.error``."""
    from flowengine.relay import RelayClient
    from flowengine.sim import Simulator
    from flowengine.testing import config_for, connector

    token = secrets.token_hex(12)
    pending: dict[str, deque[Fault]] = {}
    for fault in scenario.faults:
        pending.setdefault(fault.step, deque()).append(fault)

    # The simulator and the client meet in memory: no port, and on a virtual clock (as
    # `flowengine test` runs) the whole call takes only the CPU time of its steps.
    async with Simulator(project="scenario", token=token, time_scale=scenario.time_scale,
                         listen=False) as sim:

        def arm(step_id: str | None) -> None:
            # The step runs next: its request is the next one of its method.
            queue = pending.get(step_id or "")
            if queue:
                fault = queue.popleft()
                sim.fail_next(fault.method, fault.code, fault.message)

        def on_step(entry: TraceEntry) -> None:
            if entry.within is None:  # a subflow's steps are one step of this flow
                result.taken.append((entry.step, entry.outcome, entry.next_step))
                arm(entry.next_step)

        arm(flow.start)
        sim_call = sim.offer_call(context=scenario.context, from_number=scenario.from_number,
                                  to_number=scenario.to_number, caller=scenario.caller)
        try:
            with anyio.fail_after(timeout):
                async with RelayClient(config_for(sim), flow.contexts,
                                       connect=connector(sim)) as client:
                    clock: Clock = WALL_CLOCK
                    if scenario.at is not None:
                        # Set as the call is about to start; it runs at the simulator's pace.
                        clock = SetClock(scenario.at, scenario.time_scale,
                                         monotonic=asyncio.get_running_loop().time)
                    reports = await run_calls(runtime, client, 1, time_scale=scenario.time_scale,
                                              trace=on_step, clock=clock)
                await sim_call.wait_ended()
        except TimeoutError:
            result.error = (f"the call did not end within {timeout:g} s; "
                            "is the flow waiting forever?")
            return
        except Exception as exc:  # the client or simulator failed: report it
            result.error = f"the scenario could not run: {exc!r}"
            return
    result.report = reports[0]


async def _place_call(flow: FlowVersion, scenario: Scenario, inputs: Mapping[str, Any],
                      runtime: FlowRuntime, result: ScenarioResult, timeout: float) -> None:
    """The call an outbound flow places, to a callee that does what the scenario says;
    sets ``result.dial`` and ``result.report`` (an empty one when no step ran), or
    ``result.error``."""
    from flowengine.flow.inputs import InputError
    from flowengine.relay import RelayClient
    from flowengine.sim import Simulator
    from flowengine.testing import config_for, connector

    token = secrets.token_hex(12)
    pending: dict[str, deque[Fault]] = {}
    for fault in scenario.faults:
        pending.setdefault(fault.step, deque()).append(fault)

    async with Simulator(project="scenario", token=token, time_scale=scenario.time_scale,
                         listen=False) as sim:
        sim.set_callee(scenario.to_number, scenario.callee)

        def arm(step_id: str | None) -> None:
            queue = pending.get(step_id or "")
            if queue:
                fault = queue.popleft()
                sim.fail_next(fault.method, fault.code, fault.message)

        def on_dialed(dialed: Dialed) -> None:
            result.taken.append((DIAL, dialed.outcome, dialed.start))
            arm(dialed.start)

        def on_step(entry: TraceEntry) -> None:
            if entry.within is None:
                result.taken.append((entry.step, entry.outcome, entry.next_step))
                arm(entry.next_step)

        try:
            with anyio.fail_after(timeout):
                async with RelayClient(config_for(sim), connect=connector(sim)) as client:
                    clock: Clock = WALL_CLOCK
                    if scenario.at is not None:  # the call's clock starts as it is dialled
                        clock = SetClock(scenario.at, scenario.time_scale,
                                         monotonic=asyncio.get_running_loop().time)
                    dial = await run_outbound(
                        client, flow, to=scenario.to_number, from_=scenario.from_number or None,
                        vars=inputs, on_step=on_step, on_dialed=on_dialed, runtime=runtime,
                        time_scale=scenario.time_scale, clock=clock)
                await sim.wait_all_ended(timeout=timeout)
        except TimeoutError:
            result.error = (f"the call did not end within {timeout:g} s; "
                            "is the flow waiting forever?")
            return
        except InputError as exc:
            result.error = f"the call was not placed: {exc}"
            return
        except Exception as exc:  # the client or simulator failed: report it
            result.error = f"the scenario could not run: {exc!r}"
            return
    result.dial = dial
    result.report = dial.report or SessionReport(
        status="completed", steps={}, vars=dict(inputs), trace=[], caller_hung_up=False,
        end_reason=None)


async def _run_several(scenario: Scenario, result: ScenarioResult, timeout: float) -> None:
    """The calls of a ``calls:`` scenario on one simulator: one client per flow (subscribed
    to the contexts its calls come in on), each call offered at its ``at``."""
    from flowengine.relay import RelayClient
    from flowengine.sim import Simulator
    from flowengine.testing import config_for, connector

    token = secrets.token_hex(12)
    result.calls = [CallResult(spec) for spec in scenario.calls]
    by_flow: dict[str, list[CallResult]] = {}
    for call in result.calls:
        by_flow.setdefault(call.spec.flow.file, []).append(call)
    by_id: dict[str, CallResult] = {}
    scale = scenario.time_scale

    def on_step(entry: TraceEntry) -> None:
        call = by_id.get(entry.call_id)
        if call is not None and entry.within is None:
            call.taken.append((entry.step, entry.outcome, entry.next_step))

    async with Simulator(project="scenario", token=token, time_scale=scale,
                         listen=False) as sim:
        reports: list[SessionReport] = []

        # One clock for every call (at: sets it as the scenario starts; it runs on at the
        # simulator's pace), so a call that comes in later reads a later time.
        clock: Clock = WALL_CLOCK if scenario.at is None else SetClock(
            scenario.at, scale, monotonic=asyncio.get_running_loop().time)

        async def serve(calls: list[CallResult], client: RelayClient) -> None:
            flow = calls[0].spec.flow
            reports.extend(await run_calls(FlowRuntime(flow), client, len(calls),
                                           time_scale=scale, trace=on_step, clock=clock))

        async def offer() -> None:
            start = anyio.current_time()
            for call in sorted(result.calls, key=lambda c: c.spec.at):
                await anyio.sleep_until(start + call.spec.at * scale)
                spec = call.spec
                placed = sim.offer_call(context=spec.context, from_number=spec.from_number,
                                        to_number=spec.to_number, caller=spec.caller)
                by_id[placed.call_id] = call

        try:
            with anyio.fail_after(timeout):
                async with AsyncExitStack() as stack:
                    clients = [(calls, await stack.enter_async_context(RelayClient(
                        config_for(sim), sorted({c.spec.context for c in calls}),
                        connect=connector(sim))))
                        for calls in by_flow.values()]
                    async with anyio.create_task_group() as tg:
                        for calls, client in clients:
                            tg.start_soon(serve, calls, client)
                        tg.start_soon(offer)
                await sim.wait_all_ended()
        except TimeoutError:
            result.error = (f"the calls did not end within {timeout:g} s; "
                            "is a flow waiting forever?")
            return
        except Exception as exc:  # the client or simulator failed: report it
            result.error = f"the scenario could not run: {exc!r}"
            return
    for report in reports:
        if report.trace and (owner := by_id.get(report.trace[0].call_id)) is not None:
            owner.report = report


async def run_file(loaded: ScenarioFile, *, names: Sequence[str] | None = None,
                   timeout: float = SCENARIO_TIMEOUT) -> list[ScenarioResult]:
    """Run the scenarios of one file in order (only those whose name contains one of
    ``names``, when given)."""
    runtime = FlowRuntime(loaded.flow)
    results = []
    for scenario in loaded.scenarios:
        if names and not any(n in scenario.name for n in names):
            continue
        results.append(await run_scenario(loaded.flow, scenario, file=loaded.file,
                                          runtime=runtime, timeout=timeout))
    return results


# -- comparing ---------------------------------------------------------------------------------

def show(value: Any) -> str:
    """A value as the report shows it (JSON: strings quoted, null, true/false)."""
    return json.dumps(value, ensure_ascii=False, default=str)


def show_path(steps: Sequence[str]) -> str:
    """A path of steps, ``a → b → c`` (``(nothing)`` when empty)."""
    return " → ".join(steps) if steps else "(nothing ran)"


def is_subsequence(wanted: Sequence[Any], items: Sequence[Any],
                   same: Any = lambda want, have: want == have) -> int:
    """How many items of ``wanted`` were found in order in ``items`` (all: ``len(wanted)``)."""
    found = 0
    for item in items:
        if found < len(wanted) and same(wanted[found], item):
            found += 1
    return found


def match(expected: Any, actual: Any) -> str | None:
    """None when ``actual`` fits ``expected`` (a value or a matcher mapping), else how the
    expectation reads (for the report)."""
    if not isinstance(expected, Mapping):
        if _equal(expected, actual):
            return None
        return show(expected)
    problems: list[str] = []
    if "equals" in expected and not _equal(expected["equals"], actual):
        problems.append(show(expected["equals"]))
    if "contains" in expected and not (isinstance(actual, str) and expected["contains"] in actual):
        problems.append(f"text containing {show(expected['contains'])}")
    if "matches" in expected and not (isinstance(actual, str)
                                      and re.search(expected["matches"], actual)):
        problems.append(f"text matching /{expected['matches']}/")
    if "approx" in expected:
        within = expected.get("within", APPROX_WITHIN)
        if not _number(actual) or abs(float(actual) - float(expected["approx"])) > within:
            problems.append(f"{expected['approx']:g} ± {within:g}")
    if "present" in expected and (actual is not None) != expected["present"]:
        problems.append("a value (not null)" if expected["present"] else "null")
    return " and ".join(problems) if problems else None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _equal(expected: Any, actual: Any) -> bool:
    if _number(expected) and _number(actual):
        return float(expected) == float(actual)
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    return bool(expected == actual)


def _media(report: SessionReport, kind: str) -> list[str]:
    """Every ``say`` text (or ``audio`` url) the call's steps played, in order: what a step
    reports it played (a prompt's re-prompts included), else a play step's media."""
    found: list[str] = []
    for entry in report.trace:
        items: Any = entry.played
        if items is None and entry.action == "play" and isinstance(entry.params, Mapping):
            items = entry.params.get("media")
        for item in items or ():
            if isinstance(item, Mapping) and kind in item:
                found.append(str(item[kind]))
    return found


def compare(flow: FlowVersion, expect: Mapping[str, Any], report: SessionReport, *,
            received: Sequence[Received] | None = None) -> list[Mismatch]:
    """Every expectation of ``expect`` that ``report`` (and the requests an HTTP receiver
    got, ``received``) does not meet."""
    out: list[Mismatch] = []
    own = [e for e in report.trace if e.within is None]  # a subflow's steps are not the flow's
    path = [e.step for e in own]

    if "path" in expect and list(expect["path"]) != path:
        out.append(Mismatch("path", show_path(expect["path"]), show_path(path)))
    if "path_includes" in expect:
        wanted = list(expect["path_includes"])
        found = is_subsequence(wanted, path)
        if found < len(wanted):
            out.append(Mismatch("path_includes", show_path(wanted) + _in_order(wanted),
                                f"{show_path(path)} (no '{wanted[found]}' after "
                                f"{show_path(wanted[:found]) if found else 'the start'})"))
    for step in expect.get("not_visited") or ():
        if step in path:
            out.append(Mismatch(f"not_visited {step}", f"step '{step}' does not run",
                                f"it ran: {show_path(path)}"))
    last_outcome = {e.step: e.outcome for e in own}
    for step, outcome in (expect.get("outcomes") or {}).items():
        have = last_outcome.get(step)
        if have != outcome:
            out.append(Mismatch(f"outcomes.{step}", outcome,
                                have if have is not None else f"step '{step}' did not run"))
    for key, kind in (("said", "say"), ("played", "audio")):
        if key in expect:
            wanted = list(expect[key])
            media = _media(report, kind)
            found = is_subsequence(wanted, media, lambda w, h: w in h)
            if found < len(wanted):
                out.append(Mismatch(key, " / ".join(map(show, wanted)) + _in_order(wanted),
                                    " / ".join(map(show, media)) if media else "nothing"
                                    + (" was said" if kind == "say" else " was played")))
    if "recording" in expect:
        out.extend(_compare_recording(flow, expect["recording"], report))
    for step, fields in (expect.get("steps") or {}).items():
        result = report.steps.get(step)
        for name, want in fields.items():
            what = f"steps.{step}.{name}"
            if result is None:
                out.append(Mismatch(what, _describe(want), f"step '{step}' did not run"))
                continue
            wrong = match(want, result.get(name))
            if wrong is not None:
                out.append(Mismatch(what, wrong, show(result.get(name))))
    for name, want in (expect.get("vars") or {}).items():
        if name not in report.vars:
            out.append(Mismatch(f"vars.{name}", _describe(want), "not set"))
            continue
        wrong = match(want, report.vars[name])
        if wrong is not None:
            out.append(Mismatch(f"vars.{name}", wrong, show(report.vars[name])))
    for key, actual in (("status", report.status), ("caller_hung_up", report.caller_hung_up),
                        ("end_reason", report.end_reason)):
        if key in expect and not _equal(expect[key], actual):
            out.append(Mismatch(key, show(expect[key]), show(actual)))
    if "received" in expect:
        out.extend(_compare_received(expect["received"], received or []))
    if "error" in expect:
        want = expect["error"]
        wrong = match(want, report.error)
        if wrong is not None:
            out.append(Mismatch("error", "no error" if want is None else wrong,
                                "no error" if report.error is None else show(report.error)))
    return out


def _compare_received(wanted: Sequence[Mapping[str, Any]],
                      got: Sequence[Received]) -> list[Mismatch]:
    out: list[Mismatch] = []
    if len(wanted) != len(got):
        shown = "; ".join(f"{r.method} {r.path}" for r in got) or "none"
        out.append(Mismatch("received", f"{len(wanted)} request{'s' if len(wanted) != 1 else ''}",
                            f"{len(got)}: {shown}"))
    for index, (want, request) in enumerate(zip(wanted, got, strict=False)):
        what = f"received[{index}]"
        if "method" in want and want["method"] != request.method:
            out.append(Mismatch(f"{what}.method", want["method"], request.method))
        for key, actual in (("path", request.path),
                            ("body", request.body.decode("utf-8", "replace"))):
            if key in want and (wrong := match(want[key], actual)) is not None:
                out.append(Mismatch(f"{what}.{key}", wrong, show(actual)))
        body = request.json if isinstance(request.json, Mapping) else {}
        for name, expected in (want.get("json") or {}).items():
            if name not in body:
                out.append(Mismatch(f"{what}.json.{name}", _describe(expected),
                                    "not in the body" if request.json is not None
                                    else "the body is not JSON"))
            elif (wrong := match(expected, body[name])) is not None:
                out.append(Mismatch(f"{what}.json.{name}", wrong, show(body[name])))
        for name, expected in (want.get("headers") or {}).items():
            value = request.headers.get(name.lower())
            if (wrong := match(expected, value)) is not None:
                out.append(Mismatch(f"{what}.headers.{name}", wrong,
                                    show(value) if value is not None else "not sent"))
    return out


def _in_order(items: Sequence[Any]) -> str:
    return " (in this order)" if len(items) > 1 else ""


def _describe(want: Any) -> str:
    return match(want, object()) or show(want)


def _compare_recording(flow: FlowVersion, want: Any, report: SessionReport) -> list[Mismatch]:
    records = [s.id for s in flow.steps.values() if s.action in RECORDING_ACTIONS]
    made = {sid: report.steps[sid] for sid in records
            if sid in report.steps and report.steps[sid].get("url")}
    if want is False:
        if made:
            return [Mismatch("recording", "no recording",
                             "; ".join(f"{sid}: {r['url']}" for sid, r in made.items()))]
        return []
    step = want.get("step") or records[0]
    rec = made.get(step)
    if rec is None:
        ran = report.steps.get(step)
        actual = (f"step '{step}' did not run" if ran is None
                  else f"no recording (step '{step}' ended with state {show(ran.get('state'))})")
        return [Mismatch(f"recording ({step})", "a recording with a url", actual)]
    out = []
    if "duration" in want:
        within = want.get("within", RECORDING_WITHIN)
        duration: Any = rec.get("duration")
        if not _number(duration) or abs(float(duration) - float(want["duration"])) > within:
            out.append(Mismatch(f"recording ({step}) duration",
                                f"{want['duration']:g} s ± {within:g}", f"{duration} s"))
    if "format" in want and rec.get("format") != want["format"]:
        out.append(Mismatch(f"recording ({step}) format", show(want["format"]),
                            show(rec.get("format"))))
    return out
