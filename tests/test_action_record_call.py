"""record_call and stop_record_call over the simulator: a background recording whose url,
duration and size land in steps.<record_call id> when it ends — stopped, or at a hangup."""

from __future__ import annotations

import pytest

from tests.flowtools import run_flow, write_flow

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

FLOW = """
name: recorded
context: office
on_hangup: gone
steps:
  greet:
    answer: {}
  whole_call:
    record_call: {format: wav, stereo: true}
  while_running:
    log: "{{ steps.whole_call.state }} {{ steps.whole_call.url is not none }}"
  talk:
    play: [{say: "This call is recorded."}]
  wait:
    sleep: 4
  stop:
    stop_record_call: whole_call
  done:
    log: "{{ steps.whole_call.state }} {{ steps.whole_call.duration }} {{ steps.stop.duration }}"
    next: null
  gone:
    log: "gone; recording {{ steps.whole_call.state }} {{ steps.whole_call.duration }}"
"""


async def test_the_recording_runs_in_the_background_until_stopped(tmp_path):
    run = await run_flow(write_flow(tmp_path, FLOW), "speak:30")
    assert run.path() == [("greet", "answered"), ("whole_call", "started"),
                          ("while_running", "next"), ("talk", "finished"), ("wait", "finished"),
                          ("stop", "finished"), ("done", "next")]
    assert run.report.steps["while_running"]["text"] == "recording True"
    whole = run.report.steps["whole_call"]
    [recording] = run.sim_calls[0].recordings
    assert whole["url"] == recording.url and whole["url"].endswith(".wav")
    assert whole["duration"] == recording.duration and whole["size"] == recording.size
    assert run.report.steps["done"]["text"] == f"finished {whole['duration']} {whole['duration']}"
    assert run.sim_calls[0].commands.count("calling.record.stop") == 1


async def test_a_hangup_ends_the_recording_and_its_url_is_there_for_on_hangup(tmp_path):
    run = await run_flow(write_flow(tmp_path, FLOW), "speak:30,hangup:3")
    assert [s for s, _ in run.path()][-2:] == ["wait", "gone"]
    [recording] = run.sim_calls[0].recordings
    assert run.report.steps["gone"]["text"] == f"gone; recording finished {recording.duration}"
    assert run.report.steps["whole_call"]["url"] == recording.url


async def test_a_relay_failure_to_start_is_error(tmp_path):
    run = await run_flow(write_flow(tmp_path, FLOW), "speak:30",
                         setup=lambda sim: sim.fail_next("calling.record", "500"))
    assert run.path()[1] == ("whole_call", "error")


async def test_stopping_a_recording_that_never_started_is_an_error(tmp_path):
    flow = write_flow(tmp_path, """
name: stop_only
context: office
steps:
  greet:
    answer: {}
    next: stop
  never:
    record_call: {}
  stop:
    stop_record_call: never
""")
    run = await run_flow(flow, "speak:1")
    assert run.path() == [("greet", "answered"), ("stop", "error")]
    assert "record_call step 'never' has not run" in run.report.trace[1].error
