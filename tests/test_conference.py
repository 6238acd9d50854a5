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
    """Run every (from_number, caller script) through ``flow``; ``host``, the last caller
    (if any), is offered only once ``before_host`` participants (default: all the others)
    are in ``room``: a wait on the simulator's state, so the order is always the same."""
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


# -- the example flow -----------------------------------------------------------------------

async def test_conference_pin_guests_wait_alone_with_music_until_the_host_starts_it() -> None:
    guest1, guest2, host = "+15550000001", "+15550000002", "+15550000009"
    reports, calls, sim = await conference_calls(
        load_flow(FLOWS / "conference_pin.yaml"),
        [(guest1, "digits:1234"), (guest2, "digits:1234")],
        host=(host, "digits:9876,hangup@conference:20"), room="weekly-sync")
    number = {c.call_id: c.from_number for c in calls}
    conf = sim.core.conferences["weekly-sync"]
    first = conf.trace[0]
    # Alone, before the host: the first guest hears the wait music and nobody.
    assert (first["event"], number[first["call_id"]]) == ("join", guest1)
    assert first["hears"] == {calls[0].call_id: []}
    assert first["wait_media"] == {calls[0].call_id: "https://example.com/conference-wait.mp3"}
    start = next(e for e in conf.trace if e["event"] == "start")
    assert {number[k]: sorted(number[x] for x in v) for k, v in start["hears"].items()} == {
        guest1: [guest2, host], guest2: [guest1, host], host: [guest1, guest2]}
    runs = by_number(reports, calls)
    for guest in (guest1, guest2):
        assert [e.step for e in runs[guest].trace] == [
            "greet", "ask_pin", "which_pin", "guest", "conference_over", "goodbye", "bye"]
        assert runs[guest].steps["guest"]["name"] == "weekly-sync"
        assert runs[guest].steps["guest"]["reason"] == "ended"
    assert [(e.step, e.outcome) for e in runs[host].trace][-2:] == [
        ("host", "hangup"), ("left", "next")]
    assert runs[host].steps["host"]["recording_url"] == conf.recording.url


async def test_max_participants_turns_the_next_caller_away_as_full() -> None:
    flow = load_flow(FLOWS / "conference_pin.yaml")
    text = variant((FLOWS / "conference_pin.yaml").read_text(),
                   ("max_participants: 10", "max_participants: 2"))
    flow = compile_flow(text, str(FLOWS / "conference_pin.yaml")).version
    assert flow is not None
    reports, calls, sim = await conference_calls(
        flow, [("+15550000001", "digits:1234,hangup@conference:30"),
               ("+15550000002", "digits:1234,hangup@conference:30")],
        host=("+15550000003", "digits:1234"), room="weekly-sync")
    runs = by_number(reports, calls)
    late = runs["+15550000003"]
    assert [(e.step, e.outcome) for e in late.trace][3:] == [
        ("guest", "full"), ("full", "finished"), ("goodbye", "finished"), ("bye", "next")]
    assert late.steps["guest"]["reason"] == "full"
    conf = sim.core.conferences["weekly-sync"]
    assert [e["event"] for e in conf.trace] == ["join", "join", "full", "leave", "leave", "end"]
    assert not conf.started  # no host ever came


LEAVER = """
name: leaver
context: conference
steps:
  greet:
    answer: {}
  join:
    conference: {name: "desk-{{ call.from }}", wait: false}
  talk:
    sleep: 5
  out:
    leave_conference: {}
  after:
    play:
      - say: >-
          You left {{ steps.join.name }}
          ({{ steps.out.conference_id == steps.join.conference_id }}).
"""


async def test_wait_false_joins_and_goes_on_then_leave_conference_takes_the_caller_out() -> None:
    reports, calls, sim = await conference_calls(flow_of(LEAVER), [("+15550000001", "speak:1")])
    [report] = reports
    assert [(e.step, e.outcome) for e in report.trace] == [
        ("greet", "answered"), ("join", "joined"), ("talk", "finished"), ("out", "left"),
        ("after", "finished")]
    conf = sim.core.conferences["desk-+15550000001"]
    assert [(e["event"], e["wait_media"]) for e in conf.trace] == [
        ("join", {calls[0].call_id: "hold-music"}), ("start", {calls[0].call_id: "hold-music"}),
        ("leave", {}), ("end", {})]
    assert report.trace[-1].params["media"][0]["say"] == "You left desk-+15550000001 (True)."
    assert "calling.leave_conference" in calls[0].commands


async def test_a_flow_that_ends_in_a_conference_keeps_the_caller_in_until_it_ends() -> None:
    flow = flow_of(variant(LEAVER, ("  out:\n    leave_conference: {}\n", ""),
                           ("sleep: 5", "sleep: 1"),
                           ("({{ steps.out.conference_id == steps.join.conference_id }})",
                            "")))
    reports, calls, sim = await conference_calls(
        flow, [("+15550000001", "hangup@conference:8")])
    [report] = reports
    assert [e.step for e in report.trace] == ["greet", "join", "talk", "after"]
    # The caller stayed in until they hung up: the flow did not hang up on them.
    assert calls[0].end_reason == "hangup" and "calling.end" not in calls[0].commands
    conf = sim.core.conferences["desk-+15550000001"]
    leave = next(e for e in conf.trace if e["event"] == "leave")
    assert leave["at"] >= 8


async def test_a_step_timeout_takes_the_caller_out_of_the_conference() -> None:
    flow = flow_of(variant(ROLES, ("    conference: {name: room, end_on_exit: true, "
                                   "record: true}\n",
                                   "    conference: {name: room, end_on_exit: true}\n"
                                   "    timeout: 10\n"),
                           ("on: {ended: over, left: over, full: over}\n  guest:",
                            "on: {ended: over, left: over, full: over, timeout: over}\n  guest:")))
    reports, calls, sim = await conference_calls(flow, [("+15550000001", "digits:1")])
    [report] = reports
    assert [(e.step, e.outcome) for e in report.trace][-2:] == [("host", "timeout"),
                                                                 ("over", "finished")]
    assert report.steps["host"]["reason"] == "left"
    conf = sim.core.conferences["room"]
    assert [e["event"] for e in conf.trace] == ["join", "start", "leave", "end"]
    assert "calling.leave_conference" in calls[0].commands


# -- the simulator, frame by frame ------------------------------------------------------------

def test_the_simulator_refuses_bad_joins_and_leaves(core: SimCore, peer: Peer) -> None:
    call, ids = answered_call(core, peer, "speak:3")
    ringing = core.offer_call("office", caller="speak:3")
    peer.frames()
    code = lambda method, params: peer.request(method, params)["result"]["code"]  # noqa: E731
    assert code("calling.join_conference", {"node_id": ringing.node_id,
                                            "call_id": ringing.call_id, "name": "r"}) == "409"
    assert code("calling.join_conference", {**ids}) == "400"
    assert code("calling.join_conference", {**ids, "name": "r", "beep": "loud"}) == "400"
    assert code("calling.join_conference", {**ids, "name": "r", "max_participants": 1}) == "400"
    assert code("calling.join_conference", {**ids, "name": "r", "record": "yes"}) == "400"
    assert code("calling.leave_conference", {**ids, "conference_id": "nope"}) == "409"
    reply = peer.request("calling.join_conference", {**ids, "name": "r"})["result"]
    assert reply["code"] == "200" and reply["conference_id"]
    assert code("calling.join_conference", {**ids, "name": "other"}) == "409"
    assert [p["status"] for t, p in events(peer.frames())] == [
        "participant-join", "conference-start"]
    assert code("calling.leave_conference", {**ids,
                                             "conference_id": reply["conference_id"]}) == "200"
    left = events(peer.frames())
    assert [(p["status"], p.get("reason"), p.get("call_id")) for t, p in left] == [
        ("participant-leave", "left", call.call_id), ("conference-end", None, None)]


# -- check -------------------------------------------------------------------------------------

def findings(text: str) -> list[str]:
    return [str(d) for d in compile_flow(textwrap.dedent(text), "t.yaml").diagnostics]


def test_check_knows_the_conference_parameters_and_warns_about_odd_ones() -> None:
    assert findings("""\
        name: t
        steps:
          a:
            conference: {name: r, coach: "{{ call.id }}", muted: true}
          b:
            conference: {name: r, wait: false}
          e:
            conference: r
            on: {joined: a}
        """) == [
        "t.yaml:4:51: warning: conference in step 'a': a muted coach is heard by nobody, not "
        "even the participant it coaches; remove muted: true",
        "t.yaml:6:27: warning: conference in step 'b' does not wait, and no step leaves the "
        "conference: the call stays in it until the conference or the call ends; add a "
        "leave_conference step, or remove wait: false",
        "t.yaml:9:10: error: conference cannot end with 'joined'; its outcomes are ended, left, "
        "full, error, hangup; a conference ends with joined only with wait: false",
    ]
    assert findings("""\
        name: t
        steps:
          c:
            conference: {name: r, beep: sometimes}
        """) == ["t.yaml:4:33: error: beep in conference must be one of true, false, on_enter, "
                 "on_exit, not the text 'sometimes'"]
