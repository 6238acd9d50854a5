"""`flowengine run` as a user runs it: a subprocess, its output and its exit code."""

from __future__ import annotations

import os
import subprocess
import sys

import anyio
import pytest

from flowengine.sim import Simulator
from tests.flowtools import FLOWS, ROOT

FLOWENGINE = [sys.executable, "-m", "flowengine.cli"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SIGNALWIRE_", "FLOWENGINE_"))}
    env.update(extra)
    return env


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FLOWENGINE, *args], capture_output=True, text=True, cwd=ROOT,
                          check=False, env=_env(**env), timeout=120)


def test_run_voicemail_on_the_embedded_simulator_prints_the_trace_and_the_recording():
    proc = run_cli("run", "flows/voicemail.yaml", "--time-scale", "0.01")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "embedded simulator" in out
    for step, method, outcome in [("greet", "calling.answer", "answered"),
                                  ("take_message", "calling.record", "finished"),
                                  ("end", "calling.end", "next")]:
        assert any(step in line and method in line and outcome in line
                   for line in out.splitlines()), (step, out)
    assert "when steps.take_message.duration >= 2" in out
    assert "recording (take_message): http://127.0.0.1:" in out
    assert "Traceback" not in proc.stderr


def test_run_with_a_silent_caller_takes_the_no_input_edge():
    proc = run_cli("run", "flows/voicemail.yaml", "--time-scale", "0.01", "--caller", "silent")
    assert proc.returncode == 0, proc.stderr
    assert any("take_message" in line and "no_input" in line and "nothing_heard" in line
               for line in proc.stdout.splitlines())


def test_run_saves_the_recording_when_asked(tmp_path):
    proc = run_cli("run", "flows/voicemail.yaml", "--time-scale", "0.01", "-q",
                   "--save-recordings", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    [saved] = list(tmp_path.iterdir())
    assert saved.stat().st_size > 1000
    assert saved.read_bytes()[:4] in (b"RIFF",) or saved.read_bytes()[:2] == b"\xff\xfb"


def test_an_invalid_flow_exits_2_with_file_line_col_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nsteps:\n  greet:\n    answer: {}\n  next_one:\n    plya: []\n")
    proc = run_cli("run", str(bad))
    assert proc.returncode == 2
    assert f"{bad}:6:5: error:" in proc.stderr
    assert "plya" in proc.stderr and "play" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_flow_that_fails_exits_1(tmp_path):
    flow = tmp_path / "fails.yaml"
    flow.write_text("name: fails\nsteps:\n  greet:\n    answer: {}\n"
                    "  oops:\n    log: \"{{ steps.nothing_yet.text }}\"\n"
                    "  nothing_yet:\n    log: later\n")
    proc = run_cli("run", str(flow), "--time-scale", "0.01")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "flow failed" in proc.stdout
    assert f"{flow}:6:" in proc.stdout


def test_a_missing_file_is_a_clear_error():
    proc = run_cli("run", "flows/no_such_flow.yaml")
    assert proc.returncode == 2
    assert "no_such_flow.yaml" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.anyio
async def test_with_credentials_run_connects_and_takes_the_next_calls_without_leaking_the_token():
    token = "s3cret-token-value"
    async with Simulator(port=0, project="proj-1", token=token, time_scale=0.01) as sim:
        calls = [sim.offer_call(context="office", caller="speak:3") for _ in range(2)]
        proc = await anyio.run_process(
            [*FLOWENGINE, "run", str(FLOWS / "voicemail.yaml"), "--relay-url", sim.url,
             "--count", "2", "--log-level", "debug"],
            cwd=ROOT, check=False,
            env=_env(SIGNALWIRE_PROJECT_ID="proj-1", SIGNALWIRE_API_TOKEN=token))
        for call in calls:
            await call.wait_ended()
        assert sim.summary()["leaked"] == 0
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, out + err
    assert "embedded simulator" not in out
    assert out.count("flow completed") == 2
    assert token not in out and token not in err


def test_wrong_credentials_give_a_clear_error_without_the_token():
    async def main() -> subprocess.CompletedProcess[bytes]:
        async with Simulator(port=0, project="proj-1", token="right") as sim:
            return await anyio.run_process(
                [*FLOWENGINE, "run", str(FLOWS / "voicemail.yaml"), "--relay-url", sim.url],
                cwd=ROOT, check=False,
                env=_env(SIGNALWIRE_PROJECT_ID="proj-1", SIGNALWIRE_API_TOKEN="wrong-token-xyz"))

    proc = anyio.run(main, backend="asyncio")
    err = proc.stderr.decode()
    assert proc.returncode == 1
    assert "uthentication" in err and "wrong-token-xyz" not in err + proc.stdout.decode()
    assert "Traceback" not in err


def test_half_the_credentials_is_a_clear_configuration_error():
    proc = run_cli("run", "flows/voicemail.yaml", SIGNALWIRE_PROJECT_ID="proj-1")
    assert proc.returncode == 2
    assert "SIGNALWIRE_API_TOKEN" in proc.stderr and "Traceback" not in proc.stderr


def test_a_relay_url_that_is_not_a_websocket_url_is_refused():
    proc = run_cli("run", "flows/voicemail.yaml", "--relay-url", "http://example.invalid")
    assert proc.returncode == 2
    assert "--relay-url" in proc.stderr and "Traceback" not in proc.stderr


def test_run_follows_a_transfer_into_the_flow_of_that_name_in_the_same_folder():
    from flowengine.flow import load_flow

    voicemail = load_flow(FLOWS / "voicemail.yaml")
    proc = run_cli("run", "flows/warm_transfer.yaml", "--time-scale", "0.01",
                   "--caller", "digits:12#,refer:403,speak:3")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert any("hand_over" in line and "calling.refer" in line and "refused" in line
               for line in out.splitlines()), out
    assert f"the call goes on in flow voicemail@{voicemail.short_version}" in out
    # voicemail's own steps ran after it, its branch shown without this flow's table.
    assert any("take_message" in line and "finished" in line for line in out.splitlines())
    assert "Traceback" not in proc.stderr
