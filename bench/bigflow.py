"""How ``flowengine check`` scales with the number of steps: 1,000 / 5,000 / 10,000 steps.

The flows are those of ``bench/flow200.py`` (blocks of play with a template, record, branch
on the recording, log, set), generated at each size. For each size it runs
``flowengine check FILE`` as a command (interpreter start included), takes the wall time
and the peak memory of the child (``ru_maxrss``), and prints them side by side with the
time per step, so a quadratic part shows as a per-step time that grows with the size.

Usage: ``python bench/bigflow.py [--steps 1000 5000 10000] [--timeout 300]``.
A size that takes longer than ``--timeout`` is shown as ``>timeout``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flow200 import generate  # noqa: E402


def measure(steps: int, timeout: float) -> tuple[float | None, float | None, int]:
    """(seconds, peak MiB of the child, exit code) of ``flowengine check`` on one size."""
    flowengine = str(Path(sys.executable).parent / "flowengine")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"big{steps}.yaml"
        path.write_text(generate(steps))
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:  # the child: exec check with its output thrown away
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os.execv(flowengine, [flowengine, "check", str(path)])
        deadline = t0 + timeout
        while True:
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                break
            if time.perf_counter() > deadline:
                os.kill(pid, 9)
                os.wait4(pid, 0)
                return None, None, -9
            time.sleep(0.02)
        elapsed = time.perf_counter() - t0
        # ru_maxrss is in KiB on Linux.
        return elapsed, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[1000, 5000, 10000])
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    print(f"{'steps':>7} {'check s':>9} {'ms/step':>8} {'peak MiB':>9} {'exit':>5}")
    for steps in args.steps:
        seconds, peak, code = measure(steps, args.timeout)
        if seconds is None:
            print(f"{steps:>7} {'>' + str(int(args.timeout)):>9} {'-':>8} {'-':>9} {'kill':>5}")
            continue
        print(f"{steps:>7} {seconds:>9.2f} {seconds / steps * 1000:>8.3f} {peak:>9.0f} {code:>5}",
              flush=True)


if __name__ == "__main__":
    main()
