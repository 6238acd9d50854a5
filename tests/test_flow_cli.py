"""`flowengine check` as a user runs it: output format, summary, exit status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
BAD = Path("tests") / "flows_bad"
#: What `check flows` says about the shipped example flows.
CLEAN = f"checked {len(list((ROOT / 'flows').glob('*.yaml')))} files: no problems\n"


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowengine.cli", "check", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)


def test_clean_flows_exit_0_with_a_summary_on_stderr():
    run = check("flows")
    assert run.returncode == 0
    assert run.stdout == ""
    assert run.stderr == CLEAN


def test_errors_exit_1_one_line_each():
    run = check(str(BAD / "wrong_type.yaml"), str(BAD / "unknown_action.yaml"))
    assert run.returncode == 1
    assert run.stdout.splitlines() == [
        ("tests/flows_bad/unknown_action.yaml:6:5: error: unknown action 'plya'; did you mean "
         "'play'?"),
        ("tests/flows_bad/wrong_type.yaml:5:28: error: end_silence_timeout in record must be a "
        "number, not the text 'three'"),
    ]
    assert run.stderr == "checked 2 files: 2 errors\n"


def test_every_bad_flow_is_reported_without_a_traceback():
    run = check(str(BAD))
    assert run.returncode == 1
    files = sorted(BAD.glob("*.yaml"))
    lines = run.stdout.splitlines()
    assert len(lines) == len(files)
    assert all(": error: " in line for line in lines)
    assert "Traceback" not in run.stderr
    assert run.stderr == f"checked {len(files)} files: {len(files)} errors\n"


def test_json_format():
    run = check("--format", "json", str(BAD / "unknown_action.yaml"))
    assert run.returncode == 1
    assert json.loads(run.stdout) == [{
        "file": "tests/flows_bad/unknown_action.yaml", "line": 6, "col": 5, "severity": "error",
        "message": "unknown action 'plya'", "hint": "did you mean 'play'?",
    }]
    assert json.loads(check("--format", "json", "flows").stdout) == []


def test_warnings_exit_0_unless_strict(tmp_path):
    flow = tmp_path / "warn.yaml"
    flow.write_text("name: warn\nsteps:\n  a:\n    log: x\n    next: null\n  b:\n    log: y\n")
    run = check(str(flow))
    assert run.returncode == 0
    assert run.stdout == (f"{flow}:6:3: warning: step 'b' is never reached; no path leads to it "
                          "from start, on_hangup or on_error\n")
    assert run.stderr == "checked 1 file: 1 warning\n"
    assert check("--strict", str(flow)).returncode == 1


def test_a_missing_path_is_an_error():
    run = check("no/such/flow.yaml")
    assert run.returncode == 1
    assert run.stdout == "no/such/flow.yaml: error: no such file or directory\n"
    assert run.stderr == "checked 0 files: 1 error\n"


def test_the_installed_command_runs():
    exe = Path(sys.executable).with_name("flowengine")
    if not exe.exists():  # running outside the project's venv
        exe = ROOT / ".venv" / "bin" / "flowengine"
    run = subprocess.run([str(exe), "check", "flows"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=False)
    assert (run.returncode, run.stderr) == (0, CLEAN)
