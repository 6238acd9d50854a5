"""branch, set, log and goto: steps that need no live call (they run after a hangup too)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowengine.actions.base import StepResult
from flowengine.flow import NEXT, branch_outcome, choose_branch

if TYPE_CHECKING:
    from flowengine.engine.session import Session
    from flowengine.flow import Step

async def run_branch(session: Session, step: Step, params: Any) -> StepResult:
    """Take the first branch whose ``when`` holds (a branch without ``when`` always does)."""
    branch = choose_branch(step, session.template_context())
    if branch is None:
        return StepResult(NEXT, {"goto": step.next, "index": None})
    return StepResult(branch_outcome(branch.index), {"goto": branch.goto, "index": branch.index})


async def run_set(session: Session, step: Step, params: dict[str, Any]) -> StepResult:
    """Write each rendered value under ``vars``."""
    session.vars.update(params)
    return StepResult(NEXT, {})


async def run_log(session: Session, step: Step, params: Any) -> StepResult:
    """Write the rendered text to the call's log and trace."""
    text = str(params)
    session.log(text)
    return StepResult(NEXT, {"text": text})


async def run_goto(session: Session, step: Step, params: dict[str, Any]) -> StepResult:
    """``goto: STEP`` → go there (outcome ``next``); with ``max_visits``, only while STEP has
    run fewer times than that on this call, else ``exhausted``."""
    target = params["step"]
    visits = session.visits.get(target, 0)
    limit = params.get("max_visits")
    outcome = "exhausted" if limit is not None and visits >= limit else NEXT
    return StepResult(outcome, {"target": target, "visits": visits})
