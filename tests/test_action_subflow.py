"""Subflows over the simulator: call with params, return values under steps.<id>, hangups and
errors inside a subflow, the trace; and what check says about calls (cycles, params)."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import pytest

from flowengine.flow import check_paths, load_flow
from tests.flowtools import run_flow

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

ACCOUNT = """
name: account_number
params:
  question: Please enter your account number, then press pound.
  length: 4
steps:
  ask:
    prompt:
      play: [{say: "{{ params.question }}"}]
      digits: {max: 10, terminators: "#"}
    on:
      no_input: none
  check:
    branch:
      - when: steps.ask.digits | length == params.length
        goto: found
      - goto: none
  found:
    return: {account: "{{ steps.ask.digits }}", found: true, tries: "{{ 1 }}"}
  none:
    return: {found: false}
"""

MAIN = """
name: main
context: office
on_hangup: gone
steps:
  greet:
    answer: {}
  account:
    call:
      flow: lib/account.yaml
      params: {question: "Your customer number, please.", length: "{{ 2 + 3 }}"}
    on:
      error: broken
  result:
    log: "{{ steps.account.found }} {{ steps.account.account }} {{ steps.account.tries }}"
    next: null
  broken:
    log: "subflow failed"
    next: null
  gone:
    log: "gone after {{ steps.account | default('nothing') }}"
"""


def write(tmp_path: Path, main: str = MAIN, account: str = ACCOUNT) -> Path:
    (tmp_path / "lib").mkdir(exist_ok=True)
    (tmp_path / "lib" / "account.yaml").write_text(account)
    (tmp_path / "main.yaml").write_text(main)
    return tmp_path / "main.yaml"


async def test_params_replace_defaults_and_return_values_land_under_steps(tmp_path):
    run = await run_flow(write(tmp_path), "digits:12345#")
    assert run.path() == [("greet", "answered"), ("ask", "digit"), ("check", "branch0"),
                          ("found", "next"), ("account", "returned"), ("result", "next")]
    assert run.report.steps["account"] == {"account": "12345", "found": True, "tries": 1}
    assert run.report.steps["result"]["text"] == "True 12345 1"
    inner = [e for e in run.report.trace if e.within == "account"]
    assert [e.step for e in inner] == ["ask", "check", "found"]
    assert {e.flow for e in inner} == {"account_number"}
    assert inner[0].params["play"][0]["say"] == "Your customer number, please."
    # The subflow's own steps do not leak into the caller's results.
    assert set(run.report.steps) == {"greet", "account", "result"}


async def test_a_return_without_some_keys_leaves_them_null(tmp_path):
    run = await run_flow(write(tmp_path), "digits:12#")
    assert ("account", "returned") in run.path()
    assert run.report.steps["account"] == {"account": None, "found": False, "tries": None}


async def test_a_hangup_inside_the_subflow_is_the_call_steps_hangup(tmp_path):
    run = await run_flow(write(tmp_path), "silent,hangup@collect:1")
    assert run.path() == [("greet", "answered"), ("ask", "hangup"), ("account", "hangup"),
                          ("gone", "next")]
    assert run.report.caller_hung_up
    # The call step's result: every key its subflow can return, none given.
    assert run.report.steps["gone"]["text"] == (
        "gone after {'account': None, 'found': None, 'tries': None}")


async def test_an_error_inside_the_subflow_is_the_call_steps_error(tmp_path):
    run = await run_flow(write(tmp_path), "digits:1#",
                         setup=lambda sim: sim.fail_next("calling.play_and_collect", "500"))
    assert run.path() == [("greet", "answered"), ("ask", "error"), ("account", "error"),
                          ("broken", "next")]
    assert "500" in run.report.trace[2].error


async def test_a_subflow_that_hangs_up_leaves_the_caller_to_go_on_without_the_call(tmp_path):
    account = """
name: goodbye
steps:
  bye:
    play: [{say: "Goodbye."}]
  end:
    hangup: {}
"""
    main = """
name: main
context: office
steps:
  account:
    call: lib/account.yaml
  result:
    log: "after the subflow the call is {{ call.state }}"
"""
    run = await run_flow(write(tmp_path, main, account), "speak:1")
    assert run.path() == [("bye", "finished"), ("end", "next"), ("account", "returned"),
                          ("result", "next")]
    assert run.report.steps["result"]["text"] == "after the subflow the call is ended"
    assert run.sim_calls[0].commands.count("calling.end") == 1


def test_a_cycle_through_another_file_is_reported_where_it_closes(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "a.yaml").write_text("name: a\nsteps:\n  b:\n    call: lib/b.yaml\n")
    (tmp_path / "lib" / "b.yaml").write_text("name: b\nsteps:\n  a:\n    call: ../a.yaml\n")
    a, b = tmp_path / "a.yaml", tmp_path / "lib" / "b.yaml"
    shown_a, shown_b = os.path.relpath(a), os.path.relpath(b)
    assert [str(d) for d in check_paths([a])] == [
        (f"{a}:4:11: error: the subflow lib/b.yaml does not load (1 error); run "
         f"`flowengine check {b}`"),
        (f"{b}:4:11: error: subflow cycle: {shown_a} → {shown_b} → {shown_a}; a flow cannot "
         "call itself, directly or through other flows"),
    ]


def test_the_flow_version_knows_its_subflows_and_their_hashes(tmp_path):
    version = load_flow(write(tmp_path))
    path = str(tmp_path / "lib" / "account.yaml")
    assert list(version.subflows) == [path]
    assert version.steps["account"].params["flow"] == path
    assert version.steps["account"].result_fields == ("account", "found", "tries")
    digest = hashlib.sha256((tmp_path / "lib" / "account.yaml").read_bytes()).hexdigest()
    assert version.sources == ((path, digest),)
    assert dict(version.subflows[path].params) == {
        "question": "Please enter your account number, then press pound.", "length": 4}


@pytest.mark.wall_clock  # a real HTTP download / the daemon
async def test_the_daemon_keeps_no_trace_yet_sees_and_counts_every_step(tmp_path):
    # serve keeps no TraceEntry per call (memory), but --trace, the metrics and the log
    # still get every step, a subflow's included, and the end line counts them.
    from tests.test_daemon import LogTap, serving, simulator

    tap = LogTap()
    logger = logging.getLogger("flowengine")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(tap)
    seen = []
    try:
        async with simulator() as sim, serving(sim, [write(tmp_path)], on_step=seen.append):
            call = sim.offer_call("office", caller="digits:12345#")
            await call.wait_ended()
            ended = await tap.wait_event("call_ended", call_id=call.call_id)
    finally:
        logger.removeHandler(tap)
        logger.setLevel(level)
    assert [(e.within, e.step) for e in seen] == [
        (None, "greet"), ("account", "ask"), ("account", "check"), ("account", "found"),
        (None, "account"), (None, "result")]
    assert "after 6 step(s)" in ended[1].getMessage()


async def test_a_session_that_keeps_no_trace_still_counts_its_steps(tmp_path):
    kept = await run_flow(write(tmp_path), "digits:12345#")
    assert kept.report.steps_run == len(kept.report.trace) == 6

    from flowengine.engine import FlowRuntime, Session
    from flowengine.testing import simulated

    runtime = FlowRuntime(load_flow(tmp_path / "main.yaml"))
    seen = []
    async with simulated(["office"]) as (sim, client):
        sim.offer_call("office", caller="digits:12345#")
        call = await client.incoming_calls().receive()
        report = await Session(runtime, call, on_step=seen.append, keep_trace=False).run()
    assert report.trace == [] and report.steps_run == 6
    assert [(e.within, e.step, e.outcome) for e in seen] == [
        (e.within, e.step, e.outcome) for e in kept.report.trace]
    assert report.steps == kept.report.steps
