"""Edge coverage: which edges of each flow the scenarios took, and which none did.

The edges are the flow's own table, ``FlowVersion.edges`` (step → outcome → next step, the
rules of :func:`flowengine.flow.route`), so coverage speaks the language of ``flowengine
graph``. A scenario takes the edge (step, outcome) when its call ran the step, the step
ended with that outcome, and the call went where the table says (after a once-per-call
handler was used, a second hangup or error goes elsewhere; that is not the table's edge).

An outbound flow's dial outcomes are edges too: ``(dial): busy → note`` (a scenario whose
callee is busy takes it), ``(dial): no_answer → (end)`` when no step runs for it.

Not counted: the ``error`` edge of a step that sends nothing to RELAY (branch, set, log)
and has no ``on: {error: …}`` of its own — only a template that fails to render takes it,
which a scenario cannot provoke by calling. Those edges are listed apart.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from flowengine.flow import ERROR, FlowVersion

from .runner import DIAL, END, ScenarioResult


@dataclass(frozen=True, slots=True)
class Edge:
    """One edge of a flow's table."""

    step: str
    outcome: str
    #: The next step; None: the flow ends.
    target: str | None
    #: False for the error edges no scenario can provoke (see the module docstring).
    counted: bool

    def text(self, flow: FlowVersion) -> str:
        """``step: outcome → target``, a branch choice with its condition."""
        label = self.outcome
        if self.step == DIAL:
            return f"{DIAL}: {label} → {self.target or END}"
        step = flow.steps[self.step]
        if step.branches and self.outcome.startswith("branch") and self.outcome[6:].isdigit():
            branch = step.branches[int(self.outcome[6:])]
            label += f" (when {branch.when_text})" if branch.when_text else " (otherwise)"
        return f"{self.step}: {label} → {self.target or END}"


def flow_edges(flow: FlowVersion) -> list[Edge]:
    """Every edge of ``flow``, in file order of steps and outcomes."""
    edges = [Edge(DIAL, outcome, target, True)
             for outcome, target in (flow.outbound.edges.items() if flow.outbound else ())]
    for sid, outcomes in flow.edges.items():
        step = flow.steps[sid]
        for outcome, target in outcomes.items():
            counted = not (outcome == ERROR and not step.spec.can_fail and ERROR not in step.on)
            edges.append(Edge(sid, outcome, target, counted))
    return edges


@dataclass(slots=True)
class FlowCoverage:
    """The edges of one flow and the scenarios that took each."""

    flow: FlowVersion
    taken: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def add(self, result: ScenarioResult) -> None:
        """Count the edges one scenario's call took."""
        self.add_taken(result.scenario.name, result.taken)

    def add_taken(self, name: str, taken: Iterable[tuple[str, str, str | None]]) -> None:
        """Count the edges of one call (``(step, outcome, next step)``) of scenario ``name``;
        the dial outcomes of an outbound flow count as edges of its ``dial`` node."""
        dial = self.flow.outbound.edges if self.flow.outbound is not None else {}
        for step, outcome, target in taken:
            table = dial if step == DIAL else self.flow.edges.get(step, {})
            if outcome in table and table[outcome] == target:
                names = self.taken.setdefault((step, outcome), [])
                if name not in names:
                    names.append(name)

    def edges(self) -> list[Edge]:
        """Every edge of the flow."""
        return flow_edges(self.flow)

    def missed(self) -> list[Edge]:
        """The counted edges no scenario took."""
        return [e for e in self.edges() if e.counted and (e.step, e.outcome) not in self.taken]


class Coverage:
    """Coverage of every flow that scenarios ran, keyed by the flow's file."""

    def __init__(self) -> None:
        self.flows: dict[str, FlowCoverage] = {}

    def add(self, results: Iterable[ScenarioResult]) -> None:
        """Count the edges the scenarios' calls took."""
        for result in results:
            if result.calls:
                # Several calls: each counts for the flow it ran (every flow involved).
                for call in result.calls:
                    flow = call.spec.flow
                    cover = self.flows.setdefault(os.path.realpath(flow.file),
                                                  FlowCoverage(flow))
                    cover.add_taken(result.scenario.name, call.taken)
                continue
            key = os.path.realpath(result.flow.file)
            cover = self.flows.setdefault(key, FlowCoverage(result.flow))
            cover.add(result)

    @property
    def complete(self) -> bool:
        """True when every counted edge of every flow was taken."""
        return not any(c.missed() for c in self.flows.values())

    def lines(self, *, detail: bool = False) -> list[str]:
        """The report: per flow, edges taken out of counted, and the ones not taken.

        With ``detail``, every edge is listed with the scenarios that took it.
        """
        out = ["coverage (edges of each flow that the scenarios took):"]
        for cover in self.flows.values():
            flow = cover.flow
            edges = cover.edges()
            counted = [e for e in edges if e.counted]
            missed = cover.missed()
            done = len(counted) - len(missed)
            name = _shown_path(flow.file)
            out.append(f"  {name}: {done} of {len(counted)} edges taken"
                       + ("" if missed else " (all)"))
            if detail:
                for edge in edges:
                    by = cover.taken.get((edge.step, edge.outcome))
                    if not edge.counted:
                        status = "not counted (only a template error takes it)"
                    elif by:
                        more = f" (+{len(by) - 1} more)" if len(by) > 1 else ""
                        status = f"taken by '{by[0]}'{more}"
                    else:
                        status = "NOT TAKEN"
                    out.append(f"    {edge.text(flow)}  — {status}")
            else:
                for edge in missed:
                    out.append(f"    not taken: {edge.text(flow)}")
        return out


def _shown_path(file: str) -> str:
    """A flow's path as the report shows it: relative to the working directory when inside it."""
    relative = os.path.relpath(file)
    return file if relative.startswith("..") else relative
