"""The engine's rules — edges, on_error, timeouts, limits, vars — on small flows, over the
simulator."""

from __future__ import annotations

import pytest

from tests.flowtools import run_flow, write_flow

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]


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


async def test_max_duration_cuts_a_step_with_its_own_timeout_and_then_hangs_up(tmp_path):
    # The limit comes during a step that has a timeout of its own (a cancel scope of its
    # own inside the call's task): the limit wins, the step's timeout does not fire, and
    # the hang-up after it is not cut short.
    flow = write_flow(tmp_path, """
name: long
context: office
limits:
  max_duration: 20
steps:
  greet:
    answer: {}
  wait:
    sleep: 600
    timeout: 300
    on:
      timeout: never
  never:
    log: "not reached"
""")
    run = await run_flow(flow, "speak:1")
    assert [s for s, _ in run.path()] == ["greet"]
    assert "max_duration (20 s)" in run.report.note and run.report.status == "completed"
    assert run.sim_calls[0].end_reason == "hangup" and run.summary["leaked"] == 0


async def test_a_flow_with_a_limit_can_still_be_cancelled_from_outside(tmp_path):
    # Cancelling the task that runs a session (a daemon's hard stop) is not taken for the
    # limit: the session ends at once and the cancellation goes on.
    import anyio

    from flowengine.engine import FlowRuntime, Session
    from flowengine.testing import simulated

    flow = write_flow(tmp_path, """
name: long
context: office
limits:
  max_duration: 600
steps:
  greet:
    answer: {}
  music:
    play: [{silence: 3600}]
""")
    async with simulated(["office"]) as (sim, client):
        sim_call = sim.offer_call("office", caller="speak:1")
        call = await client.incoming_calls().receive()
        ended: list[str] = []

        async def run_it() -> None:
            try:
                await Session(FlowRuntime(flow), call).run()
                ended.append("returned")
            except BaseException:
                ended.append("cancelled")
                raise

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(run_it)
                while "calling.play" not in sim_call.commands:
                    await anyio.sleep(0.01)
                tg.cancel_scope.cancel()
        assert ended == ["cancelled"]
