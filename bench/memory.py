"""Where the memory of a call in flight goes in ``flowengine serve`` (tracemalloc).

The daemon runs in this process (with serve's GC thresholds and ``keep_trace=False``, as
``flowengine serve`` runs it); the benchmark's simulator (``bench/simproc.py``) runs in its
own process, offering voicemail calls at ``--level`` in flight at the benchmark's pace.
After the warm-up, tracemalloc starts; ``--seconds`` into the measured calls it compares a
snapshot with the one taken before, and prints the bytes per call in flight, by the
innermost flowengine line that allocated them (or the library line, when no flowengine
frame is on the stack).

tracemalloc slows the daemon down (about 3 times), so the calls sit where a slower client's
would: the split is what counts, not the total's last digit. RSS per call in flight, the
number the benchmark compares with the SDK's, is ``bench/run.py``'s.

Usage: ``python bench/memory.py [--level 5000] [--seconds 6] [--top 30]``.
"""

from __future__ import annotations

import argparse
import gc
import logging
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import anyio

from flowengine.daemon.cli import tune_gc
from flowengine.daemon.server import Daemon
from flowengine.relay import RelayConfig

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


def where(trace: tracemalloc.Traceback) -> str:
    for frame in reversed(trace):
        if "/flowengine/" in frame.filename:
            return f"{frame.filename.split('/flowengine/', 1)[1]}:{frame.lineno}"
    frame = trace[-1]
    return f"{Path(frame.filename).name}:{frame.lineno}"


async def measure(args: argparse.Namespace) -> None:
    flows = Path(tempfile.mkdtemp(prefix="flowengine-memory-"))
    shutil.copy(ROOT / "flows" / "voicemail.yaml", flows)
    sim = subprocess.Popen(  # started once, before anything is measured
        [sys.executable, str(BENCH / "simproc.py"), "--calls", str(args.level * 20),
         "--concurrency", str(args.level), "--warmup", "200", "--context", "office"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert sim.stdin is not None and sim.stdout is not None
    try:
        url = sim.stdout.readline().split()[1]
        daemon = Daemon([str(flows / "voicemail.yaml")],
                        RelayConfig(url=url, project="sim-project", token="sim-token"),
                        watch=False, rescan_interval=0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(daemon.run)
            line = await anyio.to_thread.run_sync(sim.stdout.readline)
            assert line.startswith("warm"), line
            gc.collect()
            tracemalloc.start(16)
            before = tracemalloc.take_snapshot()
            sim.stdin.write("go\n")
            sim.stdin.flush()
            await anyio.sleep(args.seconds)
            in_flight = daemon.calls_in_flight
            after = tracemalloc.take_snapshot()
            tracemalloc.stop()
            by_line: dict[str, int] = {}
            for stat in after.compare_to(before, "traceback"):
                key = where(stat.traceback)
                by_line[key] = by_line.get(key, 0) + stat.size_diff
            total = sum(by_line.values())
            print(f"{in_flight} calls in flight; {total / max(in_flight, 1):,.0f} bytes per "
                  f"call in flight (tracemalloc), by where they were allocated:")
            for key, size in sorted(by_line.items(), key=lambda kv: -kv[1])[:args.top]:
                print(f"{size / max(in_flight, 1):8,.0f} B  {key}")
            daemon.request_drain()
            tg.cancel_scope.cancel()
    finally:
        sim.kill()
        sim.wait()
        shutil.rmtree(flows, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--level", type=int, default=5000, help="calls in flight (default 5000)")
    parser.add_argument("--seconds", type=float, default=6.0,
                        help="how long into the measured calls the snapshot is taken")
    parser.add_argument("--top", type=int, default=30, help="lines shown (default 30)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the hard stop at the end cancels calls
    tune_gc()
    start = time.monotonic()
    anyio.run(measure, args, backend="asyncio")
    print(f"# {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    main()
