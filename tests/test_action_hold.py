"""hold / unhold: the caller waits on hold music while the flow works, then is taken back.

Run over the real simulator: it answers calling.hold / calling.unhold and sends
calling.call.hold (state hold / unhold) as RELAY does; the caller script's hangup@hold is a
caller who gives up on hold.
"""

from __future__ import annotations

import textwrap

import anyio
import pytest

from flowengine.flow import compile_flow
from flowengine.relay import RelayClient
from flowengine.sim import SimCore, Simulator
from flowengine.testing import connector
from tests.flowtools import run_flow, write_flow
from tests.simpeer import Peer, answered_call, events
from tests.test_relay_client import PROJECT, TOKEN, config_for, next_call

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

FLOW = """
name: hold_music
context: office
on_hangup: gone
steps:
  greet:
    answer: {}
  wait:
    hold: {}
  look_up:
    sleep: 2
  back:
    unhold:
  thanks:
    play: [{say: "Thanks for holding ({{ steps.wait.state }}, {{ steps.back.state }})"}]
    next: null
  gone:
    log: "gave up on hold"
"""


def holds(call) -> list[str]:
    return [p["state"] for t, p in call.events if t == "calling.call.hold"]


async def test_the_caller_is_held_while_the_flow_works_then_taken_back(tmp_path):
    run = await run_flow(write_flow(tmp_path, FLOW), "speak:3")
    assert run.path() == [("greet", "answered"), ("wait", "held"), ("look_up", "finished"),
                          ("back", "unheld"), ("thanks", "finished")]
    [call] = run.sim_calls
    commands = [c for c in call.commands if c in ("calling.hold", "calling.unhold",
                                                  "calling.play")]
    assert commands == ["calling.hold", "calling.unhold", "calling.play"]
    assert holds(call) == ["hold", "unhold"]
    assert (call.holds, call.on_hold) == (1, False)
    assert run.report.trace[1].method == "calling.hold"
    played = run.report.trace[4].params["media"][0]["say"]
    assert played == "Thanks for holding (hold, unhold)"


async def test_a_caller_who_hangs_up_on_hold_takes_the_hangup_path(tmp_path):
    run = await run_flow(write_flow(tmp_path, FLOW), "hangup@hold:1")
    assert run.path() == [("greet", "answered"), ("wait", "held"), ("look_up", "hangup"),
                          ("gone", "next")]
    [call] = run.sim_calls
    assert call.on_hold and call.end_reason == "hangup"
    assert "calling.unhold" not in call.commands


async def test_a_relay_failure_is_the_error_outcome(tmp_path):
    run = await run_flow(write_flow(tmp_path, FLOW.replace("on_hangup: gone\n", "")),
                         "speak:3", setup=lambda sim: sim.fail_next("calling.hold", "500"))
    assert run.path()[:2] == [("greet", "answered"), ("wait", "error")]
    assert run.sim_calls[0].holds == 0


async def test_a_hold_whose_reply_was_lost_is_sent_again_and_holds_once() -> None:
    async with Simulator(project=PROJECT, token=TOKEN, listen=False) as sim:
        sim_call = sim.offer_call("office", caller="speak:3")
        async with RelayClient(config_for(sim), ["office"], connect=connector(sim)) as client:
            call = await next_call(client)
            await call.answer()
            sim.lose_next_reply("calling.hold")
            with anyio.fail_after(10):
                assert (await call.hold())["code"] == "200"
            assert client.reconnects == 1
            await call.hangup()
    assert sim_call.commands.count("calling.hold") == 2
    assert (sim_call.holds, holds(sim_call)) == (1, ["hold"])


# -- the simulator, frame by frame ------------------------------------------------------------

def test_the_simulator_holds_an_answered_call_once_and_refuses_a_ringing_one(
        core: SimCore, peer: Peer) -> None:
    call, ids = answered_call(core, peer, "speak:3")
    peer.frames()
    reply = peer.request("calling.hold", ids)
    assert reply["result"]["code"] == "200"
    assert [(t, p["state"]) for t, p in events(peer.frames())] == [("calling.call.hold", "hold")]
    assert peer.request("calling.hold", ids)["result"]["code"] == "200"   # already held
    assert events(peer.frames()) == []
    assert peer.request("calling.unhold", ids)["result"]["code"] == "200"
    assert [(t, p["state"]) for t, p in events(peer.frames())] == [
        ("calling.call.hold", "unhold")]
    assert (call.holds, call.on_hold) == (1, False)

    ringing = core.offer_call("office", caller="speak:3")
    peer.frames()
    assert peer.request("calling.hold", {"node_id": ringing.node_id,
                                         "call_id": ringing.call_id})["result"]["code"] == "409"


# -- check ------------------------------------------------------------------------------------

def findings(text: str) -> list[str]:
    return [str(d) for d in compile_flow(textwrap.dedent(text), "t.yaml").diagnostics]


def test_check_refuses_parameters_hold_does_not_take():
    assert findings("""\
        name: t
        steps:
          a:
            hold: {music: jazz}
          b:
            unhold: 3
        """) == [
        "t.yaml:4:12: error: unknown key 'music' in hold",
        "t.yaml:6:13: error: unhold must be a mapping or empty (null), not the "
        "number 3",
    ]


def test_check_knows_the_outcomes_of_hold():
    assert findings("""\
        name: t
        steps:
          a:
            hold: {}
            on: {finished: b}
          b:
            unhold: {}
        """) == ["t.yaml:5:10: error: hold cannot end with 'finished'; its outcomes are held, "
                 "error, hangup"]


def test_an_unhold_without_any_hold_is_a_warning():
    assert findings("""\
        name: t
        steps:
          a:
            answer: {}
          b:
            unhold: {}
        """) == ["t.yaml:6:5: warning: unhold in step 'b' takes the call off hold, but no "
                 "step of this flow puts it on hold; add a hold step before it, or remove it"]
