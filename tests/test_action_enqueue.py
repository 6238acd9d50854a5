"""enqueue and connect: {queue: NAME}: callers wait in a queue, agents take them.

Two flows on one simulator, each on its own RELAY client, as two daemons (or one serving
both flows) would run them: flows/support_line.yaml for the callers and flows/agent.yaml for
the agents. The simulator keeps the queue (sim/queues.py) and records who was taken by whom.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest

from flowengine.engine import FlowRuntime, SessionReport
from flowengine.engine.runner import run_calls
from flowengine.flow import compile_flow
from flowengine.relay import RelayClient, RelayConfig
from flowengine.sim import Simulator
from tests.flowtools import FLOWS, TIME_SCALE, variant, write_flow

pytestmark = pytest.mark.anyio

SUPPORT = (FLOWS / "support_line.yaml").read_text()
AGENT = (FLOWS / "agent.yaml").read_text()
NUMBER = re.compile(r"You are number (\d+) in the queue")


async def run_line(tmp_path: Path, callers: list[str], agents: list[str], *,
                   support: str = SUPPORT, agent: str = AGENT,
                   agents_at: float = 0.0) -> tuple[dict[str, SessionReport],
                                                    dict[str, SessionReport], Simulator,
                                                    list[Any], list[Any]]:
    """Run ``callers`` (caller scripts) through the support line and ``agents`` through
    the agent flow, all on one simulator; the reports by call id."""
    line = FlowRuntime(write_flow(tmp_path, support, "support_line.yaml"))
    desk = FlowRuntime(write_flow(tmp_path, agent, "agent.yaml"))
    async with Simulator(port=0, project="p", token="t", time_scale=TIME_SCALE) as sim:
        config = RelayConfig(url=sim.url, project="p", token="t")
        caller_calls = [sim.offer_call(context="helpdesk", from_number=f"+1555010{i:04}",
                                       caller=script) for i, script in enumerate(callers)]
        results: dict[str, list[SessionReport]] = {}
        async with RelayClient(config, ["helpdesk"]) as c1, RelayClient(config, ["agents"]) as c2:

            async def run(name: str, runtime: FlowRuntime, client: RelayClient,
                          count: int) -> None:
                results[name] = (await run_calls(runtime, client, count, time_scale=TIME_SCALE)
                                 if count else [])

            async def offer_agents() -> list[Any]:
                await anyio.sleep(agents_at * TIME_SCALE)
                return [sim.offer_call(context="agents", from_number=f"+1555020{i:04}",
                                       caller=script) for i, script in enumerate(agents)]

            agent_calls: list[Any] = []
            with anyio.fail_after(20):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(run, "callers", line, c1, len(callers))
                    tg.start_soon(run, "agents", desk, c2, len(agents))
                    agent_calls.extend(await offer_agents())
        for call in caller_calls + agent_calls:
            await call.wait_ended(timeout=10)

    def by_id(reports: list[SessionReport]) -> dict[str, SessionReport]:
        return {r.trace[0].call_id: r for r in reports}

    return by_id(results["callers"]), by_id(results["agents"]), sim, caller_calls, agent_calls


def announced(report: SessionReport) -> list[int]:
    """The positions a caller was told, in order."""
    return [int(m[1]) for e in report.trace for item in e.played or ()
            if "say" in item for m in [NUMBER.search(item["say"])] if m]


def told(call: Any) -> list[int]:
    """Every position the simulator gave the call, in order."""
    return [p["position"] for t, p in call.events if t == "calling.call.queue"]


def steps(report: SessionReport) -> list[tuple[str, str]]:
    return [(e.step, e.outcome) for e in report.trace]


async def test_thirty_callers_three_agents_taken_in_arrival_order_or_to_voicemail(
        tmp_path: Path) -> None:
    # Each conversation lasts 20 s: three agents get through about 24 callers within
    # a max_wait of 150 s; the others time out into voicemail.
    callers = ["digits:1,hangup@connect:20,speak:2"] * 30
    agent = variant(AGENT, ("max_visits: 30", "max_visits: 45"))
    support = variant(SUPPORT, ("max_wait: 300", "max_wait: 150"))
    reports, agent_reports, sim, calls, agents = await run_line(
        tmp_path, callers, ["digits:1"] * 3, agent=agent, support=support)
    entered = [cid for queue, cid in sim.core.queues.entered if queue == "support"]
    taken = [t.caller for t in sim.core.queues.taken]
    assert sorted(entered) == sorted(c.call_id for c in calls)
    # Nobody is bridged twice, and callers are taken in the order they entered.
    assert len(taken) == len(set(taken))
    assert taken == entered[:len(taken)]
    assert 0 < len(taken) < 30
    for call in calls:
        report = reports[call.call_id]
        path = steps(report)
        if call.call_id in taken:
            assert ("wait_for_agent", "hangup") in path, path
            assert "take_message" not in [s for s, _ in path]
        else:
            assert ("wait_for_agent", "timeout") in path, path
            assert ("take_message", "finished") in path, path
            assert report.steps["wait_for_agent"]["wait_time"] == pytest.approx(150, abs=30)
        # The positions announced are the true ones: each was the latest the simulator
        # had given this call, and the first is the place it entered at.
        said, given = announced(report), told(call)
        assert said and said[0] == given[0] == entered.index(call.call_id) + 1
        assert all(p in given for p in said)
        assert said == sorted(said, reverse=True)
    # Every agent conversation was with a distinct caller; an agent talks to one at a time.
    peers = [e.result["peer"] for r in agent_reports.values() for e in r.trace
             if e.step == "next_caller" and e.outcome == "disconnected"]
    assert len(peers) == len(taken) == len(set(peers))
    by_agent: dict[str, int] = {}
    for t in sim.core.queues.taken:
        by_agent[t.agent] = by_agent.get(t.agent, 0) + 1
    assert set(by_agent) == {a.call_id for a in agents}


async def test_a_caller_who_hangs_up_while_queued_moves_the_others_up(tmp_path: Path) -> None:
    # No agent at first: three callers wait; the first gives up after 40 s; the agent
    # comes at 100 s and takes the two others, in order.
    callers = ["digits:1,hangup@queue:40", "digits:1,hangup@connect:5",
               "digits:1,hangup@connect:5"]
    agent = variant(AGENT, ("max_visits: 30", "max_visits: 3"))
    reports, _, sim, calls, _ = await run_line(tmp_path, callers, ["digits:1"], agent=agent,
                                               agents_at=100)
    gave_up = calls[0]
    entered = [cid for _, cid in sim.core.queues.entered]
    assert ("wait_for_agent", "hangup") in steps(reports[gave_up.call_id])
    behind = [c for c in calls if entered.index(c.call_id) > entered.index(gave_up.call_id)]
    for call in behind:
        said = announced(reports[call.call_id])
        # Told its place at entry; once the caller ahead hung up, one place further up.
        assert said[0] - 1 in said, (said, told(call))
        assert told(call)[-1] == 1
    waiting = [cid for cid in entered if cid != gave_up.call_id]
    assert [t.caller for t in sim.core.queues.taken] == waiting


async def test_star_leaves_the_queue_for_voicemail(tmp_path: Path) -> None:
    reports, _, sim, calls, _ = await run_line(tmp_path, ["digits:1/*,speak:3"], [],
                                               support=SUPPORT)
    report = reports[calls[0].call_id]
    assert ("wait_for_agent", "left") in steps(report)
    assert report.steps["wait_for_agent"]["key"] == "*"
    assert ("take_message", "finished") in steps(report)
    assert sim.core.queues.size("support") == 0 and not sim.core.queues.taken
    assert told(calls[0]) == [1, 1]   # enqueued, then left


async def test_an_agent_finds_the_queue_empty(tmp_path: Path) -> None:
    agent = variant(AGENT, ("max_visits: 30", "max_visits: 2"))
    _, agents, _, _, calls = await run_line(tmp_path, [], ["digits:1"], agent=agent)
    path = steps(agents[calls[0].call_id])
    assert path[:4] == [("greet", "answered"), ("ready", "digit"), ("next_caller", "empty"),
                        ("nobody_waits", "finished")]
    assert agents[calls[0].call_id].trace[3].params["media"][0]["say"] == (
        "Nobody is waiting. 0 callers in the queue.")


def test_check_refuses_bad_enqueue_parameters(tmp_path: Path) -> None:
    flow = variant(SUPPORT, ('leave_on: "*"', 'leave_on: "x"'))
    result = compile_flow(flow, "support_line.yaml")
    assert any("'x' is not a set of keys" in d.message for d in result.diagnostics)
    flow = variant(SUPPORT, ('      leave_on: "*"\n', ""))
    result = compile_flow(flow, "support_line.yaml")
    assert any("left only with leave_on" in (d.hint or "") for d in result.diagnostics), \
        [str(d) for d in result.diagnostics]
    flow = variant(AGENT, ("connect: {queue: support}", "connect: {queue: support, to: '+1'}"))
    result = compile_flow(flow, "agent.yaml")
    assert any("connect takes queue: or to:, not both" in d.message
               for d in result.diagnostics)


async def test_serve_exports_the_queue_figures_in_metrics(tmp_path: Path) -> None:
    from tests.test_daemon import serving, simulator
    from tests.test_daemon_ops import http_get, samples

    (tmp_path / "support_line.yaml").write_text(SUPPORT)
    (tmp_path / "agent.yaml").write_text(variant(AGENT, ("max_visits: 30", "max_visits: 2")))
    queue = (("queue", "support"),)
    async with simulator() as sim, serving(sim, [tmp_path], metrics_port=0) as daemon:
        port = daemon.metrics_port
        assert isinstance(port, int)
        callers = [sim.offer_call("helpdesk", caller="digits:1,hangup@connect:5")
                   for _ in range(3)]
        with anyio.fail_after(10):
            while sim.core.queues.size("support") < 3:
                await anyio.sleep(0.01)
            while True:
                found = samples((await http_get(port, "/metrics"))[2])
                if found.get(("flowengine_queue_waiting", queue)) == 3:
                    break
                await anyio.sleep(0.01)
        assert found[("flowengine_queue_size", queue)] == 3
        assert found[("flowengine_queue_expected_wait_seconds", queue)] == 0
        agent = sim.offer_call("agents", caller="digits:1")
        for call in callers:
            await call.wait_ended(timeout=10)
        await agent.wait_ended(timeout=10)
        found = samples((await http_get(port, "/metrics"))[2])
    assert found[("flowengine_queue_waiting", queue)] == 0
    assert found[("flowengine_queue_size", queue)] == 0
    assert found[("flowengine_queue_callers_total", (*queue, ("result", "taken")))] == 3
    assert found[("flowengine_queue_callers_total", (*queue, ("result", "left")))] == 0
    assert found[("flowengine_queue_expected_wait_seconds", queue)] > 0
    assert [t.caller for t in sim.core.queues.taken] == [
        cid for _, cid in sim.core.queues.entered]


def test_queue_figures_outside_an_announcement_are_none_and_functions_read_the_board(
        tmp_path: Path) -> None:
    from flowengine.flow.templates import QUEUE_BOARD, render
    from flowengine.relay import QueueBoard

    flow = compile_flow(variant(AGENT, (
        "Nobody is waiting. {{ queue_size('support') }} callers in the queue.",
        "[{{ queue.position }}] {{ queue_size('support') }} waiting, about "
        "{{ queue_wait('support') }} s")), "agent.yaml").version
    assert flow is not None
    media = flow.steps["nobody_waits"].params["media"]
    board = QueueBoard()
    context: dict[str, Any] = {"call": {}, "steps": {}, "vars": {}, "flow": {},
                               QUEUE_BOARD: board}
    assert render(media, context)[0]["say"] == "[] 0 waiting, about  s"
    board.get("support").size = 4
    board.record_wait("support", 50)
    board.record_wait("support", 71)
    assert render(media, context)[0]["say"] == "[] 4 waiting, about 60 s"


def test_the_shorthand_names_the_queue_and_check_knows_its_outcomes() -> None:
    flow = textwrap.dedent("""\
        name: short
        context: support
        steps:
          greet:
            answer: {}
          wait:
            enqueue: support
            on: {left: bye}
          bye:
            hangup: {}
        """)
    result = compile_flow(flow, "short.yaml")
    assert [d.message for d in result.diagnostics] == [
        "enqueue cannot end with 'left'; its outcomes are connected, error, hangup"]
    ok = compile_flow(variant(flow, ("    on: {left: bye}\n", "")), "short.yaml")
    assert ok.version is not None and not ok.diagnostics
    assert ok.version.steps["wait"].params["queue"] == "support"
    assert ok.version.steps["wait"].params["announce_every"] == 30
