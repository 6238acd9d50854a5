"""branch, set and log: steps that need no live call (they run after a hangup too)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowengine.actions.base import StepResult

if TYPE_CHECKING:
    from flowengine.engine.session import Session
    from flowengine.flow import Step

#: The outcome of a branch step none of whose conditions held and that has no default.
NO_BRANCH = "next"


def branch_outcome(index: int) -> str:
    """The machine trigger for taking a step's ``index``-th branch."""
    return f"branch{index}"


async def run_branch(session: Session, step: Step, params: Any) -> StepResult:
    """Take the first branch whose ``when`` holds (a branch without ``when`` always does)."""
    for index, branch in enumerate(step.branches):
        if branch.when is None or session.evaluate(branch.when):
            return StepResult(branch_outcome(index), {"goto": branch.goto, "index": index})
    return StepResult(NO_BRANCH, {"goto": step.next, "index": None})


async def run_set(session: Session, step: Step, params: dict[str, Any]) -> StepResult:
    """Write each rendered value under ``vars``."""
    session.vars.update(params)
    return StepResult("next", {})


async def run_log(session: Session, step: Step, params: Any) -> StepResult:
    """Write the rendered text to the call's log and trace."""
    text = str(params)
    session.log(text)
    return StepResult("next", {"text": text})
