"""`flowengine dial` as a user runs it: one call (exit codes, trace, --callee, --var, bad
input refused before anything is dialled), and a CSV campaign through the Pacer against a
simulator that counts the outbound calls up at once and who was dialled."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import anyio
import pytest

from flowengine.cli import build_parser
from flowengine.engine.dialer import Prepared, dial_command, prepare
from flowengine.sim import Simulator
from tests.flowtools import ROOT, variant
from tests.test_cli_run import _env

FLOWENGINE = [sys.executable, "-m", "flowengine.cli"]

FLOW = """\
name: ring
context: office
inputs:
  patient: {type: string, default: "there"}
  visits: {type: integer, default: 1}
outbound:
  from: "+15559870000"
  timeout: 20
  on:
    busy: missed
    no_answer: missed
steps:
  hello:
    play: [{say: "Hello {{ vars.patient }}, visit {{ vars.visits }}."}]
    next: null
  missed:
    log: "missed {{ call.to }} ({{ vars.patient }})"
"""


def write(tmp_path: Path, text: str = FLOW, name: str = "ring.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def dial(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FLOWENGINE, "dial", *args, "--time-scale", "0.01"],
                          capture_output=True, text=True, cwd=ROOT, check=False, env=_env(),
                          timeout=120)


def test_an_answered_call_prints_its_outcome_and_trace_and_exits_0(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    proc = dial(write(tmp_path), "--to", "+1 555 000 1111", "--var", "patient=Ann",
                "--var", "visits=3", "--trace", str(trace))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "embedded simulator" in out and "callee 'answer'" in out
    assert "dial +15550001111 from +15559870000: answered after" in out
    assert any("hello" in line and "calling.play" in line and "finished" in line
               for line in out.splitlines()), out
    assert "vars: patient='Ann', visits=3" in out
    [entry] = [json.loads(line) for line in trace.read_text().splitlines()]
    assert entry["step"] == "hello"
    assert entry["params"]["media"][0]["say"] == "Hello Ann, visit 3."


def test_callee_busy_runs_the_missed_path_without_a_call(tmp_path: Path) -> None:
    proc = dial(write(tmp_path), "--to", "+15550001111", "--callee", "+15550001111=busy")
    assert proc.returncode == 0, proc.stderr
    assert "dial +15550001111 from +15559870000: busy (busy); running missed without a call" \
        in proc.stdout
    assert "log: missed +15550001111 (there)" in proc.stdout
    assert "flow completed in" in proc.stdout and "without a call" in proc.stdout


def test_an_outcome_with_no_step_says_so(tmp_path: Path) -> None:
    proc = dial(write(tmp_path), "--to", "+15550001111", "--callee", "fail")
    assert proc.returncode == 0, proc.stderr
    assert "failed (error); the flow has no step for failed" in proc.stdout
    assert "call to +15550001111: failed (error); no step ran" in proc.stdout


def test_a_flow_that_fails_exits_1(tmp_path: Path) -> None:
    text = variant(FLOW, ('    log: "missed {{ call.to }} ({{ vars.patient }})"',
                          '    request: {url: "http://127.0.0.1:1/down", retries: 0}'))
    proc = dial(write(tmp_path, text), "--to", "+15550001111", "--callee", "noanswer")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "no_answer (noAnswer)" in proc.stdout and "flow failed" in proc.stdout


@pytest.mark.parametrize(("args", "expected"), [
    (["--to", "+15550001111", "--var", "visits=lots"],
     "error: --var visits: input 'visits' (integer) must be an integer, not 'lots'"),
    (["--to", "+15550001111", "--var", "patiant=Ann"],
     "error: --var patiant: flow ring has no input 'patiant'; did you mean 'patient'?"),
    (["--to", "+15550001111", "--var", "visits"], "error: --var 'visits': write KEY=VALUE"),
    (["--to", "555-1234"], "error: --to: '555-1234' is not a phone number in E.164"),
    (["--to", "+15550001111", "--from", "me"], "error: --from: 'me' is not a phone number"),
    (["--to", "+15550001111", "--callee", "bussy"], "error: --callee 'bussy':"),
])
def test_bad_input_exits_2_naming_the_field_and_dials_nothing(
        tmp_path: Path, args: list[str], expected: str) -> None:
    proc = dial(write(tmp_path), *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert expected in proc.stderr and "Traceback" not in proc.stderr
    assert "embedded simulator" not in proc.stdout and "dial +" not in proc.stdout


def test_an_invalid_flow_exits_2_with_its_position(tmp_path: Path) -> None:
    proc = dial(write(tmp_path, variant(FLOW, ("    busy: missed", "    busy: nowhere"))),
                "--to", "+15550001111")
    assert proc.returncode == 2
    assert "ring.yaml:10:11: error: unknown step 'nowhere' in outbound.on.busy" in proc.stderr


def test_bad_csv_rows_are_listed_by_line_and_nothing_is_dialled(tmp_path: Path) -> None:
    contacts = tmp_path / "contacts.csv"
    contacts.write_text("to,patient,visits\n+15550000001,Ann,2\n555,Bob,2\n"
                        "+15550000003,Cy,many\n+15550000004,,\n")
    proc = dial(write(tmp_path), "--csv", str(contacts))
    assert proc.returncode == 2
    assert f"{contacts}:3: to: '555' is not a phone number" in proc.stderr
    assert (f"{contacts}:4: visits: input 'visits' (integer) must be an integer, not 'many'"
            in proc.stderr)
    assert "2 row(s) with problems: nothing dialled" in proc.stderr
    assert "embedded simulator" not in proc.stdout
    skipped = dial(write(tmp_path), "--csv", str(contacts), "--skip-invalid", "--rate", "0",
                   "--var", "patient=friend")
    assert skipped.returncode == 1, skipped.stderr  # two rows did not run
    assert "campaign: 2 call(s): answered 2; flows failed 0; invalid rows skipped 2" \
        in skipped.stdout
    assert "vars: patient='friend', visits=1" in skipped.stdout  # the row with empty cells
    assert "vars: patient='Ann', visits=2" in skipped.stdout
    bad_header = tmp_path / "header.csv"
    bad_header.write_text("number,patient\n+15550000001,Ann\n")
    proc = dial(write(tmp_path), "--csv", str(bad_header))
    assert proc.returncode == 2 and f"{bad_header}:1: to: the header has no to column" \
        in proc.stderr


def args_for(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["dial", *argv])


@pytest.mark.anyio
async def test_a_campaign_keeps_5_calls_up_at_most_and_dials_every_contact_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each answered call lasts 60 simulated seconds (0.6 s): at 10 starts a second, the
    # cap of 5 is what holds them back.
    text = variant(FLOW, ('    play: [{say: "Hello {{ vars.patient }}, visit {{ vars.visits }}."}]',
                          "    play: [{silence: 60}]"))
    numbers = [f"+1555000{i:04d}" for i in range(50)]
    contacts = tmp_path / "contacts.csv"
    contacts.write_text("to,patient\n" + "".join(f"{n},p{i}\n" for i, n in enumerate(numbers)))
    for key in list(os.environ):
        if key.startswith(("SIGNALWIRE_", "FLOWENGINE_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("SIGNALWIRE_PROJECT_ID", "p")
    monkeypatch.setenv("SIGNALWIRE_API_TOKEN", "t-campaign")
    async with Simulator(port=0, project="p", token="t-campaign", time_scale=0.01) as sim:
        sim.set_callee(None, "answer:1")
        for busy in numbers[:5]:
            sim.set_callee(busy, "busy")
        args = args_for(write(tmp_path, text), "--csv", str(contacts), "--concurrency", "5",
                        "--rate", "10", "--relay-url", sim.url, "-q")
        prepared = prepare(args, io.StringIO())
        assert isinstance(prepared, Prepared) and len(prepared.contacts) == 50
        out = io.StringIO()
        with anyio.fail_after(60):
            code = await dial_command(args, prepared, out, io.StringIO())
        await sim.wait_all_ended(timeout=10)
        summary = sim.summary()
        dialled = Counter(leg.to_number for dial in sim.core.dials for leg in dial.legs)
    assert code == 0, out.getvalue()
    assert summary["dialed"] == 50 and summary["leaked"] == 0 and summary["active"] == 0
    assert dialled == Counter(numbers)
    assert summary["dialed_peak"] == 5
    assert "campaign: 50 call(s): answered 45, busy 5; flows failed 0" in out.getvalue()
