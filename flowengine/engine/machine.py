"""One ``transitions`` machine per FlowVersion: states are step ids, triggers are outcomes.

The machine is built once and shared by every call of that version; a call is a model on
it (``Session``), registered the "lean" way of tech-notes §1.4: no bound trigger methods on
the model. Conditions are Python callables taking the session — nothing from YAML ever
reaches ``transitions`` as a name (it would import dotted paths).

A call moves along the machine's own transitions, read once into a table: (state,
outcome) → the transitions tried in order, as (conditions, destination). The machine has
no callbacks (no state enter/exit, no before/after/prepare), so this is what
``machine.events[outcome].trigger(session, session)`` does, without the ~6 us of
``EventData`` and callback resolution per step that it took (a tenth of the engine's CPU
per call in bench/). ``tests/test_engine_machine_table.py`` checks both agree on every
edge of the example flows.

Where each outcome leads is ``flowengine.flow.route`` — the same rules the checker and the
graph use. The machine adds the only run-time part: ``on_hangup`` and ``on_error`` are taken
once per call, as conditions on the session's flags.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from transitions import Machine, MachineError

from flowengine.actions import ACTIONS
from flowengine.flow import route
from flowengine.redact import is_secret_name, register

if TYPE_CHECKING:
    from flowengine.engine.session import Session
    from flowengine.flow import FlowVersion, Step

#: The state a call's flow is in once it has ended.
END = "__end__"

#: One transition of the table: its conditions (callable, expected result) and destination.
_Edge = tuple[tuple[tuple[Callable[..., Any], bool], ...], str]


def _hangup_not_handled(session: Session) -> bool:
    return not session.hangup_handled


def _error_not_handled(session: Session) -> bool:
    return not session.error_handled


#: route()'s `via` for the once-per-call handlers → the condition that guards them.
_ONCE = {"on_hangup": _hangup_not_handled, "on_error": _error_not_handled}


class FlowRuntime:
    """A FlowVersion made runnable: its machine and its action runners, built once."""

    __slots__ = ("__weakref__", "_edges", "counted", "flow", "machine", "outcomes", "runners",
                 "subflows")

    def __init__(self, flow: FlowVersion) -> None:
        self.flow = flow
        # A secret-looking variable's value, when the file spells it out, is masked wherever
        # it shows (a log step, an error); a templated one only in the summary's vars.
        register(*(v for k, v in flow.vars.items() if isinstance(v, str) and is_secret_name(k)))
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
        #: The steps whose runs a call counts (``Session.visits``): the targets of gotos,
        #: which report them (``visits``) and may limit them (``max_visits``).
        self.counted = frozenset(step.params["step"] for step in flow.steps.values()
                                 if step.action == "goto")
        for step in flow.steps.values():
            self._add_step(step)
            if step.action not in self.runners:
                module, _, func = ACTIONS[step.action].runner.partition(":")
                self.runners[step.action] = getattr(importlib.import_module(module), func)
        #: (state, outcome) → ((conditions as (callable, expected result)), destination)…
        self._edges: dict[tuple[str, str], tuple[_Edge, ...]] = {
            # Our conditions are callables and every transition has a destination (the
            # stubs allow names and internal transitions).
            (source, name): tuple(
                (tuple((cast(Callable[..., Any], c.func), c.target) for c in t.conditions),
                 cast(str, t.dest)) for t in transitions)
            for name, event in self.machine.events.items()
            for source, transitions in event.transitions.items()}

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
        """Move ``session`` along the edge its step's ``outcome`` selects.

        Raises:
            MachineError: the outcome has no edge from the session's state (as the
                machine's trigger would).
        """
        edges = self._edges.get((session.state, outcome))
        if edges is None:
            raise MachineError(f"Can't trigger event {outcome} from state {session.state}!")
        for conditions, dest in edges:
            if all(func(session) == expected for func, expected in conditions):
                session.state = dest
                return
