"""`check` warnings, one mistake per file (tests/flows_bad/warnings/), and the two graph checks
added with the authoring tools: vars read before a set step defines them, and steps that
need the call but run only after the caller hung up."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flowengine.flow import check_paths, compile_flow, load_flow

ROOT = Path(__file__).resolve().parent.parent
WARN = Path("tests") / "flows_bad" / "warnings"

# file → (line, col, what follows "warning: ")
EXPECTED = {
    "vars_before_set.yaml": (6, 18, (
        "vars.position may be undefined here: step 'announce' can be reached before a set step "
        "defines it ('count'); give it a first value under vars:, or guard it with "
        "`vars.position is defined` or `| default(...)`")),
    "play_after_hangup.yaml": (9, 3, (
        "step 'goodbye' (play) runs only after the caller hung up (every path to it takes a "
        "hangup edge), so it ends at once with outcome hangup; after a hangup only steps that "
        "need no live call (log, set, branch, request…) do something")),
    "unreachable_step.yaml": (6, 3, ("step 'survey' is never reached; no path leads to it from "
                                    "start, on_hangup or on_error")),
    "result_may_be_missing.yaml": (9, 10, (
        "steps.take_message may be undefined here: step 'gone' can be reached without "
        "'take_message' having run; guard it with `steps.take_message is defined` or "
        "`| default(...)`")),
    "hold_forever.yaml": (5, 3, ("step 'hold' repeats until the caller hangs up; add a way out "
                                "if that is not what you want")),
    "timeout_on_log.yaml": (5, 5, ("timeout has no effect on a log step (it does not wait for "
                                  "anything)")),
    "next_after_full_branch.yaml": (8, 5, ("next in step 'check' is never used: the branch always "
                                          "takes one of its choices (the last has no when)")),
}


def findings(text: str) -> list[str]:
    return [str(d) for d in compile_flow(textwrap.dedent(text), "t.yaml").diagnostics]


def test_every_warning_file_has_an_expectation():
    assert sorted(p.name for p in (ROOT / WARN).glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_warning_file_gives_one_precise_warning_and_still_loads(name):
    path = ROOT / WARN / name
    line, col, message = EXPECTED[name]
    assert [str(d) for d in check_paths([path])] == [f"{path}:{line}:{col}: warning: {message}"]
    assert len(load_flow(path).warnings) == 1


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowengine.cli", "check", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)


def test_warnings_exit_0_and_strict_makes_them_fail():
    run = check(str(WARN))
    assert run.returncode == 0
    assert len(run.stdout.splitlines()) == len(EXPECTED)
    assert run.stderr == f"checked {len(EXPECTED)} files: {len(EXPECTED)} warnings\n"
    assert check("--strict", str(WARN / "timeout_on_log.yaml")).returncode == 1


def test_json_keeps_the_hint_apart_for_editors():
    run = check("--format", "json", str(WARN / "vars_before_set.yaml"),
                "tests/flows_bad/unknown_filter.yaml")
    assert run.returncode == 1
    assert json.loads(run.stdout) == [
        {"file": "tests/flows_bad/unknown_filter.yaml", "line": 5, "col": 14, "severity": "error",
         "message": "invalid template in say in play item 1: unknown filter 'uper'",
         "hint": "did you mean 'upper'?"},
        {"file": str(WARN / "vars_before_set.yaml"), "line": 6, "col": 18, "severity": "warning",
         "message": ("vars.position may be undefined here: step 'announce' can be reached before "
                     "a set step defines it ('count')"),
         "hint": ("give it a first value under vars:, or guard it with `vars.position is "
                  "defined` or `| default(...)`")},
    ]


# -- vars set by set steps ------------------------------------------------------------------

def test_vars_set_on_every_path_before_the_read_are_fine():
    assert findings("""\
        name: t
        steps:
          init:
            set: {n: 0}
          loop:
            set: {n: "{{ vars.n + 1 }}"}
          check:
            branch:
              - when: vars.n < 3
                goto: loop
          done:
            log: "{{ vars.n }}"
        """) == []


def test_a_var_a_step_sets_from_itself_is_undefined_the_first_time():
    assert findings("""\
        name: t
        steps:
          count:
            set: {n: "{{ vars.n + 1 }}"}
        """) == [
        ("t.yaml:4:14: warning: vars.n may be undefined here: step 'count' can be reached "
         "before a set step defines it ('count'); give it a first value under vars:, or guard it "
         "with `vars.n is defined` or `| default(...)`")]


def test_guards_and_initial_values_silence_the_vars_warning():
    assert findings("""\
        name: t
        vars: {greeting: hi}
        steps:
          a:
            log: "{{ vars.greeting }} {{ vars.name | default('caller') }}"
          b:
            log: "{% if vars.name is defined %}{{ vars.name }}{% endif %}"
          c:
            branch:
              - when: vars.name is defined and vars.name != ''
                goto: d
              - goto: e
          d:
            log: "{{ vars.name }}"
            next: null
          e:
            set: {name: x, greeting: hello}
        """) == []


def test_a_set_step_on_only_one_branch_is_not_enough():
    assert findings("""\
        name: t
        steps:
          pick:
            branch:
              - when: call.from == "+15551230001"
                goto: vip
              - goto: show
          vip:
            set: {label: VIP}
          show:
            log: "{{ vars.label }}"
        """) == [
        ("t.yaml:11:10: warning: vars.label may be undefined here: step 'show' can be reached "
         "before a set step defines it ('vip'); give it a first value under vars:, or guard it "
         "with `vars.label is defined` or `| default(...)`")]


# -- steps that need the call after a hangup -------------------------------------------------

def test_a_step_reached_live_as_well_is_not_flagged():
    # voicemail_hangup: the on_hangup branch only logs; `end` (hangup) is reached live.
    assert load_flow(ROOT / "flows" / "voicemail_hangup.yaml").warnings == ()
    assert findings("""\
        name: t
        on_hangup: bye
        steps:
          greet:
            answer: {}
          menu:
            play: [{say: hi}]
          bye:
            play: [{say: bye}]
        """) == []


def test_a_hangup_step_after_the_hangup_is_harmless():
    assert findings("""\
        name: t
        on_hangup: log_it
        steps:
          greet:
            answer: {}
            next: null
          log_it:
            log: gone
          end:
            hangup: {}
        """) == []


def test_an_explicit_hangup_edge_to_a_play_is_flagged():
    assert findings("""\
        name: t
        steps:
          greet:
            answer: {}
            on: {hangup: sorry}
            next: null
          sorry:
            play: [{say: sorry}]
        """) == [
        ("t.yaml:7:3: warning: step 'sorry' (play) runs only after the caller hung up (every path "
         "to it takes a hangup edge), so it ends at once with outcome hangup; after a hangup only "
         "steps that need no live call (log, set, branch, request…) do something")]
