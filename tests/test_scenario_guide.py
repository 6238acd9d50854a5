"""docs/guide.md shows real output: its first flow loads, its scenarios pass with the printed
report, its `check` example prints what the guide says, and its Mermaid graph is the one
`flowengine graph` draws."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUIDE = (ROOT / "docs" / "guide.md").read_text(encoding="utf-8")


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", GUIDE, re.DOTALL)


def block_after(marker: str) -> str:
    start = GUIDE.index(marker)
    return re.search(r"\n\n```\n(.*?)```", GUIDE[start:], re.DOTALL)[1]  # type: ignore[index]


def flowengine(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowengine.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def write_guide_files(tmp_path: Path) -> str:
    flow = blocks("yaml")[0]
    scenarios = next(b for b in blocks("yaml") if b.startswith(
        "# yaml-language-server: $schema=../../schemas/scenario.schema.json\nflow: ../hello.yaml"))
    (tmp_path / "flows" / "tests").mkdir(parents=True)
    (tmp_path / "flows" / "hello.yaml").write_text(flow)
    (tmp_path / "flows" / "tests" / "hello.test.yaml").write_text(scenarios)
    return flow


def test_the_first_flow_and_its_scenarios_run_as_printed(tmp_path):
    write_guide_files(tmp_path)
    assert flowengine(tmp_path, "check", "flows").returncode == 0
    run = flowengine(tmp_path, "test")
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout == block_after("flowengine test flows/tests/hello.test.yaml")


def test_the_check_example_prints_what_the_guide_shows(tmp_path):
    flow = write_guide_files(tmp_path)
    (tmp_path / "flows" / "hello.yaml").write_text(
        flow.replace("no_input: nothing_heard", "no_input: nothing_hard")
        .replace("vars.company", "vars.compnay"))
    run = flowengine(tmp_path, "check", "flows/")
    assert run.returncode == 1
    shown = block_after("With two typos in `hello.yaml`").splitlines()
    assert run.stdout.splitlines() == shown[:-1]
    assert run.stderr.splitlines() == shown[-1:]


def test_the_mermaid_graph_is_the_one_flowengine_draws():
    assert blocks("mermaid")[0] == (ROOT / "tests" / "graphs" / "voicemail.mmd").read_text()
