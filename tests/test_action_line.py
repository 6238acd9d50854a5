"""send_digits, sleep and detect over the simulator: every outcome."""

from __future__ import annotations

import pytest

from tests.flowtools import run_flow, variant, write_flow

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

LINE = """
name: line
context: office
on_hangup: gone
steps:
  greet:
    answer: {}
  pause:
    sleep: 2
  tones:
    send_digits: "{{ vars.tones }}"
    on: {error: done}
  done:
    log: "sent {{ steps.tones.digits }}"
    next: null
  gone:
    log: "gone"
vars:
  tones: "1w2#"
"""


async def test_sleep_then_send_digits_finish(tmp_path):
    run = await run_flow(write_flow(tmp_path, LINE), "speak:1")
    assert run.path() == [("greet", "answered"), ("pause", "finished"), ("tones", "finished"),
                          ("done", "next")]
    sent = [p for t, p in run.sim_calls[0].events if t == "calling.call.send_digits"]
    assert [p["state"] for p in sent] == ["finished"]
    assert sent[0]["control_id"] == run.report.trace[2].control_id


async def test_a_hangup_during_sleep_ends_it_at_once(tmp_path):
    run = await run_flow(write_flow(tmp_path, variant(LINE, ("sleep: 2", "sleep: 600"))),
                         "hangup:1")
    assert run.path() == [("greet", "answered"), ("pause", "hangup"), ("gone", "next")]
    # It did not sleep the 600 s (6 s of real time at this time scale) out.
    assert run.report.trace[1].duration < 600 * 0.01


async def test_send_digits_that_are_not_dtmf_and_a_relay_failure_are_errors(tmp_path):
    flow = write_flow(tmp_path, variant(LINE, ('tones: "1w2#"', 'tones: "12x"')))
    run = await run_flow(flow, "speak:1")
    assert run.path()[2] == ("tones", "error")
    assert "'12x' is not DTMF" in run.report.trace[2].error
    assert "calling.send_digits" not in run.sim_calls[0].commands
    run = await run_flow(write_flow(tmp_path, LINE), "speak:1",
                         setup=lambda sim: sim.fail_next("calling.send_digits", "500"))
    assert run.path()[2] == ("tones", "error")


async def test_send_digits_after_a_hangup_is_hangup(tmp_path):
    flow = write_flow(tmp_path, variant(LINE, ("sleep: 2", "sleep: 2\n    on: {hangup: tones}")))
    run = await run_flow(flow, "hangup:1")
    assert run.path()[1:3] == [("pause", "hangup"), ("tones", "hangup")]


SCREEN = """
name: screen
context: office
steps:
  greet:
    answer: {}
  who:
    detect: {type: machine, wait_for_beep: true}
    on:
      human: done
      machine: done
      unknown: done
      hangup: done
      error: done
  done:
    log: "{{ steps.who.event }} {{ steps.who.beep }}"
"""


@pytest.mark.parametrize(("caller", "outcome", "text"), [
    ("speak:2", "human", "HUMAN False"),
    ("machine:6", "machine", "MACHINE True"),
    # No event: steps.who.event is None, which prints as empty text.
    ("silent", "unknown", " False"),
    ("fax", "unknown", " False"),
    # A machine (heard at 2.5 s) whose caller hangs up before the beep (at 3 s).
    ("machine:30,hangup@detect:3", "hangup", "MACHINE False"),
])
async def test_machine_detection(tmp_path, caller, outcome, text):
    run = await run_flow(write_flow(tmp_path, SCREEN), caller)
    assert run.path() == [("greet", "answered"), ("who", outcome), ("done", "next")]
    assert run.report.steps["done"]["text"] == text


async def test_waiting_for_the_beep_takes_as_long_as_the_greeting(tmp_path):
    run = await run_flow(write_flow(tmp_path, SCREEN), "machine:20")
    events = [p["detect"]["params"]["event"] for t, p in run.sim_calls[0].events
              if t == "calling.call.detect"]
    assert events == ["MACHINE", "READY", "finished"]
    quick = await run_flow(write_flow(tmp_path, variant(SCREEN, (", wait_for_beep: true", ""))),
                           "machine:20")
    assert quick.path()[1] == ("who", "machine")
    assert quick.report.steps["done"]["text"] == "MACHINE "  # the beep: None, printed as empty text
    assert quick.report.trace[1].duration < run.report.trace[1].duration


async def test_fax_and_digit_detection_and_a_stop_once_answered(tmp_path):
    fax = variant(SCREEN, ("{type: machine, wait_for_beep: true}", "{type: fax, tone: CNG}"),
                  ("      human: done\n      machine: done\n", "      fax: done\n"))
    run = await run_flow(write_flow(tmp_path, fax), "fax")
    assert run.path()[1] == ("who", "fax")
    assert run.report.steps["done"]["text"] == "CNG "
    digit = variant(SCREEN, ("{type: machine, wait_for_beep: true}", "{type: digit, duration: 5}"),
                    ("      human: done\n      machine: done\n", "      digit: done\n"))
    run = await run_flow(write_flow(tmp_path, digit), "digits:7")
    assert run.path()[1] == ("who", "digit")
    assert run.report.steps["done"]["text"] == "7 "
    assert "calling.detect.stop" in run.sim_calls[0].commands
    run = await run_flow(write_flow(tmp_path, digit), "silent")
    assert run.path()[1] == ("who", "unknown")


async def test_a_relay_failure_is_error(tmp_path):
    run = await run_flow(write_flow(tmp_path, SCREEN), "speak:1",
                         setup=lambda sim: sim.fail_next("calling.detect", "500"))
    assert run.path()[1] == ("who", "error")
