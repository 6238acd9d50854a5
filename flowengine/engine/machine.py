"""One ``transitions`` machine per FlowVersion: states are step ids, triggers are outcomes.

The machine is built once and shared by every call of that version; a call is a model on
it (``Session``), registered the "lean" way of tech-notes §1.4: no bound trigger methods on
the model, triggers fired as ``machine.events[outcome].trigger(model, model)``. Conditions
are Python callables taking the session — nothing from YAML ever reaches ``transitions``
as a name (it would import dotted paths).

Where each outcome leads is ``flowengine.flow.route`` — the same rules the checker and the
graph use. The machine adds the only run-time part: ``on_hangup`` and ``on_error`` are taken
once per call, as conditions on the session's flags.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from transitions import Machine

from flowengine.actions import ACTIONS
from flowengine.flow import route

if TYPE_CHECKING:
    from flowengine.engine.session import Session
    from flowengine.flow import FlowVersion, Step

#: The state a call's flow is in once it has ended.
END = "__end__"


def _hangup_not_handled(session: Session) -> bool:
    return not session.hangup_handled


def _error_not_handled(session: Session) -> bool:
    return not session.error_handled


#: route()'s `via` for the once-per-call handlers → the condition that guards them.
_ONCE = {"on_hangup": _hangup_not_handled, "on_error": _error_not_handled}


class FlowRuntime:
    """A FlowVersion made runnable: its machine and its action runners, built once."""

    __slots__ = ("__weakref__", "flow", "machine", "outcomes", "runners", "subflows")

    def __init__(self, flow: FlowVersion) -> None:
        self.flow = flow
        self.machine = Machine(
            model=None,
            states=[*flow.steps, END],
            initial=flow.start,
            auto_transitions=False,
            send_event=False,
        )
        #: step id → the outcomes it can end with (anything else is reported as `error`).
        self.outcomes: dict[str, frozenset[str]] = {}
        self.runners: dict[str, Callable[..., Any]] = {}
        #: The runtimes of the subflows its call steps run, by resolved path.
        self.subflows = {path: FlowRuntime(sub) for path, sub in flow.subflows.items()}
        for step in flow.steps.values():
            self._add_step(step)
            if step.action not in self.runners:
                module, _, func = ACTIONS[step.action].runner.partition(":")
                self.runners[step.action] = getattr(importlib.import_module(module), func)

    def _add_step(self, step: Step) -> None:
        flow, add = self.flow, self.machine.add_transition
        outcomes = step.outcomes()
        self.outcomes[step.id] = frozenset(outcomes)
        for outcome in outcomes:
            first = route(flow, step, outcome)
            if first.via in _ONCE:
                # Transitions are tried in order: the handler while it has not run on this
                # call, else where the outcome leads once it has.
                add(outcome, step.id, first.target, conditions=[_ONCE[first.via]])
                then = route(flow, step, outcome, hangup_handled=True, error_handled=True)
                add(outcome, step.id, then.target or END)
            else:
                add(outcome, step.id, first.target or END)

    def fire(self, session: Session, outcome: str) -> None:
        """Move ``session`` along the edge its step's ``outcome`` selects."""
        self.machine.events[outcome].trigger(session, session)
