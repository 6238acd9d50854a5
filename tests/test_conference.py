"""Conferences: the conference / leave_conference steps over the simulator's conferences.

Several inbound calls run the same flow, each with its own caller script; the simulator
keeps who hears whom after every change (``SimConference.trace``), which is what these
tests assert: a muted participant is heard by nobody, a coach only by the participant it
coaches, a caller alone hears the wait media, and the host's leaving ends it for all.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from flowengine.engine import FlowRuntime, SessionReport
from flowengine.engine.runner import run_calls
from flowengine.flow import FlowVersion, compile_flow, load_flow
from flowengine.relay import RelayClient, RelayConfig
from flowengine.sim import SimCore, Simulator
from tests.flowtools import FLOWS, TIME_SCALE, variant
from tests.simpeer import Peer, answered_call, events

pytestmark = pytest.mark.anyio

ROLES = """
name: roles
context: conference
on_hangup: gone
steps:
  greet:
    answer: {}
  pin:
    prompt:
      play: [{say: "Your role?"}]
      digits: {max: 1}
  role:
    branch:
      - when: steps.pin.digits == '1'
        goto: host
      - when: steps.pin.digits == '2'
        goto: guest
      - when: steps.pin.digits == '3'
        goto: listener
      - goto: coach
  host:
    conference: {name: room, end_on_exit: true, record: true}
    on: {ended: over, left: over, full: over}
  guest:
    conference: {name: room, start_on_enter: false, wait_url: "https://example.com/wait.mp3"}
    on: {ended: over, left: over, full: over}
  listener:
    conference: {name: room, start_on_enter: false, muted: true}
    on: {ended: over, left: over, full: over}
  coach:
    conference: {name: room, start_on_enter: false, coach: "{{ call.sip_headers['X-Coach'] }}"}
    on: {ended: over, left: over, full: over}
  over:
    play: [{say: "The conference is over."}]
    next: null
  gone:
    log: "gone"
"""


def flow_of(text: str) -> FlowVersion:
    result = compile_flow(textwrap.dedent(text), "roles.yaml")
    assert result.version is not None, [str(d) for d in result.diagnostics]
    return result.version


async def until(check: Callable[[], bool], what: str) -> None:
    """Wait (a hang guard, not a timing) until ``check()`` holds."""
    with anyio.fail_after(20):
        while not check():
            await anyio.sleep(0.005)


async def conference_calls(flow: FlowVersion, callers: list[tuple[str, str]], *,
                           host: tuple[str, str] | None = None,
                           room: str = "room", before_host: int | None = None,
                           setup: Callable[[Simulator], Any] | None = None,
                           ) -> tuple[list[SessionReport], list[Any], Simulator]:
    """Run every (from_number, caller script) through ``flow``; the host (if any) is offered
    only once ``before_host`` participants (default: all the others) are in ``room``."""
    runtime = FlowRuntime(flow)
    total = len(callers) + (host is not None)
    async with Simulator(port=0, project="p", token="t", time_scale=TIME_SCALE) as sim:
        if setup is not None:
            setup(sim)
        async with RelayClient(RelayConfig(url=sim.url, project="p", token="t"),
                               flow.contexts) as client:
            sim_calls: list[Any] = []
            async with anyio.create_task_group() as tg:
                reports: list[SessionReport] = []

                async def run() -> None:
                    reports.extend(await run_calls(runtime, client, total,
                                                   time_scale=TIME_SCALE))

                tg.start_soon(run)
                for number, script in callers:
                    sim_calls.append(sim.offer_call("conference", from_number=number,
                                                    caller=script.format(*sim_calls)))
                if host is not None:
                    need = len(callers) if before_host is None else before_host
                    await until(lambda: room in sim.core.conferences.live and len(
                        sim.core.conferences.live[room].participants) >= need, "guests in")
                    sim_calls.append(sim.offer_call("conference", from_number=host[0],
                                                    caller=host[1]))
            for call in sim_calls:
                await call.wait_ended(timeout=10)
        return reports, sim_calls, sim


def by_number(reports: list[SessionReport], sim_calls: list[Any]) -> dict[str, SessionReport]:
    ids = {c.call_id: c.from_number for c in sim_calls}
    return {ids[r.trace[0].call_id]: r for r in reports}


async def test_five_participants_muted_coach_and_the_host_ending_it_for_all() -> None:
    guest, agent, listener, coach = ("+15550000001", "+15550000002", "+15550000003",
                                     "+15550000004")
    host = "+15550000009"
    # The coach coaches the agent: its script carries the agent's call id in a SIP header
    # ({1} is the second call offered), which the flow reads as call.sip_headers.
    callers = [(guest, "digits:2"), (agent, "digits:2"), (listener, "digits:3"),
               (coach, "digits:4,header:X-Coach={1.call_id}")]
    reports, calls, sim = await conference_calls(
        flow_of(ROLES), callers, host=(host, "digits:1,hangup@conference:30"))
    number = {c.call_id: c.from_number for c in calls}
    conf = sim.core.conferences["room"]
    assert conf.ended and not conf.participants

    def hears(entry: dict[str, Any]) -> dict[str, list[str]]:
        return {number[k]: sorted(number[v] for v in vs) for k, vs in entry["hears"].items()}

    started = [e for e in conf.trace if e["event"] == "start"]
    assert len(started) == 1 and started[0]["call_id"] is None
    # Before the host came in, nobody heard anybody: they all heard the wait media.
    before = conf.trace[conf.trace.index(started[0]) - 1]
    assert before["event"] == "join" and number[before["call_id"]] == host
    assert all(v == [] for v in hears(before).values())
    assert {number[k]: v for k, v in before["wait_media"].items()} == {
        guest: "https://example.com/wait.mp3", agent: "https://example.com/wait.mp3",
        listener: "hold-music", coach: "hold-music", host: "hold-music"}
    # Once started: five in; the muted listener is heard by no one, the coach by the agent
    # only; everyone hears the others.
    assert hears(started[0]) == {
        guest: sorted([agent, host]),
        agent: sorted([coach, guest, host]),
        listener: sorted([agent, guest, host]),
        coach: sorted([agent, guest, host]),
        host: sorted([agent, guest]),
    }
    assert started[0]["wait_media"] == {}
    # The host hung up: everyone else was taken out (reason ended) and the conference ended.
    leave = [e for e in conf.trace if e["event"] == "leave"]
    assert [number[e["call_id"]] for e in leave] == [host]
    assert conf.trace[-1]["event"] == "end"
    runs = by_number(reports, calls)
    for who in (guest, agent, listener, coach):
        path = [(e.step, e.outcome) for e in runs[who].trace]
        assert path[-2:] == [(path[-2][0], "ended"), ("over", "finished")], (who, path)
        assert runs[who].steps[path[-2][0]]["conference_id"] == conf.conference_id
    host_path = [(e.step, e.outcome) for e in runs[host].trace]
    assert host_path[-2:] == [("host", "hangup"), ("gone", "next")]
    # The host recorded the conference: the url is in the others' results too.
    assert conf.recording is not None and conf.recording.finished
    assert runs[guest].steps["guest"]["recording_url"] == conf.recording.url
    # Every participant's client heard its own join and leave, and the start and the end.
    for call in calls:
        statuses = [p["status"] for t, p in call.events if t == "calling.conference"]
        assert statuses[0] == "participant-join" and "participant-leave" in statuses
