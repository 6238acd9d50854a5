"""connect over the simulator: bridging to the first device that answers, in series and in
parallel; every outcome; the flow going on after the peer leaves; wait: false."""

from __future__ import annotations

import pytest

from tests.flowtools import run_flow, variant, write_flow

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

TRANSFER = """
name: transfer
context: office
steps:
  greet:
    answer: {{}}
  transfer:
    connect:
{connect}
    on:
      failed: failed
  after:
    play: [{{say: "Your call has ended. Anything else?"}}]
    next: null
  failed:
    log: "failed: {{{{ steps.transfer.reason }}}}"
"""

SERIES = """      devices: ["+15550001111", ["+15550002222", "+15550003333"]]
      from: "+15559870000"
      ringback: [{ringtone: us, duration: 30}]"""


def flow(tmp_path, connect: str = SERIES, **extra: str):
    return write_flow(tmp_path, variant(TRANSFER.format(connect=connect), *extra.items()))


def connect_states(run) -> list[str]:
    return [p["connect_state"] for t, p in run.sim_calls[0].events if t == "calling.call.connect"]


async def test_the_first_to_answer_is_bridged_and_the_flow_goes_on_when_the_peer_leaves(tmp_path):
    run = await run_flow(flow(tmp_path), "peer:answer:20")
    assert run.path() == [("greet", "answered"), ("transfer", "disconnected"),
                          ("after", "finished")]
    assert run.report.steps["transfer"] == {"peer": "+15550001111", "reason": None}
    assert connect_states(run) == ["connecting", "connected", "disconnected"]
    assert not run.report.caller_hung_up
    assert run.sim_calls[0].end_reason == "hangup"


async def test_a_busy_device_is_followed_by_the_next_group_which_rings_in_parallel(tmp_path):
    # 0001 busy; then 0002 never answers while 0003 does: 0003 wins.
    run = await run_flow(flow(tmp_path), "peer:busy/noanswer/answer:5")
    assert run.path()[1] == ("transfer", "disconnected")
    assert run.report.steps["transfer"]["peer"] == "+15550003333"


@pytest.mark.parametrize(("peers", "reason"), [
    ("peer:busy/busy/busy", "busy"),
    ("peer:noanswer/noanswer/noanswer", "noAnswer"),
    ("peer:decline/busy/decline", "decline"),
])
async def test_no_device_answering_is_failed_with_the_reason(tmp_path, peers, reason):
    run = await run_flow(flow(tmp_path), peers)
    assert run.path() == [("greet", "answered"), ("transfer", "failed"), ("failed", "next")]
    assert run.report.steps["transfer"] == {"peer": None, "reason": reason}
    assert connect_states(run) == ["connecting", "failed"]


async def test_the_caller_hanging_up_while_bridged_is_hangup(tmp_path):
    run = await run_flow(flow(tmp_path), "peer:answer:60,hangup@connect:5")
    assert run.path() == [("greet", "answered"), ("transfer", "hangup")]
    assert run.report.caller_hung_up
    # RELAY reports the end of the bridge before the end of the call.
    kinds = [(t, p.get("connect_state") or p.get("call_state")) for t, p in run.sim_calls[0].events
             if t in ("calling.call.connect", "calling.call.state")]
    assert kinds[-3:] == [("calling.call.state", "ending"),
                          ("calling.call.connect", "disconnected"),
                          ("calling.call.state", "ended")]


async def test_the_step_timeout_ends_the_bridge_and_the_caller_stays(tmp_path):
    run = await run_flow(flow(tmp_path, **{"    on:\n      failed: failed":
                                           "    timeout: 30\n    on:\n      failed: failed"}),
                         "peer:answer:600")
    assert run.path() == [("greet", "answered"), ("transfer", "timeout"), ("after", "finished")]
    assert "calling.disconnect" in run.sim_calls[0].commands
    assert connect_states(run)[-1] == "disconnected"


async def test_wait_false_ends_connected_and_the_call_stays_up_until_the_bridge_ends(tmp_path):
    text = """
name: hand_over
context: office
steps:
  greet:
    answer: {}
  transfer:
    connect: {to: "+15550001111", wait: false}
  note:
    log: "connected to {{ steps.transfer.peer }}"
"""
    run = await run_flow(write_flow(tmp_path, text), "peer:answer:20")
    assert run.path() == [("greet", "answered"), ("transfer", "connected"), ("note", "next")]
    assert run.report.steps["note"]["text"] == "connected to +15550001111"
    call = run.sim_calls[0]
    # The flow ended while the two talked: the engine hung up only after the peer left.
    events = [(t, p.get("connect_state") or p.get("call_state")) for t, p in call.events]
    assert events.index(("calling.call.connect", "disconnected")) < events.index(
        ("calling.call.state", "ending"))
    assert call.commands[-1] == "calling.end"


async def test_a_relay_failure_and_a_bad_number_are_errors(tmp_path):
    run = await run_flow(flow(tmp_path), "speak:1",
                         setup=lambda sim: sim.fail_next("calling.connect", "500"))
    assert run.path()[1] == ("transfer", "error")
    bad = flow(tmp_path, connect='      to: "{{ call.from }}x"')
    run = await run_flow(bad, "speak:1")
    assert run.path()[1] == ("transfer", "error")
    assert "not a phone number" in run.report.trace[1].error
    assert "calling.connect" not in run.sim_calls[0].commands
