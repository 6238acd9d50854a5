"""flowengine.testing: the virtual clock and the in-memory pair, tested for what users rely
on — time jumps only when every task waits, in order and exactly; threads and real sockets
are waited for; the in-memory link is the production websocket stack (handshake, close,
abort, resume) with no socket."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from flowengine.relay import ConnectionLost, RelayClient
from flowengine.sim import Simulator
from flowengine.testing import VirtualClockLoop, config_for, connector, run, simulated

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

ROOT = Path(__file__).resolve().parent.parent


async def test_sleeps_take_exact_virtual_time_and_no_real_time():
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualClockLoop)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await anyio.sleep(seconds)
        woke.append((name, anyio.current_time()))

    start_real, start = time.perf_counter(), anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, "hour", 3600.0)
        tg.start_soon(sleeper, "minute", 60.0)
        tg.start_soon(sleeper, "second", 1.0)
    assert [(name, at - start) for name, at in woke] == [
        ("second", 1.0), ("minute", 60.0), ("hour", 3600.0)]
    assert time.perf_counter() - start_real < 5  # a generous bound: it did not sleep an hour


async def test_time_does_not_move_while_a_task_can_run():
    start = anyio.current_time()
    total = 0
    for _ in range(1000):
        await anyio.sleep(0)  # yields, but nothing waits for a timer
        total += 1
    sum(range(200_000))  # CPU work takes no virtual time either
    assert anyio.current_time() == start and total == 1000


async def test_a_deadline_fires_at_its_virtual_instant():
    start = anyio.current_time()
    with anyio.move_on_after(2.5) as scope:
        await anyio.Event().wait()  # waits forever
    assert scope.cancelled_caught
    assert anyio.current_time() - start == 2.5


async def test_an_executor_thread_holds_the_clock_until_it_is_done():
    start = anyio.current_time()
    with anyio.move_on_after(0.01) as scope:
        # 0.2 s of real work in a thread; a clock that jumped would time it out.
        await asyncio.get_running_loop().run_in_executor(None, time.sleep, 0.2)
    assert not scope.cancelled_caught
    assert anyio.current_time() == start


async def test_a_local_socket_exchange_is_not_overtaken_by_a_timeout():
    # A real TCP echo on 127.0.0.1 under a 1 s (virtual) deadline: the loop waits for the
    # bytes in flight instead of jumping past the deadline.
    async def echo(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.send(await stream.receive())

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, echo)
        with anyio.fail_after(1):
            for _ in range(20):
                async with await anyio.connect_tcp("127.0.0.1", port) as client:
                    await client.send(b"ping")
                    assert await client.receive() == b"ping"
        tg.cancel_scope.cancel()


def test_run_runs_a_coroutine_on_a_fresh_virtual_loop():
    async def main(seconds: float) -> float:
        await asyncio.sleep(seconds)
        return asyncio.get_running_loop().time()

    assert run(main, 86400.0) == 86400.0


async def test_a_client_reaches_a_simulator_that_opens_no_port():
    async with simulated(["office"], time_scale=1.0) as (sim, client):
        assert sim.url == "ws://127.0.0.1:0"
        assert client.protocol
        offered = sim.offer_call(context="office", caller="hangup:30")
        call = await client.incoming_calls().receive()
        start = anyio.current_time()
        await call.answer()
        await call.wait_for_ended()
        await offered.wait_ended()
        assert anyio.current_time() - start == pytest.approx(30.0, abs=1e-6)
    assert sim.summary()["ended"] == 1 and sim.summary()["leaked"] == 0
    with socket.socket() as probe, pytest.raises(OSError):  # nothing listens at its address
        probe.connect(("127.0.0.1", 0))


async def test_in_memory_links_drop_and_resume_like_sockets():
    # The simulator aborts the link (no close frame): the client reconnects in memory and
    # resumes the same session; the call carries on.
    async with simulated(["office"], time_scale=1.0) as (sim, client):
        protocol = client.protocol
        offered = sim.offer_call(context="office", caller="hangup:20")
        call = await client.incoming_calls().receive()
        await call.answer()
        answered = anyio.current_time()
        await sim.drop_connections()
        with anyio.fail_after(60):
            while not client.connected or client.reconnects == 0:
                await anyio.sleep(0.1)
        assert client.protocol == protocol and client.reconnects == 1
        await call.wait_for_ended()  # the caller's 20 s ran on, across the drop
        await offered.wait_ended()
        assert anyio.current_time() - answered == pytest.approx(20.0, abs=1e-6)


async def test_wrong_credentials_are_refused_in_memory_too():
    async with Simulator(listen=False, project="p", token="right") as sim:
        config = config_for(sim).__class__(url=sim.url, project="p", token="wrong")
        with pytest.raises(Exception) as info:
            async with RelayClient(config, ["office"], connect=connector(sim)):
                pass
        assert "rejected the credentials" in str(info.value)
        assert "wrong" not in str(info.value)


async def test_a_stopped_simulator_takes_no_in_memory_link():
    sim = Simulator(listen=False)
    with pytest.raises(RuntimeError, match="not running"):
        sim.server_link()
    async with sim:
        pass
    with pytest.raises((RuntimeError, ConnectionLost)):
        await connector(sim)("ws://127.0.0.1:0")


def test_the_example_of_docs_testing_md_runs_as_shown(monkeypatch: pytest.MonkeyPatch):
    # The "Your own tests on virtual time" example, executed: its fixture names the loop
    # this module runs on, and its test passes on it.
    text = (ROOT / "docs" / "testing.md").read_text()
    section = text[text.index("## Your own tests on virtual time"):]
    code = section[section.index("```python\n") + 10:section.index("```", section.index(
        "```python\n") + 10)]
    monkeypatch.chdir(ROOT)  # it names flows/voicemail.yaml, as in a project's root
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/testing.md", "exec"), namespace)
    assert namespace["anyio_backend"].__wrapped__() == (
        "asyncio", {"loop_factory": VirtualClockLoop})
    tests = [value for name, value in namespace.items() if name.startswith("test_")]
    assert len(tests) == 1
    run(tests[0])


async def test_a_set_clock_on_the_loops_clock_runs_with_virtual_time():
    # What run_flow(at=...) and a scenario's at: use: the clock moves with the call.
    from datetime import UTC, datetime, timedelta

    from flowengine.flow.schedules import SetClock

    at = datetime(2026, 12, 24, 16, 59, 50, tzinfo=UTC)
    clock = SetClock(at, monotonic=asyncio.get_running_loop().time)
    await anyio.sleep(3600)
    assert clock.now() == at + timedelta(hours=1)
