"""enqueue: the caller waits in a named queue (calling.queue.enter, §5.10) until an agent
takes them, hearing hold music and announcements of their place, or leaves it (a key, the
maximum wait, a hang-up)."""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, Any

import anyio

from flowengine.actions.base import STOP_GRACE, StepResult
from flowengine.actions.media import relay_media
from flowengine.flow.inputs import InputError
from flowengine.flow.templates import render
from flowengine.relay import Action, CallEnded, RelayError
from flowengine.relay.call import PLAY_TERMINAL, collect_terminal

if TYPE_CHECKING:
    from flowengine.engine.machine import FlowRuntime
    from flowengine.engine.session import Session
    from flowengine.flow import Step
    from flowengine.relay import Call, QueueWait

METHOD = "calling.queue.enter"


async def run_enqueue(session: Session, step: Step, params: dict[str, Any]) -> StepResult:
    """``enqueue: {queue, music?, announce?, announce_every, leave_on?, max_wait?}``.

    ``connected`` once an agent took the call and the bridge ended (the agent hung up;
    the caller is still on the line); ``left`` on a ``leave_on`` key; ``timeout`` after
    ``max_wait`` (or the step's ``timeout``); ``hangup``; ``error`` when RELAY refuses.
    """
    call = session.call
    name = str(params["queue"]).strip()
    result: dict[str, Any] = {"wait_time": None, "position_at_entry": None, "agent": None,
                              "key": None}
    if not name:
        return StepResult("error", result, error="the queue name is empty")
    callout: _Callout | None = None
    if params.get("call_agents"):
        result["agents_called"] = []
        spec = params["call_agents"]
        flow_name = str(spec["flow"]).strip()
        try:
            # Resolved now, as transfer resolves: the flow named is the one of this moment.
            runtime = await session.resolve_flow(flow_name)
        except LookupError as exc:
            return StepResult("error", result, error=f"call_agents: {exc}")
        callout = _Callout(session, runtime, spec, name, result["agents_called"])
    try:
        wait = await call.queue_enter(name)
    except CallEnded:
        return StepResult("hangup", result, method=METHOD)
    except RelayError as exc:
        return StepResult("error", result, method=METHOD, error=str(exc))
    assert wait.action is not None
    if callout is None:
        return await _wait(session, step, params, wait, result, None)
    async with anyio.create_task_group() as agents:
        agents.start_soon(callout.run)
        try:
            done = await _wait(session, step, params, wait, result, callout)
        finally:
            # The caller was taken and the bridge is over, or the caller left: no agent's
            # call outlives the step (each flow's session hangs its call up, shielded).
            callout.finish()
    return done


async def _wait(session: Session, step: Step, params: dict[str, Any], wait: QueueWait,
                result: dict[str, Any], callout: _Callout | None) -> StepResult:
    """The caller in the queue, until taken (and the bridge over) or gone."""
    call = session.call
    name = wait.name
    scale = session.time_scale
    assert wait.action is not None
    played: list[dict[str, Any]] = []
    waiting = _Waiting(session, step, params, wait, played)
    limits = [x for x in (params.get("max_wait"), step.timeout) if x is not None]
    limit = min(float(x) for x in limits) * scale if limits else math.inf
    timed_out = False
    async with anyio.create_task_group() as tg:
        tg.start_soon(waiting.media)
        if params.get("leave_on"):
            tg.start_soon(waiting.keys, str(params["leave_on"]))
        with anyio.move_on_after(limit) as scope:
            await wait.action.wait()
        if scope.cancelled_caught:
            timed_out = True
            with anyio.move_on_after(STOP_GRACE, shield=True):
                with contextlib.suppress(RelayError):
                    await call.queue_leave(wait)
                await wait.action.wait()
        tg.cancel_scope.cancel()
    state = wait.action.result.state if wait.action.result is not None else "left"
    waited = (anyio.current_time() - wait.entered) / scale
    result.update(wait_time=round(waited, 3), position_at_entry=wait.position_at_entry or None,
                  key=waiting.key)
    if state == "hangup":
        wait.gone()
        return StepResult("hangup", result, method=METHOD, control_id=wait.action.control_id,
                          played=played)
    if state != "dequeued":
        outcome = "left" if waiting.key else "timeout" if timed_out else "error"
        return StepResult(outcome, result, method=METHOD, control_id=wait.action.control_id,
                          played=played, error=None if outcome != "error" else
                          "RELAY took the call out of the queue")
    call.client.queues.record_wait(name, waited)
    bridge = call.bridge
    if bridge is not None:
        if callout is not None:
            await bridge.wait(("connected",))
            callout.taken((bridge.peer or {}).get("call_id"))
        # The step lasts as long as the caller talks with the agent (§5.10).
        await bridge.wait(("disconnected",))
        peer = bridge.peer or {}
        device = peer.get("device")
        dparams = device.get("params") if isinstance(device, dict) else None
        if isinstance(dparams, dict):
            result["agent"] = dparams.get("from_number") or dparams.get("from")
        result["agent_call_id"] = peer.get("call_id")
        if callout is not None and callout.taker is not None:
            # The peer's device of a call we placed names our caller id: say the agent's.
            result["agent"] = callout.taker["to"]
    elif callout is not None:
        callout.taken(None)
    return StepResult("connected", result, method=METHOD, control_id=wait.action.control_id,
                      played=played)


class _Waiting:
    """The caller's side of a wait: the music and announcements, and the leave keys."""

    def __init__(self, session: Session, step: Step, params: dict[str, Any], wait: QueueWait,
                 played: list[dict[str, Any]]) -> None:
        self.session = session
        self.call: Call = session.call
        self.step = step
        self.params = params
        self.wait = wait
        self.played = played
        self.key: str | None = None

    def figures(self) -> dict[str, Any]:
        """What ``queue.*`` means in an announcement, now."""
        wait = self.wait
        figures = self.call.client.queues.peek(wait.name)
        expected = figures.expected_wait if figures is not None else None
        return {"name": wait.name, "position": wait.position, "size": wait.size,
                "expected_wait": None if expected is None else round(expected),
                "waited": round((anyio.current_time() - wait.entered) / self.session.time_scale)}

    async def media(self) -> None:
        """Announce at once and every ``announce_every`` seconds; music in between."""
        scale = self.session.time_scale
        announce = self.step.params.get("announce")
        every = float(self.params.get("announce_every") or 30) * scale
        music = [relay_media(item) for item in self.params.get("music") or ()]
        if music:
            self.played.extend(self.params["music"])
        next_at = anyio.current_time()
        while not self.call.ended:
            if announce and anyio.current_time() >= next_at:
                context = {**self.session.template_context(), "queue": self.figures()}
                items = render(announce, context)
                self.played.extend(items)
                await self._play([relay_media(item) for item in items], None)
                next_at = anyio.current_time() + every
            remaining = next_at - anyio.current_time() if announce else math.inf
            if music and remaining > 0:
                await self._play(music, None if remaining == math.inf else remaining)
            else:
                # Every pass waits (a checkpoint): an ended call never spins this loop.
                await anyio.sleep(max(0.0, remaining) if remaining != math.inf else 3600)

    async def _play(self, media: list[dict[str, Any]], limit: float | None) -> None:
        action = await _start(self.call, "play", {"play": media}, PLAY_TERMINAL)
        await _run(action, limit)

    async def keys(self, keys: str) -> None:
        """Listen for a ``leave_on`` key; the first one takes the caller out of the queue."""
        every = float(self.params.get("announce_every") or 30)
        while True:
            action = await _start(self.call, "collect",
                                  {"digits": {"max": 1, "digit_timeout": 1.0},
                                   "initial_timeout": every}, collect_terminal)
            done = await _run(action, None)
            if done is None or done.state not in ("digit", "no_input"):
                return  # the call ended, or RELAY cannot listen: the caller just waits
            inner = done.params.get("result")
            pressed = (inner.get("params") or {}).get("digits") if isinstance(inner, dict) \
                else None
            if isinstance(pressed, str) and pressed and pressed[0] in keys:
                self.key = pressed[0]
                with contextlib.suppress(RelayError):
                    await self.call.queue_leave(self.wait)
                return


async def _start(call: Call, kind: str, params: dict[str, Any], terminal: Any) -> Action:
    """Start an action, shielded: once sent, it is ours to stop (a cancel that came while
    RELAY answered would leave hold music playing into the agent's bridge)."""
    with anyio.CancelScope(shield=True):
        action = await call.start_action(kind, params, terminal)
    return action


async def _run(action: Action, limit: float | None) -> Any:
    """Wait for ``action`` (at most ``limit`` seconds); stop it when the wait is cut short
    (the limit, or the step ending), shielded so that the stop is sent."""
    try:
        if limit is None:
            return await action.wait()
        with anyio.move_on_after(max(0.0, limit)):
            return await action.wait()
        return None
    finally:
        if not action.done:
            with anyio.move_on_after(STOP_GRACE, shield=True):
                with contextlib.suppress(RelayError):
                    await action.stop()



class _Callout:
    """``call_agents``: outbound calls to the agents' numbers, running the named flow
    (which says a caller waits and takes them with ``connect: {queue: NAME}``), one after
    another (``serial``) or all at once (``parallel``), until one takes the caller.

    Each agent's call runs in its own cancel scope: once the caller is taken, the others'
    are cancelled (a ringing dial is hung up, an answered flow's call ended); the taker's
    goes on with the bridge, until the step ends and cancels it too.
    """

    def __init__(self, session: Session, runtime: FlowRuntime, spec: dict[str, Any],
                 queue: str, log: list[dict[str, Any]]) -> None:
        self.session = session
        self.runtime = runtime
        self.numbers = [str(n).strip() for n in spec.get("numbers") or ()]
        self.parallel = spec.get("strategy") == "parallel"
        ring = spec.get("ring")
        self.ring = None if ring is None else float(ring)
        call = session.call
        outbound = runtime.flow.outbound
        # Our number the caller dialled, unless the agents' flow names its own caller id.
        self.from_: str | None = (str(spec["from"]) if spec.get("from") else None
                                  if outbound is not None and outbound.from_ is not None
                                  else call.to_number)
        self.vars = {"queue": queue, "caller": call.from_number}
        self.log = log
        self.stopped = False
        self.taker: dict[str, Any] | None = None
        self._scopes: dict[int, anyio.CancelScope] = {}
        self._calls: dict[int, Call] = {}

    async def run(self) -> None:
        """Dial the agents (serially: the next once the last one's call is over)."""
        if self.parallel:
            async with anyio.create_task_group() as tg:
                for number in self.numbers:
                    tg.start_soon(self._one, number)
            return
        for number in self.numbers:
            if self.stopped:
                return
            await self._one(number)

    def taken(self, peer: str | None) -> None:
        """The caller was taken by the agent whose call is ``peer``: stop the others."""
        self.stopped = True
        for i, scope in list(self._scopes.items()):
            call = self._calls.get(i)
            if peer is not None and call is not None and call.call_id == peer:
                self.taker = self.log[i]
                self.log[i]["took_caller"] = True
            elif not self._serving_another(i):
                scope.cancel()

    def finish(self) -> None:
        """The step is over: end every agent call but one talking with another caller."""
        self.stopped = True
        for i, scope in list(self._scopes.items()):
            if self.log[i] is self.taker or not self._serving_another(i):
                scope.cancel()

    def _serving_another(self, i: int) -> bool:
        # An agent whose connect took the caller at the head of the queue when that was
        # someone else (callers' call-outs race): cutting that call would cut their
        # conversation, so it is left to end (the step waits for it).
        call = self._calls.get(i)
        bridge = call.bridge if call is not None else None
        if bridge is None or bridge.done:
            return False
        return (bridge.peer or {}).get("call_id") != self.session.call.call_id

    async def _one(self, number: str) -> None:
        entry: dict[str, Any] = {"to": number, "outcome": None, "reason": None,
                                 "took_caller": False}
        self.log.append(entry)
        index = len(self.log) - 1

        def dialed(d: Any) -> None:
            if d.call is not None:
                self._calls[index] = d.call
            entry["outcome"] = d.outcome

        with anyio.CancelScope() as scope:
            self._scopes[index] = scope
            try:
                report = await self.session.call_out(
                    self.runtime, number, from_=self.from_, ring=self.ring, vars=self.vars,
                    on_dialed=dialed)
            except InputError as exc:
                entry.update(outcome="failed", reason=str(exc))
                return
            finally:
                del self._scopes[index]
                if entry["outcome"] is None:
                    # Ended while it rang: the caller was taken, or left.
                    entry["outcome"] = "cancelled"
            entry.update(outcome=report.outcome, reason=report.reason)
