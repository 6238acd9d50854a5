"""conference and leave_conference: the caller in a named conference (calling.join_conference,
calling.leave_conference, §5.11)."""

from __future__ import annotations

import contextlib
import math
import time
from typing import TYPE_CHECKING, Any

import anyio

from flowengine.actions.base import STOP_GRACE, StepResult
from flowengine.flow.actions.conference import CONFERENCE_RESULTS
from flowengine.relay import CallEnded, RelayError

if TYPE_CHECKING:
    from flowengine.engine.session import Session
    from flowengine.flow import Step

#: The flow's beep values → RELAY's.
_BEEPS = {True: "true", False: "false", "on_enter": "onEnter", "on_exit": "onExit"}
#: Why RELAY says the caller is out → the step's outcome.
_OUTCOMES = {"ended": "ended", "left": "left", "kicked": "left", "full": "full",
             "hangup": "hangup"}
_METHOD = "calling.join_conference"


def _join_params(params: dict[str, Any]) -> dict[str, Any]:
    """The step's parameters → join_conference's keyword arguments (left out: RELAY's
    defaults)."""
    kw: dict[str, Any] = {}
    for key in ("muted", "start_on_enter", "end_on_exit", "max_participants"):
        if params.get(key) is not None:
            kw[key] = params[key]
    if "beep" in params:
        kw["beep"] = _BEEPS[params["beep"]]
    if params.get("record"):
        kw["record"] = "record-from-start"
    for key in ("wait_url", "coach"):
        value = str(params.get(key) or "").strip()
        if value:
            kw[key] = value
    return kw


async def run_conference(session: Session, step: Step, params: dict[str, Any]) -> StepResult:
    """``conference: {name, …}`` → ``calling.join_conference``. By default the step lasts
    while the caller is in: ``ended`` (the conference ended), ``left`` (taken out), ``full``
    (never got in), ``hangup``; ``wait: false`` ends it with ``joined`` once in. A step
    timeout takes the caller out (``timeout``)."""
    call = session.call
    name = str(params["name"]).strip()
    result: dict[str, Any] = {**dict.fromkeys(CONFERENCE_RESULTS), "name": name}
    if not name:
        return StepResult("error", result, error="the conference name is empty")
    started = time.monotonic()
    try:
        conference = await call.join_conference(name, **_join_params(params))
    except CallEnded:
        return StepResult("hangup", result, method=_METHOD)
    except RelayError as exc:
        return StepResult("error", result, method=_METHOD, error=str(exc))
    result["conference_id"] = conference.conference_id or None
    timeout = session.step_timeout(step)
    timed_out = False
    with anyio.move_on_after(math.inf if timeout is None else timeout) as scope:
        if params.get("wait") is False and await conference.wait_joined():
            return StepResult("joined", result, method=_METHOD)
        done = await conference.wait()
    if scope.cancelled_caught:
        timed_out = True
        with anyio.move_on_after(STOP_GRACE, shield=True):
            with contextlib.suppress(RelayError):
                await call.leave_conference(conference.conference_id)
            await conference.wait()
    done_result = conference.result
    if done_result is None:  # the leave was never confirmed
        return StepResult("timeout", result, method=_METHOD)
    done = done_result
    time_in = done.params.get("time_in")
    result.update(reason=done.reason, recording_url=done.recording_url,
                  duration=round(float(time_in), 3) if isinstance(time_in, int | float)
                  else round((time.monotonic() - started) / session.time_scale, 3))
    if timed_out:
        return StepResult("timeout", result, method=_METHOD)
    return StepResult(_OUTCOMES.get(done.reason, "left"), result, method=_METHOD)


async def run_leave_conference(session: Session, step: Step,
                               params: dict[str, Any]) -> StepResult:
    """``leave_conference: {}`` → ``calling.leave_conference`` for the conference the call
    is in; ``left`` once RELAY took it out."""
    call = session.call
    conference = call.conference
    method = "calling.leave_conference"
    if conference is None or conference.done:
        return StepResult("error", {"conference_id": None},
                          error="the caller is in no conference")
    result = {"conference_id": conference.conference_id}
    try:
        await call.leave_conference(conference.conference_id)
    except RelayError as exc:
        return StepResult("error", result, method=method, error=str(exc))
    with anyio.move_on_after(STOP_GRACE):
        await conference.wait()
    return StepResult("hangup" if call.ended else "left", result, method=method)
