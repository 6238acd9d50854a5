"""Scenarios of an outbound flow: callee:, inputs: and expect.dial are checked against the
flow when the file loads (file:line:col), a dial outcome that differs is a mismatch, and
coverage counts the dial outcomes' edges."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowengine.scenario import Coverage, ScenarioFileError, load_scenarios, run_file
from tests.flowtools import FLOWS, variant

REMINDER = FLOWS / "reminder.yaml"
VOICEMAIL = FLOWS / "voicemail.yaml"

GOOD = """\
flow: FLOW
inputs: {patient: Ann}
vars: {webhook: "${RECEIVER}"}
scenarios:
  - name: busy
    callee: busy
    receiver: {}
    expect: {dial: busy, path: [missed, report_missed]}
"""


def load(tmp_path: Path, text: str, flow: Path = REMINDER) -> list[str]:
    path = tmp_path / "s.test.yaml"
    path.write_text(text.replace("FLOW", str(flow)))
    with pytest.raises(ScenarioFileError) as info:
        load_scenarios(path)
    return [str(d).replace(str(tmp_path) + "/", "") for d in info.value.diagnostics]


@pytest.mark.parametrize(("edit", "expected"), [
    (("inputs: {patient: Ann}", "inputs: {patiant: Ann}"),
     "s.test.yaml:2:10: error: flow reminder has no input 'patiant'; did you mean 'patient'?"),
    (("    callee: busy", "    callee: busy\n    inputs: {patient: 3}"),
     "s.test.yaml:7:23: error: input 'patient' (string) must be a string, not a number"),
    (("    callee: busy", "    callee: bussy"), "s.test.yaml:6:13: error: invalid caller script"),
    (("    callee: busy", "    caller: silent"),
     "s.test.yaml:6:5: error: flow reminder places its calls (outbound:): say what the "
     "number dialled does with callee:"),
])
def test_an_outbound_flow_s_scenarios_are_checked_against_it(
        tmp_path: Path, edit: tuple[str, str], expected: str) -> None:
    found = load(tmp_path, variant(GOOD, edit))
    assert any(p.startswith(expected) for p in found), found


def test_an_inbound_flow_s_scenarios_take_no_callee_inputs_or_dial(tmp_path: Path) -> None:
    text = ("flow: FLOW\ninputs: {patient: Ann}\nscenarios:\n  - name: x\n    callee: busy\n"
            "    expect: {dial: busy}\n")
    found = load(tmp_path, text, VOICEMAIL)
    assert [p.split(": error: ")[0].split(":", 1)[1] for p in found] == ["2:1", "5:5", "6:14"]
    assert all("flow voicemail has no outbound: section" in p for p in found), found


def test_expect_dial_machine_needs_detection(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text(variant(REMINDER.read_text(),
                            ("  detect_machine: {wait_for_beep: true}\n", ""),
                            ("    machine: voicemail     # an answering machine, once its "
                             "greeting ended (the beep)\n", "")))
    found = load(tmp_path, variant(GOOD, ("dial: busy", "dial: machine")), flow)
    assert any("cannot come to 'machine' (it has no detect_machine)" in p for p in found), found


@pytest.mark.anyio
async def test_a_dial_that_comes_to_another_outcome_is_a_mismatch_and_coverage_counts_dial_edges(
        tmp_path: Path) -> None:
    path = tmp_path / "s.test.yaml"
    path.write_text(variant(GOOD, ("    callee: busy", "    callee: noanswer"))
                    .replace("FLOW", str(REMINDER)))
    [result] = await run_file(load_scenarios(path))
    assert not result.passed
    assert [(m.what, m.expected, m.actual) for m in result.mismatches] == [
        ("dial", "busy", "no_answer (noAnswer)")]
    assert result.dial is not None and result.dial.path == ["missed", "report_missed"]
    assert "the call: dial (no_answer) → missed (next) → report_missed (ok) → (end)" \
        in result.failure_text()
    coverage = Coverage()
    coverage.add([result])
    [cover] = coverage.flows.values()
    assert cover.taken[("(dial)", "no_answer")] == ["busy"]
    missed = [e.text(cover.flow) for e in cover.missed()]
    assert "(dial): busy → missed" in missed and "(dial): answered → ask" in missed
    assert "(dial): no_answer → missed" not in missed
