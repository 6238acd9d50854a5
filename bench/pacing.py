"""How closely calls placed through the Pacer keep to the rate and the cap they are given.

Two rows per setting, side by side with what was asked:

* ``pacer``: the Pacer alone on the real clock — N acquisitions, each held for HOLD seconds;
  the rate achieved (starts after the first, over the time from the first to the last),
  the most starts in any one-second window, the most holders at once;
* ``campaign``: N calls placed with ``run_outbound`` through the Pacer against the
  in-process simulator (each answered call plays SECONDS of silence), as ``flowengine dial
  --csv`` places them; the rate is measured from the simulator's side (when each
  ``calling.dial`` arrived), the cap is the simulator's ``dialed_peak``.

Usage: ``python -m bench.pacing [--calls 200] [--rate 5] [--concurrency 10]`` from the
repository root (200 calls at 5/s take about 40 s).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import anyio

from flowengine.engine.machine import FlowRuntime
from flowengine.engine.outbound import run_outbound
from flowengine.engine.pacing import Pacer
from flowengine.flow import load_flow
from flowengine.relay import RelayClient, RelayConfig
from flowengine.sim import Simulator

FLOW = """\
name: pace
inputs: {n: {type: integer, default: 0}}
outbound: {from: "+15559870000"}
steps:
  hold:
    play: [{silence: SECONDS}]
"""


def most_in_a_second(times: list[float]) -> int:
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - 1.0:
            j += 1
        best = max(best, i - j + 1)
    return best


def rate_of(times: list[float]) -> float:
    times = sorted(times)
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else float("nan")


async def pacer_alone(calls: int, rate: float, cap: int, hold: float) -> dict[str, float]:
    pacer = Pacer(cap, rate)
    starts: list[float] = []
    holding = peak = 0

    async def one() -> None:
        nonlocal holding, peak
        try:
            holding += 1
            peak = max(peak, holding)
            await anyio.sleep(hold)
        finally:
            holding -= 1
            pacer.release()

    async with anyio.create_task_group() as tg:
        for _ in range(calls):
            await pacer.acquire()
            starts.append(time.monotonic())
            tg.start_soon(one)
    return {"rate": rate_of(starts), "per_second": most_in_a_second(starts), "peak": peak,
            "dialed": calls}


async def campaign(calls: int, rate: float, cap: int, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pace.yaml"
        path.write_text(FLOW.replace("SECONDS", f"{seconds * 100:g}"))
        flow = load_flow(path)
    runtime = FlowRuntime(flow)
    arrived: list[float] = []
    async with Simulator(port=0, project="p", token="t", time_scale=0.01) as sim:
        sim.set_callee(None, "answer:1")
        original = sim.core._dial  # the bench only: note when each calling.dial arrives

        def noting(*args: object) -> None:
            arrived.append(time.monotonic())
            original(*args)  # type: ignore[arg-type]

        sim.core._dial = noting  # type: ignore[method-assign]
        pacer = Pacer(cap, rate)
        async with RelayClient(RelayConfig(url=sim.url, project="p", token="t")) as client:

            async def one(i: int) -> None:
                try:
                    await run_outbound(client, flow, to=f"+1555{i:07d}", runtime=runtime,
                                       time_scale=0.01, keep_trace=False)
                finally:
                    pacer.release()

            async with anyio.create_task_group() as tg:
                for i in range(calls):
                    await pacer.acquire()
                    tg.start_soon(one, i)
        await sim.wait_all_ended(timeout=30)
        summary = sim.summary()
    return {"rate": rate_of(arrived), "per_second": most_in_a_second(arrived),
            "peak": summary["dialed_peak"], "dialed": summary["dialed"]}


async def main(args: argparse.Namespace) -> None:
    print(f"{args.calls} starts, asked: rate {args.rate:g}/s, at most {args.concurrency} "
          f"at once")
    print(f"{'':10} {'rate/s':>8} {'asked':>6} {'max in 1 s':>11} {'asked':>6} "
          f"{'peak':>5} {'cap':>4}")
    alone = await pacer_alone(args.calls, args.rate, args.concurrency, args.seconds)
    placed = await campaign(args.calls, args.rate, args.concurrency, args.seconds)
    for name, row in (("pacer", alone), ("campaign", placed)):
        print(f"{name:10} {row['rate']:8.3f} {args.rate:6g} {row['per_second']:11d} "
              f"{args.rate:6g} {row['peak']:5d} {args.concurrency:4d}")
    print(f"campaign: {placed['dialed']} calls dialled of {args.calls}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="how long each call (or hold) lasts, real seconds")
    anyio.run(main, parser.parse_args(), backend="asyncio")
