"""The benchmark's simulator process: offers voicemail calls to whichever client connects.

Run by ``bench/run.py``; it speaks to the driver in lines:

* stdout ``url ws://127.0.0.1:PORT`` once listening;
* it offers ``--warmup`` calls (at most ``--warmup-concurrency`` in flight) as soon as a
  client subscribes to ``--context``, and prints ``warm {json}`` once they have ended;
* it waits for ``go`` on stdin, then offers ``--calls`` calls keeping ``--concurrency`` in
  flight, and prints ``done {json}`` once all have ended (or nothing ended for
  ``--stall`` seconds). The event-to-command latency is that of the steady state: its
  samples start once the first ``--concurrency`` calls (the burst offered at ``go``)
  have ended;
* it waits for ``quit`` (or the end of stdin), then shuts down (calls still up are counted
  as leaked and ended) and prints ``final {json}``.

Every measured call is checked when it ends: a voicemail call that went right sent exactly
``calling.answer, calling.play, calling.record, calling.play, calling.end`` and ended with
``hangup``; any other ending is counted as failed.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from typing import Any

import anyio

from flowengine.sim import SimCall, Simulator

EXPECTED = ["calling.answer", "calling.play", "calling.record", "calling.play", "calling.end"]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _say(tag: str, payload: dict[str, Any] | None = None) -> None:
    text = tag if payload is None else f"{tag} {json.dumps(payload, separators=(',', ':'))}"
    print(text, flush=True)


class Phase:
    """The calls of one phase (warm-up or measured) and how they ended."""

    def __init__(self) -> None:
        self.offered = 0
        self.ok = 0
        self.failed = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.last_end = time.monotonic()
        self.failures: dict[str, int] = {}
        self.first_offer = 0.0

    def check(self, call: SimCall) -> None:
        if call.commands == EXPECTED and call.end_reason == "hangup" and not call.leaked:
            self.ok += 1
        else:
            self.failed += 1
            key = f"{','.join(m.removeprefix('calling.') for m in call.commands)}" \
                  f" ended={call.end_reason}{' leaked' if call.leaked else ''}"
            if len(self.failures) < 20 or key in self.failures:
                self.failures[key] = self.failures.get(key, 0) + 1


async def _offer(sim: Simulator, phase: Phase, count: int, concurrency: int, context: str,
                 caller: str, stall: float, steady: bool = False) -> bool:
    """Offer ``count`` calls, ``concurrency`` in flight; False if the run stalled.

    ``steady``: the latency samples start over once the first ``concurrency`` calls have
    ended, so that they describe the steady state, not the first burst of offers.
    """
    slots = anyio.Semaphore(concurrency)
    stalled = False
    ended = 0

    async def until_ended(call: SimCall) -> None:
        nonlocal ended
        try:
            await call.wait_ended()
            phase.check(call)
            ended += 1
            if steady and ended == concurrency and sim.core.latency is not None:
                sim.core.latency.reset()
        finally:
            phase.in_flight -= 1
            phase.last_end = time.monotonic()
            slots.release()

    async def watchdog(scope: anyio.CancelScope) -> None:
        nonlocal stalled
        while True:
            await anyio.sleep(0.25)
            if time.monotonic() - phase.last_end > stall:
                stalled = True
                scope.cancel()
                return

    phase.last_end = time.monotonic()
    phase.first_offer = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(watchdog, tg.cancel_scope)
        async with anyio.create_task_group() as calls:
            for _ in range(count):
                await slots.acquire()
                call = sim.offer_call(context, caller=caller)
                phase.offered += 1
                phase.in_flight += 1
                phase.peak_in_flight = max(phase.peak_in_flight, phase.in_flight)
                calls.start_soon(until_ended, call)
        tg.cancel_scope.cancel()
    return not stalled


async def main(args: argparse.Namespace) -> None:
    sim = Simulator(port=0, project="sim-project", token="sim-token",
                    time_scale=args.time_scale, record_latency=True)
    async with sim:
        _say(f"url {sim.url}")
        stdin = anyio.wrap_file(sys.stdin)
        warm = Phase()
        await _offer(sim, warm, args.warmup, args.warmup_concurrency, args.context,
                     args.caller, args.stall)
        _say("warm", {"ok": warm.ok, "failed": warm.failed, "offered": warm.offered})
        line = (await stdin.readline()).strip()
        if line != "go":
            return
        assert sim.core.latency is not None
        sim.core.latency.reset()
        measured = Phase()
        cpu0, wall0 = _cpu(), time.monotonic()
        completed = await _offer(sim, measured, args.calls, args.concurrency, args.context,
                                 args.caller, args.stall, steady=args.calls > args.concurrency)
        wall = (measured.last_end if completed else time.monotonic()) - wall0
        cpu = _cpu() - cpu0
        summary = sim.summary()
        _say("done", {
            "calls": args.calls, "offered": measured.offered, "ok": measured.ok,
            "failed": measured.failed, "still_up": summary["active"],
            "stalled": not completed, "wall_s": round(wall, 4),
            "peak_in_flight": measured.peak_in_flight, "sim_cpu_s": round(cpu, 3),
            "latency": summary["latency"], "failures": measured.failures})
        await stdin.readline()  # "quit", or the end of stdin
    _say("final", sim.summary())


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--context", default="office")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--warmup-concurrency", type=int, default=20)
    parser.add_argument("--time-scale", type=float, default=1e-4)
    parser.add_argument("--caller", default="speak:3")
    parser.add_argument("--stall", type=float, default=30.0,
                        help="give up when no call ended for this many seconds")
    return parser.parse_args(argv)


if __name__ == "__main__":
    anyio.run(main, parse(), backend="asyncio")
