"""`flowengine test` as a user runs it: one line per scenario, coverage, summary, exit status."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.test_scenarios import SHIPPED_SCENARIOS

ROOT = Path(__file__).resolve().parent.parent


def flowengine(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowengine.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)


def line_of(file: str, name: str) -> int:
    """The line where scenario ``name`` is written in ``file``."""
    lines = (ROOT / file).read_text().splitlines()
    return lines.index(f"  - name: {name}") + 1


def test_default_path_is_flows_and_each_scenario_gets_a_line():
    run = flowengine("test", "-k", "answering fails")
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    # Every shipped scenario file of an inbound flow has an "answering fails" scenario (the
    # reminder places its calls: it answers none). A user's own files under flows/
    # (docs/guide.md adds hello.test.yaml) may add lines of their own.
    files = [f"flows/tests/{name}" for name in SHIPPED_SCENARIOS
             if name != "reminder.test.yaml"]
    ours = [line for line in lines if line.startswith("ok    ")
            and line.removeprefix("ok    ").split(":")[0] in files]
    assert ours == [f"ok    {f}:{line_of(f, 'answering fails')}: answering fails"
                    for f in files]
    count = sum(1 for line in lines if line.startswith("ok    "))
    # Coverage is part of the summary: one answer that fails takes few edges.
    start = lines.index("coverage (edges of each flow that the scenarios took):")
    assert lines[start - 1] == ""
    assert "  flows/after_hours.yaml: 1 of 31 edges taken" in lines[start:]
    assert "    not taken: greet: answered → office_hours" in lines
    assert lines[-1] == f"{count} passed, 0 failed"


def test_coverage_lists_every_edge_with_who_took_it():
    run = flowengine("test", "flows/tests/voicemail.test.yaml", "--coverage", "-k",
                     "hears the goodbye", "-k", "pound")
    assert run.returncode == 0, run.stdout
    lines = run.stdout.splitlines()
    assert ("    greet: answered → prompt  — taken by 'a message left with pound is thanked "
            "with its length' (+1 more)") in lines
    assert "    greet: hangup → (end)  — NOT TAKEN" in lines
    assert ("    check_length: error → (end)  — not counted (only a template error takes it)"
            in lines)
    assert ("    check_length: branch0 (when steps.take_message.duration >= 2) → thanks  — "
            "taken by 'a message left with pound is thanked with its length'") in lines
    assert lines[-1] == "2 passed, 0 failed"


def test_require_coverage_fails_when_an_edge_was_not_taken():
    run = flowengine("test", "flows/tests/voicemail.test.yaml", "-k", "pound",
                     "--require-coverage", "--no-coverage")
    assert run.returncode == 1
    name = "a message left with pound is thanked with its length"
    file = "flows/tests/voicemail.test.yaml"
    assert run.stdout.splitlines() == [f"ok    {file}:{line_of(file, name)}: {name}", "",
                                       "1 passed, 0 failed"]
    assert run.stderr == "some edges were taken by no scenario (--require-coverage)\n"


def test_a_failing_scenario_shows_expected_and_actual_and_exits_1(tmp_path):
    (tmp_path / "wrong.test.yaml").write_text(textwrap.dedent(f"""\
        flow: {ROOT / 'flows' / 'voicemail.yaml'}
        scenarios:
          - name: expects the wrong branch
            caller: speak:1
            expect:
              outcomes: {{check_length: branch0}}
              recording: {{duration: 3}}
          - name: right
            caller: speak:1
            expect: {{outcomes: {{check_length: branch1}}}}
        """))
    run = flowengine("test", str(tmp_path), "--no-coverage")
    assert run.returncode == 1
    file = tmp_path / "wrong.test.yaml"
    assert run.stdout.splitlines() == [
        f"FAIL  {file}:3: expects the wrong branch",
        "      outcomes.check_length:",
        "        expected: branch0",
        "        actual:   branch1",
        "      recording (take_message) duration:",
        "        expected: 3 s ± 0.6",
        "        actual:   1.0 s",
        ("      the call: greet (answered) → prompt (finished) → take_message (finished) → "
         "check_length (branch1) → too_short (finished) → bye (next) → end (next) → (end)"),
        f"ok    {file}:8: right",
        "",
        "1 passed, 1 failed",
    ]


def test_missing_paths_and_empty_directories_fail(tmp_path):
    run = flowengine("test", str(tmp_path / "nope.test.yaml"), str(tmp_path))
    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        f"{tmp_path}/nope.test.yaml: error: no such file or directory",
        f"{tmp_path}: error: no scenario files (*.test.yaml) under this directory",
    ]
    assert run.stdout.splitlines() == ["", "0 passed, 2 failed"]


def test_a_broken_scenario_file_is_reported_like_check_and_counts_as_failed(tmp_path):
    (tmp_path / "broken.test.yaml").write_text(
        f"flow: {ROOT / 'flows' / 'voicemail.yaml'}\nscenarios:\n  - name: x\n    expect:\n"
        "      path: [greet, promt]\n")
    run = flowengine("test", str(tmp_path))
    assert run.returncode == 1
    file = tmp_path / "broken.test.yaml"
    assert run.stdout.splitlines() == [
        f"{file}:5:21: error: flow voicemail has no step 'promt'; did you mean 'prompt'?",
        f"FAIL  {file}: the scenario file cannot run",
        "",
        "0 passed, 1 failed",
    ]
