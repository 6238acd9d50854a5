"""`flowengine import swml`: every SWML method as the flow data it becomes, and a run of the
imported flow on the simulator that takes the path the SWML script would; whole scripts
with their generated scenarios; what does not translate reported at its line; malformed
scripts refused with one error."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from flowengine.flow import load_flow
from flowengine.flow.actions import ACTIONS
from flowengine.flow.compiler import check_paths
from flowengine.flow.loader import load_yaml
from flowengine.importers import ImportResult, SourceError, swml
from flowengine.importers.cli import _write
from flowengine.scenario import load_scenarios
from flowengine.scenario.receiver import Receiver, Reply
from flowengine.scenario.runner import run_file
from tests.flowtools import Run, run_flow

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "import_fixtures" / "swml"


def script(main: str, **sections: str) -> str:
    """A SWML script with ``main`` (and other sections) given as YAML method lists."""
    text = "version: 1.0.0\nsections:\n  main:\n" + textwrap.indent(textwrap.dedent(main), "    ")
    for name, body in sections.items():
        text += f"  {name}:\n" + textwrap.indent(textwrap.dedent(body), "    ")
    return text


def convert(text: str, file: str = "script.yaml") -> ImportResult:
    return swml.convert(load_yaml(text, file))


def steps(text: str) -> dict[str, Any]:
    result: dict[str, Any] = convert(text).flow["steps"]
    return result


def messages(result: ImportResult) -> list[tuple[int, str]]:
    return [(f.line, f.message) for f in result.findings]


def written(tmp_path: Path, text: str, name: str = "script.yaml") -> Path:
    """Import ``text`` as the file ``name``, write the flow (and subflows) and check it."""
    result = convert(text, name)
    target = tmp_path / "flow.yaml"
    _write(target, result, "test")
    errors = [d for d in check_paths([str(target)]) if d.is_error]
    assert errors == [], errors
    return target


async def run(tmp_path: Path, text: str, caller: str = "speak:3", **kw: Any) -> Run:
    return await run_flow(load_flow(written(tmp_path, text)), caller, **kw)


def said(result: Run) -> list[str]:
    texts = []
    for entry in result.report.trace:
        items: Any = entry.played
        if items is None and entry.action == "play" and isinstance(entry.params, Mapping):
            items = entry.params.get("media")
        texts += [str(i["say"]) for i in items or () if isinstance(i, Mapping) and "say" in i]
    return texts


# --- answer, play, hangup -----------------------------------------------------------------

PLAY = script("""\
- answer: {max_duration: 60}
- play:
    urls:
      - 'say: Hello %{call.from}'
      - 'silence: 1.5'
      - 'ring:2:uk'
      - 'https://example.com/hold.mp3'
    volume: 6
    say_voice: Polly.Joanna
    say_language: en-GB
- play:
    url: 'say:Goodbye.'
- hangup: {reason: busy}
""")


def test_answer_play_and_hangup_become_their_steps():
    assert steps(PLAY) == {
        "answer": {"answer": {"max_duration": 60}},
        "play": {"play": {"media": [
            {"say": "Hello {{ call.from }}", "voice": "Polly.Joanna", "language": "en-GB"},
            {"silence": 1.5}, {"ringtone": "uk", "duration": 2.0},
            {"audio": "https://example.com/hold.mp3"}], "volume": 6}},
        "play_2": {"play": [{"say": "Goodbye."}]},
        "hangup": {"hangup": {"reason": "busy"}},
    }


async def test_the_imported_play_says_the_callers_number(tmp_path):
    result = await run(tmp_path, PLAY, from_number="+15551239999")
    assert result.path() == [("answer", "answered"), ("play", "finished"),
                             ("play_2", "finished"), ("hangup", "next")]
    assert said(result) == ["Hello +15551239999", "Goodbye."]
    assert result.report.end_reason == "busy"


def test_a_script_without_answer_gets_one_before_its_first_play():
    out = steps(script("- play: {url: 'say: hi'}\n"))
    assert list(out) == ["answer", "play"]
    assert out["answer"]["answer"] == {}


def test_a_script_that_rejects_the_call_is_not_answered_first():
    assert steps(script("- hangup: {reason: decline}\n")) == {
        "hangup": {"hangup": {"reason": "decline"}}}


# --- prompt, switch, cond -----------------------------------------------------------------

MENU = script("""\
- prompt:
    play: 'say: Press 1 for sales or 2 for support.'
    max_digits: 1
- switch:
    variable: prompt_value
    case:
      '1':
        - play: {url: 'say: Sales.'}
      '2':
        - play: {url: 'say: Support.'}
    default:
      - play: {url: 'say: You pressed ${prompt_value}.'}
- play: {url: 'say: Bye.'}
""")


def test_prompt_and_switch_become_a_prompt_and_a_branch_on_its_digits():
    out = steps(MENU)
    assert out["prompt"] == {"prompt": {"play": [{"say": "Press 1 for sales or 2 for support."}],
                                        "digits": {"max": 1}}}
    assert out["switch"] == {"branch": [
        {"when": "steps.prompt.digits == '1'", "goto": "play"},
        {"when": "steps.prompt.digits == '2'", "goto": "play_2"},
        {"goto": "play_3"}]}
    assert out["play"]["next"] == "play_4" and out["play_2"]["next"] == "play_4"
    assert out["play_3"] == {"play": [{"say": "You pressed {{ steps.prompt.digits }}."}]}


@pytest.mark.parametrize("caller,case", [("digits:1", "Sales."), ("digits:2", "Support."),
                                         ("digits:7", "You pressed 7."),
                                         ("silent", "You pressed .")])
async def test_each_case_of_the_imported_menu_is_taken(tmp_path, caller, case):
    result = await run(tmp_path, MENU, caller)
    assert said(result)[1:] == [case, "Bye."]


def test_prompt_with_terminators_and_speech_takes_both():
    out = steps(script("""\
    - prompt:
        play: ['say: PIN or say it', 'silence: 1']
        max_digits: 6
        terminators: '#*'
        digit_timeout: 3
        initial_timeout: 8
        speech_hints: [one, two]
        speech_language: en-US
        speech_end_timeout: 2
        speech_timeout: 20
    - play: {url: 'say: ${prompt_value} ${prompt_digit_terminator} ${prompt_result}'}
    """))
    assert out["prompt"]["prompt"] == {
        "play": [{"say": "PIN or say it"}, {"silence": 1.0}],
        "digits": {"max": 6, "terminators": "#*", "digit_timeout": 3},
        "speech": {"language": "en-US", "hints": ["one", "two"], "end_silence_timeout": 2,
                   "speech_timeout": 20},
        "initial_timeout": 8}
    assert out["play"]["play"][0]["say"] == (
        "{{ steps.prompt.digits or steps.prompt.text }} {{ steps.prompt.terminator }} "
        "{{ 'match_digits' if steps.prompt.digits else 'match_speech' if steps.prompt.text "
        "else 'no_input' }}")


SPEECH = script("""\
- prompt:
    play: 'say: Say sales or support.'
    speech_hints: [sales, support]
- cond:
    - when: prompt_value.toLowerCase() == 'support.'
      then:
        - play: {url: 'say: Support it is.'}
    - else:
        - play: {url: 'say: Result ${prompt_result}.'}
""")


async def test_a_speech_prompt_and_a_cond_on_what_was_said(tmp_path):
    out = steps(SPEECH)
    assert out["prompt"]["prompt"]["speech"] == {"hints": ["sales", "support"]}
    assert "digits" not in out["prompt"]["prompt"]
    assert out["cond"] == {"branch": [
        {"when": "(steps.prompt.text | lower) == 'support.'", "goto": "play"},
        {"goto": "play_2"}]}
    result = await run(tmp_path, SPEECH, "say:Support.")
    assert said(result)[-1] == "Support it is."
    result = await run(tmp_path, SPEECH, "say:Sales.")
    assert said(result)[-1] == "Result match_speech."


# --- record, record_call -----------------------------------------------------------------

VOICEMAIL = script("""\
- play: {url: 'say: Leave a message after the beep.'}
- record: {beep: true}
- play: {url: 'say: Recorded ${record_result}.'}
""")


def test_record_writes_out_swmls_defaults():
    assert steps(VOICEMAIL)["record"] == {"record": {
        "beep": True, "format": "wav", "terminators": "#", "initial_timeout": 4,
        "end_silence_timeout": 5}}


async def test_an_imported_voicemail_keeps_recording_past_a_second_of_silence(tmp_path):
    # The caller speaks 3 s, then goes quiet: RELAY's default (1 s of silence) would end
    # the message at 4 s; SWML's 5 s, written out by the import, at 8 s.
    result = await run(tmp_path, VOICEMAIL, "speak:3:quiet")
    recording = result.report.steps["record"]
    assert recording["duration"] == pytest.approx(8, abs=0.6)
    assert recording["format"] == "wav" and recording["url"].endswith(".wav")
    assert said(result)[-1] == "Recorded success."


async def test_record_with_its_own_timeouts_keeps_them(tmp_path):
    text = script("- record: {end_silence_timeout: 2, initial_timeout: 0, format: mp3}\n")
    assert steps(text)["record"]["record"] == {"format": "mp3", "terminators": "#",
                                               "initial_timeout": 0, "end_silence_timeout": 2}
    result = await run(tmp_path, text, "speak:3:quiet")
    assert result.report.steps["record"]["duration"] == pytest.approx(5, abs=0.6)


RECORD_CALL = script("""\
- record_call: {control_id: whole, format: mp3, beep: true}
- play: {url: 'say: This call is recorded.'}
- sleep: {duration: 2000}
- stop_record_call: {control_id: whole}
- play: {url: 'say: ${record_call_url}'}
""")


async def test_record_call_and_stop_record_call_by_control_id(tmp_path):
    out = steps(RECORD_CALL)
    assert out["record_call"] == {"record_call": {"format": "mp3", "beep": True}}
    assert out["sleep"] == {"sleep": 2.0}
    assert out["stop_record_call"] == {"stop_record_call": "record_call"}
    assert out["play_2"]["play"] == [{"say": "{{ steps.record_call.url }}"}]
    result = await run(tmp_path, RECORD_CALL, "speak:30")
    url = result.report.steps["record_call"]["url"]
    assert url.endswith(".mp3") and said(result)[-1] == url
    assert result.report.steps["record_call"]["duration"] > 2


def test_stop_record_call_without_control_id_stops_the_last_one_started():
    out = steps(script("- record_call: {}\n- sleep: 1000\n- stop_record_call: {}\n"))
    assert out["record_call"] == {"record_call": {"format": "wav"}}
    assert out["stop_record_call"] == {"stop_record_call": "record_call"}


# --- connect ---------------------------------------------------------------------------------

CONNECT = script("""\
- connect:
    from: '+15559990000'
    timeout: 20
    serial:
      - to: '+15550001111'
      - to: '+15550002222'
- play: {url: 'say: ${connect_result} ${connect_failed_reason}'}
""")


async def test_connect_serial_and_its_result(tmp_path):
    out = steps(CONNECT)
    assert out["connect"] == {"connect": {"devices": ["+15550001111", "+15550002222"],
                                          "from": "+15559990000", "ring_timeout": 20}}
    assert out["play"]["play"][0]["say"] == \
        "{{ 'connected' if steps.connect.peer else 'failed' }} {{ steps.connect.reason }}"
    result = await run(tmp_path, CONNECT, "peer:busy/answer:2")
    assert result.report.steps["connect"]["peer"] == "+15550002222"
    assert said(result) == ["connected "]
    result = await run(tmp_path, CONNECT, "peer:busy/busy")
    assert said(result) == ["failed busy"]


def test_connect_parallel_serial_parallel_and_what_is_not_imported():
    result = convert(script("""\
    - connect:
        parallel: [{to: '+15550001111'}, {to: 'sip:bob@example.com'}]
        headers: [{name: X-Id, value: '1'}]
        codecs: PCMU
    - connect:
        serial_parallel:
          - [{to: '+15550001111'}, {to: '+15550002222'}]
          - [{to: '+15550003333'}]
    """))
    out = result.flow["steps"]
    assert out["connect"]["connect"] == {
        "devices": [["+15550001111", "sip:bob@example.com"]], "ring_timeout": 60}
    assert out["connect_2"]["connect"] == {
        "devices": [["+15550001111", "+15550002222"], "+15550003333"], "ring_timeout": 60}
    assert messages(result) == [
        (6, "connect: headers are not imported (flowengine's connect sends no SIP headers)"),
        (7, "connect: 'codecs' is not imported (flowengine's connect chooses no codecs)")]


async def test_connect_result_runs_a_switch_on_the_outcome(tmp_path):
    text = script("""\
    - connect:
        to: '+15550001111'
        result:
          case:
            connected:
              - play: {url: 'say: We talked.'}
          default:
            - play: {url: 'say: Nobody answered.'}
    """)
    assert steps(text)["result"]["branch"][0]["when"] == \
        "('connected' if steps.connect.peer else 'failed') == 'connected'"
    assert said(await run(tmp_path, text, "peer:answer:2")) == ["We talked."]
    assert said(await run(tmp_path, text, "peer:busy")) == ["Nobody answered."]


# --- messaging, digits, sleep, detect ---------------------------------------------------------

async def test_send_sms_send_digits_and_sleep(tmp_path):
    text = script("""\
    - send_sms:
        to_number: '+15551112222'
        from_number: '+15553334444'
        body: 'Hi from ${call.to}'
        region: us
    - send_digits: {digits: '1w2#'}
    - sleep: 1500
    - play: {url: 'say: ${send_sms_result} ${send_digits_result}'}
    """)
    result = convert(text)
    out = result.flow["steps"]
    assert out["send_sms"] == {"send_sms": {"to": "+15551112222", "from": "+15553334444",
                                            "body": "Hi from {{ call.to }}"}}
    assert out["send_digits"] == {"send_digits": "1w2#"}
    assert out["sleep"] == {"sleep": 1.5}
    assert messages(result) == [(8, "send_sms: 'region' is not imported (RELAY picks the "
                                    "region)")]
    run_ = await run(tmp_path, text)
    assert [o for _, o in run_.path()] == ["answered", "delivered", "finished", "finished",
                                           "finished"]
    assert said(run_) == ["success success"]


DETECT = script("""\
- detect_machine: {detect_message_end: true, timeout: 20, detectors: amd}
- cond:
    - when: detect_result == 'machine'
      then:
        - play: {url: 'say: Hello machine.'}
    - else:
        - play: {url: 'say: Hello ${detect_result}.'}
""")


async def test_detect_machine_and_a_cond_on_detect_result(tmp_path):
    result = convert(DETECT)
    assert result.flow["steps"]["detect_machine"] == {
        "detect": {"type": "machine", "wait_for_beep": True, "duration": 20}}
    assert result.findings == []
    assert said(await run(tmp_path, DETECT, "machine:2")) == ["Hello machine."]
    assert said(await run(tmp_path, DETECT, "speak:3")) == ["Hello human."]


def test_detect_machine_with_both_detectors_is_reported():
    result = convert(script("- detect_machine: {}\n"))
    assert result.flow["steps"]["detect_machine"] == {"detect": {"type": "machine"}}
    assert messages(result)[0][0] == 4 and "fax" in messages(result)[0][1]


# --- request ---------------------------------------------------------------------------------

async def test_request_and_its_response_variables(tmp_path):
    async with Receiver([Reply(json={"name": "Ada", "vip": True})]) as hook:
        text = script(f"""\
        - request:
            url: '{hook.url}/lookup?from=${{call.from}}'
            method: POST
            headers: {{X-Caller: '${{call.from}}'}}
            body: {{caller: '${{call.from}}', n: 1}}
            save_variables: true
            timeout: 8
        - cond:
            - when: request_response.vip == true && request_response_code == 200
              then:
                - play: {{url: 'say: Hello ${{request_response.name}}, ${{request_result}}.'}}
        """)
        out = steps(text)
        assert out["request"] == {
            "request": {"url": hook.url + "/lookup?from={{ call.from }}", "method": "POST",
                        "headers": {"X-Caller": "{{ call.from }}"},
                        "json": {"caller": "{{ call.from }}", "n": 1}, "read_timeout": 8},
            "on": {"error": "cond"}}
        result = await run(tmp_path, text)
    assert said(result) == ["Hello Ada, success."]
    assert hook.received[0].json["caller"] == hook.received[0].headers["x-caller"]


async def test_a_request_that_fails_goes_on_as_swml_does(tmp_path):
    async with Receiver(down=True) as hook:
        text = script(f"""\
        - answer: {{}}
        - request: {{url: '{hook.url}/x', method: GET}}
        - play: {{url: 'say: ${{request_result}}'}}
        """)
        result = await run(tmp_path, text)
    assert said(result) == ["failed"]


# --- goto, label, set, unset -------------------------------------------------------------------

LOOP = script("""\
- set: {n: 0}
- label: again
- set: {n: '${n + 1}'}
- play: {url: 'say: Round ${n}.'}
- goto: {label: again, when: 'n < 5', max: 2}
- unset: {vars: n}
- play: {url: 'say: Done.'}
""")


async def test_goto_with_when_and_max(tmp_path):
    out = steps(LOOP)
    assert out["again"] == {"set": {"n": "{{ vars.n + 1 }}"}}
    assert out["goto"] == {"branch": [{"when": "vars.n < 5", "goto": "goto_jump"}],
                           "next": "unset"}
    assert out["goto_jump"] == {"goto": {"step": "again", "max_visits": 3}}
    assert out["unset"]["set"] == {"n": None}
    result = await run(tmp_path, LOOP)
    # max: 2 jumps, so three rounds though n < 5 still holds.
    assert said(result) == ["Round 1.", "Round 2.", "Round 3.", "Done."]
    assert result.report.vars["n"] is None


async def test_goto_without_max_jumps_at_most_a_hundred_times(tmp_path):
    text = script("- set: {n: 0}\n- label: top\n- set: {n: '${n + 1}'}\n- goto: top\n")
    assert steps(text)["goto"] == {"goto": {"step": "top", "max_visits": 101},
                                   "description": "SWML's goto jumps at most 100 times"}
    result = await run(tmp_path, text)
    assert result.report.vars["n"] == 101


async def test_a_goto_to_a_label_at_the_end_of_the_section_ends_it(tmp_path):
    text = script("""\
    - answer: {}
    - goto: {label: done, when: "call.from == '+15551230000'"}
    - play: {url: 'say: not for you'}
    - label: done
    """)
    assert steps(text)["goto_jump"] == {
        "log": "goto: the label is at the end of the section, which ends here", "next": None}
    result = await run(tmp_path, text)
    assert [s for s, _ in result.path()] == ["answer", "goto", "goto_jump"]
    assert said(await run(tmp_path, text, from_number="+15550000000")) == ["not for you"]


def test_set_keeps_values_and_types_and_renames_reserved_names():
    result = convert(script("""\
    - set:
        items: [drill, bit]
        person: handyman
        total: '${price * 2}'
    - play: {url: 'say: ${items.length} for ${person}'}
    """))
    out = result.flow["steps"]
    assert out["set"] == {"set": {"items_": ["drill", "bit"], "person": "handyman",
                                  "total": "{{ none * 2 }}"}}
    assert out["play"]["play"] == [{"say": "{{ vars.items_ | length }} for {{ vars.person }}"}]
    assert (5, "variable 'items' is vars.items_ in flowengine") in messages(result)
    assert (7, "'price' is not set on any path to here; null used") in messages(result)


# --- execute, return, transfer ----------------------------------------------------------------

EXECUTE = script("""\
- execute:
    dest: add
    params: {a: 2, b: 3}
- play: {url: 'say: The sum is ${return_value}.'}
- transfer: {dest: closing}
- play: {url: 'say: never'}
""", add="""\
- return: '${parseInt(params.a) + parseInt(params.b)}'
""", closing="""\
- play: {url: 'say: Goodbye.'}
""")


async def test_execute_becomes_a_subflow_and_transfer_inlines_the_section(tmp_path):
    result = convert(EXECUTE)
    out = result.flow["steps"]
    assert out["execute"] == {"call": {"flow": "lib/script_add.yaml",
                                       "params": {"a": 2, "b": 3}}}
    assert out["play"] == {"play": [{"say": "The sum is {{ steps.execute.return_value }}."}],
                           "next": "closing"}
    assert result.subflows["lib/script_add.yaml"] == {
        "name": "script.add", "description": "SWML section 'add', run with execute.",
        "params": {"a": None, "b": None},
        "steps": {"return": {"return": {"return_value": "{{ (params.a | int) + (params.b | "
                                                        "int) }}"}}}}
    assert out["closing"] == {"play": [{"say": "Goodbye."}]}
    run_ = await run(tmp_path, EXECUTE)
    assert said(run_) == ["The sum is 5.", "Goodbye."]
    assert "never" not in str(said(run_))


async def test_execute_on_return_and_a_section_executed_twice(tmp_path):
    text = script("""\
    - execute:
        dest: greet
        params: {who: Ada}
        on_return:
          - play: {url: 'say: back ${return_value}'}
    - execute: {dest: greet, params: {who: Bob}}
    """, greet="""\
    - play: {url: 'say: Hello ${params.who}.'}
    - return: {ok: true}
    """)
    result = await run(tmp_path, text)
    assert said(result) == ["Hello Ada.", "back {'ok': True}", "Hello Bob."]


async def test_transfer_with_params_to_a_section_sets_them_before_the_jump(tmp_path):
    text = script("""\
    - answer: {}
    - transfer: {dest: dept, params: {where: sales, n: 2}}
    """, dept="""\
    - play: {url: 'say: Welcome to ${params.where}, desk ${params.n + 1}.'}
    """)
    out = steps(text)
    assert out["transfer"] == {"set": {"params_where": "sales", "params_n": 2},
                               "description": "the params of the transfer to 'dept'"}
    assert out["dept"] == {"play": [{"say": "Welcome to {{ vars.params_where }}, desk "
                                            "{{ vars.params_n + 1 }}."}]}
    assert said(await run(tmp_path, text)) == ["Welcome to sales, desk 3."]


def test_transfer_to_a_url_is_reported_and_ends_the_flow():
    result = convert(script("- transfer: {dest: 'https://example.com/next'}\n- hangup: {}\n"))
    out = result.flow["steps"]
    assert out["transfer"] == {"log": 'not imported from SWML (line 4): transfer to '
                                      '"https://example.com/next"', "next": None}
    assert messages(result)[0][0] == 4 and "transfer to 'https://example.com/next'" in \
        messages(result)[0][1]


# --- what does not translate -----------------------------------------------------------------

def test_unsupported_methods_are_reported_at_their_line_and_left_as_log_steps(tmp_path):
    text = script("""\
    - answer: {}
    - ai:
        prompt: {text: 'You are {{ helpful }}'}
    - tap: {uri: 'wss://example.com/tap'}
    - play: {url: 'say: ${call.headers[0].value}'}
    """)
    result = convert(text)
    found = messages(result)
    assert found[0] == (5, "SWML method 'ai' has no flowengine equivalent; left as a log step")
    assert [line for line, _ in found] == [5, 7, 8]
    assert "call.headers has no flowengine equivalent" in found[-1][1]
    out = result.flow["steps"]
    assert out["ai"]["log"].startswith("{% raw %}not imported from SWML (line 5): ai ")
    assert out["tap"]["log"] == ('not imported from SWML (line 7): tap {"uri": '
                                 '"wss://example.com/tap"}')
    assert out["play"]["play"] == [{"say": "${call.headers[0].value}"}]
    written(tmp_path, text)  # and the result still checks


OPTIONAL = script("""\
- enter_queue:
    queue_name: support
    wait_url: 'https://example.com/hold.mp3'
    transfer_after_bridge: 'https://example.com/after'
- play: {url: 'say: waited ${wait_time}'}
- join_conference: {name: 'room-${call.to}', beep: onEnter, record: record-from-start}
- sip_refer: {to_uri: 'sip:desk@pbx.example.com'}
- play: {url: 'say: ${sip_refer_result}'}
""")


@pytest.mark.parametrize("method,action,line", [("enter_queue", "enqueue", 4),
                                                ("join_conference", "conference", 9),
                                                ("sip_refer", "refer", 10)])
def test_queue_conference_and_refer_are_imported_once_flowengine_has_them(tmp_path, method,
                                                                          action, line):
    # enqueue, conference and refer are being added to flowengine: before, the import
    # reports these methods; after, it writes their steps. Either way the flow checks.
    result = convert(OPTIONAL)
    out = result.flow["steps"][method]
    if action not in ACTIONS:
        assert (line, f"SWML '{method}' is not imported: flowengine has no {action} "
                      "action") in messages(result)
        assert out["log"].startswith(f"not imported from SWML (line {line}): {method} ")
    else:
        assert out == {
            "enqueue": {"enqueue": {"queue": "support", "max_wait": 3600,
                                    "music": [{"audio": "https://example.com/hold.mp3"}]}},
            "conference": {"conference": {"name": "room-{{ call.to }}", "beep": "on_enter",
                                          "max_participants": 250, "record": True}},
            "refer": {"refer": {"to": "sip:desk@pbx.example.com"}},
        }[action]
    written(tmp_path, OPTIONAL)


def test_a_section_nothing_reaches_is_reported():
    result = convert(script("- hangup: {}\n", spare="- play: {url: 'say: unused'}\n"))
    assert messages(result) == [(5, "section 'spare' is never executed or transferred to; "
                                    "not imported")]
    assert result.subflows == {}


def test_a_variable_set_on_two_paths_is_reported():
    result = convert(script("""\
    - cond:
        - when: call.from == '+1555'
          then:
            - prompt: {play: 'say: one'}
        - else:
            - prompt: {play: 'say: two'}
    - play: {url: 'say: ${prompt_value}'}
    """))
    assert (10, "'prompt_value' may have been set by steps prompt, prompt_2 on different "
                "paths; steps.prompt_2 used") in messages(result)


# --- malformed scripts -------------------------------------------------------------------------

@pytest.mark.parametrize("text,where,message", [
    ("version: 1.0.0\nsections:\n  other: []\n", (2, 1),
     "this is not a SWML script: it has no 'sections' with a 'main' section"),
    ("- play: {url: 'say: hi'}\n", (1, 1),
     "this is not a SWML script: it should be a mapping with 'version' and 'sections'"),
    (script("- goto: {label: nowhere}\n"), (4, 21),
     "goto 'nowhere': there is no label 'nowhere' in section 'main' (it has no labels)"),
    (script("- label: top\n- goto: {label: bottom}\n"), (5, 21),
     "goto 'bottom': there is no label 'bottom' in section 'main' (labels: top)"),
    (script("- execute: {dest: a}\n", a="- execute: {dest: b}\n", b="- execute: {dest: a}\n"),
     (8, 16), "execute cycle: a → b → a (a section may not execute itself, directly or "
              "through others)"),
    (script("- execute: {dest: main}\n"), (4, 16),
     "execute cycle: main → main (a section may not execute itself, directly or through "
     "others)"),
    (script("- transfer: {dest: nope}\n"), (4, 24),
     "transfer to 'nope': there is no such section (sections: main)"),
    (script("- label: x\n- play: {url: 'say: a'}\n- label: x\n"), (4, 7),
     "label 'x' is defined twice in section 'main' (again at line 6)"),
    ("version: 1.0.0\nsections:\n  main: {answer: {}}\n", (3, 9),
     "section 'main' must be a list of methods, not dict"),
])
def test_a_malformed_script_is_one_error_with_its_position(text, where, message):
    with pytest.raises(SourceError) as caught:
        convert(text)
    assert (caught.value.line, caught.value.col) == where
    assert caught.value.message == message


def flowengine(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowengine.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("text,error", [
    ("sections: [\n", "bad.yaml:2:1: error:"),
    (script("- goto: {label: nowhere}\n"), "bad.yaml:4:21: error: goto 'nowhere'"),
    ("version: 1.0.0\n", "bad.yaml:1:1: error: this is not a SWML script"),
])
def test_the_command_exits_2_with_one_error_for_a_malformed_script(tmp_path, text, error):
    (tmp_path / "bad.yaml").write_text(text)
    done = flowengine("import", "swml", "bad.yaml", "-o", "out.yaml", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith(error) and len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr and not (tmp_path / "out.yaml").exists()


# --- whole scripts and the command --------------------------------------------------------------

async def test_the_menu_imports_checks_and_its_scenarios_pass(tmp_path):
    done = flowengine("import", "swml", str(FIXTURES / "menu.yaml"), "-o", "menu.yaml",
                      "--tests", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert (tmp_path / "lib" / "menu_sales.yaml").exists()
    loaded = load_scenarios(tmp_path / "tests" / "menu.test.yaml")
    names = [s.name for s in loaded.scenarios]
    assert names == ["the caller presses 1 at menu", "the caller presses 2 at menu",
                     "the caller presses 3 at menu",
                     "the caller presses 0 at menu, then presses 1 at menu"]
    results = await run_file(loaded)
    assert [r.passed for r in results] == [True] * 4, [r.failure_text() for r in results]
    test = flowengine("test", "tests", cwd=tmp_path)
    assert test.returncode == 0 and "4 passed, 0 failed" in test.stdout, test.stdout


async def test_the_menus_voicemail_is_recorded_with_swmls_defaults(tmp_path):
    flow = written(tmp_path, (FIXTURES / "menu.yaml").read_text(), "menu.yaml")
    async with Receiver() as hook:
        text = flow.read_text().replace("https://example.com/voicemail", hook.url + "/vm")
        flow.write_text(text)
        result = await run_flow(load_flow(flow), "digits:3,speak:3")
    assert [s for s, _ in result.path()] == [
        "answer", "menu", "switch", "voicemail", "voicemail_record", "voicemail_play",
        "voicemail_request", "voicemail_hangup"]
    url = result.report.steps["voicemail_record"]["url"]
    assert url.endswith(".wav")
    assert hook.received[0].json == {"url": url, "from": "+15551230000"}


async def test_the_guides_ivr_gets_a_scenario_per_key_and_per_word(tmp_path):
    # Shaped like SignalWire's IVR guide: a prompt for keys or words, a switch with both,
    # and each case an execute of a section that connects.
    done = flowengine("import", "swml", str(FIXTURES / "ivr.yaml"), "-o", "ivr.yaml",
                      "--tests", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    loaded = load_scenarios(tmp_path / "tests" / "ivr.test.yaml")
    assert [(s.name, s.caller) for s in loaded.scenarios] == [
        ("the caller presses 1 at prompt", "digits:1,speak:3"),
        ("the caller presses 2 at prompt", "digits:2,speak:3"),
        ("the caller presses 3 at prompt", "digits:3,speak:3"),
        ("the caller says orders at prompt", "say:orders,speak:3"),
        ("the caller says repairs at prompt", "say:repairs,speak:3"),
        ("the caller says other at prompt", "say:other,speak:3"),
        ("the caller presses 0 at prompt", "digits:0,speak:3")]
    results = await run_file(loaded)
    assert all(r.passed for r in results), [r.failure_text() for r in results]
    assert sorted(p.name for p in (tmp_path / "lib").iterdir()) == [
        "ivr_front_desk.yaml", "ivr_orders.yaml", "ivr_repairs.yaml"]


def test_the_command_prints_the_flow_and_the_warnings_with_their_lines(tmp_path):
    (tmp_path / "s.yaml").write_text(script("- answer: {}\n- tap: {uri: 'wss://x'}\n"))
    done = flowengine("import", "swml", "s.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "s.yaml:5:7: warning: SWML method 'tap' has no flowengine equivalent; left as a log "
        "step"]
    assert done.stdout.startswith("# imported by flowengine from s.yaml (swml)\nname: s\n")
    assert "tap:\n    log: 'not imported from SWML (line 5): tap {\"uri\": \"wss://x\"}'" in \
        done.stdout


def test_without_o_the_command_says_the_subflows_need_it(tmp_path):
    (tmp_path / "s.yaml").write_text(EXECUTE)
    done = flowengine("import", "swml", "s.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "flowengine import: the flow calls 1 subflow file(s) (lib/s_add.yaml), written only "
        "with -o OUT.yaml"]
    assert "flow: lib/s_add.yaml" in done.stdout and not (tmp_path / "lib").exists()


def test_unquoted_numbers_keep_their_plus_and_leading_zero():
    out = steps(script("""\
    - connect: {to: +15550001111, from: +15559990000}
    - send_sms: {to_number: +15551112222, from_number: +15553334444, body: hi}
    - send_digits: 0123
    """))
    assert out["connect"]["connect"]["to"] == "+15550001111"
    assert out["connect"]["connect"]["from"] == "+15559990000"
    assert out["send_sms"]["send_sms"]["to"] == "+15551112222"
    assert out["send_digits"] == {"send_digits": "0123"}


def test_json_scripts_are_read_with_positions(tmp_path):
    result = convert('{"version": "1.0.0", "sections": {"main": [\n'
                     '  {"answer": {}},\n  {"pay": {}}\n]}}\n', "s.json")
    assert messages(result) == [(3, "SWML method 'pay' has no flowengine equivalent; left as "
                                    "a log step")]


BAD_VALUES: list[Any] = [None, 5, "x", [], {}, [1], {"a": 1}, True, "${", "%{x.y(}", [None],
                         "say:", "ring:", "silence:abc", -1, 0, 1e9]
PARAMETERS = {
    "answer": ["max_duration"], "hangup": ["reason"], "sleep": ["duration"],
    "play": ["url", "urls", "volume", "say_voice", "say_gender"],
    "prompt": ["play", "max_digits", "terminators", "digit_timeout", "speech_hints",
               "initial_timeout", "speech_timeout"],
    "record": ["format", "terminators", "end_silence_timeout", "initial_timeout", "beep"],
    "record_call": ["format", "control_id", "direction"], "stop_record_call": ["control_id"],
    "connect": ["to", "serial", "parallel", "serial_parallel", "from", "timeout", "ringback",
                "result"],
    "send_sms": ["to_number", "from_number", "body", "media"], "send_digits": ["digits"],
    "detect_machine": ["detectors", "timeout", "tone", "initial_timeout"],
    "request": ["url", "method", "body", "headers", "timeout"],
    "switch": ["variable", "case", "default"], "cond": [], "set": [], "unset": ["vars"],
    "return": [], "enter_queue": [], "ai": [],
}


def test_any_malformed_parameter_is_reported_and_the_flow_still_checks(tmp_path):
    # Every method with every kind of wrong value, as one script: each is imported or
    # reported, none raises, and the flow written checks without errors.
    methods: list[Any] = []
    for method, keys in PARAMETERS.items():
        methods += [{method: value} for value in BAD_VALUES]
        methods += [{method: {key: value}} for key in keys for value in BAD_VALUES]
    text = json.dumps({"version": "1.0.0", "sections": {"main": methods}})
    result = convert(text, "bad.json")
    assert len(result.findings) > len(methods) // 2
    target = tmp_path / "bad.yaml"
    _write(target, result, "test")
    assert [d for d in check_paths([str(target)]) if d.is_error] == []


@pytest.mark.parametrize("method", ["goto", "label", "execute", "transfer"])
def test_malformed_control_methods_are_an_error_or_a_finding_never_a_crash(method):
    for value in BAD_VALUES + [{"dest": v} for v in BAD_VALUES] + [
            {"label": v} for v in BAD_VALUES]:
        text = json.dumps({"version": "1.0.0", "sections": {"main": [{method: value}]}})
        try:
            convert(text, "bad.json")
        except SourceError as exc:
            assert exc.line >= 1 and exc.message
