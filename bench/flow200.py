"""How long loading and checking a 200-step flow takes (generated, valid, every step used).

The flow is a chain of 39 blocks of five steps (play with a template, record, branch on
the recording, log, set) and three plays between an answer and a hang-up. Measured:

* ``compile``: ``compile_flow(text, file)``: YAML, schema, semantic checks, templates
  compiled (what ``flowengine check`` and every reload of ``serve`` do per changed file);
* ``machine``: building its ``FlowRuntime`` (the state machine) once compiled;
* ``check_cli``: ``flowengine check FILE`` as a command, interpreter start included.

Usage: ``python bench/flow200.py [--steps 200]``; prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BLOCK = """\
  prompt_{i}:
    play:
      - say: "Message {i} for {{{{ vars.mailbox }}}}, caller {{{{ call.from }}}}."
  record_{i}:
    record:
      beep: true
      end_silence_timeout: 2
      terminators: "#"
    on:
      no_input: {after}
  check_{i}:
    branch:
      - when: steps.record_{i}.duration >= 2
        goto: log_{i}
      - goto: {after}
  log_{i}:
    log: "message {i}: {{{{ steps.record_{i}.url }}}} ({{{{ steps.record_{i}.duration }}}} s)"
  count_{i}:
    set:
      messages: "{{{{ vars.messages + 1 }}}}"
"""


def generate(steps: int = 200) -> str:
    """A valid flow with exactly ``steps`` steps (at least 7)."""
    blocks = max(1, (steps - 2) // 5)
    fillers = max(0, steps - 2 - 5 * blocks)
    parts = ["name: big", "description: a generated flow for the benchmark", "context: office",
             "vars:", "  mailbox: sales", "  messages: 0", "steps:", "  greet:", "    answer: {}"]
    body = []
    for i in range(blocks):
        after = f"prompt_{i + 1}" if i + 1 < blocks else ("filler_0" if fillers else "bye")
        body.append(BLOCK.format(i=i, after=after))
    parts.append("".join(body).rstrip("\n"))
    for i in range(fillers):
        parts += [f"  filler_{i}:", "    play:", f'      - say: "One moment ({i})."']
    parts += ["  bye:", "    hangup: {}"]
    return "\n".join(parts) + "\n"


def _time(fn: Any, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def measure_flow200(steps: int = 200, repeat: int = 7) -> dict[str, Any]:
    from flowengine.engine import FlowRuntime
    from flowengine.flow import compile_flow

    text = generate(steps)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.yaml"
        path.write_text(text)
        result = compile_flow(text, str(path))
        if result.version is None:
            raise RuntimeError("the generated flow does not compile: "
                               + "; ".join(str(d) for d in result.diagnostics[:5]))
        version = result.version
        compile_flow(text, str(path))  # warm caches (schema, Jinja environment)
        compile_s = _time(lambda: compile_flow(text, str(path)), repeat)
        machine_s = _time(lambda: FlowRuntime(version), repeat)
        flowengine = str(Path(sys.executable).parent / "flowengine")
        cli_s = []
        for _ in range(3):
            t0 = time.perf_counter()
            done = subprocess.run([flowengine, "check", str(path)], capture_output=True,
                                  text=True)
            cli_s.append(time.perf_counter() - t0)
            if done.returncode != 0:
                raise RuntimeError(f"flowengine check failed: {done.stdout}{done.stderr}")
    return {"steps": len(version.steps), "bytes": len(text.encode()),
            "warnings": len(version.warnings),
            "compile_ms": round(statistics.median(compile_s) * 1000, 1),
            "machine_ms": round(statistics.median(machine_s) * 1000, 1),
            "check_cli_ms": round(statistics.median(cli_s) * 1000, 1)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--print", action="store_true", help="print the flow and exit")
    args = parser.parse_args()
    if args.print:
        print(generate(args.steps), end="")
    else:
        print(json.dumps(measure_flow200(args.steps)))
