"""Calls that outlive the process (issue 16): ``serve --state-dir`` keeps a checkpoint per
call in flight, and a restarted ``serve`` continues the calls from them (docs/store.md)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from flowengine.daemon.durable import Durable, StateDirInUse
from flowengine.sim import SimCall
from flowengine.store import StoreError
from tests.test_daemon import flow_text, serving, simulator, write

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
    with pytest.raises(StoreError, match="flowengine.db|state"):
        await durable.open()
    await durable.close()
    assert (state / "flowengine.db").read_bytes() == junk
