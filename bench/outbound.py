"""Outbound calls: CPU per call of ``flowengine serve`` through the call API against the
official SDK's ``client.dial()`` with a hand-written handler, same run; and pacing accuracy
(docs/benchmarks.md, "Outbound calls").

The simulator runs in this process (its CPU is not counted); each client is a process of
its own whose CPU (user + system, all threads) is read from /proc around the measured calls:

* ``flowengine``: ``flowengine serve DIR --api-port 0 --log-level warning`` serving a flow
  that plays one sentence and hangs up; one campaign of COUNT contacts is POSTed to the API
  and polled until it completes (the polling's cost is in serve's CPU too — a user polls);
* ``sdk``: ``bench/sdk_dial.py``: ``client.dial()``, ``play``, ``hangup`` per call, the same
  concurrency and rate by hand.

Both first place WARMUP calls, unmeasured. Then pacing: a campaign at ``--pace-rate``
calls per second (real time: time scale 1) and ``--pace-concurrency``; the simulator's
clock gives the achieved rate, the gaps between starts and the most starts in any second.

It prints numbers and asserts nothing. Usage::

    .venv/bin/python bench/outbound.py                  # 1,000 calls, 3 runs each (~2 min)
    .venv/bin/python bench/outbound.py --quick          # 200 calls, 1 run each
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
from anyio.streams.buffered import BufferedByteReceiveStream

from flowengine.sim import Simulator

BENCH = Path(__file__).resolve().parent
PY = sys.executable
FLOWENGINE = str(Path(PY).parent / "flowengine")
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
TIME_SCALE = 0.01
FLOW = """\
name: remind
context: outbound
steps:
  say:
    play:
      - say: "Your appointment is tomorrow at nine."
  bye:
    hangup: {}
"""


def cpu_seconds(pid: int) -> float:
    """user + system CPU of a process (all its threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


class Legs:
    """The outbound legs the simulator places, on its clock (real seconds)."""

    def __init__(self, sim: Simulator) -> None:
        self.starts: list[float] = []
        core = sim.core
        original = core.leg_created

        def leg_created(session: Any, leg: Any) -> None:
            original(session, leg)
            self.starts.append(core.now)

        core.leg_created = leg_created  # type: ignore[method-assign]


async def _line_with(stream: BufferedByteReceiveStream, text: str, timeout: float = 60) -> str:
    with anyio.fail_after(timeout):
        while True:
            line = (await stream.receive_until(b"\n", 1 << 20)).decode()
            if text in line:
                return line


async def _serve(sim: Simulator, workdir: Path, time_scale: float
                 ) -> tuple[anyio.abc.Process, str, BufferedByteReceiveStream]:
    flows = workdir / "flows"
    flows.mkdir(exist_ok=True)
    (flows / "remind.yaml").write_text(FLOW)
    state = workdir / f"state-{time.monotonic_ns()}"
    env = {**os.environ, "SIGNALWIRE_PROJECT_ID": "sim-project",
           "SIGNALWIRE_API_TOKEN": "sim-token"}
    env.pop("FLOWENGINE_API_TOKEN", None)
    process = await anyio.open_process(
        [FLOWENGINE, "serve", str(flows), "--relay-url", sim.url, "--time-scale",
         str(time_scale), "--no-watch", "--rescan-interval", "0", "--api-port", "0",
         "--state-dir", str(state), "--log-level", "warning", "--max-outbound", "1000"],
        env=env, stdout=subprocess.DEVNULL)
    assert process.stderr is not None
    stderr = BufferedByteReceiveStream(process.stderr)
    line = await _line_with(stderr, "call API on http://")
    match = re.search(r"http://[0-9.]+:[0-9]+", line)
    assert match is not None
    return process, match.group(0), stderr


async def _campaign(client: httpx.AsyncClient, count: int, first: int, concurrency: int,
                    rate: float) -> dict[str, Any]:
    response = await client.post("/v1/campaigns", json={
        "flow": "remind", "from": "+15559990000", "max_concurrent": concurrency,
        "calls_per_second": rate,
        "contacts": [{"to": f"+1555{first + i:07}"} for i in range(count)]})
    response.raise_for_status()
    campaign_id = response.json()["id"]
    while True:
        await anyio.sleep(0.05)
        body: dict[str, Any] = (await client.get(f"/v1/campaigns/{campaign_id}")).json()
        if body["state"] in ("completed", "canceled"):
            return body


async def run_flowengine(count: int, warmup: int, concurrency: int) -> dict[str, Any]:
    rate = 1000.0  # simulated calls per second: concurrency, not the rate, is the bound
    with tempfile.TemporaryDirectory() as tmp:
        async with Simulator(time_scale=TIME_SCALE, project="sim-project",
                             token="sim-token") as sim:
            sim.set_callee(None, "answer:1")
            process, url, _ = await _serve(sim, Path(tmp), TIME_SCALE)
            try:
                async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                    await _campaign(client, warmup, 9_000_000, concurrency, rate)
                    before, wall = cpu_seconds(process.pid), time.monotonic()
                    done = await _campaign(client, count, 0, concurrency, rate)
                    cpu, took = cpu_seconds(process.pid) - before, time.monotonic() - wall
            finally:
                process.send_signal(signal.SIGTERM)
                with anyio.move_on_after(20):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
    return {"client": "flowengine", "calls": count, "ok": done["done_by_outcome"].get(
        "answered", 0), "cpu_ms_per_call": cpu / count * 1000, "wall_s": took}


async def run_sdk(count: int, warmup: int, concurrency: int) -> dict[str, Any]:
    rate = 1000.0 / TIME_SCALE  # the same non-binding rate, in real seconds
    async with Simulator(time_scale=TIME_SCALE, project="sim-project", token="sim-token") as sim:
        sim.set_callee(None, "answer:1")
        host = sim.url.removeprefix("ws://")
        env = {**os.environ, "RELAY_MAX_CONNECTIONS": "64", "no_proxy": "127.0.0.1"}
        process = await anyio.open_process(
            [PY, str(BENCH / "sdk_dial.py"), host, str(count), str(concurrency), str(rate),
             str(warmup)], env=env, stderr=subprocess.DEVNULL)
        try:
            assert process.stdout is not None and process.stdin is not None
            out = BufferedByteReceiveStream(process.stdout)
            await _line_with(out, "warm", timeout=300)
            before, wall = cpu_seconds(process.pid), time.monotonic()
            await process.stdin.send(b"go\n")
            line = await _line_with(out, "done", timeout=600)
            cpu, took = cpu_seconds(process.pid) - before, time.monotonic() - wall
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()
    ok = int(line.split()[1])
    return {"client": "sdk", "calls": count, "ok": ok, "cpu_ms_per_call": cpu / count * 1000,
            "wall_s": took}


async def run_pacing(count: int, rate: float, concurrency: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        async with Simulator(time_scale=1.0, project="sim-project", token="sim-token") as sim:
            sim.set_callee(None, "answer:1")
            legs = Legs(sim)
            process, url, _ = await _serve(sim, Path(tmp), 1.0)
            try:
                async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                    await _campaign(client, count, 0, concurrency, rate)
            finally:
                process.send_signal(signal.SIGTERM)
                with anyio.move_on_after(20):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
    starts = sorted(legs.starts)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    most, low = 0, 0
    for high, t in enumerate(starts):
        while starts[low] <= t - 1.0:
            low += 1
        most = max(most, high - low + 1)
    span = starts[-1] - starts[0]
    return {"rate": rate, "calls": len(starts), "achieved_per_s": (len(starts) - 1) / span,
            "gap_min_ms": min(gaps) * 1000, "gap_median_ms": statistics.median(gaps) * 1000,
            "gap_max_ms": max(gaps) * 1000, "max_starts_in_1s": most}


async def main(args: argparse.Namespace) -> None:
    rows: list[dict[str, Any]] = []
    for run in range(args.runs):
        order = (run_flowengine, run_sdk) if run % 2 == 0 else (run_sdk, run_flowengine)
        for fn in order:
            row = await fn(args.calls, args.warmup, args.concurrency)
            row["run"] = run + 1
            rows.append(row)
            print(f"  run {run + 1} {row['client']:<10} {row['cpu_ms_per_call']:.2f} ms CPU "
                  f"per call, {row['ok']}/{row['calls']} ok, {row['wall_s']:.1f} s",
                  file=sys.stderr)
    print(f"\nOutbound calls: {args.calls} per run, {args.concurrency} in flight, "
          f"time scale {TIME_SCALE}, {args.runs} run(s), median run shown\n")
    print("| client | CPU per call | spread | calls ok |")
    print("|---|---:|---:|---:|")
    medians = {}
    for client in ("flowengine", "sdk"):
        mine = sorted((r for r in rows if r["client"] == client),
                      key=lambda r: r["cpu_ms_per_call"])
        mid = mine[len(mine) // 2]
        medians[client] = mid["cpu_ms_per_call"]
        print(f"| {client} | {mid['cpu_ms_per_call']:.2f} ms | "
              f"{mine[0]['cpu_ms_per_call']:.2f}–{mine[-1]['cpu_ms_per_call']:.2f} ms | "
              f"{mid['ok']}/{mid['calls']} |")
    print(f"\nflowengine / sdk: {medians['flowengine'] / medians['sdk']:.2f}×\n")
    pace = await run_pacing(args.pace_calls, args.pace_rate, args.pace_concurrency)
    print(f"Pacing: {pace['calls']} calls asked at {pace['rate']:g}/s, "
          f"{args.pace_concurrency} in flight at most (real time)\n")
    print("| achieved rate | gap min | gap median | gap max | most starts in any 1 s |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| {pace['achieved_per_s']:.2f}/s | {pace['gap_min_ms']:.1f} ms | "
          f"{pace['gap_median_ms']:.1f} ms | {pace['gap_max_ms']:.1f} ms | "
          f"{pace['max_starts_in_1s']} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pace-calls", type=int, default=100)
    parser.add_argument("--pace-rate", type=float, default=20.0)
    parser.add_argument("--pace-concurrency", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="200 calls, 1 run")
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.calls, arguments.runs, arguments.warmup = 200, 1, 50
        arguments.pace_calls = 60
    anyio.run(main, arguments, backend="asyncio")
