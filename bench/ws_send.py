"""The cost of writing one RELAY-sized text frame, flowengine's websocket layer side by side
with websockets' own asyncio connection (docs/benchmarks.md, "The websocket layer").

    .venv/bin/python bench/ws_send.py [--frames 200000] [--repeat 5]

Both clients write to a local server (our own, which reads and drops the frames) through
the same coalescing transport, so the system calls are the same; only the time spent in
the send calls is counted (the flush at the end of each loop turn is not), per frame.
Rows: ``wslink send_text`` (flowengine: the frame handed to websockets' sans-I/O
protocol, no await), ``wslink await send`` (the same plus the flow-control check), and the
reference ``websockets await send`` (``websockets.asyncio.client.connect``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from flowengine.relay.wslink import CoalescingTransport, WsLink, connect, serve

FRAME = ('{"jsonrpc":"2.0","id":"4b4c1b9e-5d7c-4e5c-9a43-2b1f4e0f6f51-1234","result":{},'
         '"params":{"call_id":"d5d22227-ddaa-4c7d-8073-0e0bdbbf0f13","node_id":"sim-node",'
         '"control_id":"a2c7c1e4-93a4-4b5c-8c10-7c4c6a9c6a1e"}}')
BATCH = 50  # frames per loop turn, about what one reader turn writes at 500 calls in flight


class _CoalescingClientConnection(ClientConnection):
    """websockets' connection on the same coalescing transport (its documented
    ``create_connection`` hook), so that both rows make the same system calls."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        wrapped = CoalescingTransport(cast(asyncio.Transport, transport),
                                      asyncio.get_running_loop())
        super().connection_made(cast(asyncio.Transport, wrapped))


async def _timed(frames: int, send: Callable[[str], Awaitable[None] | None],
                 is_async: bool) -> float:
    """Seconds spent inside ``send`` for ``frames`` frames, flushing between batches."""
    spent = 0.0
    clock = time.perf_counter
    for _ in range(frames // BATCH):
        t0 = clock()
        if is_async:
            for _ in range(BATCH):
                await cast(Awaitable[None], send(FRAME))
        else:
            for _ in range(BATCH):
                send(FRAME)
        spent += clock() - t0
        await asyncio.sleep(0)  # the flush: one write for the batch (not counted)
        await asyncio.sleep(0)  # and the server reads it
    return spent


async def main(frames: int, repeat: int) -> None:
    def drop_everything(link: WsLink) -> None:
        async def reader() -> None:
            try:
                while True:
                    await link.recv()
            except Exception:
                return
        asyncio.get_running_loop().create_task(reader())

    server = await serve("127.0.0.1", 0, on_open=drop_everything, max_queue=10_000)
    port = server.sockets[0].getsockname()[1]
    url = f"ws://127.0.0.1:{port}"
    link = await connect(url)
    ws = await ws_connect(url, compression=None, ping_interval=None,
                          create_connection=_CoalescingClientConnection)
    rows: dict[str, tuple[Callable[[str], Any], bool]] = {
        "wslink send_text": (link.send_text, False),
        "wslink await send": (link.send, True),
        "websockets await send": (ws.send, True),
    }
    results: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(repeat):
        for name, (send, is_async) in rows.items():
            seconds = await _timed(frames, send, is_async)
            results[name].append(seconds / frames * 1e6)
    print(f"{'us per frame':<24}{'median':>8}{'min':>8}{'max':>8}   ({repeat} runs of "
          f"{frames:,} frames of {len(FRAME)} bytes)")
    for name, values in results.items():
        print(f"{name:<24}{statistics.median(values):>8.2f}{min(values):>8.2f}"
              f"{max(values):>8.2f}")
    await link.close()
    await ws.close()
    server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    asyncio.run(main(options.frames, options.repeat))
