"""One state machine per FlowVersion: states are step ids, triggers are outcomes.

The machine is a table built once per version and shared by every call of it; a call is a
model on it (``Session``, whose ``state`` is the step it is in). (state, outcome) → the
edges tried in order, each a guard (None: always) and a destination. Where each outcome
leads is ``flowengine.flow.route`` — the same rules the checker and the graph use; the
table adds the only run-time part: ``on_hangup`` and ``on_error`` are taken once per call,
guarded by the session's flags.

The engine owns this table outright rather than reading a ``transitions.Machine``: it was
built with ``transitions`` and read out of its private structures once per version, since
``machine.events[outcome].trigger(...)`` costs ~6 us of ``EventData`` and callback
resolution per step (a tenth of the engine's CPU per call in bench/) for callbacks the
flow never has. Reading the internals pinned the library to one release; twenty lines of
table need no library. ``tests/test_engine_machine_table.py`` checks the table against
``route()`` on every edge of the example flows.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flowengine.flow import route
from flowengine.flow.actions import ACTIONS
from flowengine.redact import is_secret_name, register

if TYPE_CHECKING:
    from flowengine.engine.session import Session
    from flowengine.flow import FlowVersion, Step

#: The state a call's flow is in once it has ended.
END = "__end__"

#: A guard on an edge: taken only while it returns True for the session (None: always).
_Guard = Callable[["Session"], bool] | None
#: One edge of the table: its guard and its destination.
_Edge = tuple[_Guard, str]


class NoEdge(LookupError):
    """An outcome with no edge from the session's state: a bug in the engine, not a flow
    mistake (the checker refuses flows whose steps can end with an outcome nothing takes,
    and every other outcome has a route)."""


def _hangup_not_handled(session: Session) -> bool:
    return not session.hangup_handled


def _error_not_handled(session: Session) -> bool:
    return not session.error_handled


#: route()'s `via` for the once-per-call handlers → the guard that takes them once.
_ONCE = {"on_hangup": _hangup_not_handled, "on_error": _error_not_handled}


class FlowRuntime:
    """A FlowVersion made runnable: its machine and its action runners, built once."""

    __slots__ = ("__weakref__", "_edges", "counted", "flow", "outcomes", "runners", "subflows")

    def __init__(self, flow: FlowVersion) -> None:
        self.flow = flow
        # A secret-looking variable's value, when the file spells it out, is masked wherever
        # it shows (a log step, an error); a templated one only in the summary's vars.
        register(*(v for k, v in flow.vars.items() if isinstance(v, str) and is_secret_name(k)))
        #: (state, outcome) → the edges tried in order (guard, destination).
        self._edges: dict[tuple[str, str], tuple[_Edge, ...]] = {}
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

    def _add_step(self, step: Step) -> None:
        flow, edges = self.flow, self._edges
        outcomes = step.outcomes()
        self.outcomes[step.id] = frozenset(outcomes)
        for outcome in outcomes:
            first = route(flow, step, outcome)
            if first.via in _ONCE:
                # Tried in order: the handler while it has not run on this call, else where
                # the outcome leads once it has.
                then = route(flow, step, outcome, hangup_handled=True, error_handled=True)
                edges[step.id, outcome] = ((_ONCE[first.via], first.target or END),
                                           (None, then.target or END))
            else:
                edges[step.id, outcome] = ((None, first.target or END),)

    def fire(self, session: Session, outcome: str) -> None:
        """Move ``session`` along the edge its step's ``outcome`` selects.

        Raises:
            NoEdge: the outcome has no edge from the session's state.
        """
        edges = self._edges.get((session.state, outcome))
        if edges is None:
            raise NoEdge(f"no edge for outcome {outcome!r} from step {session.state!r}")
        for guard, dest in edges:
            if guard is None or guard(session):
                session.state = dest
                return
