"""A test of the tests: the shipped voicemail scenarios pass against flows/voicemail.yaml and
fail, with a message that shows the difference, against copies of it with one change each."""

from __future__ import annotations

import io
from argparse import Namespace
from pathlib import Path

import pytest

from flowengine.scenario import cli
from tests.flowtools import variant

ROOT = Path(__file__).resolve().parent.parent
VOICEMAIL = (ROOT / "flows" / "voicemail.yaml").read_text()
SCENARIOS = (ROOT / "flows" / "tests" / "voicemail.test.yaml").read_text()
POUND = "a message left with pound is thanked with its length"


def run_against(tmp_path: Path, flow_text: str, *names: str) -> tuple[int, str]:
    """Run the voicemail scenarios (those named, or all) against ``flow_text``."""
    (tmp_path / "voicemail.yaml").write_text(flow_text)
    (tmp_path / "voicemail.test.yaml").write_text(
        SCENARIOS.replace("flow: ../voicemail.yaml", "flow: voicemail.yaml"))
    out = io.StringIO()
    args = Namespace(paths=[str(tmp_path)], names=list(names) or None, coverage=False,
                     no_coverage=True, require_coverage=False, time_scale=None)
    code = cli.run(args, out, io.StringIO())
    return code, out.getvalue()


def changed(old: str, new: str) -> str:
    return variant(VOICEMAIL, (old, new))


def test_the_unchanged_flow_passes(tmp_path):
    code, out = run_against(tmp_path, VOICEMAIL, "pound")
    assert code == 0
    assert out.splitlines()[-1] == "1 passed, 0 failed"


def test_a_different_branch_threshold_fails_with_the_path_that_changed(tmp_path):
    code, out = run_against(tmp_path, changed("duration >= 2", "duration >= 5"), "pound")
    assert code == 1
    file = tmp_path / "voicemail.test.yaml"
    assert out.splitlines() == [
        f"FAIL  {file}:{SCENARIOS.splitlines().index('  - name: ' + POUND) + 1}: {POUND}",
        "      path:",
        "        expected: greet → prompt → take_message → check_length → thanks → bye → end",
        "        actual:   greet → prompt → take_message → check_length → too_short → bye → end",
        "      outcomes.check_length:",
        "        expected: branch0",
        "        actual:   branch1",
        "      said:",
        ('        expected: "Hi. You reached sales. Leave a message after the beep." / '
         '"Thanks. We got 3 seconds." (in this order)'),
        ('        actual:   "Hi. You reached sales. Leave a message after the beep." / '
         '"That was very short, but we kept it."'),
        ("      the call: greet (answered) → prompt (finished) → take_message (finished) → "
         "check_length (branch1) → too_short (finished) → bye (next) → end (next) → (end)"),
        "",
        "0 passed, 1 failed",
    ]


def test_a_removed_edge_fails_the_scenarios_that_took_it(tmp_path):
    code, out = run_against(tmp_path, changed("      no_input: nothing_heard\n", ""), "silent")
    assert code == 1
    assert out.splitlines()[-1] == "0 passed, 3 failed"
    assert ("        expected: greet → prompt → take_message → nothing_heard → bye → end\n"
            "        actual:   greet → prompt → take_message → check_length\n") in out
    # Without the edge, no_input follows next into the branch, whose condition fails.
    assert ("      flow error: " + str(tmp_path / "voicemail.yaml") + ":25:15: in step "
            "'check_length' (when in branch choice 1): TypeError: '>=' not supported between "
            "instances of 'NoneType' and 'int'\n") in out


def test_a_changed_prompt_fails_what_was_said(tmp_path):
    code, out = run_against(tmp_path, changed("Thanks. We got", "Thank you. We got"), "pound")
    assert code == 1
    assert ('        expected: "Hi. You reached sales. Leave a message after the beep." / '
            '"Thanks. We got 3 seconds." (in this order)\n'
            '        actual:   "Hi. You reached sales. Leave a message after the beep." / '
            '"Thank you. We got 3 seconds."\n') in out


def test_a_changed_recording_format_fails_the_recording_and_the_log(tmp_path):
    code, out = run_against(tmp_path, changed("format: mp3", "format: wav"), "pound")
    assert code == 1
    assert ("      recording (take_message) format:\n"
            '        expected: "mp3"\n'
            '        actual:   "wav"\n') in out
    assert ("      steps.bye.text:\n"
            "        expected: text matching /^voicemail for sales: http") in out


def test_a_flow_that_no_longer_hangs_up_fails_the_fault_scenario(tmp_path):
    flow = changed("  end:\n    hangup: {}\n", "  end:\n    log: done\n")
    code, out = run_against(tmp_path, flow, "hanging up fails")
    assert code == 1
    # The scenario file no longer fits the flow: 'end' sends no RELAY request to fail.
    file = tmp_path / "voicemail.test.yaml"
    line = SCENARIOS.splitlines().index("    faults: [{step: end}]") + 1
    assert out.splitlines()[:2] == [
        (f"{file}:{line}:21: error: step 'end' (log) sends no RELAY request, so it cannot be made "
         "to fail; faults apply to steps that send a RELAY request, such as answer, play, "
         "record and hangup"),
        f"FAIL  {file}: the scenario file cannot run",
    ]


@pytest.mark.parametrize("old,new,name", [
    ('terminators: "#"', 'terminators: "*"', "pound"),
    ("mailbox: sales", "mailbox: support", "silent"),
    ('"Hi. You reached {{ vars.mailbox }}.', '"Hi. You reached {{ vars.mailbox | upper }}.',
     "pound"),
])
def test_other_single_changes_are_caught(tmp_path, old, new, name):
    code, out = run_against(tmp_path, changed(old, new), name)
    assert code == 1 and "FAIL" in out
