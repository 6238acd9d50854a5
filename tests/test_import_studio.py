"""`flowengine import studio`: Twilio Studio flow definitions become flows that check and run.

Each widget has a small fixture shaped like the JSON the Studio API and console export
(tests/import_fixtures/studio/); each test compares the converted steps with what they
must be, then runs the flow on the simulator (through scenarios written here, by hand)
and checks the path the call takes.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from argparse import Namespace
from pathlib import Path
from typing import Any

import pytest

from flowengine.flow.loader import load_yaml
from flowengine.importers import ImportResult, SourceError, dump_flow
from flowengine.importers import cli as import_cli
from flowengine.importers.liquid import translate
from flowengine.importers.studio import convert
from flowengine.scenario import load_scenarios, run_file

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "import_fixtures" / "studio"
ALL_FIXTURES = sorted(p.stem for p in FIXTURES.glob("*.json") if not p.stem.startswith("FW"))


def studio(name: str) -> ImportResult:
    path = FIXTURES / f"{name}.json"
    return convert(load_yaml(path.read_text(), str(path)))


def line_of(name: str, text: str, nth: int = 1) -> int:
    """The line of the ``nth`` occurrence of ``text`` in fixture ``name``."""
    lines = (FIXTURES / f"{name}.json").read_text().splitlines()
    hits = [i + 1 for i, line in enumerate(lines) if text in line]
    assert len(hits) >= nth, f"{text!r} occurs {len(hits)} times in {name}.json"
    return hits[nth - 1]


def findings(result: ImportResult) -> list[tuple[int, str]]:
    return [(f.line, f.message) for f in result.findings]


def write(tmp_path: Path, result: ImportResult, name: str = "flow") -> Path:
    target = tmp_path / f"{name}.yaml"
    import_cli._write(target, result, "test", scenarios=False)
    return target


async def run_scenarios(tmp_path: Path, result: ImportResult, scenarios: list[dict[str, Any]],
                        **top: Any) -> None:
    """Write the flow and a scenario file of ``scenarios``; run them all; each must pass."""
    write(tmp_path, result)
    tests = tmp_path / "tests"
    tests.mkdir(exist_ok=True)
    file = tests / "hand.test.yaml"
    file.write_text(dump_flow({"flow": "../flow.yaml", **top, "scenarios": scenarios}))
    outcomes = await run_file(load_scenarios(file))
    failed = [f"{r.scenario.name}:\n{r.failure_text()}" for r in outcomes if not r.passed]
    assert not failed, "\n\n".join(failed)
    assert len(outcomes) == len(scenarios)


# -- say-play -----------------------------------------------------------------------------

@pytest.mark.anyio
async def test_say_play_says_plays_sends_digits_and_keeps_the_polly_voice(tmp_path):
    result = studio("say_play")
    steps = result.flow["steps"]
    joanna = {"say": "Hello from Studio.", "voice": "Polly.Joanna", "language": "en-US"}
    assert steps["Trigger"] == {"answer": {}, "next": "hello"}
    assert steps["hello"] == {"play": [joanna, joanna], "next": "chime"}  # loop: 2
    assert steps["chime"] == {"play": [{"audio": "https://example.com/chime.mp3"}],
                              "next": "dtmf"}
    assert steps["dtmf"] == {"send_digits": "1w2", "next": "by_man"}
    assert steps["by_man"] == {"play": [{"say": "Goodbye.", "gender": "male"}], "next": None}
    assert "offset" not in json.dumps(result.flow)  # canvas positions are dropped
    assert result.findings == []
    await run_scenarios(tmp_path, result, [{
        "name": "all of it", "expect": {
            "path": ["Trigger", "hello", "chime", "dtmf", "by_man"],
            "said": ["Hello from Studio.", "Hello from Studio.", "Goodbye."],
            "played": ["https://example.com/chime.mp3"], "status": "completed"}}])


# -- gather-input-on-call -----------------------------------------------------------------

@pytest.mark.anyio
async def test_gather_becomes_a_prompt_with_keys_speech_and_timeout_edges(tmp_path):
    result = studio("gather")
    assert result.flow["steps"]["menu"] == {
        "prompt": {
            "play": [{"say": "Enter your code or say it.", "voice": "Polly.Amy",
                      "language": "en-GB"}],
            "digits": {"max": 2, "terminators": "#", "digit_timeout": 3},
            "speech": {"language": "en-GB", "hints": ["yes", "no"], "end_silence_timeout": 2},
            "initial_timeout": 3,
        },
        "on": {"speech": "got_words", "no_input": "nothing", "no_match": "nothing"},
        "next": "got_keys",
    }
    assert result.flow["steps"]["got_keys"]["play"][0]["say"] == \
        "You pressed {{ steps.menu.digits }}."
    assert result.flow["steps"]["got_words"]["play"][0]["say"] == \
        "You said {{ steps.menu.text }}."
    assert findings(result) == [
        (line_of("gather", '"stop_gather"'), "stop_gather: false is not imported: the prompt "
                                              "stops as soon as the caller answers"),
        (line_of("gather", '"speech_model"'), "speech_model 'numbers_and_commands' is not "
                                               "imported: RELAY picks its model"),
    ]
    await run_scenarios(tmp_path, result, [
        {"name": "keys", "caller": "digits:42",
         "expect": {"path": ["Trigger", "menu", "got_keys"], "said": ["You pressed 42."]}},
        {"name": "words", "caller": "say:yes",
         "expect": {"path": ["Trigger", "menu", "got_words"], "said": ["You said yes."]}},
        {"name": "nothing", "caller": "silent",
         "expect": {"path": ["Trigger", "menu", "nothing"], "outcomes": {"menu": "no_input"}}},
    ])


# -- record-voicemail ---------------------------------------------------------------------

@pytest.mark.anyio
async def test_record_voicemail_keeps_its_limits_and_its_three_ways_out(tmp_path):
    result = studio("record_voicemail")
    assert result.flow["steps"]["rec"] == {
        "record": {"beep": False, "initial_timeout": 3, "end_silence_timeout": 3,
                   "terminators": "*"},
        "timeout": 60,  # max_length
        "on": {"no_input": "none", "hangup": "after_hangup"},
        "next": "saved",
    }
    assert result.flow["steps"]["after_hangup"]["set"] == {"recording": "{{ steps.rec.url }}"}
    assert findings(result) == [(line_of("record_voicemail", '"transcribe"'),
                                 "'transcribe' is not imported: RELAY does not transcribe "
                                 "recordings")]
    await run_scenarios(tmp_path, result, [
        {"name": "a message", "caller": "speak:2:quiet",  # 2 s, then 3 s of silence end it
         "expect": {"path": ["Trigger", "prompt", "rec", "saved"],
                    "recording": {"duration": 5, "within": 1}}},
        {"name": "silence", "caller": "silent",
         "expect": {"path": ["Trigger", "prompt", "rec", "none"], "recording": False}},
        {"name": "the caller hangs up", "caller": "hangup@record:2",
         "expect": {"path": ["Trigger", "prompt", "rec", "after_hangup"],
                    "outcomes": {"rec": "hangup"},
                    "vars": {"recording": {"matches": "^http://\\S+\\.mp3$"}}}},
    ])


# -- split-based-on -----------------------------------------------------------------------

def test_every_split_condition_becomes_a_when():
    steps = studio("split").flow["steps"]
    assert [c.get("when") for c in steps["route"]["branch"]] == [
        "steps.ask.digits == '1'",
        "steps.ask.digits in ['2', '3']",
        "((steps.ask.digits ~ '') | trim | lower).startswith('4')",
        "'55' in ((steps.ask.digits ~ '') | trim | lower)",
        "(((steps.ask.digits ~ '') | trim) | lower) in ['70', '71']",
        "(steps.ask.digits | float) > 900",
        "(steps.ask.digits | float) < 9",
        None,
    ]
    assert steps["route"]["branch"][-1] == {"goto": "took_nomatch"}
    # Several conditions on one transition must all hold.
    assert steps["negs"]["branch"][0]["when"] == (
        "(steps.ask.digits not in ['1', '2', '3']) and "
        "(not ((steps.ask.digits ~ '') | trim | lower).startswith('4')) and "
        "('5' not in ((steps.ask.digits ~ '') | trim | lower)) and "
        "(steps.ask.digits != '6') and ((steps.ask.digits ~ '') | trim != '')")
    assert steps["blank"]["branch"][0]["when"] == "(vars.nothing ~ '') | trim == ''"


@pytest.mark.anyio
async def test_each_split_condition_takes_its_branch_on_the_simulator(tmp_path):
    result = studio("split")
    cases = [("1", "eq", "listed"), ("3", "any", "listed"), ("42", "starts", "listed"),
             ("155", "contains", "listed"), ("71", "regex", "other"),
             ("901", "greater", "other"), ("8", "less", "other"), ("96", "nomatch", "other")]
    await run_scenarios(tmp_path, result, [
        {"name": f"{keys} takes {branch}", "caller": f"digits:{keys}#",
         "expect": {"path": ["Trigger", "ask", "route", f"took_{branch}", "negs", neg, "blank",
                             "is_blank"], "said": [f"Branch {branch}."]}}
        for keys, branch, neg in cases])


def test_studio_conditions_ignore_case_and_surrounding_spaces():
    doc = _definition([
        _state("ask", "gather-input-on-call", [("keypress", "s"), ("speech", "s")]),
        _state("s", "split-based-on", [("noMatch", None)], input="{{widgets.ask.SpeechResult}}"),
    ])
    doc["states"][2]["transitions"].append({"event": "match", "next": "ask", "conditions": [
        {"friendly_name": "yes", "arguments": ["{{widgets.ask.SpeechResult}}"],
         "type": "equal_to", "value": " YES "}]})
    result = convert(load_yaml(json.dumps(doc, indent=2), "x.json"))
    assert result.flow["steps"]["s"]["branch"][0]["when"] == \
        "((steps.ask.text ~ '') | trim | lower) == 'yes'"


def test_a_regex_without_a_jinja_counterpart_is_reported_and_never_matches():
    doc = _definition([
        _state("ask", "gather-input-on-call", [("keypress", "s")]),
        _state("s", "split-based-on", [("noMatch", None)]),
    ])
    doc["states"][2]["transitions"].append({"event": "match", "next": "ask", "conditions": [
        {"friendly_name": "r", "arguments": ["{{widgets.ask.Digits}}"], "type": "regex",
         "value": "^[1-3]+x?$"}]})
    text = json.dumps(doc, indent=2)
    result = convert(load_yaml(text, "x.json"))
    assert result.flow["steps"]["s"]["branch"][0]["when"] == "false"
    line = next(i + 1 for i, t in enumerate(text.splitlines()) if '"^[1-3]+x?$"' in t)
    assert findings(result) == [(line, "the regex '^[1-3]+x?$' has no counterpart in flowengine "
                                       "templates (only anchored literals, alternatives and "
                                       "digit counts are translated); this condition never "
                                       "matches")]


# -- set-variables ------------------------------------------------------------------------

@pytest.mark.anyio
async def test_set_variables_become_vars_and_flow_variables_read_them(tmp_path):
    result = studio("set_variables")
    assert result.flow["vars"] == {"count": "", "greeting": "", "caller_name": ""}
    assert result.flow["steps"]["init"] == {
        "set": {"count": 1, "greeting": "Hi {{ call.from }}"}, "next": "again"}
    assert result.flow["steps"]["again"]["set"] == {
        "count": "{{ (vars.count | int) + 1 }}", "caller_name": "{{ vars.greeting | upper }}"}
    assert findings(result) == [(line_of("set_variables", '"key": "caller-name"'),
                                 "the variable 'caller-name' is vars.caller_name (variable "
                                 "names are letters, digits and _)")]
    await run_scenarios(tmp_path, result, [{"name": "counts", "expect": {
        "path": ["Trigger", "init", "again", "tell"],
        "said": ["Count 2: HI +15551230000."], "vars": {"count": 2}}}])


# -- make-http-request --------------------------------------------------------------------

@pytest.mark.anyio
async def test_http_requests_send_query_json_and_form_parameters(tmp_path):
    result = studio("http")
    steps = result.flow["steps"]
    assert result.flow["vars"] == {"lookup_url": "https://crm.example.com",
                                   "post_json_url": "https://hooks.example.com",
                                   "post_form_url": "https://hooks.example.com"}
    failed = {"http_error": "sorry", "timeout": "sorry", "error": "sorry"}
    assert steps["lookup"] == {
        "request": {"method": "GET",
                    "url": "{{ vars.lookup_url }}/lookup?from={{ call.from | urlencode }}"},
        "on": failed, "next": "post_json"}
    assert steps["post_json"]["request"] == {
        "method": "POST", "url": "{{ vars.post_json_url }}/calls",
        "json": {"caller": "{{ call.from }}",
                 "name": "{{ steps.lookup.json.name | default('') }}", "vip": True}}
    assert steps["post_form"]["request"]["json"] == {"status": "{{ steps.post_json.status }}"}
    assert findings(result) == [(line_of("http", '"content_type"', 3),
                                 "the form parameters are sent as a JSON object (flowengine's "
                                 "request sends JSON); make the endpoint accept "
                                 "application/json")]
    await run_scenarios(tmp_path, result, [
        {"name": "all answer", "receiver": {"replies": [{"status": 200, "json": {"name": "Ada"}},
                                                        {"status": 201}]},
         "expect": {"path": ["Trigger", "lookup", "post_json", "post_form", "done"],
                    "said": ["Hello Ada."],
                    "received": [
                        {"method": "GET", "path": "/lookup?from=%2B15551230000"},
                        {"method": "POST", "path": "/calls",
                         "json": {"caller": "+15551230000", "name": "Ada", "vip": True}},
                        {"method": "POST", "path": "/form", "json": {"status": 201}}]}},
        {"name": "a field the JSON lacks prints nothing, as in Studio",
         "receiver": {"replies": [{"status": 200, "json": {"id": 7}}]},
         "expect": {"path": ["Trigger", "lookup", "post_json", "post_form", "done"],
                    "said": ["Hello ."], "status": "completed"}},
        {"name": "the lookup fails", "receiver": {"replies": [{"status": 404}]},
         "expect": {"path": ["Trigger", "lookup", "sorry"], "outcomes": {"lookup": "http_error"}}},
    ], vars={name: "${RECEIVER}" for name in result.flow["vars"]})


# -- connect-call-to ----------------------------------------------------------------------

@pytest.mark.anyio
async def test_connect_call_to_numbers_simulring_and_sip(tmp_path):
    result = studio("connect")
    steps = result.flow["steps"]
    assert steps["transfer"] == {
        "connect": {"to": "+15550001111", "from": "{{ call.to }}", "ring_timeout": 20},
        "next": "after"}
    assert steps["ring_all"]["connect"] == {
        "devices": [["+15550002222", "+15550003333"]], "from": "{{ call.from }}",
        "ring_timeout": 15}
    assert steps["by_sip"]["connect"] == {"to": "sip:desk@example.com", "ring_timeout": 10}
    assert steps["agent"] == {"log": "Studio connect-call-to widget 'agent' was not imported "
                                     "(noun: client, to: agent_jane)", "next": "bye"}
    assert [line for line, _ in findings(result)] == [
        line_of("connect", "DialCallStatus"), line_of("connect", '"sip_username"'),
        line_of("connect", '"noun": "client"')]
    await run_scenarios(tmp_path, result, [
        {"name": "answered", "caller": "peer:answer:2/answer:2/busy/answer:2",
         "expect": {"path": ["Trigger", "transfer", "after", "ring_all", "by_sip", "agent",
                             "bye"],
                    "outcomes": {"transfer": "disconnected", "ring_all": "disconnected",
                                 "by_sip": "disconnected"},
                    "said": ["The call ended. "]}},
        {"name": "busy goes on like Studio's callCompleted", "caller": "peer:busy",
         "expect": {"path_includes": ["transfer", "after"],
                    "outcomes": {"transfer": "failed"}, "said": ["The call ended. busy"]}},
        {"name": "the caller hangs up", "caller": "peer:answer:20,hangup@connect:1",
         "expect": {"path": ["Trigger", "transfer"], "outcomes": {"transfer": "hangup"}}},
    ])


# -- send-message -------------------------------------------------------------------------

@pytest.mark.anyio
async def test_send_message_texts_the_caller(tmp_path):
    result = studio("send_message")
    assert result.flow["steps"]["text"] == {
        "send_sms": {"body": "Thanks for calling, {{ call.from }}."}, "timeout": 30,
        "on": {"failed": "not_sent", "error": "not_sent"}, "next": "ok"}
    assert result.findings == []  # to/from/service/channel are Studio's defaults
    await run_scenarios(tmp_path, result, [
        {"name": "sent", "expect": {"path": ["Trigger", "text", "ok"],
                                    "steps": {"text": {"state": "delivered"}}}},
        {"name": "fails", "caller": "sms:failed",
         "expect": {"path": ["Trigger", "text", "not_sent"]}},
    ])


# -- run-subflow --------------------------------------------------------------------------

@pytest.mark.anyio
async def test_run_subflow_calls_the_subflow_exported_next_to_it(tmp_path):
    result = studio("subflow")
    name = "lib/FW00000000000000000000000000000001.yaml"
    assert result.flow["steps"]["survey"] == {
        "call": {"flow": name, "params": {"greeting": "Hello {{ call.from }}"}},
        "on": {"error": "oops"}, "next": "done"}
    sub = result.subflows[name]
    assert sub["params"] == {"greeting": ""}
    assert sub["start"] == "ask"
    assert sub["steps"]["ask"]["play"][0]["say"] == "{{ params.greeting }}, this is the survey."
    assert result.flow["steps"]["missing"]["next"] == "oops"
    assert findings(result) == [
        (line_of("subflow", '"key": "unused"') - 1,
         "the parameter 'unused' is not used by the subflow (it reads no flow.data.unused); "
         "not passed"),
        (line_of("subflow", "FW00000000000000000000000000000099"),
         "the subflow FW00000000000000000000000000000099 is not given (export it as "
         "FW00000000000000000000000000000099.json next to this file to import it): 'missing' "
         "is left as a log step that goes on to 'oops' (its failed transition)"),
    ]
    await run_scenarios(tmp_path, result, [{"name": "through the subflow", "caller": "digits:4",
                                             "expect": {
        "path": ["Trigger", "survey", "done", "missing", "oops"],
        "said": ["Hello +15551230000, this is the survey.", "Thanks for 4.",
                 "Back in the parent."]}}])


def test_a_cycle_of_subflows_is_one_clear_error(tmp_path):
    def flow_calling(sid: str) -> dict[str, Any]:
        doc = _definition([_state("sub", "run-subflow", [("completed", None)], flow_sid=sid)],
                          event="incomingParent")
        return doc
    (tmp_path / "FWA.json").write_text(json.dumps(flow_calling("FWB"), indent=2))
    (tmp_path / "FWB.json").write_text(json.dumps(flow_calling("FWA"), indent=2))
    main = _definition([_state("sub", "run-subflow", [("completed", None)], flow_sid="FWA")])
    text = json.dumps(main, indent=2)
    (tmp_path / "main.json").write_text(text)
    with pytest.raises(SourceError) as caught:
        convert(load_yaml(text, str(tmp_path / "main.json")))
    assert caught.value.message == "a cycle of subflows: FWA → FWB → FWA"
    assert caught.value.line == next(i + 1 for i, t in enumerate(text.splitlines())
                                     if '"flow_sid"' in t)


# -- record-call --------------------------------------------------------------------------

@pytest.mark.anyio
async def test_record_call_starts_and_stops_a_background_recording(tmp_path):
    result = studio("record_call")
    steps = result.flow["steps"]
    assert steps["start"] == {"record_call": {"stereo": True}, "on": {"error": "talk"},
                              "next": "talk"}
    assert steps["stop"] == {"stop_record_call": {}, "on": {"error": "done"}, "next": "done"}
    await run_scenarios(tmp_path, result, [{"name": "recorded", "expect": {
        "path": ["Trigger", "notice", "start", "talk", "stop", "done"],
        "outcomes": {"start": "started", "stop": "finished"},
        "steps": {"start": {"url": {"matches": "^http://"}}}}}])


# -- what has no counterpart --------------------------------------------------------------

@pytest.mark.anyio
async def test_unsupported_widgets_are_reported_at_their_line_and_left_as_logs(tmp_path):
    result = studio("unsupported")
    kinds = ["enqueue-call", "send-to-flex", "run-function", "add-twiml-redirect",
             "capture-payments", "send-and-wait-for-reply", "fork-stream"]
    assert [line for line, _ in findings(result)] == [
        line_of("unsupported", f'"type": "{kind}"') for kind in kinds]
    assert findings(result)[0][1] == ("enqueue-call has no counterpart in flowengine: 'queue' "
                                      "is left as a log step that goes on to 'flex' (its "
                                      "failedToEnqueue transition)")
    steps = result.flow["steps"]
    assert steps["queue"] == {"log": "Studio enqueue-call widget 'queue' was not imported "
                                     "(queue_name: support, priority: 0, timeout: 3600)",
                              "next": "flex"}
    # Liquid in what is quoted is not run: it is printed as written.
    assert steps["flex"]["log"].startswith("{% raw %}Studio send-to-flex widget 'flex'")
    await run_scenarios(tmp_path, result, [{"name": "through", "expect": {
        "path": ["Trigger", "queue", "flex", "fn", "redirect", "pay", "reply", "stream", "bye"],
        "steps": {"fn": {"text": {"contains": "run-function widget 'fn'"}},
                  "flex": {"text": {"contains": '"name": "{{trigger.call.From}}"'}}}}}])


def test_unknown_widget_types_and_events_are_reported():
    doc = _definition([_state("x", "teleport", [("next", "y")]),
                       _state("y", "say-play", [("audioComplete", None), ("confetti", "x")],
                              say="Hi", colour="blue")])
    text = json.dumps(doc, indent=2)
    result = convert(load_yaml(text, "x.json"))
    lines = text.splitlines()
    assert findings(result) == [
        (next(i + 1 for i, t in enumerate(lines) if '"teleport"' in t),
         "'teleport' is not a Studio widget type flowengine knows: 'x' is left as a log step "
         "that goes on to 'y' (its next transition)"),
        (next(i + 1 for i, t in enumerate(lines) if '"colour"' in t),
         "'colour' of say-play 'y' is not imported"),
        (next(i + 1 for i, t in enumerate(lines) if '"confetti"' in t),
         "the confetti transition of say-play 'y' has no counterpart in flowengine and is not "
         "imported"),
    ]


def test_widget_names_become_step_ids_and_renames_are_reported():
    doc = _definition([
        _state("happy-outgoing", "gather-input-on-call", [("keypress", "2nd")], say="Press"),
        _state("2nd", "say-play", [("audioComplete", None)],
               say="You pressed {{widgets.happy-outgoing.Digits}}"),
    ])
    text = json.dumps(doc, indent=2)
    result = convert(load_yaml(text, "x.json"))
    assert list(result.flow["steps"]) == ["Trigger", "happy_outgoing", "w_2nd"]
    assert result.flow["steps"]["happy_outgoing"]["next"] == "w_2nd"
    assert result.flow["steps"]["w_2nd"]["play"][0]["say"] == \
        "You pressed {{ steps.happy_outgoing.digits }}"
    assert [m for _, m in findings(result)] == [
        "the widget 'happy-outgoing' is the step 'happy_outgoing' (step ids are letters, "
        "digits and _)",
        "the widget '2nd' is the step 'w_2nd' (step ids are letters, digits and _)"]


# -- Liquid -------------------------------------------------------------------------------

def _names(path: list[str | int]) -> tuple[str | None, str | None]:
    if path[:2] == ["trigger", "call"] and path[2] == "From":
        return "call.from", None
    if path[0] == "flow" and path[1] == "variables":
        return f"vars.{path[2]}", None
    return None, None


@pytest.mark.parametrize("liquid, jinja", [
    ("{{trigger.call.From}}", "{{ call.from }}"),
    ("Hi {{ flow.variables.name | upcase }}!", "Hi {{ vars.name | upper }}!"),
    ("{{flow.variables.a | downcase | capitalize}}", "{{ (vars.a | lower) | capitalize }}"),
    ("{{flow.variables.a | default: 'none'}}", "{{ vars.a | default('none', true) }}"),
    ("{{flow.variables.a | size}}", "{{ vars.a | length }}"),
    ("{{flow.variables.a.size}}", "{{ vars.a | length }}"),
    ("{{flow.variables.a | strip}}", "{{ vars.a | trim }}"),
    ("{{flow.variables.a | replace: 'x', 'y'}}", "{{ vars.a | replace('x', 'y') }}"),
    ("{{flow.variables.a | append: '.' | prepend: '>'}}", "{{ '>' ~ (vars.a ~ '.') }}"),
    ("{{flow.variables.a | split: ',' | join: ' '}}",
     "{{ ((vars.a ~ '').split(',')) | join(' ') }}"),
    ("{{flow.variables.n | plus: 1}}", "{{ (vars.n | int) + 1 }}"),
    ("{{flow.variables.n | times: 1.5}}", "{{ (vars.n | float) * 1.5 }}"),
    ("{% if flow.variables.a == 'x' %}A{% elsif flow.variables.a contains 'y' %}B"
     "{% else %}C{% endif %}",
     "{% if vars.a == 'x' %}A{% elif 'y' in vars.a %}B{% else %}C{% endif %}"),
    ("{% unless flow.variables.a %}none{% endunless %}",
     "{% if not (vars.a) %}none{% endif %}"),
    ("{% if flow.variables.a and flow.variables.b or flow.variables.c %}x{% endif %}",
     "{% if vars.a and (vars.b or (vars.c)) %}x{% endif %}"),
    ("{% assign x = flow.variables.a | upcase %}{{ x }}", "{% set x = vars.a | upper %}{{ x }}"),
    ("{% for i in flow.variables.list %}{{ i }},{% endfor %}",
     "{% for i in vars.list %}{{ i }},{% endfor %}"),
    ("{% comment %}note{% endcomment %}kept", "kept"),
    ("a {#} b", "{% raw %}a {#} b{% endraw %}"),
])
def test_liquid_becomes_jinja(liquid, jinja):
    translation = translate(liquid, _names)
    assert translation.template == jinja
    assert translation.issues == []


def test_untranslatable_liquid_is_reported_at_its_offset():
    text = "Hi {{trigger.call.FromCity}}, {{flow.variables.a | md5}}{% case x %}"
    translation = translate(text, _names)
    assert translation.template == "Hi , {{ vars.a }}"
    assert [(i.offset, i.message) for i in translation.issues] == [
        (text.index("trigger"), "trigger.call.FromCity has no counterpart in flowengine; it "
                                "was left out (empty text)"),
        (text.index("md5"), "the Liquid filter 'md5' has no counterpart; it was left out"),
        (text.index("{% case"), "the Liquid tag 'case' has no counterpart; it was left out"),
    ]


@pytest.mark.anyio
async def test_liquid_in_a_console_export_renders_on_the_simulator(tmp_path):
    result = studio("liquid")
    assert result.flow["name"] == "templates"  # the console export's friendly_name
    text = (FIXTURES / "liquid.json").read_text().splitlines()
    for finding, part in zip(result.findings, ["trigger.call.FromCity", "md5"], strict=True):
        # line:col of the JSON string plus the offset inside it
        assert text[finding.line - 1][finding.col - 1:].startswith(part), finding
    await run_scenarios(tmp_path, result, [{"name": "spoken", "expect": {
        "path": ["Trigger", "vars", "talk", "bye"],
        "said": ["Welcome back, Ada. FRIEND a-b-c 7", "Bye >ada!"]}}])


# -- a whole Studio IVR -------------------------------------------------------------------

@pytest.mark.anyio
async def test_the_ivr_takes_each_branch_by_keys_and_by_voice(tmp_path):
    result = studio("ivr")
    assert findings(result) == [(line_of("ivr", '"trim"'),
                                 "'trim' is not imported: RELAY does not trim the recording's "
                                 "silence")]
    ok = {"status": 200, "json": {"name": "Ada"}}
    await run_scenarios(tmp_path, result, [
        {"name": "1 is sales", "caller": "digits:1,peer:answer:3", "receiver": {"replies": [ok]},
         "expect": {"path": ["Trigger", "greeting", "menu", "route", "set_team", "sales_lookup",
                             "sales_hello", "to_sales", "goodbye"],
                    "said": ["Thanks for calling Acme.", "Hello Ada, connecting you to sales.",
                             "Goodbye."],
                    "vars": {"team": "sales"},
                    "received": [{"method": "GET", "path": "/lookup?caller=%2B15551230000"}]}},
        {"name": "saying support leaves a message", "caller": "say:Support please,speak:3",
         "expect": {"path": ["Trigger", "greeting", "menu", "route_speech", "support_intro",
                             "voicemail", "notify", "thanks"],
                    "received": [{"method": "POST", "path": "/voicemail",
                                  "json": {"recording": {"matches": "^http://"},
                                           "caller": "+15551230000",
                                           "seconds": {"approx": 3}}}]}},
        {"name": "the CRM is down: support", "caller": "digits:1,silent",
         "receiver": {"replies": [{"status": 503}]},
         "expect": {"path": ["Trigger", "greeting", "menu", "route", "set_team", "sales_lookup",
                             "support_intro", "voicemail", "no_input_bye"]}},
        {"name": "a wrong key asks again", "caller": "digits:7/2,silent",
         "expect": {"path_includes": ["route", "invalid", "menu", "route", "support_intro"],
                    "said": ["Sorry, that is not an option."]}},
    ], vars={"sales_lookup_url": "${RECEIVER}", "notify_url": "${RECEIVER}"})


def test_the_cli_imports_checks_and_tests_the_ivr(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    source = tmp_path / "ivr.json"
    source.write_text((FIXTURES / "ivr.json").read_text())
    # The import as a user types it (its own process); check and test in this one.
    run = subprocess.run([sys.executable, "-m", "flowengine.cli", "import", "studio",
                          "ivr.json", "-o", "out/ivr.yaml", "--tests"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    trim = line_of("ivr", '"trim"')
    assert run.stderr.splitlines() == [
        f"ivr.json:{trim}:9: warning: 'trim' is not imported: RELAY does not trim the "
        "recording's silence"]
    assert (out / "ivr.yaml").read_text().startswith("# imported by flowengine from ivr.json")
    scenarios = load_scenarios(out / "tests" / "ivr.test.yaml").scenarios
    names = [s.name for s in scenarios]
    # One scenario per branch of the menu and its splits, by keys and by voice.
    for part in ["route: 'sales' (1)", "route: 'support' (2)", "route: 'no match'",
                 "route_speech: 'says sales' (sales)", "route_speech: 'says support'",
                 "menu: says nothing", "voicemail: says nothing",
                 "sales_lookup: the server answers 500"]:
        assert any(part in n for n in names), (part, names)
    from flowengine.cli import main

    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["check", "out"]) == 0
    assert "checked 1 file: no problems" in capsys.readouterr().err
    assert main(["test", "out"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"{len(scenarios)} passed, 0 failed"


@pytest.mark.anyio
@pytest.mark.parametrize("name", ALL_FIXTURES)
async def test_every_fixture_checks_and_its_written_scenarios_pass(tmp_path, name):
    result = studio(name)
    assert result.scenarios is not None
    target = tmp_path / f"{name}.yaml"
    import_cli._write(target, result, "test")
    from flowengine.flow.compiler import check_paths

    assert [str(d) for d in check_paths([str(target)]) if d.is_error] == []
    loaded = load_scenarios(tmp_path / "tests" / f"{name}.test.yaml")
    outcomes = await run_file(loaded)
    failed = [f"{r.scenario.name}:\n{r.failure_text()}" for r in outcomes if not r.passed]
    assert not failed, "\n\n".join(failed)
    assert outcomes


# -- inputs that are not Studio flows -----------------------------------------------------

def _state(name: str, kind: str, transitions: list[tuple[str, str | None]],
           **props: Any) -> dict[str, Any]:
    return {"name": name, "type": kind,
            "transitions": [{"event": e, **({"next": n} if n else {})} for e, n in transitions],
            "properties": {"offset": {"x": 0, "y": 0}, **props}}


def _definition(states: list[dict[str, Any]], event: str = "incomingCall") -> dict[str, Any]:
    trigger = _state("Trigger", "trigger", [(event, states[0]["name"])])
    return {"description": "t", "states": [trigger, *states], "initial_state": "Trigger",
            "flags": {"allow_concurrent_calls": True}}


def _good() -> dict[str, Any]:
    return _definition([_state("hi", "say-play", [("audioComplete", None)], say="Hi")])


def _bad(edit: Any) -> str:
    doc = _good()
    edit(doc)
    return json.dumps(doc, indent=2)


MALFORMED = [
    ("not JSON", '{"states": [\n  {"name": }', "2:12", "error: not JSON: Expecting value"),
    ("a list", "[1, 2]", "1:1", "this is not a Twilio Studio flow definition: expected a JSON "
                                "object with \"states\" and \"initial_state\""),
    ("no states", '{"name": "x"}', "1:1", "this is not a Twilio Studio flow definition: it "
                                          "has no \"states\" (the list of widgets)"),
    ("empty states", '{"states": []}', "1:12", "\"states\" must be a non-empty list of widgets"),
    ("no initial state", _bad(lambda d: d.pop("initial_state")), "1:1",
     "the flow has no \"initial_state\" (the name of its trigger widget)"),
    ("unknown initial state", _bad(lambda d: d.update(initial_state="Start")), None,
     "the initial_state 'Start' is not the name of a widget"),
    ("initial state not a trigger", _bad(lambda d: d.update(initial_state="hi")), None,
     "the initial_state 'hi' is a say-play widget, not the trigger"),
    ("transition to nowhere",
     _bad(lambda d: d["states"][1]["transitions"][0].update(next="gone")), None,
     "the audioComplete transition of 'hi' goes to 'gone', which is not a widget of this flow"),
    ("two widgets, one name", _bad(lambda d: d["states"][1].update(name="Trigger")), None,
     "two widgets are named 'Trigger' (the first at line 5)"),
    ("no incomingCall",
     _bad(lambda d: d["states"][0]["transitions"][0].update(event="incomingMessage")), None,
     "the trigger 'Trigger' has no incomingCall transition to a widget: this flow does not "
     "take calls"),
]


@pytest.mark.parametrize("what, text, where, message", MALFORMED,
                         ids=[m[0] for m in MALFORMED])
def test_malformed_inputs_give_one_clear_error_and_exit_2(tmp_path, what, text, where, message):
    source = tmp_path / "flow.json"
    source.write_text(text)
    err = io.StringIO()
    code = import_cli.run(Namespace(kind="studio", source=str(source), output=None,
                                    tests=False), out=io.StringIO(), err=err)
    assert code == 2
    lines = err.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{source}:"), lines
    assert message in lines[0]
    if where is not None:
        assert lines[0].startswith(f"{source}:{where}:"), lines
    else:
        # The position is the offending value's own line in the JSON.
        line = int(lines[0][len(str(source)) + 1:].split(":")[0])
        assert line > 1


# -- odd values never break the import ---------------------------------------------------

_ODD = [None, 0, -1, 1.5, True, "", "x", "{{", "{% if %}", "{{widgets.nope.x}}", [], {},
        [1], {"a": 1}, "9999999", "-5", "{{ 1 + }}", "#*"]


def _places(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path] if path else []
    items = data.items() if isinstance(data, dict) else enumerate(data) \
        if isinstance(data, list) else []
    for key, value in items:
        found += _places(value, (*path, key))
    return found


def test_odd_values_anywhere_give_a_checked_flow_or_one_clear_error(tmp_path):
    # A seeded sweep: 1-3 values of each fixture replaced by values of the wrong type or
    # shape. The import must either refuse the file (SourceError) or write a flow that
    # `check` accepts: never a traceback, never a flow that does not load.
    import random

    from flowengine.flow.compiler import check_paths

    rng = random.Random(17)
    refused = written = 0
    for n in range(120):
        name = ALL_FIXTURES[n % len(ALL_FIXTURES)]
        doc = json.loads((FIXTURES / f"{name}.json").read_text())
        places = _places(doc)
        for _ in range(rng.randint(1, 3)):
            *parents, last = rng.choice(places)
            target = doc
            try:
                for key in parents:
                    target = target[key]
                target[last] = rng.choice(_ODD)
            except (KeyError, IndexError, TypeError):
                pass  # an earlier replacement changed the shape there
        source = FIXTURES / f"{name}.json"  # subflows are looked up next to it
        try:
            result = convert(load_yaml(json.dumps(doc, indent=2), str(source)))
        except SourceError as exc:
            assert exc.line >= 1 and exc.message
            refused += 1
            continue
        target_file = tmp_path / str(n) / "flow.yaml"
        import_cli._write(target_file, result, "odd")
        errors = [str(d) for d in check_paths([str(target_file)]) if d.is_error]
        assert errors == [], (name, json.dumps(doc)[:300])
        written += 1
    assert refused and written  # the sweep reached both ends


@pytest.mark.anyio
async def test_connect_busy_and_no_answer_transitions_branch_on_the_reason(tmp_path):
    doc = _definition([
        _state("transfer", "connect-call-to", [("callCompleted", "done"), ("busy", "was_busy"),
                                               ("noAnswer", "no_answer"), ("failed", "done")],
               noun="number", to="+15550001111", timeout=10),
        _state("done", "say-play", [("audioComplete", None)], say="Done."),
        _state("was_busy", "say-play", [("audioComplete", None)], say="Busy."),
        _state("no_answer", "say-play", [("audioComplete", None)], say="No answer."),
    ])
    result = convert(load_yaml(json.dumps(doc, indent=2), "x.json"))
    steps = result.flow["steps"]
    assert list(steps)[:3] == ["Trigger", "transfer", "transfer_failed"]
    assert steps["transfer"]["on"] == {"failed": "transfer_failed"}
    assert steps["transfer_failed"] == {"branch": [
        {"when": "steps.transfer.reason == 'busy'", "goto": "was_busy"},
        {"when": "steps.transfer.reason == 'noAnswer'", "goto": "no_answer"},
        {"goto": "done"}]}
    await run_scenarios(tmp_path, result, [
        {"name": "busy", "caller": "peer:busy",
         "expect": {"path": ["Trigger", "transfer", "transfer_failed", "was_busy"]}},
        {"name": "no answer", "caller": "peer:noanswer",
         "expect": {"path": ["Trigger", "transfer", "transfer_failed", "no_answer"]}},
        {"name": "answered", "caller": "peer:answer:2",
         "expect": {"path": ["Trigger", "transfer", "done"]}},
    ])


def test_no_written_scenario_runs_a_subflow_that_calls_a_real_server(tmp_path):
    sub = _definition([_state("post", "make-http-request", [("success", None)],
                              method="GET", url="https://api.example.com/x")],
                      event="incomingParent")
    (tmp_path / "FWS.json").write_text(json.dumps(sub, indent=2))
    main = _definition([
        _state("ask", "gather-input-on-call", [("keypress", "sub"), ("timeout", "bye")],
               say="Press a key."),
        _state("sub", "run-subflow", [("completed", None)], flow_sid="FWS"),
        _state("bye", "say-play", [("audioComplete", None)], say="Bye."),
    ])
    result = convert(load_yaml(json.dumps(main, indent=2), str(tmp_path / "main.json")))
    assert result.flow["steps"]["sub"]["call"] == {"flow": "lib/FWS.yaml"}
    assert result.scenarios is not None
    paths = [s["expect"].get("path") or s["expect"]["path_includes"]
             for s in result.scenarios["scenarios"]]
    # The keypress path would reach the server: no scenario takes it.
    assert ["Trigger", "ask", "bye"] in paths
    assert not any("sub" in path for path in paths)


def test_the_written_yaml_reads_back_as_written_and_plainly():
    item = {"say": "Hi"}
    data = {"name": "x", "steps": {"a": {
        "play": [item, item],                      # the same dict twice: no &id001 anchors
        "on": {"finished": None},                  # `on` as YAML 1.2 reads it: no quotes
        "when": "'sales' in steps.menu.text",      # single quotes inside: double-quoted
        "answer": "yes",
        "say": "x " * 80}}}                        # long text stays on one line
    text = dump_flow(data)
    assert text == (
        "name: x\nsteps:\n  a:\n    play:\n    - say: Hi\n    - say: Hi\n"
        "    on:\n      finished: null\n"
        "    when: \"'sales' in steps.menu.text\"\n    answer: yes\n"
        f"    say: '{'x ' * 80}'\n")
    assert load_yaml(text, "x.yaml").data == data


def test_a_form_body_written_as_text_is_sent_as_json_fields():
    doc = _definition([
        _state("as_json", "make-http-request", [("success", "as_form")], method="POST",
               content_type="application/x-www-form-urlencoded;charset=utf-8",
               url="https://api.example.com/started",
               body='{"CallSid": "{{trigger.call.CallSid}}"}'),
        _state("as_form", "make-http-request", [("success", None)], method="POST",
               content_type="application/x-www-form-urlencoded;charset=utf-8",
               url="https://api.example.com/incoming",
               body="&Caller={{trigger.call.From}}&flex=true&note=a%20b"),
    ])
    text = json.dumps(doc, indent=2)
    result = convert(load_yaml(text, "x.json"))
    steps = result.flow["steps"]
    assert steps["as_json"]["request"]["json"] == {"CallSid": "{{ call.id }}"}
    assert steps["as_form"]["request"]["json"] == {"Caller": "{{ call.from }}", "flex": "true",
                                                   "note": "a b"}
    bodies = [i + 1 for i, t in enumerate(text.splitlines()) if '"body"' in t]
    assert [line for line, _ in findings(result)] == bodies
