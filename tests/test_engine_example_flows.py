"""Every outcome path of flows/after_hours.yaml and flows/voicemail_hangup.yaml, over the
simulator."""

from __future__ import annotations

import pytest

from tests.flowtools import FLOWS, run_flow

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

AFTER_HOURS = FLOWS / "after_hours.yaml"
VOICEMAIL_HANGUP = FLOWS / "voicemail_hangup.yaml"
VIP, STRANGER = "+15551230001", "+15557654321"
#: A Wednesday evening in New York: the office (its schedule) is closed.
CLOSED = {"at": "2026-12-23T19:30", "tz": "America/New_York"}


def steps_of(run):
    return [step for step, _ in run.path()]


# -- after_hours.yaml ------------------------------------------------------------------------

async def test_after_hours_vip_leaves_a_message():
    run = await run_flow(AFTER_HOURS, "speak:4", from_number=VIP, **CLOSED)
    assert run.path() == [
        ("greet", "answered"), ("office_hours", "branch1"), ("who_is_calling", "branch0"),
        ("vip_prompt", "finished"),
        ("vip_message", "finished"), ("vip_logged", "next"), ("vip_thanks", "finished"),
        ("bye", "next"),
    ]
    rec = run.report.steps["vip_message"]
    assert rec["url"].endswith(".wav") and rec["format"] == "wav"
    assert run.report.steps["vip_logged"]["text"] == (
        f"VIP message from {VIP}: {rec['url']} ({rec['duration']} s)")


async def test_after_hours_other_callers_hear_the_opening_hours():
    run = await run_flow(AFTER_HOURS, "speak:4", from_number=STRANGER, **CLOSED)
    assert run.path() == [("greet", "answered"), ("office_hours", "branch1"),
                          ("who_is_calling", "branch1"), ("closed", "finished"), ("bye", "next")]
    assert "calling.record" not in run.sim_calls[0].commands


async def test_after_hours_silent_vip_falls_back_to_the_closed_message():
    run = await run_flow(AFTER_HOURS, "silent", from_number=VIP, **CLOSED)
    assert steps_of(run) == ["greet", "office_hours", "who_is_calling", "vip_prompt",
                             "vip_message", "closed", "bye"]
    assert run.path()[4] == ("vip_message", "no_input")


async def test_after_hours_vip_talking_past_the_step_timeout_keeps_the_recording():
    # The record step has `timeout: 300`: a caller talking for ten minutes is cut off,
    # the recording so far is kept and the flow goes on along `next`.
    run = await run_flow(AFTER_HOURS, "speak:600", from_number=VIP, **CLOSED)
    assert ("vip_message", "timeout") in run.path()
    assert steps_of(run)[-3:] == ["vip_logged", "vip_thanks", "bye"]
    rec = run.report.steps["vip_message"]
    # On virtual time the cut is exact: the step's 300 s, not "about" them.
    step = next(e for e in run.report.trace if e.step == "vip_message")
    assert step.duration == pytest.approx(300, abs=0.01)
    assert rec["url"] and rec["duration"] == pytest.approx(300, abs=0.5)
    assert "calling.record.stop" in run.sim_calls[0].commands


async def test_after_hours_vip_hanging_up_mid_message_ends_the_flow():
    run = await run_flow(AFTER_HOURS, "hangup@record:2", from_number=VIP, **CLOSED)
    assert run.path()[-1] == ("vip_message", "hangup")
    assert run.report.caller_hung_up and run.summary["leaked"] == 0


async def test_after_hours_in_office_hours_goes_through_to_the_front_desk():
    run = await run_flow(AFTER_HOURS, "peer:answer:2", from_number=VIP,
                         at="2026-12-23T10:00", tz="America/New_York")
    assert run.path() == [("greet", "answered"), ("office_hours", "branch0"),
                          ("front_desk", "disconnected"), ("bye", "next")]
    assert run.report.steps["front_desk"]["peer"] == "+15550001000"


# -- voicemail_hangup.yaml -------------------------------------------------------------------

async def test_voicemail_hangup_message_left_with_pound():
    run = await run_flow(VOICEMAIL_HANGUP, "speak:3")
    assert run.path() == [
        ("greet", "answered"), ("prompt", "finished"), ("take_message", "finished"),
        ("thanks", "finished"), ("saved", "next"), ("end", "next"),
    ]
    url = run.report.steps["take_message"]["url"]
    assert run.report.steps["saved"]["text"] == f"message from +15551230000: {url}"


async def test_voicemail_hangup_caller_hangs_up_while_recording_and_on_hangup_logs_the_url():
    run = await run_flow(VOICEMAIL_HANGUP, "hangup@record:4")
    assert run.path() == [
        ("greet", "answered"), ("prompt", "finished"), ("take_message", "hangup"),
        ("hung_up", "branch0"), ("log_recording", "next"),
    ]
    url = run.report.steps["take_message"]["url"]
    assert url and run.report.steps["take_message"]["duration"] == pytest.approx(4, abs=0.6)
    assert run.report.steps["log_recording"]["text"] == (
        f"caller +15551230000 hung up; recording: {url}")
    assert run.report.status == "completed"


async def test_voicemail_hangup_caller_hangs_up_during_the_greeting():
    run = await run_flow(VOICEMAIL_HANGUP, "hangup@play")
    assert run.path() == [("greet", "answered"), ("prompt", "hangup"), ("hung_up", "branch1"),
                          ("log_no_recording", "next")]
    assert "calling.record" not in run.sim_calls[0].commands


async def test_voicemail_hangup_silent_caller():
    run = await run_flow(VOICEMAIL_HANGUP, "silent")
    assert steps_of(run) == ["greet", "prompt", "take_message", "nothing_heard", "end"]
    assert run.path()[2] == ("take_message", "no_input")


async def test_voicemail_hangup_caller_hangs_up_during_the_thanks_and_the_url_is_logged():
    run = await run_flow(VOICEMAIL_HANGUP, "speak:3,hangup@play2")
    assert run.path() == [
        ("greet", "answered"), ("prompt", "finished"), ("take_message", "finished"),
        ("thanks", "hangup"), ("hung_up", "branch0"), ("log_recording", "next"),
    ]
    assert run.report.steps["take_message"]["url"] in run.report.steps["log_recording"]["text"]
