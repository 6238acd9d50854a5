"""What `check` finds beyond the single-mistake files: several findings at once, warnings,
file-level problems, directories."""

from __future__ import annotations

import textwrap

from flowengine.flow import check_paths, compile_flow
from flowengine.flow.actions import ACTIONS


def findings(text: str) -> list[str]:
    return [str(d) for d in compile_flow(textwrap.dedent(text), "t.yaml").diagnostics]


def test_all_schema_errors_are_reported_at_once():
    assert findings("""\
        name: t
        stpes: {}
        steps:
          a:
            record: {beep: maybe, format: ogg}
          b:
            plya: []
          c: {}
        """) == [
        "t.yaml:2:1: error: unknown key 'stpes' in the flow; did you mean 'steps'?",
        "t.yaml:5:20: error: beep in record must be true or false, not the text 'maybe'",
        "t.yaml:5:35: error: format in record must be one of mp3, wav, not the text 'ogg'",
        "t.yaml:7:5: error: unknown action 'plya'; did you mean 'play'?",
        "t.yaml:8:3: error: step 'c' has no action; it needs one of " + ", ".join(ACTIONS),
    ]


def test_missing_required_keys_and_empty_steps():
    assert findings("description: x\n") == [
        "t.yaml:1:1: error: the flow needs 'name'", "t.yaml:1:1: error: the flow needs 'steps'"]
    assert findings("name: t\nsteps: {}\n") == ["t.yaml:2:8: error: steps must not be empty"]


def test_all_semantic_errors_are_reported_at_once():
    assert findings("""\
        name: t
        on_error: oops
        steps:
          a:
            play: [{say: "{{ call.frm }} {{ flow.nme }}"}]
            on: {finish: b}
          b:
            log: x
            on: {finished: a}
        """) == [
        "t.yaml:2:11: error: unknown step 'oops' in on_error",
        "t.yaml:5:18: error: unknown call field 'frm' in call.frm; did you mean 'from'?",
        "t.yaml:5:18: error: unknown flow field 'nme' in flow.nme; did you mean 'name'?",
        ("t.yaml:6:10: error: play cannot end with 'finish'; its outcomes are finished, error, "
        "hangup; did you mean 'finished'?"),
        ("t.yaml:9:10: error: log cannot end with 'finished'; its only outcome for on: is error; "
        "use next: to say where to go after it"),
    ]


def test_warnings_do_not_stop_a_flow_from_loading():
    result = compile_flow(textwrap.dedent("""\
        name: t
        steps:
          a:
            answer: {}
            next: c
          b:
            log: orphan
          c:
            log: x
            timeout: 3
        """), "t.yaml")
    assert result.ok and result.version is not None
    assert [str(d) for d in result.version.warnings] == [
        ("t.yaml:6:3: warning: step 'b' is never reached; no path leads to it from start, "
        "on_hangup or on_error"),
        "t.yaml:10:5: warning: timeout has no effect on a log step (it does not wait for anything)",
    ]


def test_a_step_result_read_where_the_step_may_not_have_run():
    assert findings("""\
        name: t
        on_hangup: gone
        steps:
          a:
            answer: {}
          rec:
            record: {}
          gone:
            log: "{{ steps.rec.url }}"
        """) == [
        ("t.yaml:9:10: warning: steps.rec may be undefined here: step 'gone' can be reached "
        "without 'rec' having run; guard it with `steps.rec is defined` or `| default(...)`")]


def test_guards_silence_the_may_not_have_run_warning():
    assert findings("""\
        name: t
        on_hangup: gone
        steps:
          a:
            answer: {}
          rec:
            record: {}
          gone:
            log: "{{ steps.rec.url | default('none') }}"
          gone2:
            log: "{% if steps.rec is defined %}{{ steps.rec.url }}{% endif %}"
          check:
            branch:
              - when: steps.rec is defined and steps.rec.duration > 1
                goto: long
              - goto: short
          long:
            log: "{{ steps.rec.duration }}"
            next: null
          short:
            log: short
        """) == []


def test_a_loop_only_the_caller_can_end_is_a_warning():
    assert findings("""\
        name: t
        steps:
          a:
            answer: {}
          hold:
            play: [{ringtone: us, duration: 30}]
            next: hold
        """) == [("t.yaml:5:3: warning: step 'hold' repeats until the caller hangs up; add a way "
                 "out if that is not what you want")]


def test_a_loop_with_a_branch_out_is_fine():
    assert findings("""\
        name: t
        vars: {n: 0}
        steps:
          count:
            set: {n: "{{ vars.n + 1 }}"}
          check:
            branch:
              - when: vars.n < 3
                goto: count
          done:
            log: "{{ vars.n }}"
        """) == []


def test_a_self_loop_without_exit():
    assert findings("""\
        name: t
        steps:
          spin:
            log: again
            next: spin
        """) == [("t.yaml:3:3: error: step 'spin' always goes back to itself: no path leads out of "
                 "the loop or to the end of the flow; give one of them a way out (a branch "
                 "choice, next or on: to a step outside the loop)")]


def test_variables_set_by_a_set_step_are_known():
    assert findings("""\
        name: t
        steps:
          a:
            set: {greeting: hello}
          b:
            log: "{{ vars.greeting }}"
        """) == []


def test_names_that_would_be_mapping_methods_are_refused():
    assert findings("""\
        name: t
        vars: {keys: 1}
        steps:
          items:
            log: x
        """) == [
        ("t.yaml:2:8: error: 'keys' cannot be a variable name: in templates vars.keys is a method "
        "of the mapping; choose another name"),
        ("t.yaml:4:3: error: 'items' cannot be a step id: in templates steps.items is a method of "
        "the mapping; choose another name"),
    ]


def test_invalid_names_are_refused_by_the_schema():
    assert findings("name: t\nsteps:\n  my-step:\n    log: x\n") == [
        ("t.yaml:3:3: error: invalid step id 'my-step'; use letters, digits and '_', starting with "
        "a letter or '_' (templates write steps.<id> and vars.<name>)")]


def test_file_level_problems():
    assert findings("") == [
        "t.yaml:1:1: error: the file is empty; a flow needs at least name and steps"]
    assert findings("- a\n") == [
        "t.yaml:1:1: error: a flow is a mapping with name, steps, …, not a list"]
    result = compile_flow(b"name: t\nsteps:\n  a:\n    log: \xff\n", "t.yaml")
    assert [str(d) for d in result.diagnostics] == [
        "t.yaml:4:10: error: the file is not valid UTF-8 text"]


def test_check_paths_scans_directories_and_compares_names(tmp_path):
    flow = "name: same\nsteps:\n  a:\n    log: x\n"
    (tmp_path / "one.yaml").write_text(flow)
    (tmp_path / "two.yml").write_text(flow)
    (tmp_path / ".hidden.yaml").write_text("not: [valid")
    (tmp_path / "notes.txt").write_text("not a flow")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.yaml").write_text("not: [valid")
    assert [str(d) for d in check_paths([tmp_path, tmp_path / "missing.yaml"])] == [
        f"{tmp_path}/missing.yaml: error: no such file or directory",
        (f"{tmp_path}/two.yml:1:7: error: flow name 'same' is also used by {tmp_path}/one.yaml; "
        "flow names must be unique among the flows one daemon serves"),
    ]


def test_an_empty_directory_is_a_warning(tmp_path):
    assert [str(d) for d in check_paths([tmp_path])] == [
        f"{tmp_path}: warning: no flow files (*.yaml, *.yml) in this directory"]


def test_a_value_of_the_wrong_type_gets_one_message():
    assert findings("""\
        name: t
        steps:
          a:
            log: x
            on: {error: 3}
            next: [x]
          b:
            hangup: {reason: }
        """) == [
        "t.yaml:5:17: error: on.error in step 'a' must be a step id or null, not the number 3",
        "t.yaml:6:11: error: next in step 'a' must be a step id or null, not a list",
        "t.yaml:8:22: error: reason in hangup must be text, not empty (null)",
    ]
