"""flowengine against the official SDK and the floor, side by side (docs/benchmarks.md).

For each concurrency level and each client it starts a fresh simulator process
(``bench/simproc.py``) and a fresh client process:

* ``flowengine``: ``flowengine serve voicemail.yaml --relay-url ws://… --log-level warning``
  (a copy of flows/voicemail.yaml in a temporary directory), tuned;
* ``flowengine-info``: the same at serve's defaults (``--log-level info``), as a user runs it;
* ``step-for-step`` and ``step-for-step-info``: the same two, serving
  ``bench/voicemail_sdk.yaml``, the SDK handler's voicemail step for step (no call limit):
  the like-for-like rows against ``sdk``;
* ``sdk``: the official ``signalwire-sdk`` ``RelayClient`` running the same voicemail as a
  hand-written handler (``bench/sdk_client.py``), with ``RELAY_MAX_ACTIVE_CALLS`` raised;
* ``floor``: the smallest websockets + JSON client doing the same exchange
  (``bench/floor_client.py``).

The simulator offers warm-up calls first; once they have ended the driver reads the
client's CPU time and RSS from /proc, lets the measured calls go, and reads them again
when the simulator reports the last call ended. Only the client process is measured.

It prints numbers and never asserts anything about them. Usage::

    .venv/bin/python bench/run.py                 # levels 50, 500, 5000, 3 runs each (~5 min)
    .venv/bin/python bench/run.py --quick         # fewer calls, 1 run each (~2 min)
    .venv/bin/python bench/run.py --levels 500 --clients flowengine,sdk --calls 5000

The runs are interleaved: the first run of every client, then the second of every client in
the reverse order, and so on, so that a machine whose load drifts during the run weighs on
all of them alike; serve at info and at warning are also compared run by run (paired). Each row is
the run with the median CPU per call; the spread (lowest–highest) is printed below the
tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PY = sys.executable
#: The console script: `flowengine serve` runs as users run it (one Python process).
FLOWENGINE = str(Path(PY).parent / "flowengine")
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
CLIENTS = ("flowengine", "flowengine-info", "flowengine-state", "step-for-step",
           "step-for-step-info", "sdk", "floor")
#: The clients that run `flowengine serve` of this checkout: name → (flow file, log level
#: option). ``-info`` is serve's default level.
SERVE_CLIENTS = {
    "flowengine": ("voicemail.yaml", ["--log-level", "warning"]),
    "flowengine-info": ("voicemail.yaml", []),
    "step-for-step": ("voicemail_sdk/voicemail.yaml", ["--log-level", "warning"]),
    "step-for-step-info": ("voicemail_sdk/voicemail.yaml", []),
    # With the SQLite state store (serve --state-dir, docs/store.md): issue 16's target is
    # at most 1.25 × the CPU per call of "flowengine".
    "flowengine-state": ("voicemail.yaml", ["--log-level", "warning", "--state-dir"]),
}
#: The official SDK drops inbound calls beyond 1,000 active ones by default.
SDK_MAX_ACTIVE_CALLS = 100_000


# -- /proc -------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """user + system CPU of a process (all its threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in KiB, from /proc/PID/status."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


# -- processes ---------------------------------------------------------------------------------


class Lines:
    """Lines of a pipe, read by a thread so that waiting for one can time out."""

    def __init__(self, pipe: IO[str]) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(pipe,), daemon=True).start()

    def _pump(self, pipe: IO[str]) -> None:
        for line in pipe:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def expect(self, tag: str, timeout: float) -> str:
        """The rest of the next line starting with ``tag``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no '{tag}' line within {timeout:g} s")
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise EOFError(f"the process ended before a '{tag}' line")
            if line.startswith(tag):
                return line[len(tag):].strip()


#: --baseline: a checkout of another flowengine revision, run as the client "baseline"
#: (and "baseline-info", at serve's default log level).
BASELINE: Path | None = None


def client_command(name: str, url: str, context: str,
                   flow_dir: Path) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    env.pop("FLOWENGINE_RELAY_URL", None)
    if name in ("baseline", "baseline-info"):
        assert BASELINE is not None, f"--baseline DIR is needed for the client {name!r}"
        env.update(SIGNALWIRE_PROJECT_ID="sim-project", SIGNALWIRE_API_TOKEN="sim-token",
                   PYTHONPATH=str(BASELINE))
        # -P: not the current directory (this checkout) first on sys.path, but PYTHONPATH.
        level = [] if name == "baseline-info" else ["--log-level", "warning"]
        return [PY, "-P", "-c", "import sys; from flowengine.cli import main; sys.exit(main())",
                "serve", str(flow_dir / "voicemail.yaml"), "--relay-url", url, *level], env
    if name in SERVE_CLIENTS:
        flow, level = SERVE_CLIENTS[name]
        env.update(SIGNALWIRE_PROJECT_ID="sim-project", SIGNALWIRE_API_TOKEN="sim-token")
        if level and level[-1] == "--state-dir":
            level = [*level, str(flow_dir / "state")]
        return [FLOWENGINE, "serve", str(flow_dir / flow), "--relay-url", url, *level], env
    if name == "sdk":
        env["RELAY_MAX_ACTIVE_CALLS"] = str(SDK_MAX_ACTIVE_CALLS)
        return [PY, str(BENCH / "sdk_client.py"), url.removeprefix("ws://"), context], env
    if name == "floor":
        return [PY, str(BENCH / "floor_client.py"), url, context], env
    raise ValueError(f"unknown client {name!r}")


def stop(proc: subprocess.Popen[Any], name: str) -> None:
    if proc.poll() is None:
        # The SDK's run() stops cleanly on SIGINT; the others on SIGTERM.
        proc.send_signal(signal.SIGINT if name == "sdk" else signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Run:
    client: str
    level: int
    calls: int
    ok: int = 0
    failed: int = 0
    leaked: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    cpu_ms_per_call: float = 0.0
    calls_per_s: float = 0.0
    rss_idle_mib: float = 0.0
    peak_rss_mib: float = 0.0
    rss_kib_per_call: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    latency_samples: int = 0
    peak_in_flight: int = 0
    sim_cpu_pct: float = 0.0
    client_cpu_pct: float = 0.0
    stalled: bool = False
    errors_logged: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    #: method → p50/p99 ms of the event-to-command latency for that command.
    latency_by_method: dict[str, str] = field(default_factory=dict)
    note: str = ""


def measure(client: str, level: int, calls: int, args: argparse.Namespace,
            flow_dir: Path, log_dir: Path) -> Run:
    """One client at one concurrency level, against a fresh simulator."""
    sim = subprocess.Popen(
        [PY, str(BENCH / "simproc.py"), "--context", args.context, "--calls", str(calls),
         "--concurrency", str(level), "--warmup", str(args.warmup),
         "--time-scale", str(args.time_scale), "--stall", str(args.stall)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert sim.stdin is not None and sim.stdout is not None
    sim_lines = Lines(sim.stdout)
    run = Run(client, level, calls)
    log_path = log_dir / f"{client}-{level}.log"
    proc = None
    try:
        url = sim_lines.expect("url", 30)
        cmd, env = client_command(client, url, args.context, flow_dir)
        with open(log_path, "w") as log:
            proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT)
        warm = json.loads(sim_lines.expect("warm", args.stall + 60))
        if warm["ok"] != args.warmup:
            run.note = f"warm-up: {warm}"
        time.sleep(0.5)  # let the client settle after the warm-up
        cpu0, mem0 = cpu_seconds(proc.pid), memory_kib(proc.pid)
        sim.stdin.write("go\n")
        sim.stdin.flush()
        if args.profile:
            # py-spy samples from its own process, without pausing the client.
            spy = subprocess.Popen(
                [str(Path(PY).parent / "py-spy"), "record", "--pid", str(proc.pid),
                 "--rate", "250", "--nonblocking", "--format", "raw", "--output",
                 str(Path(args.profile) / f"{client}-{level}.txt")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        done = json.loads(sim_lines.expect("done", args.stall + calls * 0.02 + 120))
        cpu1, mem1 = cpu_seconds(proc.pid), memory_kib(proc.pid)
        log_size = log_path.stat().st_size  # errors after this are the shutdown's
        if args.profile:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=30)
        sim.stdin.write("quit\n")
        sim.stdin.flush()
        sim_lines.expect("final", 30)
    except (TimeoutError, EOFError) as exc:
        run.note = f"{run.note} {exc}".strip()
        return run
    finally:
        if proc is not None:
            stop(proc, client)
        if sim.poll() is None:
            sim.terminate()
        sim.wait()
    ended = done["ok"] + done["failed"]
    run.ok, run.failed = done["ok"], done["failed"]
    run.leaked = done["still_up"] + (calls - done["offered"])
    run.stalled = done["stalled"]
    run.failures = done["failures"]
    run.cpu_s = round(cpu1 - cpu0, 3)
    run.wall_s = done["wall_s"]
    run.cpu_ms_per_call = round(run.cpu_s * 1000 / max(ended, 1), 4)
    run.calls_per_s = round(ended / run.wall_s, 1) if run.wall_s else 0.0
    run.rss_idle_mib = round(mem0["VmRSS"] / 1024, 1)
    run.peak_rss_mib = round(mem1["VmHWM"] / 1024, 1)
    run.rss_kib_per_call = round((mem1["VmHWM"] - mem0["VmRSS"]) / level, 2)
    run.p50_ms = done["latency"]["p50_ms"]
    run.p99_ms = done["latency"]["p99_ms"]
    run.latency_samples = done["latency"]["count"]
    run.latency_by_method = {
        method.removeprefix("calling."): f"{stats['p50_ms']:.2f}/{stats['p99_ms']:.2f}"
        for method, stats in done["latency"]["by_method"].items()}
    run.peak_in_flight = done["peak_in_flight"]
    run.sim_cpu_pct = round(100 * done["sim_cpu_s"] / run.wall_s, 1) if run.wall_s else 0.0
    run.client_cpu_pct = round(100 * run.cpu_s / run.wall_s, 1) if run.wall_s else 0.0
    text = log_path.read_bytes()[:log_size].decode(errors="replace")
    run.errors_logged = sum(1 for line in text.splitlines()
                            if " ERROR " in line or line.startswith("ERROR")
                            or "Traceback" in line)
    return run


def median_run(runs: list[Run]) -> Run:
    """The run with the median CPU per call (the others are kept in the JSON)."""
    ordered = sorted(runs, key=lambda r: r.cpu_ms_per_call)
    return ordered[len(ordered) // 2]


# -- output ------------------------------------------------------------------------------------


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "–"


def table(results: dict[int, dict[str, Run]]) -> str:
    head = ("| in flight | client | calls ok / failed / leaked | CPU ms/call | calls/s | "
            "peak RSS MiB | RSS KiB/call in flight | p50 ms | p99 ms | sim CPU % |")
    lines = [head, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for level, runs in results.items():
        for name, r in runs.items():
            lines.append(
                f"| {level:,} | {name} | {r.ok:,} / {r.failed:,} / {r.leaked:,} | "
                f"{r.cpu_ms_per_call:.3f} | {r.calls_per_s:,.0f} | {r.peak_rss_mib:.1f} | "
                f"{r.rss_kib_per_call:.1f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
                f"{r.sim_cpu_pct:.0f} |")
    return "\n".join(lines)


def ratios(results: dict[int, dict[str, Run]]) -> str:
    lines = [("| in flight | client | CPU/call ÷ SDK | CPU/call ÷ floor | RSS/call ÷ SDK | "
              "p99 ÷ SDK | calls/s ÷ SDK |"),
             "|---:|---|---:|---:|---:|---:|---:|"]
    for level, runs in results.items():
        sdk, floor = runs.get("sdk"), runs.get("floor")
        for name, fe in runs.items():
            if name in ("sdk", "floor"):
                continue
            lines.append(
                f"| {level:,} | {name} | "
                f"{ratio(fe.cpu_ms_per_call, sdk.cpu_ms_per_call) if sdk else '–'} | "
                f"{ratio(fe.cpu_ms_per_call, floor.cpu_ms_per_call) if floor else '–'} | "
                f"{ratio(fe.rss_kib_per_call, sdk.rss_kib_per_call) if sdk else '–'} | "
                f"{ratio(fe.p99_ms, sdk.p99_ms) if sdk else '–'} | "
                f"{ratio(fe.calls_per_s, sdk.calls_per_s) if sdk else '–'} |")
    pairs = [(f"{name}-info", name) for name in ("flowengine", "step-for-step", "baseline")]
    if any(a in runs and b in runs for runs in results.values() for a, b in pairs):
        lines += ["", "Defaults against tuned (serve at info ÷ serve at warning, same run):", "",
                  "| in flight | flow | CPU/call info ÷ warning |", "|---:|---|---:|"]
        for level, runs in results.items():
            for a, b in pairs:
                if a in runs and b in runs:
                    lines.append(f"| {level:,} | {b} | "
                                 f"{ratio(runs[a].cpu_ms_per_call, runs[b].cpu_ms_per_call)} |")
    if any("baseline" in runs for runs in results.values()):
        lines += ["", ("| in flight | CPU/call ÷ baseline | RSS/call ÷ baseline "
                       "| p99 ÷ baseline |"), "|---:|---:|---:|---:|"]
        for level, runs in results.items():
            fe, base = runs.get("flowengine"), runs.get("baseline")
            if fe is not None and base is not None:
                lines.append(f"| {level:,} | {ratio(fe.cpu_ms_per_call, base.cpu_ms_per_call)} | "
                             f"{ratio(fe.rss_kib_per_call, base.rss_kib_per_call)} | "
                             f"{ratio(fe.p99_ms, base.p99_ms)} |")
    return "\n".join(lines)


def spread(every: dict[int, dict[str, list[Run]]]) -> str:
    """CPU ms/call of every run: the median and the lowest–highest, per level and client."""
    lines = ["| in flight | client | runs | CPU ms/call median | lowest–highest |",
             "|---:|---|---:|---:|---:|"]
    for level, clients in every.items():
        for name, runs in clients.items():
            cpu = sorted(r.cpu_ms_per_call for r in runs)
            median = median_run(runs).cpu_ms_per_call
            lines.append(f"| {level:,} | {name} | {len(cpu)} | {median:.3f} | "
                         f"{cpu[0]:.3f}–{cpu[-1]:.3f} |")
    # Run n of X-info and run n of X ran next to each other: their ratio cancels most of a
    # drifting load, which the medians of the separate columns do not.
    paired = ["", "Paired, run by run (serve at info ÷ serve at warning, the runs of one round):",
              "", "| in flight | flow | median | lowest–highest | every round |",
              "|---:|---|---:|---:|---|"]
    found = False
    for level, clients in every.items():
        for name in ("flowengine", "step-for-step", "baseline"):
            info, warning = clients.get(f"{name}-info"), clients.get(name)
            if not info or not warning:
                continue
            found = True
            each = [a.cpu_ms_per_call / b.cpu_ms_per_call
                    for a, b in zip(info, warning, strict=False) if b.cpu_ms_per_call]
            ordered = sorted(each)
            middle = (ordered[(len(ordered) - 1) // 2] + ordered[len(ordered) // 2]) / 2
            paired.append(f"| {level:,} | {name} | {middle:.2f} | "
                          f"{ordered[0]:.2f}–{ordered[-1]:.2f} | "
                          f"{', '.join(f'{x:.2f}' for x in each)} |")
    return "\n".join(lines + (paired if found else []))


def machine() -> dict[str, Any]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    versions = {}
    from importlib.metadata import version

    for dist in ("flowengine", "signalwire-sdk", "websockets", "anyio", "transitions",
                 "Jinja2", "orjson"):
        try:
            versions[dist] = version(dist)
        except Exception:  # not installed
            pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "kernel": platform.release(),
            "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "versions": versions, "commit": commit,
            "loadavg_at_start": os.getloadavg()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default=None,
                        help="comma-separated calls in flight (default 50,500,5000)")
    parser.add_argument("--clients", default=",".join(CLIENTS),
                        help=f"comma-separated, in the order run (default {','.join(CLIENTS)}; "
                             "-info: serve at its default log level; also baseline and "
                             "baseline-info: the --baseline's serve at warning / info)")
    parser.add_argument("--calls", type=int, default=None,
                        help="calls measured per run (default max(6000, 4 x level); "
                             "--quick: max(1500, 2 x level))")
    parser.add_argument("--repeat", type=int, default=None,
                        help="runs per client and level, the run with the median CPU/call "
                             "shown (default 3; --quick: 1)")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--time-scale", type=float, default=1e-4,
                        help="simulated time x this (default 1e-4: a call's 10 s of "
                             "prompts and speech take 1 ms, so the run is CPU-bound)")
    parser.add_argument("--stall", type=float, default=30.0,
                        help="a run gives up when no call ended for this many seconds")
    parser.add_argument("--context", default="office")
    parser.add_argument("--quick", action="store_true", help="fewer calls, levels 50,500,5000")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also print the latency of each command")
    parser.add_argument("--no-extras", action="store_true",
                        help="skip the 200-step flow and the hot-reload measurements")
    parser.add_argument("--profile", default=None, metavar="DIR",
                        help="sample each client with py-spy (pip install py-spy) while it is "
                             "measured; collapsed stacks go to DIR (read them with "
                             "bench/profile_report.py). Sampling disturbs the numbers a little")
    parser.add_argument("--baseline", default=None, metavar="DIR",
                        help="a checkout of another revision (git worktree add DIR REV): "
                             "the client 'baseline' runs its flowengine serve, for a "
                             "before/after comparison in the same run")
    parser.add_argument("--out", default=str(BENCH / "results" / "latest.json"),
                        help="where to write every number as JSON")
    args = parser.parse_args(argv)
    levels = [int(x) for x in (args.levels or "50,500,5000").split(",")]
    global BASELINE
    BASELINE = Path(args.baseline).resolve() if args.baseline else None
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    clients = [c.strip() for c in args.clients.split(",") if c.strip()]

    info = machine()
    print(f"# {info['cpu']}, {info['nproc']} cores, Python {info['python']}, "
          f"load {info['loadavg_at_start'][0]:.2f}", flush=True)
    log_dir = Path(tempfile.mkdtemp(prefix="flowengine-bench-"))
    flow_dir = log_dir / "flows"
    flow_dir.mkdir()
    shutil.copy(ROOT / "flows" / "voicemail.yaml", flow_dir / "voicemail.yaml")
    (flow_dir / "voicemail_sdk").mkdir()
    shutil.copy(BENCH / "voicemail_sdk.yaml", flow_dir / "voicemail_sdk" / "voicemail.yaml")
    started = time.monotonic()
    results: dict[int, dict[str, Run]] = {}
    every: list[dict[str, Any]] = []
    by_client: dict[int, dict[str, list[Run]]] = {}
    for level in levels:
        calls = args.calls or (max(1500, 2 * level) if args.quick else max(6000, 4 * level))
        by_client[level] = {name: [] for name in clients}
        # Interleaved: run n of every client, then run n + 1 of every client, in the
        # reverse order (ABBA), so that neither of two neighbours is always the later one.
        for round_ in range(args.repeat):
            for name in (clients if round_ % 2 == 0 else clients[::-1]):
                r = measure(name, level, calls, args, flow_dir, log_dir)
                by_client[level][name].append(r)
                every.append(asdict(r))
                print(f"{name:>18} @ {level:>5}: {r.ok}/{r.failed}/{r.leaked} ok/failed/leaked, "
                      f"{r.cpu_ms_per_call:.3f} ms CPU/call, {r.calls_per_s:,.0f} calls/s, "
                      f"peak RSS {r.peak_rss_mib:.1f} MiB ({r.rss_kib_per_call:.1f} KiB/call), "
                      f"p50/p99 {r.p50_ms:.2f}/{r.p99_ms:.2f} ms, sim CPU {r.sim_cpu_pct:.0f}%"
                      f"{' STALLED' if r.stalled else ''}{' ' + r.note if r.note else ''}",
                      flush=True)
                if args.verbose:
                    print(f"{'':>27}p50/p99 by command: {r.latency_by_method}", flush=True)
        results[level] = {name: median_run(runs) for name, runs in by_client[level].items()}
    extras: dict[str, Any] = {}
    if not args.no_extras:
        from bench.flow200 import measure_flow200
        from bench.hot_reload import measure_reload

        extras["flow200"] = measure_flow200()
        print(f"200-step flow: {extras['flow200']}", flush=True)
        extras["reload"] = measure_reload()
        print(f"hot reload: {extras['reload']}", flush=True)
    elapsed = time.monotonic() - started
    info["loadavg_at_end"] = os.getloadavg()
    print()
    print(table(results))
    print()
    print(ratios(results))
    print()
    print(spread(by_client))
    print(f"\n# load average {info['loadavg_at_start'][0]:.2f} at the start, "
          f"{info['loadavg_at_end'][0]:.2f} at the end")
    print(f"\n# {elapsed:.0f} s; client logs in {log_dir}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "machine": info,
        "command": " ".join(["python", "bench/run.py", *(argv or sys.argv[1:])]),
        "args": vars(args), "elapsed_s": round(elapsed, 1),
        "results": {str(level): {name: asdict(r) for name, r in runs.items()}
                    for level, runs in results.items()},
        "runs": every, "extras": extras}, indent=1) + "\n")
    print(f"# written to {out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
