"""Scenario files: what a broken one reports (file:line:col, like `check`), and how each kind of
expectation compares with what a call did."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jsonschema
import pytest

from flowengine.engine import SessionReport
from flowengine.engine.session import TraceEntry
from flowengine.flow import load_flow
from flowengine.scenario import ScenarioFileError, compare, load_scenarios
from flowengine.scenario.model import scenario_schema
from flowengine.scenario.runner import match
from flowengine.sim.caller import GRAMMAR

ROOT = Path(__file__).resolve().parent.parent
VOICEMAIL = ROOT / "flows" / "voicemail.yaml"


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "s.test.yaml"
    path.write_text(textwrap.dedent(text).replace("FLOW", str(VOICEMAIL)))
    with pytest.raises(ScenarioFileError) as info:
        load_scenarios(path)
    return [str(d).replace(str(tmp_path) + "/", "") for d in info.value.diagnostics]


def test_the_schema_is_draft_07_and_accepts_the_shipped_files():
    schema = scenario_schema()
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)
    assert json.loads((ROOT / "schemas" / "scenario.schema.json").read_text()) == schema
    for file in sorted((ROOT / "flows" / "tests").glob("*.test.yaml")):
        assert file.read_text().startswith(
            "# yaml-language-server: $schema=../../schemas/scenario.schema.json\n")
        assert load_scenarios(file).scenarios


def test_schema_errors_are_positioned_with_hints(tmp_path):
    assert problems(tmp_path, """\
        flow: FLOW
        scenarios:
          - name: one
            caler: silent
            time_scale: fast
            expect:
              path: [greet]
              stauts: completed
              recording: {duration: long}
          - expect: {}
        """) == [
        "s.test.yaml:4:5: error: unknown key 'caler' in scenario 1; did you mean 'caller'?",
        "s.test.yaml:5:17: error: time_scale in scenario 1 must be a number, not the text 'fast'",
        ("s.test.yaml:8:7: error: unknown key 'stauts' in expect in scenario 1; did you mean "
         "'status'?"),
        ("s.test.yaml:9:29: error: expect.recording.duration in scenario 1 must be a number, not "
         "the text 'long'"),
        "s.test.yaml:10:5: error: scenario 2 needs 'name'",
    ]


def test_enum_and_length_errors_say_what_is_allowed(tmp_path):
    assert problems(tmp_path, """\
        flow: FLOW
        scenarios:
          - name: typo
            expect:
              status: complete
              recording: {format: ogg}
        """) == [
        ("s.test.yaml:5:15: error: expect.status in scenario 1 must be one of completed, "
         "failed, not the text 'complete'; did you mean 'completed'?"),
        ("s.test.yaml:6:27: error: expect.recording.format in scenario 1 must be one of mp3, "
         "wav, not the text 'ogg'"),
    ]


def test_references_to_the_flow_are_checked(tmp_path):
    assert problems(tmp_path, """\
        flow: FLOW
        caller: speak:three
        scenarios:
          - name: one
            call: {context: ofice}
            faults: [{step: bye}, {step: greeet}]
            expect:
              path: [greet, promt]
              outcomes: {take_message: no-input, check_length: finished}
              steps:
                take_message: {urll: x}
                bye: {text: x}
          - name: one
            expect: {recording: {step: prompt}}
        """) == [
        ("s.test.yaml:2:9: error: invalid caller script: unknown caller clause 'speak:three' in "
         "'speak:three'; grammar: " + GRAMMAR),
        ("s.test.yaml:5:21: error: flow voicemail does not take calls on context 'ofice'; its "
         "contexts: office; did you mean 'office'?"),
        ("s.test.yaml:6:21: error: step 'bye' (log) sends no RELAY request, so it cannot be made "
         "to fail; faults apply to steps that send a RELAY request, such as answer, play, "
         "record and hangup"),
        "s.test.yaml:6:34: error: flow voicemail has no step 'greeet'; did you mean 'greet'?",
        "s.test.yaml:8:21: error: flow voicemail has no step 'promt'; did you mean 'prompt'?",
        ("s.test.yaml:9:32: error: step 'take_message' (record) cannot end with 'no-input'; its "
         "outcomes are finished, no_input, error, hangup; did you mean 'no_input'?"),
        ("s.test.yaml:9:56: error: step 'check_length' (branch) cannot end with 'finished'; its "
         "outcomes are branch0, branch1, error"),
        ("s.test.yaml:11:24: error: steps.take_message has no result 'urll'; did you mean "
         "'url'?"),
        ("s.test.yaml:13:11: error: two scenarios are named 'one' (the other at line 4); "
         "scenario names must be unique in a file"),
        "s.test.yaml:14:32: error: step 'prompt' is a play step, not record",
    ]


def test_a_flow_that_does_not_load_is_reported_with_its_own_errors(tmp_path):
    bad = ROOT / "tests" / "flows_bad" / "unknown_action.yaml"
    found = problems(tmp_path, f"flow: {bad}\nscenarios: [{{name: x, expect: {{}}}}]\n")
    assert found == [
        (f"s.test.yaml:1:7: error: the flow {bad} does not load (1 error); run `flowengine "
         f"check {bad}`"),
        f"{bad}:6:5: error: unknown action 'plya'; did you mean 'play'?",
    ]


def test_yaml_errors_and_missing_files(tmp_path):
    assert problems(tmp_path, "flow: [x\n") == [
        ("s.test.yaml:1:7: error: this [ … ] list is not closed, or two of its items have no "
         "',' between them; end it with ']' and separate its items with ','")]
    assert problems(tmp_path, "- a\n") == [
        "s.test.yaml:1:1: error: a scenario file is a mapping with flow and scenarios"]
    assert problems(tmp_path, "name: f\nsteps:\n  a:\n    log: x\n") == [
        ("s.test.yaml:1:1: error: this is a flow, not a scenario file; scenario files end in "
         ".test.yaml and name their flow with flow: (see docs/testing.md)")]
    missing = tmp_path / "nothing.yaml"
    assert problems(tmp_path, f"flow: {missing}\nscenarios: [{{name: x, expect: {{}}}}]\n") == [
        ("s.test.yaml:1:7: error: the flow nothing.yaml does not load (1 error); run `flowengine "
         "check nothing.yaml`"),
        "nothing.yaml: error: cannot read the file: No such file or directory",
    ]


# -- matching ----------------------------------------------------------------------------------

@pytest.mark.parametrize("expected,actual,problem", [
    ("sales", "sales", None),
    ("sales", "support", '"sales"'),
    (3, 3.0, None),
    (True, 1, "true"),
    (None, None, None),
    ({"contains": "sales"}, "voicemail for sales", None),
    ({"contains": "sales"}, None, 'text containing "sales"'),
    ({"matches": r"^\d+$"}, "123", None),
    ({"matches": r"^\d+$"}, "12a", r"text matching /^\d+$/"),
    ({"approx": 3}, 3.4, None),
    ({"approx": 3}, 3.6, "3 ± 0.5"),
    ({"approx": 3, "within": 1}, 3.6, None),
    ({"present": True}, "x", None),
    ({"present": True}, None, "a value (not null)"),
    ({"present": False}, None, None),
    ({"equals": {"a": 1}}, {"a": 1}, None),
    ({"contains": "a", "present": True}, "b", 'text containing "a"'),
])
def test_matchers(expected, actual, problem):
    assert match(expected, actual) == problem


def _report(**overrides):
    trace = [
        TraceEntry("c", "voicemail", "v", "greet", "answer", "answered", "prompt", 0, 0),
        TraceEntry("c", "voicemail", "v", "prompt", "play", "finished", "take_message", 0, 0,
                   params={"media": [{"say": "Hi there"}, {"audio": "https://x/beep.mp3"}],
                           "volume": None}),
        TraceEntry("c", "voicemail", "v", "take_message", "record", "hangup", None, 0, 0),
    ]
    fields: dict = {"status": "completed", "steps": {
        "greet": {"state": "answered"}, "prompt": {"state": "finished"},
        "take_message": {"state": "finished", "url": "http://x/r.mp3", "duration": 2.0,
                         "size": 100, "format": "mp3"}},
        "vars": {"mailbox": "sales"}, "trace": trace, "caller_hung_up": True,
        "end_reason": "hangup"}
    fields.update(overrides)
    return SessionReport(**fields)


def test_compare_reports_every_difference_with_expected_and_actual():
    flow = load_flow(VOICEMAIL)
    found = compare(flow, {
        "path": ["greet", "prompt", "take_message", "check_length"],
        "path_includes": ["prompt", "greet"],
        "not_visited": ["prompt"],
        "outcomes": {"take_message": "finished", "thanks": "finished"},
        "said": ["Hi", "Bye"],
        "played": ["beep.wav"],
        "recording": {"duration": 3, "format": "wav"},
        "steps": {"take_message": {"size": {"approx": 200}}, "bye": {"text": "x"}},
        "vars": {"mailbox": "support", "count": 1},
        "status": "failed", "caller_hung_up": False, "end_reason": "hangup",
        "error": {"contains": "boom"},
    }, _report())
    assert [m.lines() for m in found] == [
        ["path:", "  expected: greet → prompt → take_message → check_length",
         "  actual:   greet → prompt → take_message"],
        ["path_includes:", "  expected: prompt → greet (in this order)",
         "  actual:   greet → prompt → take_message (no 'greet' after prompt)"],
        ["not_visited prompt:", "  expected: step 'prompt' does not run",
         "  actual:   it ran: greet → prompt → take_message"],
        ["outcomes.take_message:", "  expected: finished", "  actual:   hangup"],
        ["outcomes.thanks:", "  expected: finished", "  actual:   step 'thanks' did not run"],
        ["said:", '  expected: "Hi" / "Bye" (in this order)', '  actual:   "Hi there"'],
        ["played:", '  expected: "beep.wav"', '  actual:   "https://x/beep.mp3"'],
        ["recording (take_message) duration:", "  expected: 3 s ± 0.6", "  actual:   2.0 s"],
        ["recording (take_message) format:", '  expected: "wav"', '  actual:   "mp3"'],
        ["steps.take_message.size:", "  expected: 200 ± 0.5", "  actual:   100"],
        ["steps.bye.text:", '  expected: "x"', "  actual:   step 'bye' did not run"],
        ["vars.mailbox:", '  expected: "support"', '  actual:   "sales"'],
        ["vars.count:", "  expected: 1", "  actual:   not set"],
        ["status:", '  expected: "failed"', '  actual:   "completed"'],
        ["caller_hung_up:", "  expected: false", "  actual:   true"],
        ["error:", '  expected: text containing "boom"', "  actual:   no error"],
    ]


def test_compare_accepts_a_report_that_meets_every_expectation():
    flow = load_flow(VOICEMAIL)
    assert compare(flow, {
        "path": ["greet", "prompt", "take_message"],
        "path_includes": ["greet", "take_message"],
        "not_visited": ["thanks"],
        "outcomes": {"take_message": "hangup"},
        "said": ["Hi"], "played": ["beep.mp3"],
        "recording": {"step": "take_message", "duration": 2.5, "format": "mp3"},
        "steps": {"take_message": {"url": {"present": True}, "duration": {"approx": 2}}},
        "vars": {"mailbox": "sales"},
        "status": "completed", "caller_hung_up": True, "end_reason": "hangup", "error": None,
    }, _report()) == []


def test_no_recording_expected_but_one_was_made():
    flow = load_flow(VOICEMAIL)
    assert [m.lines() for m in compare(flow, {"recording": False}, _report())] == [
        ["recording:", "  expected: no recording", "  actual:   take_message: http://x/r.mp3"]]
    report = _report(steps={"take_message": {"state": "no_input", "url": None}})
    assert [m.lines() for m in compare(flow, {"recording": {}}, report)] == [
        ["recording (take_message):", "  expected: a recording with a url",
         '  actual:   no recording (step \'take_message\' ended with state "no_input")']]
