"""Every outcome path of the example flows, over the real simulator."""

from __future__ import annotations

import urllib.request

import anyio
import pytest

from tests.flowtools import FLOWS, run_flow

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

VOICEMAIL = FLOWS / "voicemail.yaml"


def _download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read()


async def test_message_left_follows_the_finished_path_and_keeps_a_real_recording():
    run = await run_flow(VOICEMAIL, "speak:3")
    report = run.report
    assert run.path() == [
        ("greet", "answered"), ("prompt", "finished"), ("take_message", "finished"),
        ("check_length", "branch0"), ("thanks", "finished"), ("bye", "next"),
        ("end", "next"),
    ]
    assert report.status == "completed" and not report.caller_hung_up
    rec = report.steps["take_message"]
    assert rec["duration"] == pytest.approx(3, abs=0.6)
    assert rec["url"] and rec["size"] > 0
    # The log step rendered the url that the record event delivered.
    assert report.steps["bye"]["text"] == f"voicemail for sales: {rec['url']}"
    assert report.end_reason == "hangup"
    # What RELAY saw, in order: the contract's mapping of each action.
    commands = [c for c in run.sim_calls[0].commands if not c.startswith("signalwire.")]
    assert commands == ["calling.answer", "calling.play", "calling.record", "calling.play",
                        "calling.end"]
    assert run.summary["leaked"] == 0


@pytest.mark.wall_clock  # a real HTTP download / the daemon
async def test_recording_url_downloads_audio_of_the_recorded_length():
    bodies = []

    async def fetch(run):
        url = run.report.steps["take_message"]["url"]
        bodies.append(await anyio.to_thread.run_sync(_download, url))

    run = await run_flow(VOICEMAIL, "speak:3", inside=fetch)
    rec = run.report.steps["take_message"]
    body = bodies[0]
    assert len(body) == rec["size"]
    assert body[:3] == b"ID3" or body[:2] in (b"\xff\xfb", b"\xff\xf3") or body[:4] == b"RIFF"


async def test_a_short_message_takes_the_default_branch():
    run = await run_flow(VOICEMAIL, "speak:1")
    assert ("check_length", "branch1") in run.path()
    assert "too_short" in [step for step, _ in run.path()]
    assert "thanks" not in [step for step, _ in run.path()]


async def test_silent_caller_gets_no_input_and_the_goodbye():
    run = await run_flow(VOICEMAIL, "silent")
    assert run.path() == [
        ("greet", "answered"), ("prompt", "finished"), ("take_message", "no_input"),
        ("nothing_heard", "finished"), ("bye", "next"), ("end", "next"),
    ]
    assert run.report.status == "completed"


async def test_caller_hangs_up_during_the_greeting():
    run = await run_flow(VOICEMAIL, "hangup@play")
    assert run.path() == [("greet", "answered"), ("prompt", "hangup")]
    report = run.report
    assert report.caller_hung_up and report.status == "completed"
    assert "calling.record" not in run.sim_calls[0].commands
    assert run.summary["leaked"] == 0


async def test_caller_hangs_up_during_the_recording_and_the_url_is_kept():
    run = await run_flow(VOICEMAIL, "hangup@record:2")
    assert run.path()[-1] == ("take_message", "hangup")
    rec = run.report.steps["take_message"]
    assert rec["url"] and rec["duration"] == pytest.approx(2, abs=0.6)
    assert run.report.caller_hung_up


async def test_two_hundred_concurrent_calls_all_end_and_none_leaks():
    run = await run_flow(VOICEMAIL, "speak:3", calls=200)
    assert len(run.reports) == 200
    assert all(r.status == "completed" for r in run.reports)
    assert run.summary["offered"] == 200 and run.summary["ended"] == 200
    assert run.summary["leaked"] == 0
    urls = {r.steps["take_message"]["url"] for r in run.reports}
    assert len(urls) == 200  # every call got its own recording


async def test_caller_hangs_up_during_the_thanks():
    run = await run_flow(VOICEMAIL, "speak:3,hangup@play2")
    assert run.path() == [
        ("greet", "answered"), ("prompt", "finished"), ("take_message", "finished"),
        ("check_length", "branch0"), ("thanks", "hangup"),
    ]
    assert run.report.steps["take_message"]["url"]
    assert run.report.caller_hung_up and run.summary["leaked"] == 0


async def test_caller_hangs_up_before_the_flow_answers():
    run = await run_flow(VOICEMAIL, "hangup@ring")
    assert run.path() == [("greet", "hangup")]
    assert run.report.caller_hung_up and run.summary["leaked"] == 0
    assert "calling.play" not in run.sim_calls[0].commands
