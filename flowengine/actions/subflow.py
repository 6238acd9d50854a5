"""call and return: reusable subflows.

``call: lib/menu.yaml`` runs another flow file's steps on the same call, with its own
``steps``, ``vars`` and ``params`` (what the calling step passed, over the subflow's
defaults). A ``return`` step in the subflow ends it; its values become the calling step's
result, ``steps.<id>.<key>``. The subflow shares the call and the trace with its caller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowengine.actions.base import StepResult
from flowengine.flow import NEXT

if TYPE_CHECKING:
    from flowengine.engine.session import Session
    from flowengine.flow import Step


async def run_call(session: Session, step: Step, params: dict[str, Any]) -> StepResult:
    """``call: {flow, params}`` → run the subflow to its end.

    Outcomes: ``returned`` (it reached a ``return`` step, or its end), ``hangup`` (the
    caller hung up and the subflow did not handle it), ``error`` (it failed: an error no
    edge of it handled, or its max_steps).
    """
    child = session.subflow(step, params["flow"], params.get("params") or {})
    outcome, error = await child.run_subflow()
    return StepResult(outcome, dict(child.returned or {}), error=error)


async def run_return(session: Session, step: Step, params: dict[str, Any]) -> StepResult:
    """``return: {key: value…}`` → end the flow, handing the values to the calling step."""
    session.returned = dict(params)
    return StepResult(NEXT, dict(params))
