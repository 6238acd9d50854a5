"""One ``transitions`` machine per FlowVersion: states are step ids, triggers are outcomes.

The machine is built once and shared by every call of that version; a call is a model on
it (``Session``), registered the "lean" way of tech-notes §1.4: no bound trigger methods on
the model, triggers fired as ``machine.events[outcome].trigger(model, model)``. Conditions
are Python callables taking the session — nothing from YAML ever reaches ``transitions``
as a name (it would import dotted paths).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from transitions import Machine

from flowengine.actions import ACTIONS, TIMEOUT_OUTCOME
from flowengine.actions.logic import NO_BRANCH, branch_outcome

if TYPE_CHECKING:
    from flowengine.engine.session import Session
    from flowengine.flow import FlowVersion, Step

#: The state a call's flow is in once it has ended.
END = "__end__"
#: The trigger of steps that have no outcomes of their own (set, log).
NEXT = "next"


def _first_hangup(session: Session) -> bool:
    return not session.hangup_handled


def _first_error(session: Session) -> bool:
    return not session.error_handled


def step_outcomes(step: Step) -> list[str]:
    """Every trigger a step can fire."""
    spec = ACTIONS[step.action]
    outcomes = list(spec.outcomes) or [NEXT]
    if step.action == "branch":
        outcomes = [branch_outcome(i) for i in range(len(step.branches))] + [NO_BRANCH]
    if step.action == "hangup":
        outcomes = ["finished", "error"]
    if step.timeout is not None:
        outcomes.append(TIMEOUT_OUTCOME)
    if spec.needs_call and "hangup" not in outcomes:
        outcomes.append("hangup")
    # A template that fails to render ends any step with `error`.
    if "error" not in outcomes:
        outcomes.append("error")
    return outcomes


class FlowRuntime:
    """A FlowVersion made runnable: its machine and its action runners, built once."""

    __slots__ = ("flow", "machine", "runners", "__weakref__")

    def __init__(self, flow: FlowVersion) -> None:
        self.flow = flow
        self.machine = Machine(
            model=None,
            states=[*flow.steps, END],
            initial=flow.start,
            auto_transitions=False,
            send_event=False,
        )
        self.runners: dict[str, Callable[..., Any]] = {}
        for step in flow.steps.values():
            self._add_step(step)
            if step.action not in self.runners:
                module, _, func = ACTIONS[step.action].runner.partition(":")
                self.runners[step.action] = getattr(importlib.import_module(module), func)

    def _add_step(self, step: Step) -> None:
        flow, add = self.flow, self.machine.add_transition
        after_step = step.next or END
        for outcome in step_outcomes(step):
            if outcome in step.on:
                add(outcome, step.id, step.on[outcome])
            elif outcome.startswith("branch") and outcome != NO_BRANCH:
                add(outcome, step.id, step.branches[int(outcome[6:])].goto)
            elif outcome == "error":
                # The flow-level catch runs once: an error inside it ends the call.
                if flow.on_error and flow.on_error != step.id:
                    add(outcome, step.id, flow.on_error, conditions=[_first_error])
                add(outcome, step.id, END)
            elif outcome == "hangup":
                # on_hangup runs once per call (flow-language contract).
                if flow.on_hangup:
                    add(outcome, step.id, flow.on_hangup, conditions=[_first_hangup])
                add(outcome, step.id, END)
            elif step.action == "hangup":
                add(outcome, step.id, END if step.next is None else step.next)
            else:
                add(outcome, step.id, after_step)

    def fire(self, session: Session, outcome: str) -> None:
        """Move ``session`` along the edge its step's ``outcome`` selects."""
        self.machine.events[outcome].trigger(session, session)
