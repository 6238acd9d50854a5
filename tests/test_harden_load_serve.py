"""``flowengine serve`` with hostile or half-written flow files: it keeps taking calls.

A FIFO subflow, ``/dev/zero`` and a 2 GiB file in a served directory are refused without
being read (loading runs in a worker thread, never on the event loop) and SIGTERM still
drains; ``/healthz`` says which files are invalid, not what is in them; a file deleted and
re-created invalid, or truncated then written, keeps its last good version serving.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from flowengine.daemon import FlowLoader
from flowengine.engine import TraceEntry
from tests.test_daemon import (  # noqa: F401
    LogTap,
    flow_text,
    line_with,
    log_tap,
    serving,
    simulator,
    write,
)
from tests.test_daemon_ops import http_get
from tests.test_harden_load import long_flow

pytestmark = pytest.mark.anyio


def calling(path: Path, target: str) -> Path:
    path.write_text(f"name: {path.stem}\ncontext: {path.stem}\nsteps:\n  sub:\n"
                    f"    call: {target}\n")
    return path


def sparse(path: Path, size: int = 2 << 30) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)  # no disk used
    return path


async def test_fifo_dev_zero_and_2_gib_files_never_stop_serve(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    (flows / "lib").mkdir(parents=True)
    write(flows / "desk.yaml", flow_text("desk"))
    os.mkfifo(flows / "lib" / "pipe.yaml")
    (flows / "lib" / "zero.yaml").symlink_to("/dev/zero")
    calling(flows / "pipe.yaml", "lib/pipe.yaml")
    calling(flows / "zero.yaml", "lib/zero.yaml")
    calling(flows / "devzero.yaml", "/dev/zero")
    sparse(flows / "huge.yaml")
    command = [sys.executable, "-m", "flowengine.cli", "serve", str(flows), "--simulate",
               "--sim-rate", "20", "--time-scale", "0.01", "--no-watch",
               "--rescan-interval", "0"]
    process = await anyio.open_process(command, stdout=subprocess.DEVNULL)
    try:
        assert process.stderr is not None
        stderr = BufferedByteReceiveStream(process.stderr)

        await line_with(stderr, "flowengine.daemon: serving 1 flow(s): desk@")
        await line_with(stderr, "call ended: completed")
        # The same again, arriving while it serves: a second FIFO subflow and 2 GiB file.
        os.mkfifo(flows / "lib" / "pipe2.yaml")
        calling(flows / "pipe2.yaml", "lib/pipe2.yaml")
        sparse(flows / "huge2.yaml")
        process.send_signal(signal.SIGHUP)
        await line_with(stderr, f"{flows / 'pipe2.yaml'}: edit rejected (1 error); nothing loaded")
        await line_with(stderr, "call ended: completed")
        process.send_signal(signal.SIGTERM)
        await line_with(stderr, "flowengine.daemon: stopped")
        with anyio.fail_after(20):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
        await process.aclose()


async def test_healthz_names_invalid_files_without_their_contents(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (tmp_path / "outside.yaml").write_text(
        "name: outside\nsteps:\n  a:\n    log: x\nsecret_key_7f3a: hunter2\n")
    write(flows / "desk.yaml", flow_text("desk"))
    calling(flows / "passwd.yaml", "/etc/passwd")
    calling(flows / "out.yaml", "../outside.yaml")
    (flows / "notflow.yaml").write_text("db_password_7f3a: hunter2\n")
    async with simulator() as sim, serving(sim, [flows], metrics_port=0) as daemon:
        status, _, body = await http_get(daemon.metrics_port, "/healthz")
    assert status == 200
    health = json.loads(body)
    invalid = health["invalid_files"]
    assert sorted(invalid) == sorted(str(flows / n) for n in
                                     ("passwd.yaml", "out.yaml", "notflow.yaml"))
    assert invalid[str(flows / "passwd.yaml")]["error_count"] == 1
    assert invalid[str(flows / "passwd.yaml")]["locations"] == [f"{flows / 'passwd.yaml'}:5:11"]
    for secret in (b"root:", b"secret_key_7f3a", b"db_password_7f3a", b"hunter2", b"error:"):
        assert secret not in body


async def test_deleted_then_recreated_invalid_keeps_the_last_good_version(
        tmp_path: Path, log_tap: LogTap) -> None:  # noqa: F811
    path = write(tmp_path / "desk.yaml", flow_text("desk", "desk", say="Good"))
    steps: list[TraceEntry] = []
    async with simulator() as sim, serving(sim, [tmp_path], on_step=steps.append) as daemon:
        good = daemon.registry.flows["desk"].flow.version
        path.unlink()
        await anyio.sleep(0.3)  # longer than the settle time: the deletion was seen
        path.write_text(flow_text("desk", "desk").replace("    play:", "    plya:"))
        await log_tap.wait_event("rejected", file=str(path))
        assert daemon.registry.flows["desk"].flow.version == good
        assert not log_tap.events("removed") and not log_tap.events("unreceive")
        call = sim.offer_call("desk", "+15551112222", "+15559870000")
        await sim.wait_all_ended(timeout=10)
    assert {e.version for e in steps if e.call_id == call.call_id} == {good}


async def test_a_file_deleted_for_good_is_removed_after_the_grace(tmp_path: Path) -> None:
    path = write(tmp_path / "desk.yaml", flow_text("desk", "desk"))
    loader = FlowLoader([str(tmp_path)], settle=0.02, grace=0.2)
    await loader.rescan("startup")
    path.unlink()
    with anyio.fail_after(10):
        report = await loader.rescan("deleted")
    assert [e.name for e in report.removed] == ["desk"] and not report.rejected
    assert "desk" not in loader.registry.flows


async def test_truncate_then_write_is_one_edit_not_an_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path / "desk.yaml", flow_text("desk", "desk", say="One"))
    loader = FlowLoader([str(tmp_path)], settle=0.05)
    await loader.rescan("startup")
    one = loader.registry.flows["desk"].flow.version
    path.write_bytes(b"")  # an editor truncates, then takes its time to write

    async def write_later() -> None:
        await anyio.sleep(0.4)  # well past the settle time
        # Into the file left empty: the same bytes as appending to it.
        await anyio.Path(path).write_text(flow_text("desk", "desk", say="Two"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(write_later)
        with anyio.fail_after(10):
            report = await loader.rescan("changed: desk.yaml")
    assert not report.rejected, report.rejected
    assert [(old.flow.version, new.name) for old, new in report.updated] == [(one, "desk")]
    assert loader.registry.flows["desk"].flow.version != one


async def test_an_empty_file_that_stays_empty_is_rejected_and_the_old_version_kept(
        tmp_path: Path) -> None:
    path = write(tmp_path / "desk.yaml", flow_text("desk", "desk"))
    loader = FlowLoader([str(tmp_path)], settle=0.02, grace=0.2)
    await loader.rescan("startup")
    good = loader.registry.flows["desk"].flow.version
    path.write_bytes(b"")
    with anyio.fail_after(10):
        report = await loader.rescan("emptied")
    assert [p for p, _ in report.rejected] == [str(path)]
    assert "the file is empty" in report.rejected[0][1].errors[0]
    assert loader.registry.flows["desk"].flow.version == good


async def test_a_compile_over_its_budget_is_rejected_and_the_old_version_kept(
        tmp_path: Path) -> None:
    path = write(tmp_path / "desk.yaml", flow_text("desk", "desk", say="One"))
    loader = FlowLoader([str(tmp_path)], settle=0)
    await loader.rescan("startup")
    good = loader.registry.flows["desk"].flow.version
    loader.budget = 0.0  # every compile is over it now
    write(path, flow_text("desk", "desk", say="Two"))
    report = await loader.rescan("changed")
    assert [e.errors for _, e in report.rejected] == [(
        (f"{path}: error: the flow takes too long to compile: it went over the time budget of "
         "one compile (subflows included); make it smaller, or split it into subflows"),)]
    assert loader.registry.flows["desk"].flow.version == good


async def test_calls_go_on_while_a_big_flow_compiles(tmp_path: Path,
                                                      log_tap: LogTap) -> None:  # noqa: F811
    # Compiling runs in a worker thread: calls offered one after another keep ending while
    # a 5,000-step flow compiles (seconds). On the event loop, none could end meanwhile.
    write(tmp_path / "desk.yaml", flow_text("desk", "desk"))
    async with simulator() as sim, serving(sim, [tmp_path], watch=False) as daemon:
        write(tmp_path / "long.yaml", long_flow(5000))
        daemon.request_reload("test")
        ended_during = 0
        with anyio.fail_after(120):
            while not log_tap.events("loaded", flow="long"):
                call = sim.offer_call("desk", "+15551112222", "+15559870000")
                while not call.ended:
                    await anyio.sleep(0.01)
                if not log_tap.events("loaded", flow="long"):
                    ended_during += 1
    assert call.end_reason == "hangup"
    assert ended_during >= 3, ended_during
