"""The compiled model: the example flows, normalised parameters, next resolution, edges."""

from __future__ import annotations

import dataclasses
import hashlib
import textwrap
import weakref
from pathlib import Path

import pytest

from flowengine.flow import (
    FlowVersion,
    check_paths,
    compile_flow,
    load_flow,
    render,
    route,
    template_context,
)
from flowengine.flow.templates import CompiledTemplate

FLOWS = Path(__file__).parent.parent / "flows"
EXAMPLES = sorted(FLOWS.glob("*.yaml"))


def compiled(text: str) -> FlowVersion:
    result = compile_flow(textwrap.dedent(text), "t.yaml")
    assert result.version is not None, [str(d) for d in result.diagnostics]
    return result.version


def test_the_three_example_flows_exist():
    assert {p.name for p in EXAMPLES} >= {"voicemail.yaml", "after_hours.yaml",
                                          "voicemail_hangup.yaml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_flows_check_clean(path):
    assert check_paths([path]) == []
    assert path.read_text().startswith(
        "# yaml-language-server: $schema=../schemas/flow.schema.json\n")


def test_voicemail_compiles_to_the_contract():
    v = load_flow(FLOWS / "voicemail.yaml")
    raw = (FLOWS / "voicemail.yaml").read_bytes()
    assert v.name == "voicemail"
    assert v.version == hashlib.sha256(raw).hexdigest() and v.short_version == v.version[:12]
    assert v.contexts == ("office",) and dict(v.match) == {}
    assert v.start == "greet" and v.on_hangup is None and v.on_error is None
    assert (v.max_steps, v.max_duration) == (1000, 600)
    assert list(v.steps) == ["greet", "prompt", "take_message", "check_length", "thanks",
                             "too_short", "nothing_heard", "bye", "end"]
    assert dict(v.template_flow) == {"name": "voicemail", "version": v.short_version,
                                     "file": str(FLOWS / "voicemail.yaml")}
    rec = v.steps["take_message"]
    assert (rec.action, rec.line, rec.col, rec.timeout) == ("record", 15, 3, None)
    assert dict(rec.params) == {"beep": True, "end_silence_timeout": 3, "terminators": "#",
                                "format": "mp3"}
    assert dict(rec.on) == {"finished": "check_length", "no_input": "nothing_heard"}
    assert rec.next == "check_length"
    # next: explicit, else the step written after it, else None; None after hangup.
    assert v.steps["thanks"].next == "bye"
    assert v.steps["nothing_heard"].next == "bye"
    assert v.steps["bye"].next == "end"
    assert v.steps["end"].next is None
    assert dict(v.steps["end"].params) == {"reason": "hangup"}
    branch = v.steps["check_length"]
    assert [(b.index, b.when_text, b.goto) for b in branch.branches] == [
        (0, "steps.take_message.duration >= 2", "thanks"), (1, None, "too_short")]
    assert branch.branches[1].when is None


def test_edges_table():
    v = load_flow(FLOWS / "voicemail.yaml")
    assert dict(v.edges["take_message"]) == {
        "finished": "check_length", "no_input": "nothing_heard", "error": None, "hangup": None}
    assert dict(v.edges["check_length"]) == {"branch0": "thanks", "branch1": "too_short",
                                             "error": None}
    assert dict(v.edges["bye"]) == {"next": "end", "error": None}
    assert dict(v.edges["end"]) == {"next": None, "error": None}


def test_route_follows_the_contract_rules():
    v = compiled("""\
        name: t
        on_hangup: gone
        on_error: oops
        steps:
          a:
            play: [{say: hi}]
            timeout: 5
            on: {hangup: b}
          b:
            record: {}
          c:
            branch:
              - {when: "true", goto: a}
          gone:
            log: gone
            next: null
          oops:
            log: oops
        """)
    a, b, c = v.steps["a"], v.steps["b"], v.steps["c"]
    assert route(v, a, "hangup").target == "b" and route(v, a, "hangup").via == "on"
    assert (route(v, a, "finished").target, route(v, a, "finished").via) == ("b", "next")
    assert route(v, a, "timeout").target == "b"
    assert (route(v, b, "error").target, route(v, b, "error").via) == ("oops", "on_error")
    assert route(v, b, "error", error_handled=True).via == "end"
    assert route(v, b, "error", error_handled=True).ends
    assert (route(v, b, "hangup").target, route(v, b, "hangup").via) == ("gone", "on_hangup")
    assert route(v, b, "hangup", hangup_handled=True).target is None
    assert (route(v, c, "branch0").target, route(v, c, "branch0").via) == ("a", "branch")
    assert route(v, c, "next").target == "gone"  # no choice matched: next
    assert route(v, v.steps["gone"], "next").target is None  # next: null ends the flow
    assert dict(v.edges["a"]) == {"finished": "b", "error": "oops", "hangup": "b", "timeout": "b"}


def test_play_is_normalised_from_both_forms():
    v = compiled("""\
        name: t
        steps:
          short:
            play:
              - say: "Hi {{ call.from }}"
                language: en-US
                gender: female
                voice: Polly.Joanna
              - audio: https://example.com/a.mp3
              - silence: 1.5
              - ringtone: no
                duration: 3
          long:
            play:
              media: [{ringtone: us}]
              volume: -6
        """)
    context = template_context({"from": "+15551234567"}, {}, {}, v.template_flow)
    assert render(v.steps["short"].params, context) == {
        "media": [
            {"say": "Hi +15551234567", "language": "en-US", "gender": "female",
             "voice": "Polly.Joanna"},
            {"audio": "https://example.com/a.mp3"},
            {"silence": 1.5},
            {"ringtone": "no", "duration": 3},
        ],
        "volume": None,
    }
    assert render(v.steps["long"].params, context) == {"media": [{"ringtone": "us"}], "volume": -6}


def test_other_actions_are_normalised():
    v = compiled("""\
        name: t
        steps:
          a:
            answer:
          b:
            answer: {max_duration: 60}
          r:
            record:
          s:
            set:
              n: "{{ 1 + 1 }}"
              who: "{{ call.from }}"
              text: "n is {{ 2 }}"
              numbers: ["{{ 3 }}", 4]
          l:
            log: "hello {{ vars.n }}"
          h:
            hangup: {reason: busy}
        """)
    context = template_context({"from": "+15551234567"}, {}, {"n": 2}, v.template_flow)
    assert render(v.steps["a"].params, context) == {}
    assert render(v.steps["b"].params, context) == {"max_duration": 60}
    assert render(v.steps["r"].params, context) == {}
    assert render(v.steps["s"].params, context) == {
        "n": 2, "who": "+15551234567", "text": "n is 2", "numbers": [3, 4]}
    assert isinstance(v.steps["l"].params, CompiledTemplate)
    assert render(v.steps["l"].params, context) == "hello 2"
    assert render(v.steps["h"].params, context) == {"reason": "busy"}


def test_top_level_options():
    v = compiled("""\
        name: t
        context: [office, support]
        match: {to: "+1555987*", from: "+15551230001"}
        start: b
        limits: {max_steps: 50, max_duration: 600}
        steps:
          a:
            log: a
            next: null
          b:
            log: b
            next: a
        """)
    assert v.contexts == ("office", "support")
    assert dict(v.match) == {"to": "+1555987*", "from": "+15551230001"}
    assert (v.start, v.max_steps, v.max_duration) == ("b", 50, 600)
    assert v.steps["a"].next is None  # explicit null


def test_hangup_with_explicit_next_continues():
    v = compiled("""\
        name: t
        steps:
          bye:
            hangup: {}
            next: note
          note:
            log: done
        """)
    assert v.steps["bye"].next == "note"


def test_flow_version_is_immutable_and_weakly_referenceable():
    v = load_flow(FLOWS / "voicemail.yaml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        v.steps["x"] = v.steps["greet"]  # type: ignore[index]
    with pytest.raises(TypeError):
        v.steps["take_message"].params["beep"] = False  # type: ignore[index]
    assert isinstance(v.steps["prompt"].params["media"], tuple)
    live = weakref.WeakSet([v])
    assert v in live


def test_after_hours_branches_on_the_callers_number():
    from flowengine.flow import choose_branch, initial_vars

    v = load_flow(FLOWS / "after_hours.yaml")
    step = v.steps["who_is_calling"]
    for caller, goto in (("+15551230002", "vip_prompt"), ("+15550000000", "closed")):
        call = {"id": "c", "from": caller, "to": "+15559870000", "direction": "inbound",
                "context": "after_hours", "state": "answered"}
        context = template_context(call, {}, initial_vars(v, call), v.template_flow)
        chosen = choose_branch(step, context)
        assert chosen is not None and chosen.goto == goto


def test_voicemail_hangup_logs_from_on_hangup():
    v = load_flow(FLOWS / "voicemail_hangup.yaml")
    assert v.on_hangup == "hung_up"
    assert route(v, v.steps["thanks"], "hangup").target == "hung_up"
    assert route(v, v.steps["take_message"], "finished").target == "thanks"
    assert v.steps["log_recording"].next is None
    hung_up = v.steps["hung_up"]
    assert [b.goto for b in hung_up.branches] == ["log_recording", "log_no_recording"]
