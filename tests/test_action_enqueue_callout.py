"""enqueue's call_agents: while the caller waits, the agents are called out (serially or
all at once) with an outbound flow; the first agent whose flow takes the caller
(connect: {queue: NAME}) is bridged to them, every other agent call ends, and none outlives
the step. flows/sales_line.yaml calls its agents with flows/agent_callout.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from flowengine.engine import FlowRuntime
from flowengine.engine.runner import run_calls
from flowengine.flow import compile_flow
from flowengine.sim import Simulator
from flowengine.testing import simulated
from tests.flowtools import FLOWS, Run, run_flow, variant, write_flow

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

LINE = (FLOWS / "sales_line.yaml").read_text()
CALLOUT = (FLOWS / "agent_callout.yaml").read_text()
AGENTS = ["+15550100001", "+15550100002", "+15550100003"]


async def run_line(tmp_path: Path, callees: list[str], caller: str = "hangup@connect:30",
                   line: str = LINE) -> tuple[Run, Simulator]:
    """One caller on the sales line; agent i's phone follows ``callees[i]``."""
    write_flow(tmp_path, CALLOUT, "agent_callout.yaml")
    flow = write_flow(tmp_path, line, "sales_line.yaml")
    seen: list[Simulator] = []

    def setup(sim: Simulator) -> None:
        seen.append(sim)
        for number, script in zip(AGENTS, callees, strict=True):
            sim.set_callee(number, script)

    run = await run_flow(flow, caller, setup=setup)
    # Every call ended: the caller's and every agent's we placed.
    assert run.summary["active"] == 0 and run.summary["leaked"] == 0, run.summary
    return run, seen[0]


def legs(sim: Simulator) -> dict[str, Any]:
    """The agent calls placed, by number."""
    return {leg.to_number: leg for dial in sim.core.dials for leg in dial.legs}


def called(run: Run) -> list[tuple[str, str, bool]]:
    return [(a["to"], a["outcome"], a["took_caller"])
            for a in run.report.steps["wait_for_agent"]["agents_called"]]


async def test_serial_skips_a_busy_agent_and_bridges_the_first_who_presses_1(
        tmp_path: Path) -> None:
    run, sim = await run_line(tmp_path, ["busy", "answer:2,digits:1", "answer:2,digits:1"])
    assert run.path() == [("greet", "answered"), ("wait_for_agent", "hangup")]
    step = run.report.steps["wait_for_agent"]
    assert step["agent"] == AGENTS[1]
    assert called(run) == [(AGENTS[0], "busy", False), (AGENTS[1], "answered", True)]
    # The third agent was never rung; the second took the caller over the queue.
    assert set(legs(sim)) == {AGENTS[0], AGENTS[1]}
    taken = sim.core.queues.taken
    assert [(t.caller, t.agent) for t in taken] == [
        (run.sim_calls[0].call_id, legs(sim)[AGENTS[1]].call_id)]
    assert step["agent_call_id"] == legs(sim)[AGENTS[1]].call_id
    # The agents see the callout flow's caller id; each phone rang call_agents' ring.
    assert {leg.from_number for leg in legs(sim).values()} == {"+15559870000"}
    assert {leg.device["params"]["timeout"] for leg in legs(sim).values()} == {20}


async def test_serial_moves_on_when_an_agent_answers_but_declines(tmp_path: Path) -> None:
    line = variant(LINE, ("ring: 20", 'ring: 15\n        from: "+15550009999"'))
    run, sim = await run_line(tmp_path, ["answer:2,digits:9", "noanswer",
                                         "answer:5,digits:1"], line=line)
    assert {leg.from_number for leg in legs(sim).values()} == {"+15550009999"}
    assert {leg.device["params"]["timeout"] for leg in legs(sim).values()} == {15}
    assert called(run) == [(AGENTS[0], "answered", False), (AGENTS[1], "no_answer", False),
                           (AGENTS[2], "answered", True)]
    assert run.report.steps["wait_for_agent"]["agent"] == AGENTS[2]
    # The declining agent's flow said goodbye without connecting.
    assert "calling.connect" not in legs(sim)[AGENTS[0]].commands
    assert "calling.connect" in legs(sim)[AGENTS[2]].commands


async def test_parallel_rings_everyone_and_ends_the_others_once_one_takes_the_caller(
        tmp_path: Path) -> None:
    line = variant(LINE, ("strategy: serial ", "strategy: parallel "))
    run, sim = await run_line(
        tmp_path, ["answer:2,digits:1", "answer:1,digits:1", "answer:30,digits:1"], line=line)
    assert run.report.steps["wait_for_agent"]["agent"] == AGENTS[1]
    assert called(run) == [(AGENTS[0], "answered", False), (AGENTS[1], "answered", True),
                           (AGENTS[2], "cancelled", False)]
    placed = legs(sim)
    assert set(placed) == set(AGENTS)
    # Agent 1 answered a second late: its flow was ended before it could connect (it would
    # have found the queue empty); agent 3 still rang.
    assert "calling.connect" not in placed[AGENTS[0]].commands
    assert "calling.connect" not in placed[AGENTS[2]].commands
    assert all(leg.ended for leg in placed.values())
    assert len(sim.core.queues.taken) == 1


async def test_the_caller_who_gives_up_ends_every_agent_call(tmp_path: Path) -> None:
    line = variant(LINE, ("strategy: serial ", "strategy: parallel "))
    run, sim = await run_line(tmp_path, ["noanswer", "answer:3", "noanswer"],
                              caller="hangup@queue:10", line=line)
    assert run.path() == [("greet", "answered"), ("wait_for_agent", "hangup")]
    assert not sim.core.queues.taken
    assert all(leg.ended for leg in legs(sim).values())
    assert [o for _, o, _ in called(run)] == ["cancelled", "answered", "cancelled"]


async def test_nobody_takes_the_caller_before_max_wait(tmp_path: Path) -> None:
    run, _ = await run_line(tmp_path, ["busy", "noanswer", "answer:2"], caller="speak:1")
    assert ("wait_for_agent", "timeout") in run.path()
    assert [o for _, o, _ in called(run)] == ["busy", "no_answer", "answered"]
    assert run.report.trace[1].duration == pytest.approx(120, abs=1)


async def test_an_unknown_flow_is_an_error_at_run_time(tmp_path: Path) -> None:
    line = variant(LINE, ("flow: agent_callout", "flow: nobody_here"))
    run, sim = await run_line(tmp_path, ["answer", "answer", "answer"], line=line)
    assert run.report.trace[1].outcome == "error"
    assert "nobody_here" in (run.report.trace[1].error or "")
    assert not legs(sim) and not sim.core.queues.entered


@pytest.mark.parametrize(("edit", "where", "message"), [
    (('"+15550100002"', '"5550100002"'), (19, 35),
     "'5550100002' is not an E.164 number"),
    (("strategy: serial ", "strategy: random "), (20, 19), "must be one of serial, parallel"),
    (("ring: 20", "ring: 2"), (21, 15), "ring"),
    (("        flow: agent_callout\n", ""), (17, 7), "flow"),
    (("ring: 20", 'ring: 20\n        from: "{{ call.to }}"'), (22, 15), "invalid value"),
])
def test_check_refuses_a_bad_call_agents(edit: tuple[str, str], where: tuple[int, int],
                                         message: str) -> None:
    result = compile_flow(variant(LINE, edit), "sales_line.yaml")
    errors = [d for d in result.diagnostics if d.severity == "error"]
    assert len(errors) == 1, [str(d) for d in result.diagnostics]
    assert (errors[0].line, errors[0].col) == where and message in errors[0].message


def test_the_examples_check_clean() -> None:
    for name in ("sales_line.yaml", "agent_callout.yaml"):
        result = compile_flow((FLOWS / name).read_text(), name)
        assert not result.diagnostics, [str(d) for d in result.diagnostics]


RACE = """
name: race
context: sales
steps:
  greet:
    answer: {}
  route:
    branch:
      - when: call.from == '+15550109999'
        goto: later
      - goto: first
  first:
    enqueue:
      queue: sales
      max_wait: 120
      call_agents: {flow: agent_callout, numbers: ["+15550100002"]}
    next: null
  later:
    sleep: 1
  second:
    enqueue:
      queue: sales
      max_wait: 10
      call_agents: {flow: agent_callout, numbers: ["+15550100001"]}
    next: null
"""


async def test_an_agent_who_took_another_caller_is_not_cut_off(tmp_path: Path) -> None:
    # The first caller's agent does not answer; the second caller's agent presses 1 and
    # takes the caller at the head of the queue: the first caller. When the second
    # caller's wait ends (max_wait 10 s), that agent's call, talking with the first
    # caller, is left to go on: the first caller talks until they hang up (30 s).
    write_flow(tmp_path, CALLOUT, "agent_callout.yaml")
    runtime = FlowRuntime(write_flow(tmp_path, RACE, "race.yaml"))
    async with simulated(["sales"]) as (sim, client):
        sim.set_callee(AGENTS[0], "answer:1,digits:1")
        sim.set_callee(AGENTS[1], "noanswer")
        first = sim.offer_call(context="sales", from_number="+15550108888",
                               caller="hangup@connect:30")
        second = sim.offer_call(context="sales", from_number="+15550109999",
                                caller="speak:1")
        with anyio.fail_after(3600):
            reports = {r.trace[0].call_id: r for r in await run_calls(runtime, client, 2)}
        await first.wait_ended()
        await second.wait_ended()
        summary = sim.summary()
    assert summary["active"] == 0 and summary["leaked"] == 0
    one, two = reports[first.call_id], reports[second.call_id]
    taken = sim.core.queues.taken
    assert [t.caller for t in taken] == [first.call_id]
    # The first caller hung up on the agent (outcome hangup), 30 s into the talk: the
    # agent was not cut off when the second caller's wait ended.
    assert [(e.step, e.outcome) for e in one.trace][-1] == ("first", "hangup")
    assert [a["outcome"] for a in one.steps["first"]["agents_called"]] == ["cancelled"]
    assert one.steps["first"]["agent_call_id"] == taken[0].agent
    assert [(e.step, e.outcome) for e in two.trace][-1] == ("second", "timeout")
    assert two.steps["second"]["agents_called"] == [
        {"to": AGENTS[0], "outcome": "answered", "reason": None, "took_caller": False}]
    # The second caller's step waited for that conversation to end.
    assert two.trace[-1].duration > 30
