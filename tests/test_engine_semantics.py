"""The engine's rules — edges, on_error, timeouts, limits, vars — on small flows, over the simulator."""

from __future__ import annotations

import pytest

from tests.flowtools import run_flow, write_flow

pytestmark = pytest.mark.anyio


async def test_a_failing_step_without_an_edge_goes_to_the_flows_on_error(tmp_path):
    flow = write_flow(tmp_path, """
name: fails
context: office
on_error: sorry
steps:
  greet:
    answer: {}
  hello:
    play: [{say: "hello"}]
  never:
    log: "not reached"
  sorry:
    log: "sorry: {{ steps.hello.state }}"
""")
    run = await run_flow(flow, "speak:1",
                         setup=lambda sim: sim.fail_next("calling.play", code="500",
                                                         message="Internal error"))
    assert run.path() == [("greet", "answered"), ("hello", "error"), ("sorry", "next")]
    assert run.report.trace[1].error and "500" in run.report.trace[1].error
    assert run.report.steps["sorry"]["text"] == "sorry: error"
    assert run.report.status == "completed"
    assert run.summary["leaked"] == 0


async def test_an_unhandled_error_fails_the_flow_and_still_ends_the_call(tmp_path):
    flow = write_flow(tmp_path, """
name: fails
context: office
steps:
  greet:
    answer: {}
  hello:
    play: [{say: "hello"}]
  after:
    log: "not reached"
""")
    run = await run_flow(flow, "speak:1",
                         setup=lambda sim: sim.fail_next("calling.play", code="500",
                                                         message="Internal error"))
    assert run.path() == [("greet", "answered"), ("hello", "error")]
    assert run.report.status == "failed"
    assert "500" in run.report.error
    assert run.sim_calls[0].end_reason == "hangup"  # the engine hung up; nothing leaks
    assert run.summary["leaked"] == 0


async def test_a_template_error_at_run_time_names_the_step_and_its_line(tmp_path):
    flow = write_flow(tmp_path, """
name: early
context: office
steps:
  greet:
    answer: {}
  too_early:
    log: "url: {{ steps.later.text }}"
  later:
    log: "now"
""")
    run = await run_flow(flow, "speak:1")
    assert run.path() == [("greet", "answered"), ("too_early", "error")]
    error = run.report.trace[-1].error
    assert "too_early" in error and "flow.yaml:8:10" in error
    assert run.report.status == "failed"


async def test_a_step_timeout_stops_the_action_and_takes_the_timeout_edge(tmp_path):
    flow = write_flow(tmp_path, """
name: slow
context: office
steps:
  greet:
    answer: {}
  long_prompt:
    play: [{silence: 60}]
    timeout: 0.2
    on:
      timeout: cut
  unreached:
    log: "no"
  cut:
    log: "cut short"
""")
    run = await run_flow(flow, "speak:1")
    assert run.path() == [("greet", "answered"), ("long_prompt", "timeout"), ("cut", "next")]
    assert "calling.play.stop" in run.sim_calls[0].commands


async def test_max_steps_ends_a_runaway_loop(tmp_path):
    flow = write_flow(tmp_path, """
name: loop
context: office
vars:
  n: 0
limits:
  max_steps: 20
steps:
  count:
    set:
      n: "{{ vars.n + 1 }}"
  again:
    branch:
      - when: vars.n < 1000000
        goto: count
      - goto: done
  done:
    log: "done"
""")
    run = await run_flow(flow, "speak:1")
    report = run.report
    assert report.status == "failed" and "max_steps" in report.error
    assert len(report.trace) == 20
    assert report.vars["n"] == 10  # `set` kept the number a number
    assert run.summary["leaked"] == 0


async def test_vars_start_from_call_data_and_branch_on_them(tmp_path):
    flow = write_flow(tmp_path, """
name: vip
context: office
vars:
  caller: "{{ call.from }}"
steps:
  route:
    branch:
      - when: vars.caller == "+15550000001"
        goto: vip
      - goto: regular
  vip:
    log: "vip {{ vars.caller }}"
    next: done
  regular:
    log: "regular {{ vars.caller }}"
  done:
    hangup: {}
""")
    vip = await run_flow(flow, "speak:1", from_number="+15550000001")
    assert [s for s, _ in vip.path()] == ["route", "vip", "done"]
    assert vip.report.steps["vip"]["text"] == "vip +15550000001"  # the + is kept: a string
    regular = await run_flow(flow, "speak:1", from_number="+15550000002")
    assert [s for s, _ in regular.path()] == ["route", "regular", "done"]


async def test_max_duration_hangs_up_a_call_that_runs_too_long(tmp_path):
    flow = write_flow(tmp_path, """
name: long
context: office
limits:
  max_duration: 30
steps:
  greet:
    answer: {}
  music:
    play: [{silence: 3600}]
  never:
    log: "not reached"
""")
    run = await run_flow(flow, "speak:1")
    report = run.report
    assert [s for s, _ in run.path()] == ["greet"]  # the play was cut, not finished
    assert report.status == "completed" and "max_duration (30 s)" in report.note
    assert run.sim_calls[0].end_reason == "hangup"
    assert "calling.end" in run.sim_calls[0].commands
    assert run.summary["leaked"] == 0
