"""``flowengine graph FLOW``: a picture of a flow, as Mermaid or Graphviz DOT text.

The graph is built from the flow definition — ``FlowVersion.steps`` and
:func:`~flowengine.flow.route`, the same edge rules the engine and ``check`` use — never
from a running call. One node per step, plus a start and an end terminal; one edge per
(step, target, kind), labelled with the outcomes that take it (a branch choice is labelled
with its ``when`` condition as written, the default choice with ``otherwise``).

Edge kinds:

* ``normal``: an outcome the step's action ends with (``finished``, ``no_input``, a branch
  choice, ``next``) — solid;
* ``hangup`` / ``error``: the caller hung up, or the step failed — dotted; this includes
  the edges into the flow's ``on_hangup`` / ``on_error`` steps (those steps are marked
  as handlers);
* ``implicit`` ends: an ``error`` or ``hangup`` that no ``on:`` edge and no handler takes
  ends the flow. Every step that waits on the call has one, so they are left out unless
  ``--all`` asks for them (a comment in the output says so).

An outbound flow (``outbound:``) starts at a ``dial`` terminal instead, with one arrow per
dial outcome (``answered``, ``machine``, ``busy``, ``no_answer``, ``failed``) to the step it
starts at; the busy/no answer/failed arrows, whose steps run without a call, are dashed.

The text is deterministic (file order of steps and outcomes), so it can be committed and
compared.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import IO, Literal

from .model import (
    BRANCH_PREFIX,
    CALLLESS_OUTCOMES,
    ERROR,
    HANGUP,
    NEXT,
    FlowVersion,
    Step,
    route,
)

EdgeKind = Literal["normal", "hangup", "error"]

#: The label of a branch's default choice (written without ``when``).
OTHERWISE = "otherwise"
#: The label of a branch's ``next`` edge, taken when no choice matched.
NO_MATCH = "no match"

_ACTION_SHAPES_MERMAID = {
    # action → (open, close) of the node's Mermaid shape
    "branch": ("{", "}"),
    "answer": ("(", ")"),
    "play": ("(", ")"),
    "record": ("(", ")"),
    "hangup": ("([", "])"),
}


@dataclass(frozen=True, slots=True)
class GraphEdge:
    """One arrow of the picture: from a step to a step (or the end), with its labels."""

    source: str
    #: The target step's id; None: the flow ends.
    target: str | None
    kind: EdgeKind
    #: The outcomes (or branch conditions) that take this arrow, in the step's order.
    labels: tuple[str, ...]
    #: True for an ``error``/``hangup`` that ends the flow because nothing handles it.
    implicit: bool = False


@dataclass(frozen=True, slots=True)
class FlowGraph:
    """The nodes and edges of one flow, ready to print."""

    flow: FlowVersion
    edges: tuple[GraphEdge, ...]
    #: How many implicit end edges were left out (0 when they are drawn).
    hidden: int


def edge_label(step: Step, outcome: str) -> str:
    """How an outcome reads on an arrow: a branch choice's condition, or the outcome name."""
    if (step.branches and outcome.startswith(BRANCH_PREFIX)
            and outcome[len(BRANCH_PREFIX):].isdigit()):
        branch = step.branches[int(outcome[len(BRANCH_PREFIX):])]
        return branch.when_text if branch.when_text is not None else OTHERWISE
    if outcome == NEXT:
        return NO_MATCH if step.action == "branch" else ""
    return outcome


def build_graph(flow: FlowVersion, *, include_implicit: bool = False) -> FlowGraph:
    """The flow's graph, from its steps and :func:`route` (the engine's edge rules)."""
    edges: list[GraphEdge] = []
    hidden = 0
    for step in flow.steps.values():
        grouped: dict[tuple[str | None, EdgeKind, bool], list[str]] = {}
        for outcome in step.outcomes():
            r = route(flow, step, outcome)
            kind: EdgeKind = ("hangup" if outcome == HANGUP else "error" if outcome == ERROR
                              else "normal")
            implicit = r.via == "end"
            if implicit and not include_implicit:
                hidden += 1
                continue
            grouped.setdefault((r.target, kind, implicit), []).append(edge_label(step, outcome))
        for (target, kind, implicit), labels in grouped.items():
            shown = tuple(label for label in labels if label)
            edges.append(GraphEdge(step.id, target, kind, shown, implicit))
    return FlowGraph(flow, tuple(edges), hidden)


def start_edges(flow: FlowVersion) -> list[tuple[str | None, tuple[str, ...], bool]]:
    """The arrows out of the start terminal: ``(target, labels, callless)``. An inbound
    flow has one, unlabelled, to its start; an outbound flow one per target its dial
    outcomes lead to, labelled with them (``callless``: they come with no call)."""
    if flow.outbound is None:
        return [(flow.start, (), False)]
    grouped: dict[tuple[str | None, bool], list[str]] = {}
    for outcome, target in flow.outbound.edges.items():
        grouped.setdefault((target, outcome in CALLLESS_OUTCOMES), []).append(outcome)
    return [(target, tuple(labels), callless)
            for (target, callless), labels in grouped.items()]


def _handler_roles(flow: FlowVersion, step_id: str) -> list[str]:
    return [name for name, target in (("on_hangup", flow.on_hangup), ("on_error", flow.on_error))
            if target == step_id]


# -- Mermaid -----------------------------------------------------------------------------------

def _mermaid_text(text: str) -> str:
    """Text inside a quoted Mermaid label: entity codes for the characters Mermaid reads."""
    return (text.replace("#", "#35;").replace('"', "#quot;").replace("<", "#lt;")
            .replace(">", "#gt;").replace("\n", " "))


def _mermaid_id(step_id: str | None) -> str:
    # Prefixed, so that no step id (`end`, `graph`, …) collides with Mermaid's keywords or
    # with the terminals.
    return "flow_end" if step_id is None else f"s_{step_id}"


def to_mermaid(graph: FlowGraph) -> str:
    """The graph as a Mermaid ``flowchart`` (renders on GitHub in a ```` ```mermaid ```` block)."""
    flow = graph.flow
    lines = ["---", f"title: {flow.name}", "---", "flowchart TD"]
    if graph.hidden:
        lines.append("    %% error and hangup outcomes that no on: edge or handler takes end the "
                     "flow (flowengine graph --all draws them)")
    lines.append("    flow_start((dial))" if flow.outbound is not None
                 else "    flow_start((start))")
    for step in flow.steps.values():
        parts = [f"<b>{_mermaid_text(step.id)}</b>", _mermaid_text(step.action)]
        roles = _handler_roles(flow, step.id)
        if roles:
            parts.append(_mermaid_text(" · ".join(roles)))
        if step.description:
            parts.append(f"<i>{_mermaid_text(step.description.strip())}</i>")
        open_, close = _ACTION_SHAPES_MERMAID.get(step.action, ("[", "]"))
        lines.append(f'    {_mermaid_id(step.id)}{open_}"{"<br/>".join(parts)}"{close}')
    lines.append("    flow_end(((end)))")
    link = 0
    for target, labels, callless in start_edges(flow):
        text = f'|"{_mermaid_text(", ".join(labels))}"|' if labels else ""
        lines.append(f"    flow_start {'-.->' if callless else '-->'}{text} "
                     f"{_mermaid_id(target)}")
        link += 1
    dotted: list[int] = []
    for edge in graph.edges:
        arrow = "-->" if edge.kind == "normal" else "-.->"
        label = ", ".join(edge.labels)
        text = f'|"{_mermaid_text(label)}"|' if label else ""
        lines.append(f"    {_mermaid_id(edge.source)} {arrow}{text} {_mermaid_id(edge.target)}")
        if edge.kind == "error":
            dotted.append(link)
        link += 1
    handlers = [s for s in flow.steps if _handler_roles(flow, s)]
    if handlers:
        lines.append("    classDef handler stroke-dasharray: 5 3")
        lines.append(f"    class {','.join(_mermaid_id(s) for s in handlers)} handler")
    if dotted:
        lines.append(f"    linkStyle {','.join(map(str, dotted))} stroke:#c0392b")
    return "\n".join(lines) + "\n"


# -- Graphviz DOT ------------------------------------------------------------------------------

#: action → (shape, styles) of its node; steps that wait on the call are rounded boxes.
_DOT_NODES: dict[str, tuple[str, list[str]]] = {
    "branch": ("diamond", []), "set": ("box", []), "log": ("note", []), "hangup": ("box", ["bold"]),
}
_START, _END = "(start)", "(end)"  # not valid step ids, so they cannot collide with one


def _dot_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(graph: FlowGraph) -> str:
    """The graph in Graphviz DOT (``flowengine graph FLOW --format dot | dot -Tsvg``)."""
    flow = graph.flow
    lines = [f"digraph {_dot_string(flow.name)} {{", "    rankdir=TB;",
             '    node [fontname="Helvetica"];',
             '    edge [fontname="Helvetica", fontsize=10];']
    if graph.hidden:
        lines.append("    // error and hangup outcomes that no on: edge or handler takes end the "
                     "flow (flowengine graph --all draws them)")
    start_label = "dial" if flow.outbound is not None else "start"
    lines.append(f'    {_dot_string(_START)} [shape=circle, label="{start_label}", width=0.6];')
    for step in flow.steps.values():
        label = f"{step.id}\n{step.action}"
        roles = _handler_roles(flow, step.id)
        if roles:
            label += "\n" + " · ".join(roles)
        if step.description:
            label += "\n" + step.description.strip()
        shape, styles = _DOT_NODES.get(step.action, ("box", ["rounded"]))
        if roles:
            styles = [*styles, "dashed"]
        attrs = [f"label={_dot_string(label)}", f"shape={shape}",
                 f"style={_dot_string(','.join(styles))}"]
        lines.append(f"    {_dot_string(step.id)} [{', '.join(attrs)}];")
    lines.append(f'    {_dot_string(_END)} [shape=doublecircle, label="end", width=0.5];')
    for target, labels, callless in start_edges(flow):
        attrs = [f"label={_dot_string(', '.join(labels))}"] if labels else []
        if callless:
            attrs.append("style=dashed")
        suffix = f" [{', '.join(attrs)}]" if attrs else ""
        lines.append(f"    {_dot_string(_START)} -> "
                     f"{_dot_string(_END if target is None else target)}{suffix};")
    for edge in graph.edges:
        attrs = []
        if edge.labels:
            attrs.append(f"label={_dot_string(', '.join(edge.labels))}")
        if edge.kind == "hangup":
            attrs.append("style=dashed")
        elif edge.kind == "error":
            attrs.extend(["style=dashed", 'color="#c0392b"', 'fontcolor="#c0392b"'])
        target = _END if edge.target is None else edge.target
        suffix = f" [{', '.join(attrs)}]" if attrs else ""
        lines.append(f"    {_dot_string(edge.source)} -> {_dot_string(target)}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"


FORMATS = {"mermaid": to_mermaid, "dot": to_dot}


def render_graph(flow: FlowVersion, fmt: str = "mermaid", *, include_implicit: bool = False) -> str:
    """The flow's graph as text in ``fmt`` (``mermaid`` or ``dot``)."""
    return FORMATS[fmt](build_graph(flow, include_implicit=include_implicit))


# -- the command -------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``graph``'s arguments to its subparser."""
    parser.add_argument("flow", metavar="FLOW", help="the flow file (YAML)")
    parser.add_argument("--format", choices=sorted(FORMATS), default="mermaid",
                        help="mermaid (default; GitHub renders it) or dot (Graphviz)")
    parser.add_argument("--all", action="store_true",
                        help="also draw the error/hangup outcomes that end the flow because "
                             "nothing handles them")
    parser.add_argument("--output", "-o", default=None, metavar="FILE",
                        help="write to FILE instead of standard output")


def run(args: argparse.Namespace, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    """Print the graph of ``args.flow``; exit status 1 when the flow does not load."""
    from .compiler import load_flow
    from .diagnostics import FlowError

    out = out or sys.stdout
    err = err or sys.stderr
    try:
        flow = load_flow(args.flow)
    except FlowError as exc:
        for diagnostic in exc.diagnostics:
            print(diagnostic, file=err)
        print(f"{args.flow}: invalid flow, no graph (run `flowengine check {args.flow}`)",
              file=err)
        return 1
    text = render_graph(flow, args.format, include_implicit=args.all)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        out.write(text)
    return 0
