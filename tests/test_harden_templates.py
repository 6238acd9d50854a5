"""Templates are bounded at run time by the work they do (issue "Hardening"): each runaway
form below makes its step end with `error` (its `on: error` edge runs) within a bounded
time and memory, with a message naming the step, the place and the limit. Also: the
`set`/`vars` entry limit counts the whole value, a `vars` render error runs `on_error`,
and a missing value (None) prints as empty text.

The runaway forms run in a child process, over the real simulator, under an address-space
limit: without the limits they hang, or grow memory by gigabytes, and the child is stopped
(by the timeout or the memory limit) instead of the test run."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent

#: name → (action, template). Each one ran without end, or grew RSS by gigabytes, before the
#: render budget existed.
RUNAWAY: dict[str, tuple[str, str]] = {
    # A macro that calls itself twice per level: 2**41 calls.
    "macro_doubling": ("log", "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}"
                              "{% endmacro %}{{ f(40) }}"),
    # A list repeated within the repetition limit, then again: 10**8 items to print.
    "list_of_lists_printed": ("log", "{% set a = [1] * 10000 %}{{ [a] * 10000 }}"),
    # The same kept in a variable: the per-list limit let it through, the copy is 10**8.
    "list_of_lists_set": ("set", "{{ [[0] * 10000] * 10000 }}"),
    # Nested loops: 10**10 iterations.
    "nested_loops": ("log", "{% for i in range(100000) %}{% for j in range(100000) %}"
                            "{% endfor %}{% endfor %}"),
    # {% set %} doubling a structure in a loop (shared references): 2**40 to print.
    "set_doubling": ("log", "{% set ns = namespace(l=[1]) %}{% for i in range(40) %}"
                            "{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l }}"),
    # The same over lazy sequences (their length is not known before the loop).
    "nested_lazy_loops": ("log", "{% for i in range(100000) | select %}"
                                 "{% for j in range(100000) | select %}{% endfor %}{% endfor %}"),
    # String * and ~ in loops: every turn builds 60,000 characters (18 GB in all).
    "string_building": ("log", "{% for i in range(100000) | select %}{% for j in [1, 2, 3] %}"
                               "{% set s = " + " ~ ".join(["'x' * 10000"] * 6) + " %}"
                               "{% endfor %}{% endfor %}"),
    # |join of large ranges, each under the text limit, in a loop.
    "join_in_loop": ("log", "{% for i in range(100000) %}{{ range(4000) | join('') | length }}"
                            "{% endfor %}"),
    # A macro's output (a buffer, joined in one go) of 100,000 copies of 10,000 characters.
    "macro_output": ("log", "{% macro m() %}{% for i in range(100000) %}{{ vars.big }}"
                            "{% endfor %}{% endmacro %}{{ m() | length }}"),
    # A {% set %} block capturing the same.
    "set_block": ("log", "{% set s %}{% for i in range(100000) %}{{ vars.big }}{% endfor %}"
                         "{% endset %}{{ s | length }}"),
    # A number squared in a loop: 3 ** (2 ** 40).
    "number_squaring": ("log", "{% set ns = namespace(n=3) %}{% for i in range(40) %}"
                               "{% set ns.n = ns.n * ns.n %}{% endfor %}{{ ns.n > 0 }}"),
    # A mapping built in set from the doubled structure.
    "dict_building": ("set", "{{ dict(a=[[0] * 10000] * 10000) }}"),
}

#: Words that say which limit a message is about.
LIMIT_WORDS = ("ms to render", "loop iterations", "nested more than", "of size",
               "characters in all", "bits", "entries in all", "at most")


def _flow(forms: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """One step per form, each with an `on: error` edge to its own `caught_` step."""
    steps: dict[str, Any] = {"start": {"answer": {}}}
    names = list(forms)
    for index, name in enumerate(names):
        action, template = forms[name]
        after = names[index + 1] if index + 1 < len(names) else "end"
        body: Any = template if action == "log" else {"value": template}
        steps[name] = {action: body, "on": {"error": f"caught_{name}"}, "next": after}
        steps[f"caught_{name}"] = {"log": f"caught {name}", "next": after}
    steps["end"] = {"hangup": {}}
    return {"name": "runaway", "context": "office", "limits": {"max_steps": 1000},
            "vars": {"big": "{{ 'x' * 10000 }}"}, "steps": steps}


#: A runaway value in `vars:` (rendered when the call starts): on_error must run.
VARS_FLOW = {
    "name": "runaway_vars", "context": "office",
    "vars": {"huge": "{{ [[0] * 10000] * 10000 }}", "mailbox": "sales"},
    "on_error": "handler",
    "steps": {"start": {"log": "not reached"},
              "handler": {"log": "handled for {{ vars.mailbox }}"}},
}


def _child(out: Path) -> None:
    """Run both flows over the simulator; write what happened to ``out`` as JSON."""
    import anyio

    from flowengine.flow import load_flow
    from tests.flowtools import run_flow

    def vm_bytes() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmSize")

    results: dict[str, Any] = {}

    async def main() -> None:
        flows = {}
        for name, flow in (("runaway", _flow(RUNAWAY)), ("vars", VARS_FLOW)):
            path = out.parent / f"{name}.yaml"
            path.write_text(yaml.safe_dump(flow, width=10_000, sort_keys=False))
            flows[name] = load_flow(path)
        # Warm up (imports, the simulator) before measuring, then cap the address space:
        # a runaway then ends the child, not the machine.
        await run_flow(flows["vars"])
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        limit = vm_bytes() + 1_500_000_000
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
        for name, flow in flows.items():
            run = await run_flow(flow)
            report = run.report
            results[name] = {
                "status": report.status, "error": report.error,
                "trace": [{"step": e.step, "outcome": e.outcome, "error": e.error,
                           "next": e.next_step, "duration": e.duration,
                           "result": e.result} for e in report.trace],
                "vars": {k: v for k, v in report.vars.items() if k != "big"},
            }
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        results["rss_growth"] = rss1 - rss0

    anyio.run(main, backend="asyncio")
    out.write_text(json.dumps(results, default=str))


@pytest.fixture(scope="module")
def runaway(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("runaway") / "results.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # A hang detector, not a timing: the child takes a few seconds when the limits hold.
    proc = subprocess.run([sys.executable, __file__, str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=90, check=False)
    assert proc.returncode == 0 and out.exists(), (
        f"the child ended with {proc.returncode}:\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


@pytest.mark.parametrize("form", list(RUNAWAY))
def test_a_runaway_template_takes_its_error_edge(runaway: dict[str, Any], form: str) -> None:
    trace = runaway["runaway"]["trace"]
    entry = next(e for e in trace if e["step"] == form)
    assert entry["outcome"] == "error", entry
    assert entry["next"] == f"caught_{form}"
    # The message names the step, the template's file:line:col and the limit.
    assert f"in step '{form}'" in entry["error"]
    assert "runaway.yaml:" in entry["error"]
    assert any(word in entry["error"] for word in LIMIT_WORDS), entry["error"]
    # Generous: a hang detector (the time budget is a tenth of a second).
    assert entry["duration"] < 3, entry


def test_the_runaway_call_goes_on_and_ends(runaway: dict[str, Any]) -> None:
    report = runaway["runaway"]
    assert report["status"] == "completed"
    assert [e["step"] for e in report["trace"]][-1] == "end"
    assert {e["step"] for e in report["trace"]} >= {f"caught_{name}" for name in RUNAWAY}


def test_runaway_templates_do_not_grow_memory(runaway: dict[str, Any]) -> None:
    assert runaway["rss_growth"] < 200 * 1024 * 1024, runaway["rss_growth"]


def test_a_runaway_vars_value_runs_on_error(runaway: dict[str, Any]) -> None:
    report = runaway["vars"]
    assert [(e["step"], e["outcome"]) for e in report["trace"]] == [("handler", "next")]
    assert report["trace"][0]["result"]["text"] == "handled for sales"
    assert report["vars"]["huge"] is None
    assert report["status"] == "completed"


if __name__ == "__main__":
    _child(Path(sys.argv[1]))
