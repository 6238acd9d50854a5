"""(b) Outbound calls hand-written on the official SDK (signalwire-sdk 3.7.5): ``client.dial()``
then the same exchange as bench/outbound.py's flow — play a sentence, hang up, wait for the
end. The SDK as shipped but for the §8 A URL rewrite (bench/sdk_client.py); the pacing
(at most CONCURRENCY up, starts 1/RATE apart) is written by hand, as a user would.

Usage: ``python bench/sdk_dial.py HOST:PORT COUNT CONCURRENCY RATE [WARMUP]`` (credentials
sim-project / sim-token). It dials WARMUP calls, prints ``warm``, waits for ``go`` on stdin,
dials COUNT calls and prints ``done OK FAILED``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import types

import signalwire.relay.client as _relay_client_mod
import websockets

_real_connect = websockets.connect


def _connect_plain(uri, *args, **kwargs):  # type: ignore[no-untyped-def]
    kwargs.pop("ssl", None)
    return _real_connect(uri.replace("wss://", "ws://", 1), *args, **kwargs)


_relay_client_mod.websockets = types.SimpleNamespace(  # type: ignore[attr-defined]
    connect=_connect_plain, exceptions=websockets.exceptions)

from signalwire.relay import RelayClient  # noqa: E402

TEXT = "Your appointment is tomorrow at nine."


async def one(client: RelayClient, number: str) -> bool:
    devices = [[{"type": "phone", "params": {"to_number": number,
                                              "from_number": "+15559990000", "timeout": 30}}]]
    try:
        call = await client.dial(devices, dial_timeout=60)
        action = await call.play([{"type": "tts", "params": {"text": TEXT}}])
        await action.wait()
        await call.hangup()
        await call.wait_for_ended()
        return True
    except Exception as exc:  # a failed call is counted, the others go on
        logging.getLogger("sdk_dial").warning("call to %s failed: %s", number, exc)
        return False


async def campaign(client: RelayClient, count: int, concurrency: int, rate: float,
                   first: int) -> tuple[int, int]:
    slots = asyncio.Semaphore(concurrency)
    results: list[bool] = []
    tasks = []

    async def run(number: str) -> None:
        try:
            results.append(await one(client, number))
        finally:
            slots.release()

    next_start = time.monotonic()
    for i in range(count):
        await slots.acquire()
        delay = next_start - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        next_start = max(next_start, time.monotonic()) + 1 / rate
        tasks.append(asyncio.create_task(run(f"+1555{first + i:07}")))
    await asyncio.gather(*tasks)
    return sum(results), len(results) - sum(results)


async def main() -> None:
    host = sys.argv[1]
    count, concurrency, rate = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    warmup = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    client = RelayClient(project="sim-project", token="sim-token", host=host, contexts=[])
    async with client:
        if warmup:
            await campaign(client, warmup, concurrency, rate, 9_000_000)
        print("warm", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        ok, failed = await campaign(client, count, concurrency, rate, 0)
        print(f"done {ok} {failed}", flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main())
