"""Render cost of the shipped flows' templates: bounded (this tree) against a reference.

Every step of every flow in flows/*.yaml has its parameters rendered as the engine renders
them (one ``render_params`` per step, one ``choose_branch`` per branch step, the flow's
``vars`` once per call), over a context where every step has run (its result fields filled
with sample values). Reported, side by side, in microseconds per render (best of
``--repeat`` rounds of ``--rounds`` renders each; the cases take turns, so that the load of
a shared machine falls on all alike):

* ``bounded``: flowengine's templates as they are in this tree (sandbox with budgets);
* ``reference``: the same templates compiled by ``flow/templates.py`` as it is at a git
  revision (``--ref``, default ``main``; the version before the render budget when run on
  the branch that added it), loaded from git into its own module;
* ``plain``: the same sources in a bare ``jinja2.sandbox.ImmutableSandboxedEnvironment``
  (no limits: the floor).

Usage: ``python bench/templates.py [--ref main] [--rounds 2000] [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jinja2 import StrictUndefined  # noqa: E402
from jinja2.sandbox import ImmutableSandboxedEnvironment  # noqa: E402

from flowengine.flow import FlowVersion, load_flow  # noqa: E402
from flowengine.flow import templates as bounded  # noqa: E402
from flowengine.flow.schedules import CallTime  # noqa: E402

CALL = {"id": "c-1", "from": "+15551234567", "to": "+15559870000", "direction": "inbound",
        "context": "office", "state": "answered"}
SAMPLES = {"duration": 5, "size": 4096, "attempts": 1, "status": 200, "digits": "1",
           "index": 0, "visits": 1, "code": 200}


def _reference(ref: str) -> ModuleType | None:
    """flow/templates.py at ``ref`` as a module, or None when git cannot give it."""
    try:
        source = subprocess.run(["git", "show", f"{ref}:flowengine/flow/templates.py"],
                                cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    spec = importlib.util.spec_from_loader("flowengine.flow._templates_reference", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "flowengine.flow"
    sys.modules[spec.name] = module
    exec(compile(source, f"{ref}:flowengine/flow/templates.py", "exec"), module.__dict__)
    return module


def _sample_steps(flow: FlowVersion) -> dict[str, dict[str, Any]]:
    return {sid: {name: SAMPLES.get(name, "x") for name in step.result_fields}
            for sid, step in flow.steps.items()}


def _recompile(tree: Any, impl: ModuleType) -> Any:
    """The same tree with every template compiled by ``impl``."""
    if isinstance(tree, bounded.CompiledTemplate):
        return impl.compile_text(tree.source, tree.mode, tree.origin)
    if isinstance(tree, bounded.CompiledExpression):
        return impl.compile_expression(tree.source, tree.origin)
    if isinstance(tree, dict) or hasattr(tree, "items"):
        return {k: _recompile(v, impl) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_recompile(v, impl) for v in tree]
    return tree


def _plain_tree(tree: Any, env: ImmutableSandboxedEnvironment) -> Any:
    if isinstance(tree, bounded.CompiledTemplate):
        return env.from_string(tree.source)
    if isinstance(tree, bounded.CompiledExpression):
        return env.compile_expression(tree.source) if tree.source not in ("true", "false") else tree
    if isinstance(tree, dict) or hasattr(tree, "items"):
        return {k: _plain_tree(v, env) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_plain_tree(v, env) for v in tree]
    return tree


def _plain_render(tree: Any, context: dict[str, Any]) -> Any:
    if hasattr(tree, "render"):
        return tree.render(context)
    if callable(tree):
        return tree(**context)
    if isinstance(tree, dict):
        return {k: _plain_render(v, context) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_plain_render(v, context) for v in tree]
    return tree


def _workload(flows: list[FlowVersion]) -> list[tuple[Any, dict[str, Any]]]:
    """(tree, context) for every render a call through each flow may do."""
    work = []
    for flow in flows:
        steps = _sample_steps(flow)
        # The flow's schedules and the wall clock, as a call's templates see them.
        time = CallTime(schedules=flow.schedules)
        vars = bounded.initial_vars(flow, CALL, time=time)
        ctx = bounded.template_context(CALL, steps, vars, flow.template_flow, time)
        ctx["params"] = bounded.FlowParams()
        start = bounded.template_context(CALL, {}, {}, flow.template_flow, time)
        start["params"] = bounded.FlowParams()
        if flow.vars:
            work.append((dict(flow.vars), start))
        for step in flow.steps.values():
            if list(bounded.iter_templates(step.params)):
                work.append((step.params, ctx))
            whens = [b.when for b in step.branches if b.when is not None]
            if whens:
                work.append((whens, ctx))
    return work


def _errors(render: Callable[[Any, dict[str, Any]], Any],
            work: list[tuple[Any, dict[str, Any]]]) -> int:
    """How many of the renders fail (their cost is measured all the same)."""
    errors = 0
    for tree, ctx in work:
        try:
            render(tree, ctx)
        except Exception:  # counted and shown
            errors += 1
    return errors


def _round(render: Callable[[Any, dict[str, Any]], Any], work: list[tuple[Any, dict[str, Any]]],
           rounds: int) -> float:
    t0 = time.perf_counter()
    for _ in range(rounds):
        for tree, ctx in work:
            try:
                render(tree, ctx)
            except Exception:
                pass
    return (time.perf_counter() - t0) / (rounds * len(work)) * 1e6


def _compare(cases: list[tuple[str, Callable[[Any, dict[str, Any]], Any],
                               list[tuple[Any, dict[str, Any]]]]],
             rounds: int, repeat: int) -> list[tuple[str, float, int]]:
    """Best µs per render of each case; the cases take turns, round after round, so that
    a change in the machine's load falls on all of them alike."""
    best = {name: float("inf") for name, _, _ in cases}
    for _ in range(repeat):
        for name, render, work in cases:
            best[name] = min(best[name], _round(render, work, rounds))
    return [(name, best[name], _errors(render, work)) for name, render, work in cases]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", default="main", help="git revision of the reference")
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    flows = [load_flow(p) for p in sorted((ROOT / "flows").glob("*.yaml"))]
    work = _workload(flows)
    templates = sum(len(list(bounded.iter_templates(t))) + (len(t) if isinstance(t, list) and t
                    and isinstance(t[0], bounded.CompiledExpression) else 0) for t, _ in work)
    print(f"{len(flows)} flows, {len(work)} renders (one per step with templates, branch, "
          f"vars), {templates} templates; µs per render, best of {args.repeat}")

    def with_whens(impl: ModuleType) -> Callable[[Any, dict[str, Any]], Any]:
        def render(tree: Any, ctx: dict[str, Any]) -> Any:
            if isinstance(tree, list) and tree and isinstance(tree[0], impl.CompiledExpression):
                return [impl.render(w, ctx) for w in tree]  # a branch's whens, in turn
            return impl.render(tree, ctx)
        return render

    reference = _reference(args.ref)
    recompiled: list[tuple[Any, dict[str, Any]]] = []
    if reference is not None:
        # Renders the reference cannot compile (a filter or function it does not have yet,
        # such as strftime) are left out of every case, so that all measure the same work.
        kept = []
        for tree, ctx in work:
            try:
                recompiled.append((_recompile(tree, reference), ctx))
            except reference.TemplateCompileError:
                continue
            kept.append((tree, ctx))
        if len(kept) < len(work):
            print(f"  ({len(work) - len(kept)} renders left out: {args.ref}'s templates cannot "
                  "compile them)")
        work = kept
    cases = [("bounded (this tree)", with_whens(bounded), work)]
    if reference is not None:
        cases.append((f"reference ({args.ref})", with_whens(reference), recompiled))
    else:
        print(f"(no reference: git show {args.ref}:flowengine/flow/templates.py failed)")
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, trim_blocks=True,
                                        keep_trailing_newline=True)
    cases.append(("plain jinja sandbox", _plain_render,
                  [(_plain_tree(t, env), c) for t, c in work]))
    rows = _compare(cases, args.rounds, args.repeat)
    base = rows[0][1]
    for name, us, errors in rows:
        print(f"  {name:24} {us:8.2f} µs  x{us / base:5.2f} of bounded"
              + (f"  ({errors} renders fail)" if errors else ""))


if __name__ == "__main__":
    main()
