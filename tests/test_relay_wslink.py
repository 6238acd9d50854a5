"""flowengine.relay.wslink, our websocket I/O on websockets' public sans-I/O protocols:
against websockets' own server and client as the peer, with a slow reader, and the
dependency pin that it makes unnecessary."""

from __future__ import annotations

import asyncio
import re
import tomllib
from pathlib import Path

import anyio
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed, InvalidStatus

from flowengine.relay.wslink import WRITE_LIMIT_HIGH, WsLink, connect, serve

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


async def test_a_fragmented_message_is_assembled_and_a_server_ping_is_answered() -> None:
    seen: list[str] = []

    async def handler(ws: ServerConnection) -> None:
        await ws.send(["frag", "men", "ted"])  # one text message in three frames
        await ws.send([b"\x00\x01", b"\x02"])  # and a binary one in two
        pong = await ws.ping(b"are you there")
        with anyio.fail_after(10):
            await pong  # answered by our client without anyone reading
        seen.append("pong")
        await ws.send("after the pong")
        seen.append(await ws.recv())

    async with ws_serve(handler, "127.0.0.1", 0, compression=None) as server:
        link = await connect(f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        with anyio.fail_after(10):
            assert await link.recv() == "fragmented"
            assert await link.recv() == b"\x00\x01\x02"
            assert await link.recv() == "after the pong"
            await link.send("bye")
            with pytest.raises(ConnectionClosed):
                await link.recv()  # the handler returned: websockets closes the link
            await link.close()
    assert seen == ["pong", "bye"]


async def test_our_server_assembles_fragments_answers_pings_and_closes_cleanly() -> None:
    async def echo_loop(link: WsLink) -> None:
        try:
            while True:
                await link.send(f"echo {await link.recv()!r}")
        except ConnectionClosed:
            pass

    def on_open(link: WsLink) -> None:
        asyncio.get_running_loop().create_task(echo_loop(link))

    server = await serve("127.0.0.1", 0, on_open=on_open)
    try:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        async with ws_connect(url, compression=None) as ws:
            with anyio.fail_after(10):
                await ws.send(["a", "b", "c"])
                assert await ws.recv() == "echo 'abc'"
                await (await ws.ping(b"x"))
                await ws.send(b"\xff")
                assert await ws.recv() == "echo b'\\xff'"
        assert ws.close_code == 1000  # our side completed the closing handshake
    finally:
        server.close()
        await server.wait_closed()


async def test_a_refused_upgrade_is_an_error_with_its_status() -> None:
    server = await serve("127.0.0.1", 0, on_open=lambda link: None,
                         on_request=lambda link, request: link.respond(403, "no\n"))
    try:
        with anyio.fail_after(10), pytest.raises(InvalidStatus, match="403"):
            await connect(f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}")
    finally:
        server.close()
        await server.wait_closed()


async def test_a_slow_reader_makes_the_writer_wait_instead_of_buffering() -> None:
    # The server reads nothing until told to: its queue fills, it stops reading the socket,
    # the kernel's buffers fill, and then our writer must wait in send() with its own buffer
    # near the high mark, not grow it with every frame.
    accepted: list[WsLink] = []
    server = await serve("127.0.0.1", 0, max_queue=8, on_open=accepted.append)
    frame = "x" * 16_384
    FRAMES = 3_000
    sent = 0
    try:
        link = await connect(f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}")

        async def writer() -> None:
            nonlocal sent
            for _ in range(FRAMES):  # 48 MB: far more than the buffers on the way
                await link.send(frame)
                sent += 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(writer)
            with anyio.fail_after(20):
                while not (accepted and link.write_paused
                           and not accepted[0].transport.is_reading()):  # type: ignore[union-attr]
                    await anyio.sleep(0.01)
            peer = accepted[0]
            # However long the writer is left alone, its buffer stays near the high mark and
            # it never gets through: 48 MB cannot all be on the way.
            for _ in range(20):
                await anyio.sleep(0.005)
                assert link.transport is not None
                assert link.transport.get_write_buffer_size() <= WRITE_LIMIT_HIGH + 2 * 16_400
            assert link.write_paused and sent < FRAMES
            # The reader gets going: every frame arrives, in order, and the writer finishes.
            received = 0
            with anyio.fail_after(60):
                while received < FRAMES:
                    assert await peer.recv() == frame
                    received += 1
        assert sent == FRAMES
        await link.close()
    finally:
        server.close()
        await server.wait_closed()


def test_websockets_has_no_upper_pin_without_a_reason() -> None:
    # The I/O class is ours and websockets is used through its documented sans-I/O API
    # only, so nothing ties us to a websockets release. An upper bound (or exact pin) may
    # come back only with a comment on its line saying why.
    pyproject = (ROOT / "pyproject.toml").read_text()
    dependencies = tomllib.loads(pyproject)["project"]["dependencies"]
    spec = next(d for d in dependencies if re.match(r"websockets\b", d))
    upper = re.search(r"<|==|~=", spec)
    line = next(line for line in pyproject.splitlines() if f'"{spec}"' in line)
    assert upper is None or "#" in line.split(f'"{spec}"', 1)[1], (
        f"pyproject.toml pins {spec!r} without a comment saying why")


def test_flowengine_uses_only_websockets_sans_io_api() -> None:
    # websockets' asyncio connection is where the private fields were (paused,
    # send_in_progress, .transport): the package no longer imports it at all.
    for path in (ROOT / "flowengine").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"\bwebsockets\.(asyncio|legacy|sync)\b", text), path
        assert "send_in_progress" not in text, path


async def test_the_simulator_still_answers_plain_http_on_its_websocket_port() -> None:
    import urllib.error
    import urllib.request

    from flowengine.sim import Simulator

    def status(url: str) -> int:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    async with Simulator(port=0) as sim:
        missing = f"{sim.http_url}/recordings/{'0' * 32}.wav"
        assert await anyio.to_thread.run_sync(status, missing) == 404
        assert await anyio.to_thread.run_sync(status, f"{sim.http_url}/") == 426


async def test_a_client_silent_in_its_handshake_is_dropped() -> None:
    # A socket that never finishes its HTTP upgrade (slowloris) must not hold a descriptor
    # for ever: past open_timeout the server drops it, and says so through on_lost.
    made: list[WsLink] = []
    lost: list[WsLink] = []
    server = await serve("127.0.0.1", 0, open_timeout=0.2, on_open=lambda link: None,
                         on_made=made.append, on_lost=lost.append)
    try:
        port = server.sockets[0].getsockname()[1]
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            with anyio.fail_after(10):
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError,
                                    ConnectionResetError)):
                    while True:
                        await stream.receive()
            with anyio.fail_after(10):
                while not lost:
                    await anyio.sleep(0.01)
        assert made == lost and made[0].state.name == "CLOSED"
    finally:
        server.close()
        await server.wait_closed()
