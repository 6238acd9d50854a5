"""``RelayClient.dial`` against the simulator over a real socket (§4.9, §5.9).

Each callee script gives its outcome; serial and parallel devices; the answered leg works
like an inbound call; a dial past its bound, a cancelled dial, a dropped link before the
reply and during the ringing: no leg is ever left up (the simulator's summary says so).
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from flowengine.relay import (
    ConnectionLost,
    RelayClient,
    RelayConfig,
    RelayError,
    outcome_of,
    phone_device,
)
from flowengine.sim import Simulator

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

PROJECT, TOKEN = "sim-project", "sim-token-dial"
OURS = "+15559870000"
A, B, C = "+15550000001", "+15550000002", "+15550000003"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(port=0, project=PROJECT, token=TOKEN, time_scale=0.01) as simulator:
        yield simulator


def client_for(sim: Simulator, **overrides: Any) -> RelayClient:
    settings: dict[str, Any] = {"request_timeout": 2.0, "reconnect_delay": 0.05,
                                "reconnect_max_delay": 0.2, **overrides}
    return RelayClient(RelayConfig(url=sim.url, project=PROJECT, token=TOKEN, **settings))


def to(number: str, timeout: float | None = None) -> dict[str, Any]:
    return phone_device(number, OURS, timeout=timeout)


async def no_leg_left(sim: Simulator) -> dict[str, Any]:
    await sim.wait_all_ended(timeout=10)
    summary = sim.summary()
    assert summary["active"] == 0 and summary["leaked"] == 0
    return summary


async def test_an_answered_dial_gives_a_live_call_that_plays_records_and_hangs_up(
        sim: Simulator) -> None:
    sim.set_callee(A, "answer:2,speak:2")
    async with client_for(sim) as client:
        with anyio.fail_after(10):
            result = await client.dial([[to(A)]])
            assert result.outcome == "answered" and result.reason is None
            call = result.call
            assert call is not None and call.state == "answered"
            assert (call.direction, call.to_number, call.from_number, call.tag) == (
                "outbound", A, OURS, result.tag)
            assert result.legs == (call,)
            play = await call.play([{"type": "tts", "params": {"text": "Hello there"}}])
            assert (await play.wait()).state == "finished"
            record = await call.record({"terminators": "#"})
            recorded = await record.wait()
            assert recorded.state == "finished" and recorded.duration == 2.0
            await call.hangup()
            await call.wait_for_ended()
    sim_leg = sim.core.dials[0].legs[0]
    assert sim_leg.commands == ["calling.play", "calling.record", "calling.end"]
    summary = await no_leg_left(sim)
    assert summary["dialed"] == 1 and summary["by_end_reason"] == {"hangup": 1}


@pytest.mark.parametrize(("script", "outcome", "reason"), [
    ("busy", "busy", "busy"),
    ("decline", "busy", "decline"),
    ("noanswer", "no_answer", "noAnswer"),
    ("fail", "failed", "error"),
])
async def test_each_callee_that_does_not_answer_gives_its_outcome(
        sim: Simulator, script: str, outcome: str, reason: str) -> None:
    sim.set_callee(A, script)
    async with client_for(sim) as client:
        with anyio.fail_after(10):
            result = await client.dial([[to(A, timeout=5)]])
    assert (result.outcome, result.reason, result.call) == (outcome, reason, None)
    assert [(leg.state, leg.end_reason) for leg in result.legs] == [("ended", reason)]
    summary = await no_leg_left(sim)
    assert summary["by_end_reason"] == {reason: 1}


async def test_a_machine_answers_and_a_detect_on_the_call_hears_it(sim: Simulator) -> None:
    sim.set_callee(A, "machine:5")
    sim.set_callee(B, "answer")
    async with client_for(sim) as client:
        with anyio.fail_after(10):
            found = {}
            for number in (A, B):
                result = await client.dial([[to(number)]])
                assert result.outcome == "answered" and result.call is not None
                detect = await result.call.detect(
                    {"type": "machine", "params": {"detect_message_end": True}},
                    wait_for_beep=True)
                found[number] = (await detect.wait()).state
                await result.call.hangup()
    assert found == {A: "READY", B: "HUMAN"}
    await no_leg_left(sim)


async def test_a_dial_asked_to_detect_machines_says_machine_or_answered(
        sim: Simulator) -> None:
    sim.set_callee(A, "machine:5")
    sim.set_callee(B, "answer")
    async with client_for(sim) as client:
        with anyio.fail_after(10):
            machine = await client.dial([[to(A)]],
                                        detect_machine={"detect_message_end": True})
            human = await client.dial([[to(B)]], detect_machine={})
            for result in (machine, human):
                assert result.call is not None and result.call.state == "answered"
                await result.call.hangup()
    assert (machine.outcome, machine.detected) == ("machine", "READY")  # after the greeting
    assert (human.outcome, human.detected) == ("answered", "HUMAN")
    legs = [dial.legs[0] for dial in sim.core.dials]
    # Each detector is stopped once it has its answer (RELAY's would go on listening).
    assert [leg.commands for leg in legs] == [
        ["calling.detect", "calling.detect.stop", "calling.end"]] * 2
    await no_leg_left(sim)


async def test_the_machine_detection_counts_against_the_dial_bound(sim: Simulator) -> None:
    sim.set_callee(A, "answer:1,machine:500")
    async with client_for(sim) as client:
        with anyio.fail_after(10):
            result = await client.dial([[to(A)]], timeout=1.0,
                                       detect_machine={"detect_message_end": True})
            # Answered in time; the greeting outlasts the bound: no verdict, the call is up
            # and its detector stopped.
            assert (result.outcome, result.detected) == ("answered", None)
            assert result.call is not None and result.call.state == "answered"
            await result.call.hangup()
    assert sim.core.dials[0].legs[0].commands == [
        "calling.detect", "calling.detect.stop", "calling.end"]
    await no_leg_left(sim)


async def test_serial_devices_are_tried_in_turn(sim: Simulator) -> None:
    sim.set_callee(A, "busy")
    sim.set_callee(B, "noanswer")
    async with client_for(sim) as client:
        with anyio.fail_after(10):
            result = await client.dial([[to(A)], [to(B, timeout=3)], [to(C)]])
            assert result.outcome == "answered" and result.call is not None
            assert [(leg.to_number, leg.end_reason) for leg in result.legs] == [
                (A, "busy"), (B, "noAnswer"), (C, None)]
            assert result.call.to_number == C
            await result.call.hangup()
    await no_leg_left(sim)


async def test_parallel_devices_the_first_to_answer_wins_and_the_others_end(
        sim: Simulator) -> None:
    sim.set_callee(A, "answer:6")
    sim.set_callee(B, "answer:2")
    sim.set_callee(C, "busy")
    async with client_for(sim) as client:
        with anyio.fail_after(10):
            result = await client.dial([[to(A), to(B), to(C)]])
            assert result.outcome == "answered" and result.call is not None
            assert result.call.to_number == B
            losers = {leg.to_number: (leg.state, leg.end_reason) for leg in result.legs
                      if leg is not result.call}
            # Already over when dial() returns: nothing but the winner is up.
            assert losers == {A: ("ended", "cancel"), C: ("ended", "busy")}
            assert list(client.calls) == [result.call.call_id]
            await result.call.hangup()
    summary = await no_leg_left(sim)
    assert summary["dialed"] == 3
    assert summary["by_end_reason"] == {"busy": 1, "cancel": 1, "hangup": 1}


async def test_every_leg_failing_gives_the_last_reason(sim: Simulator) -> None:
    sim.set_callee(None, "busy")
    sim.set_callee(B, "noanswer")
    async with client_for(sim) as client:
        with anyio.fail_after(10):
            result = await client.dial([[to(A)], [to(B, timeout=2)]])
    assert (result.outcome, result.reason) == ("no_answer", "noAnswer")
    assert len(result.legs) == 2
    await no_leg_left(sim)


async def test_a_dial_past_its_bound_hangs_up_what_still_rings(sim: Simulator) -> None:
    sim.set_callee(None, "noanswer")
    async with client_for(sim) as client:
        with anyio.fail_after(10):
            # The device would ring 300 s (3 s here); the dial's own bound is shorter.
            result = await client.dial([[to(A, timeout=300), to(B, timeout=300)]],
                                       timeout=0.5)
    assert (result.outcome, result.reason) == ("no_answer", "timeout")
    assert {leg.end_reason for leg in result.legs} == {"cancel"}
    assert sim.core.dials[0].state == "failed"
    summary = await no_leg_left(sim)
    assert summary["by_end_reason"] == {"cancel": 2}


async def test_a_cancelled_dial_leaves_no_leg_up(sim: Simulator) -> None:
    sim.set_callee(None, "noanswer")
    async with client_for(sim) as client:
        with anyio.fail_after(10):
            with anyio.move_on_after(0.3):
                await client.dial([[to(A, timeout=300)]])
            with anyio.fail_after(5):
                while sim.core.active_calls:
                    await anyio.sleep(0.01)
    assert sim.core.dials[0].legs[0].end_reason == "cancel"
    await no_leg_left(sim)


async def test_bad_devices_are_a_relay_error(sim: Simulator) -> None:
    async with client_for(sim) as client:
        with pytest.raises(RelayError) as info:
            await client.dial([[{"type": "phone", "params": {"to_number": "nope",
                                                             "from_number": OURS}}]])
    assert info.value.code == 400 and "to_number" in info.value.message
    assert sim.summary().get("dialed") is None


async def test_a_link_drop_while_ringing_loses_no_leg(sim: Simulator) -> None:
    sim.set_callee(A, "answer:20")
    async with client_for(sim) as client:
        with anyio.fail_after(15):
            async with anyio.create_task_group() as tg:
                results = []

                async def place() -> None:
                    results.append(await client.dial([[to(A)]]))

                tg.start_soon(place)
                while not (sim.core.dials and sim.core.dials[0].legs
                           and sim.core.dials[0].legs[0].state == "ringing"):
                    await anyio.sleep(0.005)
                await sim.drop_connections()
            result = results[0]
            assert client.reconnects >= 1
            assert result.outcome == "answered" and result.call is not None
            await result.call.hangup()
    summary = await no_leg_left(sim)
    assert summary["dialed"] == 1 and summary["by_end_reason"] == {"hangup": 1}


async def test_a_dial_whose_reply_is_lost_is_not_sent_twice_and_still_resolves(
        sim: Simulator) -> None:
    sim.set_callee(A, "answer:1")
    sim.core.lose_next_reply("calling.dial")
    async with client_for(sim) as client:
        with anyio.fail_after(15):
            result = await client.dial([[to(A)]])
            assert result.outcome == "answered" and result.call is not None
            await result.call.hangup()
    assert client.reconnects == 1  # the reply went down with the socket
    assert len(sim.core.dials) == 1  # RELAY dialled once: the request was not sent again
    await no_leg_left(sim)


async def test_a_dial_lost_with_the_link_before_relay_acted_raises(sim: Simulator) -> None:
    # The request never reaches the dial code: the socket goes with it.
    sim.delay_replies(0.3, "calling.dial")
    async with client_for(sim, request_timeout=1.0) as client:
        with anyio.fail_after(15):
            async with anyio.create_task_group() as tg:
                errors: list[BaseException] = []

                async def place() -> None:
                    try:
                        await client.dial([[to(A)]])
                    except ConnectionLost as exc:
                        errors.append(exc)

                tg.start_soon(place)
                await anyio.sleep(0.05)
                await sim.drop_connections()
    assert len(errors) == 1 and "not sent again" in str(errors[0])
    assert list(sim.core.dials) == []
    await no_leg_left(sim)


async def test_closing_the_client_ends_a_dial_in_progress(sim: Simulator) -> None:
    sim.set_callee(None, "noanswer")
    results = []
    # The dial runs in a task outside the client.
    with anyio.fail_after(10), anyio.CancelScope() as outer:
        async with anyio.create_task_group() as tg, client_for(sim) as client:

            async def place() -> None:
                results.append(await client.dial([[to(A, timeout=300)]]))

            tg.start_soon(place)
            while not client.calls:
                await anyio.sleep(0.005)
    assert not outer.cancelled_caught
            # The client closed under the dial: it ends at once, nothing waits forever.
    assert results[0].outcome == "failed" and results[0].reason == "client_closed"
    assert results[0].legs[0].end_reason == "client_closed"


def test_outcomes_of_relay_reasons() -> None:
    assert [outcome_of(r) for r in ("busy", "decline", "noAnswer", "error", None, "odd")] == [
        "busy", "busy", "no_answer", "failed", "failed", "failed"]


@pytest.mark.wall_clock  # the simulator runs in another process, on its own clock
async def test_the_simulator_command_takes_callee_scripts_by_number() -> None:
    from tests.test_sim_cli import COMMAND, first_line, the_rest, wait

    async with await anyio.open_process(
            [*COMMAND, "--time-scale", "0.01", "--callee", "busy",
             "--callee", f"{B}=answer:1,hangup:2"], stderr=subprocess.DEVNULL) as process:
        assert process.stdout is not None
        stdout = BufferedByteReceiveStream(process.stdout)
        url = (await first_line(stdout)).strip()
        config = RelayConfig(url=url, project="any", token="any", request_timeout=5.0)
        async with RelayClient(config) as client:
            with anyio.fail_after(15):
                busy = await client.dial([[to(A)]])
                answered = await client.dial([[to(B)]])
                assert answered.call is not None
                await answered.call.wait_for_ended()  # the callee's hangup:2
        process.send_signal(signal.SIGTERM)
        assert await wait(process) == 0
        lines = await the_rest(stdout)
    assert (busy.outcome, answered.outcome) == ("busy", "answered")
    assert answered.call.end_reason == "hangup"
    summary = json.loads(lines[-1])
    assert summary["dialed"] == 2 and summary["leaked"] == 0
    assert summary["by_end_reason"] == {"busy": 1, "hangup": 1}


def test_a_bad_callee_script_is_refused_with_the_grammar() -> None:
    from tests.test_sim_cli import COMMAND

    done = subprocess.run([*COMMAND, "--callee", f"{A}=ring:3"], capture_output=True,
                          text=True, timeout=20, check=False)
    assert done.returncode == 2 and "ring:3" in done.stderr and "grammar" in done.stderr


class ScriptedRelay(RelayClient):
    """A client whose ``calling.dial`` is answered by hand-made events, for orders of events
    the simulator does not produce (the real service may): they arrive before the reply,
    through the same routing as the reader's."""

    def __init__(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        super().__init__(RelayConfig(url="ws://127.0.0.1:9", project="p", token="t"))
        self.script = events
        self.sent: list[str] = []

    async def execute(self, method: str, params: Any) -> dict[str, Any]:  # type: ignore[override]
        from flowengine.relay.events import CallEvent, OtherEvent

        self.sent.append(method)
        if method == "calling.dial":
            for event_type, inner in self.script:
                inner = {**inner, "tag": params["tag"]}
                if "call_id" in inner:
                    self._on_event(CallEvent(event_type=event_type, call_id=inner["call_id"],
                                             control_id=None, params=inner))
                else:
                    self._on_event(OtherEvent(event_type=event_type, params=inner))
        return {"code": "200", "message": "OK"}


def leg_state(call_id: str, state: str, **extra: Any) -> tuple[str, dict[str, Any]]:
    return ("calling.call.state", {"call_id": call_id, "node_id": "n", "call_state": state,
                                   "device": to(A), **extra})


async def test_a_winner_named_only_by_the_dial_event_is_a_live_call() -> None:
    relay = ScriptedRelay([("calling.call.dial", {"dial_state": "answered", "call": {
        "call_id": "w1", "node_id": "n9", "device": to(A), "dial_winner": True}})])
    result = await relay.dial([[to(A)]])
    assert result.outcome == "answered" and result.call is not None
    assert (result.call.call_id, result.call.node_id, result.call.state,
            result.call.to_number, result.call.direction) == ("w1", "n9", "answered", A,
                                                              "outbound")
    assert relay.calls["w1"] is result.call  # its later events are routed to it


async def test_a_dial_answered_before_its_legs_answered_state_is_answered() -> None:
    relay = ScriptedRelay([leg_state("l1", "ringing"), leg_state("l2", "ringing"),
                           ("calling.call.dial", {"dial_state": "answered",
                                                  "call": {"call_id": "l2"}})])
    result = await relay.dial([[to(A), to(B)]])
    assert result.call is not None and result.call.call_id == "l2"
    assert result.call.state == "answered"
    # The loser RELAY had not ended yet is hung up: only the winner is left up.
    assert relay.sent == ["calling.dial", "calling.end"]


async def test_a_failed_dial_without_a_reason_takes_the_last_legs() -> None:
    relay = ScriptedRelay([leg_state("l1", "ended", end_reason="busy"),
                           leg_state("l2", "ended", end_reason="noAnswer"),
                           ("calling.call.dial", {"dial_state": "failed"})])
    result = await relay.dial([[to(A)], [to(B)]])
    assert (result.outcome, result.reason) == ("no_answer", "noAnswer")
    assert [leg.call_id for leg in result.legs] == ["l1", "l2"]
    assert relay.sent == ["calling.dial"]  # nothing left to hang up
