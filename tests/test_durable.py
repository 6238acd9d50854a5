"""Calls that outlive the process (issue 16): ``serve --state-dir`` keeps a checkpoint per
call in flight, and a restarted ``serve`` continues the calls from them (docs/store.md)."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from anyio.abc import Process
from prometheus_client.parser import text_string_to_metric_families

from flowengine.daemon.durable import Durable, StateDirInUse
from flowengine.engine.trace import read_trace
from flowengine.sim import SimCall
from flowengine.store import StoreError, version_hash
from tests.flowtools import variant
from tests.test_daemon import PROJECT, TOKEN, flow_text, serving, simulator, write
from tests.test_daemon_ops import Lines, all_recording, paths_by_call

pytestmark = pytest.mark.anyio


def read_calls(state_dir: Path) -> dict[str, dict[str, Any]]:
    """The calls table, read by a second connection as another process would."""
    conn = sqlite3.connect(state_dir / "flowengine.db")
    try:
        rows = conn.execute("SELECT call_id, step, state, version_sha FROM calls").fetchall()
    finally:
        conn.close()
    return {row[0]: {"step": row[1], "version_sha": row[3], **orjson.loads(row[2])}
            for row in rows}


def read_daemons(state_dir: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(state_dir / "flowengine.db")
    try:
        return conn.execute("SELECT daemon_id, protocol, authorization_state, status "
                            "FROM daemons").fetchall()
    finally:
        conn.close()


def recording_control_id(call: SimCall) -> str | None:
    for kind, params in call.events:
        if kind == "calling.call.record" and params.get("state") == "recording":
            return str(params["control_id"])
    return None


async def test_a_served_calls_checkpoints_are_in_the_store_while_it_runs_and_gone_after(
        tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    text = flow_text("desk", "desk", on_hangup="gone")
    write(flows / "desk.yaml", text)
    state = tmp_path / "state"
    durable = Durable(str(state), "d-test")
    await durable.open()
    try:
        async with simulator(time_scale=0.01) as sim, serving(sim, [flows], durable=durable):
            call = sim.offer_call("desk", caller="speak:3000")
            with anyio.fail_after(10):
                while recording_control_id(call) is None:
                    await anyio.sleep(0.01)
            control_id = recording_control_id(call)
            rows = await anyio.to_thread.run_sync(read_calls, state)
            # Written before the record command was sent: the checkpoint names its
            # control id, at the step that started it, with the steps before it done.
            assert list(rows) == [call.call_id]
            row = rows[call.call_id]
            assert row["step"] == "message"
            assert row["pending"]["kind"] == "record"
            assert row["pending"]["control_id"] == control_id
            assert set(row["steps"]) == {"greet", "hello"}
            assert row["extra"]["call"]["call_id"] == call.call_id
            # The version's text is in the store under the checkpoint's hash.
            assert await durable.store.get_version(row["version_sha"]) == text.encode()
            # The RELAY session is kept, to resume it after a restart.
            [(daemon_id, protocol, _auth, status)] = await anyio.to_thread.run_sync(
                read_daemons, state)
            assert (daemon_id, status) == ("d-test", "live") and protocol
            # `flowengine state` reads it while serve runs: the session, the call, its step.
            shown = await anyio.run_process(
                [sys.executable, "-m", "flowengine.cli", "state", "--state-dir", str(state)])
            out = shown.stdout.decode()
            assert "daemon d-test on " in out and ": live, lease expires in " in out
            assert f"call {call.call_id}  desk@{row['version_sha'][:12]}  step message  " \
                   f"waiting on record {control_id} for " in out, out
            call.end("hangup")
            with anyio.fail_after(10):
                while await anyio.to_thread.run_sync(read_calls, state):
                    await anyio.sleep(0.02)
    finally:
        await durable.close()


async def test_two_daemons_cannot_share_a_state_dir(tmp_path: Path) -> None:
    first = Durable(str(tmp_path / "state"), "a")
    await first.open()
    try:
        second = Durable(str(tmp_path / "state"), "b")
        with pytest.raises(StateDirInUse, match="another flowengine serve"):
            await second.open()
    finally:
        await first.close()
    # Released on close: the next one opens it.
    third = Durable(str(tmp_path / "state"), "c")
    await third.open()
    await third.close()


async def test_a_corrupt_state_file_is_a_clear_error_and_is_not_overwritten(
        tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    junk = b"this is not a database" * 100
    (state / "flowengine.db").write_bytes(junk)
    durable = Durable(str(state), "a")
    with pytest.raises(StoreError, match=r"flowengine\.db.*(not a database|cannot open)"):
        await durable.open()
    await durable.close()
    assert (state / "flowengine.db").read_bytes() == junk


# ------------------------------------------------------------------- kill -9, restart

def serve_command(flows: Path, state: Path, url: str, trace: Path) -> list[str]:
    return [sys.executable, "-m", "flowengine.cli", "serve", str(flows), "--relay-url", url,
            "--time-scale", "0.01", "--state-dir", str(state), "--daemon-id", "host-a",
            "--trace", str(trace), "--rescan-interval", "0", "--no-watch"]


@asynccontextmanager
async def serve_process(command: list[str], env: dict[str, str]) -> AsyncIterator[
        tuple[Process, Lines]]:
    """``serve`` in a process of its own, its stderr read as it comes; killed on the way
    out if it is still running (a failed assertion must not leave it serving)."""
    async with await anyio.open_process(command, env=env, stdout=subprocess.DEVNULL) \
            as process, anyio.create_task_group() as tg:
        assert process.stderr is not None
        lines = Lines(process.stderr)
        tg.start_soon(lines.read_all)
        try:
            await wait_for_line(lines, "flowengine.daemon: serving 1 flow(s)")
            yield process, lines
        finally:
            if process.returncode is None:
                process.kill()
            tg.cancel_scope.cancel()


async def wait_for_line(lines: Lines, text: str, timeout: float = 30) -> str:
    with anyio.fail_after(timeout):
        return await lines.wait_for(text)


async def scrape(lines: Lines) -> dict[str, float]:
    """The daemon's /metrics, as sample name → value (its port read from its log)."""
    line = await wait_for_line(lines, "metrics on http://")
    port = int(re.search(r"http://127\.0\.0\.1:(\d+)/metrics", line).group(1))  # type: ignore[union-attr]

    def get() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            return str(reply.read().decode())

    text = await anyio.to_thread.run_sync(get)
    return {sample.name: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples}


async def test_serve_killed_mid_call_is_restarted_and_the_calls_finish_their_flow(
        tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    path = write(flows / "desk.yaml", flow_text("desk", "desk", on_hangup="gone"))
    old_version = version_hash(path.read_bytes())[:12]
    state = tmp_path / "state"
    env = {**os.environ, "SIGNALWIRE_PROJECT_ID": PROJECT, "SIGNALWIRE_API_TOKEN": TOKEN}
    first_trace, second_trace = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    async with simulator(time_scale=0.01, resume_window=60.0) as sim:
        async with serve_process(serve_command(flows, state, sim.url, first_trace),
                                 env) as (first, _):
            # Four callers who talk into the recording for 3 s (it may end while no daemon
            # runs: its events come on the resumed session), two who hang up during it.
            talkers = [sim.offer_call("desk", caller="speak:300") for _ in range(4)]
            leavers = [sim.offer_call("desk", caller="speak:3000") for _ in range(2)]
            away = [sim.offer_call("desk", caller="speak:3000") for _ in range(2)]
            await all_recording(talkers + leavers + away)
            first.kill()  # SIGKILL: no drain, no goodbye
            await first.wait()
        # Two hang up while no daemon runs: their end comes on the resumed session.
        for call in away:
            call.end("hangup")
        # Edited between the crash and the restart: the calls finish on their old version.
        write(path, variant(path.read_text(), ('say: "Hello"', 'say: "Good evening"')))
        async with serve_process([*serve_command(flows, state, sim.url, second_trace),
                                  "--metrics-port", "0"], env) as (second, lines):
            metrics = await scrape(lines)
            for call in leavers:
                call.end("hangup")
            with anyio.fail_after(30):
                while sim.core.active_calls:
                    await anyio.sleep(0.05)
            second.send_signal(signal.SIGTERM)
            with anyio.fail_after(30):
                code = await second.wait()
        summary = sim.summary()

    assert code == 0
    text = "\n".join(lines.lines)
    assert "8 call(s) of a previous run to resume" in text
    # On the version they started with, not the edited file's.
    assert text.count(f"resumed at step message of desk@{old_version}") == 8
    assert "lost on restart" not in text
    assert metrics["flowengine_calls_resumed_total"] == 8
    assert metrics["flowengine_calls_lost_total"] == 0
    records, problems = read_trace(second_trace)
    assert not problems
    after = paths_by_call(records)
    # Resumed in the recording (re-attached by control id, not started again), and on
    # to the end of the flow; the leavers' on_hangup ran once each.
    assert {c.call_id: after.get(c.call_id) for c in talkers} == {
        c.call_id: ["message", "bye"] for c in talkers}
    assert {c.call_id: after.get(c.call_id) for c in leavers + away} == {
        c.call_id: ["message", "gone"] for c in leavers + away}
    for call in talkers + leavers + away:
        assert call.commands.count("calling.record") == 1, call.commands
        assert call.commands.count("calling.play") == 1, call.commands
    assert summary["ended"] == 8 and summary["leaked"] == 0
    assert await anyio.to_thread.run_sync(read_calls, state) == {}
    assert TOKEN not in text


async def test_calls_whose_session_relay_did_not_keep_are_logged_and_counted_as_lost(
        tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    write(flows / "desk.yaml", flow_text("desk", "desk", on_hangup="gone"))
    state = tmp_path / "state"
    env = {**os.environ, "SIGNALWIRE_PROJECT_ID": PROJECT, "SIGNALWIRE_API_TOKEN": TOKEN}
    # A resume window shorter than the restart: RELAY ends the calls and the session.
    async with simulator(time_scale=0.01, resume_window=0.2) as sim:
        async with serve_process(serve_command(flows, state, sim.url,
                                               tmp_path / "first.jsonl"), env) as (first, _):
            calls = [sim.offer_call("desk", caller="speak:3000") for _ in range(3)]
            await all_recording(calls)
            first.kill()
            await first.wait()
        with anyio.fail_after(20):
            while sim.core.active_calls:
                await anyio.sleep(0.05)
        async with serve_process([*serve_command(flows, state, sim.url,
                                                 tmp_path / "second.jsonl"),
                                  "--metrics-port", "0"], env) as (second, lines):
            metrics = await scrape(lines)
            second.send_signal(signal.SIGTERM)
            with anyio.fail_after(30):
                code = await second.wait()

    assert code == 0
    text = "\n".join(lines.lines)
    for call in calls:
        assert f"call {call.call_id} lost on restart (RELAY did not resume" in text
    assert "resumed at step" not in text
    assert metrics["flowengine_calls_lost_total"] == 3
    assert metrics["flowengine_calls_resumed_total"] == 0
    assert await anyio.to_thread.run_sync(read_calls, state) == {}


async def test_state_says_when_there_is_no_store(tmp_path: Path) -> None:
    shown = await anyio.run_process(
        [sys.executable, "-m", "flowengine.cli", "state", "--state-dir", str(tmp_path / "none")],
        check=False)
    assert shown.returncode == 2
    assert f"no state store in {tmp_path / 'none'}" in shown.stderr.decode()
    assert not (tmp_path / "none").exists()


MIXED = """\
name: mixed
context: mixed
on_hangup: gone
steps:
  greet:
    answer: {}
  wait:
    sleep: 100
  ask:
    prompt:
      play:
        - say: Press a key.
      digits: {}
      initial_timeout: 200
  bye:
    hangup: {}
  gone:
    log: "the caller left during the flow"
"""


async def test_calls_killed_in_a_sleep_or_a_prompt_resume_there(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    write(flows / "mixed.yaml", MIXED)
    state = tmp_path / "state"
    env = {**os.environ, "SIGNALWIRE_PROJECT_ID": PROJECT, "SIGNALWIRE_API_TOKEN": TOKEN}
    second_trace = tmp_path / "second.jsonl"
    async with simulator(time_scale=0.01, resume_window=60.0) as sim:
        async with serve_process(serve_command(flows, state, sim.url,
                                               tmp_path / "first.jsonl"), env) as (first, _):
            # Silent callers: the prompt waits its initial_timeout (2 s), then no_input.
            prompted = [sim.offer_call("mixed", caller="silent") for _ in range(3)]
            with anyio.fail_after(20):
                while not all("calling.play_and_collect" in c.commands for c in prompted):
                    await anyio.sleep(0.01)
            sleeping = [sim.offer_call("mixed", caller="silent") for _ in range(3)]
            with anyio.fail_after(20):
                while not all("calling.answer" in c.commands for c in sleeping):
                    await anyio.sleep(0.01)
            # Their step boundary after the answer is written (batched, not awaited).
            with anyio.fail_after(20):
                while True:
                    rows = await anyio.to_thread.run_sync(read_calls, state)
                    if {rows.get(c.call_id, {}).get("step") for c in sleeping} == {"wait"}:
                        break
                    await anyio.sleep(0.01)
            first.kill()
            assert not any("calling.play_and_collect" in c.commands for c in sleeping)
            await first.wait()
        async with serve_process(serve_command(flows, state, sim.url, second_trace),
                                 env) as (second, lines):
            with anyio.fail_after(30):
                while sim.core.active_calls:
                    await anyio.sleep(0.05)
            second.send_signal(signal.SIGTERM)
            with anyio.fail_after(30):
                code = await second.wait()
        summary = sim.summary()

    assert code == 0
    text = "\n".join(lines.lines)
    assert text.count("resumed at step wait of mixed@") == 3
    assert text.count("resumed at step ask of mixed@") == 3
    records, problems = read_trace(second_trace)
    assert not problems
    after = paths_by_call(records)
    # The sleep runs again in full; the prompt is re-attached (not asked again) and ends
    # no_input as it would have; every call ends its flow.
    assert {c.call_id: after.get(c.call_id) for c in sleeping} == {
        c.call_id: ["wait", "ask", "bye"] for c in sleeping}
    assert {c.call_id: after.get(c.call_id) for c in prompted} == {
        c.call_id: ["ask", "bye"] for c in prompted}
    outcomes = {(r["call"], r["step"]): r["outcome"] for r in records}
    assert {outcomes[(c.call_id, "ask")] for c in sleeping + prompted} == {"no_input"}
    for call in sleeping + prompted:
        assert call.commands.count("calling.answer") == 1, call.commands
        assert call.commands.count("calling.play_and_collect") == 1, call.commands
    assert summary["ended"] == 6 and summary["leaked"] == 0
    assert await anyio.to_thread.run_sync(read_calls, state) == {}
