"""run_outbound over the simulator: each dial outcome takes its edge; the busy, no answer
and failed paths run with no call (log, request, send_sms work, nothing is answered); a
machine gets its message after the beep; inputs are checked before anything is dialled;
a cancelled call ends."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from flowengine.engine.outbound import OutboundReport, run_outbound
from flowengine.flow import FlowVersion
from flowengine.flow.inputs import InputError
from flowengine.relay import RelayClient, RelayConfig
from flowengine.scenario.receiver import Receiver
from flowengine.sim import Simulator
from tests.flowtools import TIME_SCALE, variant, write_flow

pytestmark = pytest.mark.anyio

OURS = "+15559870000"
CALLEE = "+15550001111"

FLOW = """
name: notify
context: office
inputs:
  patient: {type: string, default: "there"}
  visits: {type: integer, default: 1}
outbound:
  from: "+15559870000"
  timeout: 20
  detect_machine: {wait_for_beep: true}
  on:
    machine: voicemail
    busy: tell_busy
    no_answer: tell_no_answer
    failed: tell_failed
steps:
  hello:
    play: [{say: "Hello {{ vars.patient }}, visit {{ vars.visits }}."}]
    next: null
  voicemail:
    play: [{say: "Message for {{ vars.patient }}."}]
    next: null
  tell_busy:
    log: "busy: {{ call.to }} for {{ vars.patient }}"
    next: hook
  tell_no_answer:
    log: "no answer: {{ call.to }}"
    next: hook
  tell_failed:
    log: "failed: {{ call.to }}"
    next: hook
  hook:
    request:
      url: "HOOK/missed"
      json: {to: "{{ call.to }}", patient: "{{ vars.patient }}", direction: "{{ call.direction }}"}
    next: text
  text:
    send_sms: {body: "We tried to call you, {{ vars.patient }}."}
"""


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(port=0, project="p", token="t", time_scale=TIME_SCALE) as simulator:
        yield simulator


@pytest.fixture
async def hook() -> AsyncIterator[Receiver]:
    async with Receiver() as receiver:
        yield receiver


def flow_for(tmp_path: Path, hook: Receiver, *edits: tuple[str, str]) -> FlowVersion:
    return write_flow(tmp_path, variant(FLOW.replace("HOOK", hook.url), *edits))


async def place(sim: Simulator, flow: FlowVersion, callee: str | None = None,
                **kwargs: Any) -> OutboundReport:
    if callee is not None:
        sim.set_callee(CALLEE, callee)
    async with RelayClient(RelayConfig(url=sim.url, project="p", token="t")) as client:
        with anyio.fail_after(20):
            report = await run_outbound(client, flow, to=kwargs.pop("to", CALLEE),
                                        time_scale=TIME_SCALE, **kwargs)
    await sim.wait_all_ended(timeout=10)
    summary = sim.summary()
    assert summary["active"] == 0 and summary["leaked"] == 0
    return report


async def test_answered_runs_the_flow_from_its_start_on_the_answered_call(
        sim: Simulator, hook: Receiver, tmp_path: Path) -> None:
    flow = flow_for(tmp_path, hook)
    report = await place(sim, flow, "answer:2", vars={"patient": "Ann", "visits": "3"})
    assert report.outcome == "answered" and report.path == ["hello"]
    assert report.report is not None and report.report.status == "completed"
    assert report.report.trace[0].params["media"][0]["say"] == "Hello Ann, visit 3."
    leg = sim.core.dials[-1].legs[0]
    assert report.call_id == leg.call_id and leg.to_number == CALLEE
    assert leg.from_number == OURS and leg.device["params"]["timeout"] == 20
    assert "calling.play" in leg.commands and leg.commands[-1] == "calling.end"
    assert report.answered_at is not None and report.dial_to_answer is not None
    assert report.dialed_at <= report.answered_at <= report.ended_at
    assert report.detected == "HUMAN" and hook.received == []


@pytest.mark.parametrize(("callee", "outcome", "step", "reason"), [
    ("busy", "busy", "tell_busy", "busy"),
    ("decline", "busy", "tell_busy", "decline"),
    ("noanswer", "no_answer", "tell_no_answer", "noAnswer"),
    ("fail", "failed", "tell_failed", "error"),
])
async def test_a_failure_outcome_runs_its_path_without_a_call(
        sim: Simulator, hook: Receiver, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        callee: str, outcome: str, step: str, reason: str) -> None:
    flow = flow_for(tmp_path, hook)
    with caplog.at_level(logging.INFO, logger="flowengine.engine"):
        report = await place(sim, flow, callee, vars={"patient": "Bob"})
    assert report.outcome == outcome and report.reason == reason
    assert report.call_id is None and report.answered_at is None
    assert report.path == [step, "hook", "text"]
    assert report.report is not None and report.report.status == "completed"
    assert report.report.end_reason is None and not report.report.caller_hung_up
    # log, request and send_sms did their work with no call.
    assert any(r.getMessage() == f"{outcome.replace('_', ' ')}: {CALLEE}"
               + (" for Bob" if outcome == "busy" else "") for r in caplog.records)
    assert [r.json for r in hook.received] == [
        {"to": CALLEE, "patient": "Bob", "direction": "outbound"}]
    assert report.report.steps["text"]["state"] == "delivered"
    [sms] = sim.core.messages_sent
    assert (sms["to_number"], sms["from_number"]) == (CALLEE, OURS)
    assert sms["body"] == "We tried to call you, Bob." and sms["context"] == "office"
    # The simulator saw a dial that nobody answered, and no command on any leg.
    dial = sim.core.dials[-1]
    assert dial.state == "failed" and dial.winner is None
    assert all(leg.commands == [] for leg in dial.legs)
    assert all(state != "answered" for leg in dial.legs
               for event, params in leg.events if event == "calling.call.state"
               for state in [params.get("call_state")])


async def test_an_outcome_without_an_edge_runs_no_step(
        sim: Simulator, hook: Receiver, tmp_path: Path) -> None:
    flow = flow_for(tmp_path, hook, ("    busy: tell_busy\n", ""))
    report = await place(sim, flow, "busy")
    assert report.outcome == "busy" and report.report is None and report.path == []
    assert report.ok and hook.received == [] and sim.core.messages_sent == []


async def test_a_machine_gets_the_message_after_the_beep(
        sim: Simulator, hook: Receiver, tmp_path: Path) -> None:
    flow = flow_for(tmp_path, hook)
    report = await place(sim, flow, "machine:5", vars={"patient": "Cy"})
    assert report.outcome == "machine" and report.detected == "READY"
    assert report.path == ["voicemail"]
    leg = sim.core.dials[-1].winner
    assert leg is not None
    kinds = [(event, params.get("detect", {}).get("params", {}).get("event")
              if event == "calling.call.detect" else params.get("state"))
             for event, params in leg.events
             if event in ("calling.call.detect", "calling.call.play")]
    beep = kinds.index(("calling.call.detect", "READY"))
    playing = kinds.index(("calling.call.play", "playing"))
    assert kinds.index(("calling.call.detect", "MACHINE")) < beep < playing
    assert leg.commands == ["calling.detect", "calling.detect.stop", "calling.play",
                            "calling.end"]


async def test_a_machine_without_its_edge_is_treated_as_answered(
        sim: Simulator, hook: Receiver, tmp_path: Path) -> None:
    flow = flow_for(tmp_path, hook, ("    machine: voicemail\n", ""))
    report = await place(sim, flow, "machine:2")
    assert report.outcome == "machine" and report.path == ["hello"]


async def test_without_detect_machine_a_machine_is_just_answered(
        sim: Simulator, hook: Receiver, tmp_path: Path) -> None:
    flow = flow_for(tmp_path, hook, ("    machine: voicemail\n", ""),
                    ("  detect_machine: {wait_for_beep: true}\n", ""))
    report = await place(sim, flow, "machine:2")
    assert report.outcome == "answered" and report.detected is None
    assert "calling.detect" not in sim.core.dials[-1].winner.commands


async def test_inputs_and_numbers_are_checked_before_anything_is_dialled(
        sim: Simulator, hook: Receiver, tmp_path: Path) -> None:
    flow = flow_for(tmp_path, hook)
    async with RelayClient(RelayConfig(url=sim.url, project="p", token="t")) as client:
        with pytest.raises(InputError) as bad:
            await run_outbound(client, flow, to=CALLEE,
                               vars={"visits": "many", "patiant": "Ann"})
        assert sorted(bad.value.problems) == [
            ("patiant", "flow notify has no input 'patiant'; did you mean 'patient'?"),
            ("visits", "input 'visits' (integer) must be an integer, not 'many'"),
        ]
        with pytest.raises(InputError) as bad:
            await run_outbound(client, flow, to="555-1234")
        assert [f for f, _ in bad.value.problems] == ["to"]
        with pytest.raises(InputError) as bad:
            await run_outbound(client, flow, to=CALLEE, from_="nobody")
        assert [f for f, _ in bad.value.problems] == ["from"]
    assert len(sim.core.dials) == 0 and sim.summary().get("dialed", 0) == 0


async def test_no_caller_id_anywhere_is_an_error_naming_from(
        sim: Simulator, hook: Receiver, tmp_path: Path) -> None:
    flow = flow_for(tmp_path, hook, ('  from: "+15559870000"\n', ""))
    async with RelayClient(RelayConfig(url=sim.url, project="p", token="t")) as client:
        with pytest.raises(InputError) as bad:
            await run_outbound(client, flow, to=CALLEE)
    assert bad.value.problems[0][0] == "from" and "outbound.from" in bad.value.problems[0][1]
    report = await place(sim, flow, "answer", from_="+1 (555) 987-0001")
    assert report.from_ == "+15559870001" and report.outcome == "answered"


async def test_devices_ring_serially_and_in_parallel_from_templates(
        sim: Simulator, hook: Receiver, tmp_path: Path) -> None:
    flow = flow_for(tmp_path, hook,
                    ("  timeout: 20\n", '  timeout: 20\n  devices: ["{{ call.to }}", '
                     '["{{ vars.mobile }}", "+15550003333"]]\n'),
                    ("  visits:", "  mobile: {type: phone, default: \"+15550002222\"}\n  visits:"))
    sim.set_callee("+15550002222", "answer:4")
    sim.set_callee("+15550003333", "answer:2")
    report = await place(sim, flow, "busy")
    dial = sim.core.dials[-1]
    assert [leg.to_number for leg in dial.legs] == [CALLEE, "+15550002222", "+15550003333"]
    assert report.outcome == "answered" and dial.winner is dial.legs[2]
    assert report.call_id == dial.legs[2].call_id and report.to == CALLEE


async def test_cancelling_hangs_up_a_ringing_dial_and_a_live_call(
        sim: Simulator, hook: Receiver, tmp_path: Path) -> None:
    flow = flow_for(tmp_path, hook, ('    play: [{say: "Hello {{ vars.patient }}, visit '
                                     '{{ vars.visits }}."}]',
                                     '    record: {end_silence_timeout: 60}'))
    async with RelayClient(RelayConfig(url=sim.url, project="p", token="t")) as client:
        for callee, wait_for in (("answer:50", "ringing"), ("answer:1,speak:500", "record")):
            sim.set_callee(CALLEE, callee)
            before = len(sim.core.dials)
            with anyio.fail_after(20):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(lambda: run_outbound(client, flow, to=CALLEE,
                                                       time_scale=TIME_SCALE))
                    while True:
                        await anyio.sleep(0.01)
                        if len(sim.core.dials) > before:
                            leg = sim.core.dials[-1].legs[0]
                            if (leg.state == "ringing" if wait_for == "ringing"
                                    else "calling.record" in leg.commands):
                                break
                    tg.cancel_scope.cancel()
            await sim.wait_all_ended(timeout=10)
            assert sim.summary()["active"] == 0
            assert sim.core.dials[-1].legs[0].ended
    assert sim.summary()["leaked"] == 0


async def test_the_daemon_metrics_count_outcomes_and_dial_to_answer(
        sim: Simulator, hook: Receiver, tmp_path: Path) -> None:
    from flowengine.daemon.metrics import Metrics

    flow = flow_for(tmp_path, hook)
    metrics = Metrics()
    for callee in ("answer:2", "busy", "answer:1"):
        metrics.outbound_ended(flow.name, await place(sim, flow, callee))
    text = metrics.render().decode()
    assert 'flowengine_outbound_calls_total{flow="notify",outcome="answered"} 2.0' in text
    assert 'flowengine_outbound_calls_total{flow="notify",outcome="busy"} 1.0' in text
    assert 'flowengine_dial_to_answer_seconds_count{flow="notify"} 2.0' in text


async def test_call_dial_is_the_outcome_in_the_flow_s_templates(
        sim: Simulator, hook: Receiver, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    flow = flow_for(tmp_path, hook,
                    ('"Hello {{ vars.patient }}, visit {{ vars.visits }}."', '"{{ call.dial }}"'),
                    ('"Message for {{ vars.patient }}."', '"{{ call.dial }}"'),
                    ('"busy: {{ call.to }} for {{ vars.patient }}"', '"dial={{ call.dial }}"'))
    said = []
    for callee in ("answer", "machine:2"):
        report = await place(sim, flow, callee)
        assert report.report is not None
        said.append(report.report.trace[0].params["media"][0]["say"])
    assert said == ["answered", "machine"]
    with caplog.at_level(logging.INFO, logger="flowengine.engine"):
        await place(sim, flow, "busy")
    assert "dial=busy" in [r.getMessage() for r in caplog.records]


async def test_max_duration_hangs_up_the_answered_call(
        sim: Simulator, hook: Receiver, tmp_path: Path) -> None:
    flow = flow_for(tmp_path, hook, ("  timeout: 20\n", "  timeout: 20\n  max_duration: 30\n"),
                    ('    play: [{say: "Hello {{ vars.patient }}, visit {{ vars.visits }}."}]',
                     "    play: [{silence: 600}]"))
    report = await place(sim, flow, "answer")
    assert report.outcome == "answered" and report.report is not None
    assert report.report.note == "max_duration (30 s) reached: hung up"
    assert report.report.status == "completed"
    leg = sim.core.dials[-1].legs[0]
    assert leg.commands[-1] == "calling.end" and leg.ended


async def test_a_report_as_json_for_the_call_api(
        sim: Simulator, hook: Receiver, tmp_path: Path) -> None:
    import json

    flow = flow_for(tmp_path, hook, ("steps:\n", "vars:\n  api_token: s3cr3t-value\nsteps:\n"))
    answered = (await place(sim, flow, "answer", vars={"patient": "Ann"})).as_dict()
    busy = (await place(sim, flow, "busy")).as_dict()
    text = json.dumps([answered, busy])  # JSON as it is
    assert "s3cr3t-value" not in text
    assert answered["outcome"] == "answered" and answered["status"] == "completed"
    assert answered["path"] == ["hello"] and answered["vars"]["patient"] == "Ann"
    assert answered["call_id"] and answered["dial_to_answer"] > 0
    assert busy["outcome"] == "busy" and busy["call_id"] is None
    assert busy["path"] == ["tell_busy", "hook", "text"]
    assert busy["steps"]["text"]["state"] == "delivered" and busy["ok"] is True
