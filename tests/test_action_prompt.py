"""prompt over the simulator: every outcome, the re-prompts, what RELAY was sent."""

from __future__ import annotations

import pytest

from flowengine.actions.input import collect_params
from tests.flowtools import run_flow, variant, write_flow

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

MENU = """
name: menu
context: office
steps:
  greet:
    answer: {}
  menu:
    prompt:
      play: [{say: "Press 1 for sales or 2 for billing."}]
      digits: {max: 2, terminators: "#"}
      speech: {hints: [sales, billing]}
      choices: ["1", "2", "sales", "billing"]
      max_attempts: 3
      no_input_play: [{say: "Sorry, I did not hear you."}]
      no_match_play: [{say: "Sorry, that is not an option."}]
    on:
      digit: done
      speech: done
      no_input: done
      no_match: done
      error: done
      hangup: done
  done:
    log: "{{ steps.menu.digits }}|{{ steps.menu.text }}|{{ steps.menu.attempts }}"
"""


def said(run) -> list[str]:
    entry = next(e for e in run.report.trace if e.step == "menu")
    return [item["say"] for item in entry.played]


async def test_keys_that_are_a_choice_end_with_digit_and_the_terminator(tmp_path):
    run = await run_flow(write_flow(tmp_path, MENU), "digits:2#")
    assert run.path() == [("greet", "answered"), ("menu", "digit"), ("done", "next")]
    assert run.report.steps["menu"] == {"digits": "2", "terminator": "#", "text": None,
                                        "confidence": None, "choice": "2", "attempts": 1}
    assert said(run) == ["Press 1 for sales or 2 for billing."]
    assert run.sim_calls[0].commands.count("calling.play_and_collect") == 1


async def test_words_that_are_a_choice_end_with_speech(tmp_path):
    run = await run_flow(write_flow(tmp_path, MENU), "say:Billing.")
    assert run.path()[1] == ("menu", "speech")
    result = run.report.steps["menu"]
    assert (result["text"], result["digits"], result["attempts"]) == ("Billing.", None, 1)
    assert result["choice"] == "billing"  # the choice as written
    assert result["confidence"] == pytest.approx(0.95)


async def test_silence_asks_again_with_the_no_input_prompt_then_ends_no_input(tmp_path):
    run = await run_flow(write_flow(tmp_path, MENU), "silent")
    assert run.path()[1] == ("menu", "no_input")
    assert run.report.steps["menu"]["attempts"] == 3
    assert said(run) == ["Press 1 for sales or 2 for billing.",
                         "Sorry, I did not hear you.", "Press 1 for sales or 2 for billing.",
                         "Sorry, I did not hear you.", "Press 1 for sales or 2 for billing."]
    assert run.sim_calls[0].commands.count("calling.play_and_collect") == 3


async def test_a_wrong_key_is_no_match_and_a_right_one_on_the_retry_is_taken(tmp_path):
    run = await run_flow(write_flow(tmp_path, MENU), "digits:9#/1#")
    assert run.path()[1] == ("menu", "digit")
    assert run.report.steps["menu"]["digits"] == "1"
    assert run.report.steps["menu"]["attempts"] == 2
    assert said(run) == ["Press 1 for sales or 2 for billing.",
                         "Sorry, that is not an option.", "Press 1 for sales or 2 for billing."]


async def test_wrong_answers_every_time_end_no_match_keeping_the_last_answer(tmp_path):
    run = await run_flow(write_flow(tmp_path, MENU), "digits:7#/8#/9#")
    assert run.path()[1] == ("menu", "no_match")
    assert run.report.steps["done"]["text"] == "9||3"  # no speech: None, printed as empty text


async def test_speech_the_recognizer_cannot_match_is_no_match(tmp_path):
    flow = write_flow(tmp_path, variant(
        MENU, ("max_attempts: 3", "max_attempts: 1"),
        ("      no_input_play: [{say: \"Sorry, I did not hear you.\"}]\n", ""),
        ("      no_match_play: [{say: \"Sorry, that is not an option.\"}]\n", "")))
    run = await run_flow(flow, "say:?")
    assert run.path()[1] == ("menu", "no_match")
    assert run.report.steps["menu"]["attempts"] == 1


async def test_without_choices_any_answer_is_taken(tmp_path):
    flow = write_flow(tmp_path,
                      variant(MENU, ('      choices: ["1", "2", "sales", "billing"]\n', "")))
    run = await run_flow(flow, "digits:12345#")
    assert run.path()[1] == ("menu", "digit")
    assert run.report.steps["menu"]["digits"] == "12"  # max: 2 ends the answer


async def test_a_relay_failure_is_error(tmp_path):
    run = await run_flow(write_flow(tmp_path, MENU), "digits:1#",
                         setup=lambda sim: sim.fail_next("calling.play_and_collect", "500"))
    assert run.path()[1] == ("menu", "error")
    assert "500" in run.report.trace[1].error


async def test_a_hangup_while_listening_is_hangup(tmp_path):
    run = await run_flow(write_flow(tmp_path, MENU), "silent,hangup@collect:1")
    assert run.path() == [("greet", "answered"), ("menu", "hangup"), ("done", "next")]
    assert run.report.caller_hung_up


async def test_the_step_timeout_covers_every_attempt_and_stops_the_collect(tmp_path):
    flow = write_flow(tmp_path, variant(MENU, ("    on:\n      digit: done",
                                              "    timeout: 9\n    on:\n      timeout: done\n"
                                              "      digit: done")))
    run = await run_flow(flow, "silent")
    assert run.path()[1] == ("menu", "timeout")
    assert run.report.steps["menu"]["attempts"] == 2  # 2 × (prompt + 5 s) outlast 9 s
    assert "calling.play_and_collect.stop" in run.sim_calls[0].commands


def test_the_relay_collect_object_nests_digits_and_speech():
    params = {"play": [], "initial_timeout": 3, "digits": None,
              "speech": {"language": "en-US", "hints": ["sales"]}, "choices": ["1"]}
    assert collect_params(params) == {"initial_timeout": 3, "digits": {"max": 1},
                                      "speech": {"language": "en-US", "hints": ["sales"]}}
