"""answer and hangup: the call's lifecycle (calling.answer, calling.end)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowengine.actions.base import StepResult
from flowengine.relay import CallEnded, RelayError

if TYPE_CHECKING:
    from flowengine.engine.session import Session
    from flowengine.flow import Step


async def run_answer(session: Session, step: Step, params: dict[str, Any]) -> StepResult:
    """``answer: {}`` → ``calling.answer``; outcome ``answered``."""
    call = session.call
    try:
        await call.answer(**params)
    except CallEnded:
        return StepResult("hangup", {"state": "ended"}, method="calling.answer")
    except RelayError as exc:
        return StepResult("error", {"state": call.state}, method="calling.answer", error=str(exc))
    return StepResult("answered", {"state": "answered"}, method="calling.answer")


async def run_hangup(session: Session, step: Step, params: dict[str, Any]) -> StepResult:
    """``hangup: {reason?}`` → ``calling.end``. Nothing runs after it by default."""
    reason = str(params.get("reason") or "hangup")
    try:
        await session.call.hangup(reason)
    except RelayError as exc:
        return StepResult("error", {"reason": reason}, method="calling.end", error=str(exc))
    session.hangup_sent = True
    return StepResult("next", {"reason": reason}, method="calling.end")
