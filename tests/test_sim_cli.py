"""``flowengine simulator`` as a user runs it: a separate process, driven by the official SDK."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from signalwire.relay import RelayClient

from tests.test_sim_sdk import sdk_client  # noqa: F401  (the §8 A shim fixture)

pytestmark = pytest.mark.anyio

COMMAND = [sys.executable, "-m", "flowengine.cli", "simulator"]


async def first_line(stdout: BufferedByteReceiveStream) -> str:
    with anyio.fail_after(20):
        return (await stdout.receive_until(b"\n", 1000)).decode()


async def the_rest(stdout: BufferedByteReceiveStream) -> list[str]:
    chunks = []
    with anyio.fail_after(20):
        try:
            while True:
                chunks.append(await stdout.receive())
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            pass
    return b"".join(chunks).decode().splitlines()


async def wait(process: Process) -> int:
    with anyio.fail_after(20):
        return await process.wait()


async def test_simulator_command_offers_its_calls_and_prints_a_summary(
        sdk_client: Callable[..., Any]) -> None:  # noqa: F811
    async with await anyio.open_process(
            [*COMMAND, "--port", "0", "--calls", "3", "--time-scale", "0.01"],
            stderr=subprocess.DEVNULL) as process:
        assert process.stdout is not None
        stdout = BufferedByteReceiveStream(process.stdout)
        url = await first_line(stdout)
        assert url.startswith("ws://127.0.0.1:")

        client: RelayClient = sdk_client(url, ["default"])
        handled: list[str] = []

        @client.on_call
        async def handle_call(call: Any) -> None:
            await call.answer()
            # Counted before the hang-up: the simulator exits once its last call ended,
            # and leaving the client then cancels a handler still returning from hangup().
            handled.append(call.device["params"]["from_number"])
            await call.hangup()

        async with client:
            assert await wait(process) == 0
        lines = await the_rest(stdout)
    summary = json.loads(lines[-1])
    assert summary["offered"] == 3 and summary["ended"] == 3 and summary["leaked"] == 0
    assert summary["by_end_reason"] == {"hangup": 3}
    assert handled == ["+15551230000"] * 3


async def test_simulator_command_stops_on_sigterm_and_counts_what_was_left() -> None:
    async with await anyio.open_process(
            [*COMMAND, "--calls", "2", "--caller", "silent"],
            stderr=subprocess.DEVNULL) as process:
        assert process.stdout is not None
        stdout = BufferedByteReceiveStream(process.stdout)
        assert (await first_line(stdout)).startswith("ws://")
        process.send_signal(signal.SIGTERM)
        assert await wait(process) == 0
        lines = await the_rest(stdout)
    summary = json.loads(lines[-1])
    # Nobody connected: the offered calls never ended and count as leaked.
    assert summary["offered"] == 2 and summary["ended"] == 0 and summary["leaked"] == 2


def test_a_bad_caller_script_is_refused_with_the_grammar() -> None:
    done = subprocess.run([*COMMAND, "--caller", "dance:3"], capture_output=True, text=True,
                          timeout=20, check=False)
    assert done.returncode == 2
    assert "dance:3" in done.stderr and "grammar" in done.stderr
    assert done.stdout == ""


async def test_noise_frames_from_the_simulator_cost_flowengine_run_no_call() -> None:
    import os
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "SIGNALWIRE_PROJECT_ID": "sim-project",
           "SIGNALWIRE_API_TOKEN": "sim-token"}
    async with await anyio.open_process(
            [*COMMAND, "--calls", "5", "--concurrency", "5", "--context", "office",
             "--time-scale", "0.01", "--noise", "0.7"],
            stderr=subprocess.DEVNULL) as sim:
        assert sim.stdout is not None
        stdout = BufferedByteReceiveStream(sim.stdout)
        url = await first_line(stdout)
        run = await anyio.run_process(
            [sys.executable, "-m", "flowengine.cli", "run", str(root / "flows/voicemail.yaml"),
             "--relay-url", url.strip(), "--count", "5", "--time-scale", "0.01", "-q"],
            env=env, check=False)
        assert await wait(sim) == 0
        lines = await the_rest(stdout)
    assert run.returncode == 0, run.stderr.decode()
    summary = json.loads(lines[-1])
    assert summary["by_end_reason"] == {"hangup": 5} and summary["leaked"] == 0
    assert summary["noise_frames"] > 5
    assert b"dropped a frame from RELAY" in run.stderr or b"dropped" in run.stdout + run.stderr


def test_a_noise_rate_beyond_one_is_refused() -> None:
    done = subprocess.run([*COMMAND, "--noise", "1.5"], capture_output=True, text=True,
                          timeout=20, check=False)
    assert done.returncode == 2 and "--noise is a probability, from 0 to 1, not 1.5" in done.stderr
