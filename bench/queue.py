"""500 callers waiting in one queue, taken by 20 agents: the engine's CPU per call, its
memory per waiting caller, and whether the callers were taken in the order they came.

Side by side with a reference: the same number of plain calls that are answered and wait
(``answer`` then ``sleep``) for as long, with nobody to take them.

Three processes, so that each number is the engine's own:

* the driver (``python bench/queue.py``) runs each mode in a fresh process and prints
  the table;
* ``--run MODE`` is the engine: a RelayClient and ``run_calls`` for the flows of the
  mode, measuring its own CPU (``getrusage``) and resident memory (``/proc/self/statm``);
* ``--sim`` is the simulator, driven by lines on stdin; at the end it reports whether
  every caller was taken once, in the order it entered the queue.

Usage: ``python bench/queue.py [--callers 500] [--agents 20] [--time-scale 0.01]
[--runs 1]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's directory comes first on sys.path, and its name would
# shadow the standard library's queue module (which asyncio imports).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import IO, Any  # noqa: E402

import anyio  # noqa: E402

BENCH = Path(__file__).resolve()
PY = sys.executable

CALLER_FLOW = """
name: bench_caller
context: callers
steps:
  greet:
    answer: {}
  wait:
    enqueue:
      queue: bench
      music: [{audio: "https://example.com/hold.mp3"}]
      announce: [{say: "You are number {{ queue.position }} in the queue."}]
      announce_every: 30
    on: {connected: null}
"""
AGENT_FLOW = """
name: bench_agent
context: agents
steps:
  greet:
    answer: {}
  take:
    connect: {queue: bench}
    on: {disconnected: take, empty: done}
  done:
    hangup: {}
"""
PLAIN_FLOW = """
name: bench_plain
context: callers
steps:
  greet:
    answer: {}
  wait:
    sleep: WAIT
"""
#: Simulated seconds an agent talks with each caller (the caller hangs up then).
TALK = 5


# -- the simulator process ----------------------------------------------------------------------

async def serve_sim(scale: float) -> None:
    """Offer calls as stdin says; report on the queue at the end."""
    from flowengine.sim import Simulator

    async with Simulator(port=0, project="p", token="t", time_scale=scale) as sim:
        print(f"url {sim.url}", flush=True)
        calls: list[Any] = []
        while True:
            line = (await anyio.to_thread.run_sync(sys.stdin.readline)).split()
            if not line or line[0] == "quit":
                break
            if line[0] == "offer":
                context, count, script = line[1], int(line[2]), line[3]
                calls.extend(sim.offer_call(context=context, caller=script)
                             for _ in range(count))
                print("offered", flush=True)
            elif line[0] == "size":       # wait until the queue holds N callers
                while sim.core.queues.size("bench") < int(line[1]):
                    await anyio.sleep(0.01)
                print("size", flush=True)
            elif line[0] == "ended":
                for call in calls:
                    await call.wait_ended()
                entered = [cid for _, cid in sim.core.queues.entered]
                taken = [t.caller for t in sim.core.queues.taken]
                print("ended " + json.dumps({
                    "entered": len(entered), "taken": len(taken),
                    "fifo": taken == entered[:len(taken)],
                    "once": len(taken) == len(set(taken)),
                    "longest_wait": max((t.waited for t in sim.core.queues.taken), default=0),
                    "summary": sim.summary()}), flush=True)


# -- the engine process -------------------------------------------------------------------------

def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


class Sim:
    """The simulator child, spoken to in lines."""

    def __init__(self, scale: float) -> None:
        self.proc = subprocess.Popen([PY, str(BENCH), "--sim", "--time-scale", str(scale)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.url = self.expect("url").split()[1]

    def expect(self, tag: str) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith(tag):
            raise RuntimeError(f"simulator said {line!r}, expected {tag}")
        return line

    def send(self, text: str) -> None:
        stdin: IO[str] | None = self.proc.stdin
        assert stdin is not None
        stdin.write(text + "\n")
        stdin.flush()

    async def ask(self, text: str, tag: str) -> str:
        self.send(text)
        return await anyio.to_thread.run_sync(self.expect, tag)


async def run_engine(mode: str, callers: int, agents: int, scale: float,
                     wait: float) -> dict[str, Any]:
    from flowengine.engine import FlowRuntime
    from flowengine.engine.runner import run_calls
    from flowengine.flow import load_flow
    from flowengine.relay import RelayClient, RelayConfig

    with tempfile.TemporaryDirectory() as tmp:
        def flow(name: str, text: str) -> FlowRuntime:
            path = Path(tmp) / f"{name}.yaml"
            path.write_text(text)
            return FlowRuntime(load_flow(path))

        if mode == "queue":
            line = flow("caller", CALLER_FLOW)
        elif mode == "silent":
            # Announcements only: what the queue itself costs, without hold music (the
            # simulator's audio lasts 2 s, so the music restarts every 2 simulated seconds).
            line = flow("caller", "\n".join(
                x for x in CALLER_FLOW.splitlines() if "music:" not in x))
        else:
            line = flow("plain", PLAIN_FLOW.replace("WAIT", str(wait)))
        desk = flow("agent", AGENT_FLOW)
    sim = Sim(scale)
    config = RelayConfig(url=sim.url, project="p", token="t")
    out: dict[str, Any] = {"mode": mode, "callers": callers}
    async with RelayClient(config, ["callers"]) as c1, RelayClient(config, ["agents"]) as c2:
        rss0, cpu0, t0 = _rss_kib(), _cpu(), time.perf_counter()
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(run_calls, line, c1, callers, time_scale=scale))
            await sim.ask(f"offer callers {callers} hangup@connect:{TALK}", "offered")
            if mode != "plain":
                await sim.ask(f"size {callers}", "size")
            else:
                await anyio.sleep(min(wait * scale / 2, 2.0))
            await anyio.sleep(0.5)  # the last entries' events are handled
            out["rss_waiting_kib"] = _rss_kib() - rss0
            if mode != "plain":
                tg.start_soon(functools.partial(run_calls, desk, c2, agents, time_scale=scale))
                await sim.ask(f"offer agents {agents} silent", "offered")
        out["cpu_s"] = _cpu() - cpu0
        out["wall_s"] = time.perf_counter() - t0
    report = json.loads((await sim.ask("ended", "ended")).split(" ", 1)[1])
    sim.send("quit")
    sim.proc.wait(30)
    out.update(report)
    return out


# -- the driver ---------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--callers", type=int, default=500)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--time-scale", type=float, default=0.01)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--sim", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--run", choices=("queue", "silent", "plain"), help=argparse.SUPPRESS)
    parser.add_argument("--wait", type=float, default=60.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sim:
        anyio.run(serve_sim, args.time_scale)
        return
    if args.run:
        result = anyio.run(run_engine, args.run, args.callers, args.agents, args.time_scale,
                           args.wait)
        print(json.dumps(result))
        return
    rows: list[tuple[dict[str, Any], ...]] = []
    for _ in range(args.runs):
        queue = _child("queue", args, 0.0)
        silent = _child("silent", args, 0.0)
        # The reference waits as long as the queue's callers did on average.
        plain = _child("plain", args, max(1.0, queue["longest_wait"] / 2))
        rows.append((queue, silent, plain))
    print(f"{args.callers} callers, {args.agents} agents, time_scale {args.time_scale}")
    print(f"{'':30}{'enqueue, music':>16}{'enqueue, no music':>19}{'answer + sleep':>16}")
    for run in rows:
        per = [r["cpu_s"] / r["callers"] * 1000 for r in run]
        mem = [r["rss_waiting_kib"] / r["callers"] for r in run]
        print(f"{'engine CPU per call (ms)':30}{per[0]:>16.2f}{per[1]:>19.2f}{per[2]:>16.2f}")
        print(f"{'RSS per waiting caller (KiB)':30}{mem[0]:>16.1f}{mem[1]:>19.1f}{mem[2]:>16.1f}")
        print(f"{'wall (s)':30}{run[0]['wall_s']:>16.1f}{run[1]['wall_s']:>19.1f}"
              f"{run[2]['wall_s']:>16.1f}")
        for name, r in (("music", run[0]), ("no music", run[1])):
            print(f"{name}: taken {r['taken']} of {r['entered']}; FIFO kept: {r['fifo']}; "
                  f"nobody twice: {r['once']}; longest wait {r['longest_wait']:.0f} s "
                  f"(simulated); leaked {r['summary'].get('leaked')}")


def _child(mode: str, args: argparse.Namespace, wait: float) -> dict[str, Any]:
    done = subprocess.run([PY, str(BENCH), "--run", mode, "--callers", str(args.callers),
                           "--agents", str(args.agents), "--time-scale", str(args.time_scale),
                           "--wait", str(wait)], capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


if __name__ == "__main__":
    main()
