"""What `flowengine serve` logs about a call at each level: one line per call at the default
level (how it ended, its path of steps, its duration), a line per step at debug."""

from __future__ import annotations

import json
import re
import sys

import anyio
import pytest

from tests.flowtools import FLOWS, ROOT

pytestmark = pytest.mark.anyio

PATH = ["greet", "prompt", "take_message", "check_length", "thanks", "bye", "end"]
CALLS = 2


async def serve(*options: str) -> list[str]:
    """Serve voicemail.yaml on the embedded simulator for CALLS calls; its log lines."""
    command = [sys.executable, "-m", "flowengine.cli", "serve", str(FLOWS / "voicemail.yaml"),
               "--simulate", "--sim-calls", str(CALLS), "--sim-rate", "20",
               "--time-scale", "0.01", "--no-watch", "--rescan-interval", "0", *options]
    with anyio.fail_after(60):
        proc = await anyio.run_process(command, cwd=ROOT, check=False)
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    return err.splitlines()


def call_lines(lines: list[str]) -> dict[str, list[str]]:
    """call id → the lines tagged with it (``[call-id flow@version] …``)."""
    calls: dict[str, list[str]] = {}
    for line in lines:
        match = re.search(r"\[([0-9a-f-]{36}) voicemail@[0-9a-f]{12}\] (.*)$", line)
        if match:
            calls.setdefault(match[1], []).append(match[2])
    return calls


async def test_at_the_default_level_a_call_has_one_line_with_outcome_path_and_duration() -> None:
    calls = call_lines(await serve())
    assert len(calls) == CALLS
    for lines in calls.values():
        # The flow's own `log` step, then the call's line; no line per step.
        assert not [line for line in lines if line.startswith("step ")]
        ended = [line for line in lines if line.startswith("call ended:")]
        assert len(ended) == 1, lines
        assert "call ended: completed after 7 step(s) (hangup), from +1555" in ended[0]
        assert " > ".join(PATH) in ended[0]
        assert re.search(r"\(\d+ ms\)$", ended[0]), ended[0]
        assert lines == [line for line in lines if line.startswith("voicemail for ")] + ended


async def test_the_json_line_of_a_call_carries_path_steps_and_duration() -> None:
    lines = [json.loads(line) for line in await serve("--log-format", "json")]
    ended = [line for line in lines if line.get("event") == "call_ended"]
    assert len(ended) == CALLS
    for line in ended:
        assert line["level"] == "info" and line["ended"] == "completed"
        assert line["path"] == PATH and line["steps"] == len(PATH)
        assert line["duration_ms"] > 0
    assert not [line for line in lines if line.get("step") is not None]


async def test_at_debug_every_step_has_its_line() -> None:
    calls = call_lines(await serve("--log-level", "debug"))
    assert len(calls) == CALLS
    for lines in calls.values():
        steps = [line for line in lines if line.startswith("step ")]
        assert [line.split()[1] for line in steps] == PATH, lines
        assert steps[0].startswith("step greet (answer) -> answered")
        assert sum(line.startswith("call ended: completed") for line in lines) == 1
