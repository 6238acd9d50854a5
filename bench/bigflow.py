"""How ``flowengine check`` scales with the number of steps: 1,000 / 5,000 / 10,000 steps.

The flows are those of ``bench/flow200.py`` (blocks of play with a template, record, branch
on the recording, log, set), generated at each size. For each size it runs
``flowengine check FILE`` as a command (interpreter start included), takes the wall time
and the peak memory of the child (``ru_maxrss``), and prints them side by side with the
time per step, so a quadratic part shows as a per-step time that grows with the size.

Usage: ``python bench/bigflow.py [--steps 1000 5000 10000] [--timeout 300]
[--against OTHER/bin/flowengine]``: with ``--against``, the same flows are also checked
by another installation (an older checkout's venv, say), printed side by side as the
reference. A size that takes longer than ``--timeout`` is shown as ``>timeout``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flow200 import generate

OURS = str(Path(sys.executable).parent / "flowengine")


def measure(steps: int, timeout: float, flowengine: str = OURS
            ) -> tuple[float | None, float | None, float | None, int]:
    """(wall seconds, CPU seconds, peak MiB of the child, exit code) of ``flowengine
    check`` on one size. The CPU time depends less on the machine's load than the wall."""
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
                return None, None, None, -9
            time.sleep(0.02)
        elapsed = time.perf_counter() - t0
        # ru_maxrss is in KiB on Linux.
        return (elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024,
                os.waitstatus_to_exitcode(status))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[1000, 5000, 10000])
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--against", metavar="FLOWENGINE",
                        help="another flowengine executable, measured as the reference")
    args = parser.parse_args()
    runs = [("this", OURS)] + ([("reference", args.against)] if args.against else [])
    header = f"{'steps':>7}"
    for label, _ in runs:
        header += (f" | {label + ' s':>12} {'cpu s':>7} {'cpu ms/step':>11} {'peak MiB':>9}"
                   f" {'exit':>4}")
    print(header)
    for steps in args.steps:
        row = f"{steps:>7}"
        for _, executable in runs:
            seconds, cpu, peak, code = measure(steps, args.timeout, executable)
            if seconds is None or cpu is None or peak is None:
                row += (f" | {'>' + str(int(args.timeout)):>12} {'-':>7} {'-':>11} {'-':>9}"
                        f" {'kill':>4}")
            else:
                row += (f" | {seconds:>12.2f} {cpu:>7.2f} {cpu / steps * 1000:>11.3f}"
                        f" {peak:>9.0f} {code:>4}")
        print(row, flush=True)


if __name__ == "__main__":
    main()
