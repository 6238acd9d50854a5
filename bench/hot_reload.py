"""Time from saving a flow file to its new version taking calls, under ``flowengine serve``.

``serve`` watches a directory holding a copy of flows/voicemail.yaml; a simulator (in this
process) offers a call every ``--interval`` seconds. Each round rewrites the file so that
its recording format flips (mp3 ↔ wav) and notes the moment of the save; the new version
has taken calls from the first call offered after the save whose recording has the new
format. Reported: from the save to the offer of that call (so within one interval of the
true switch), median and max over the rounds, for two ways of saving:

* ``replace``: write a temporary file beside it, then ``os.replace`` (the recommended deploy);
* ``in_place``: truncate and write the file itself (what many editors do).

Usage: ``python bench/hot_reload.py [--rounds 5]``; prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent


async def _measure(rounds: int, interval: float) -> dict[str, Any]:
    import logging

    from flowengine.sim import SimCall, Simulator

    # The calls still up when the simulator stops are expected here: not worth a warning.
    logging.getLogger("flowengine.sim").setLevel(logging.ERROR)
    tmp = Path(tempfile.mkdtemp(prefix="flowengine-reload-"))
    path = tmp / "voicemail.yaml"
    original = (ROOT / "flows" / "voicemail.yaml").read_text()
    if "format: mp3" not in original:
        raise RuntimeError("flows/voicemail.yaml no longer records with 'format: mp3'")
    path.write_text(original)
    offered: list[tuple[float, SimCall]] = []
    results: dict[str, list[float]] = {"replace": [], "in_place": []}
    async with Simulator(time_scale=1e-3) as sim:
        env = dict(os.environ, SIGNALWIRE_PROJECT_ID="sim-project",
                   SIGNALWIRE_API_TOKEN="sim-token")
        env.pop("FLOWENGINE_RELAY_URL", None)
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "flowengine"), "serve", str(tmp),
             "--relay-url", sim.url, "--log-level", "warning"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        try:
            first = sim.offer_call("office")
            await first.wait_ended(timeout=30)  # serving

            async def offer_forever() -> None:
                while True:
                    offered.append((time.monotonic(), sim.offer_call("office")))
                    await anyio.sleep(interval)

            def fmt(call: SimCall) -> str | None:
                return call.recordings[0].format if call.recordings else None

            async with anyio.create_task_group() as tg:
                tg.start_soon(offer_forever)
                current = "mp3"
                for i in range(rounds * 2):
                    how = "replace" if i % 2 == 0 else "in_place"
                    await anyio.sleep(0.5)
                    new = "wav" if current == "mp3" else "mp3"
                    text = original.replace("format: mp3", f"format: {new}")
                    if how == "replace":
                        temp = tmp / ".voicemail.yaml.tmp"
                        temp.write_text(text)
                        saved = time.monotonic()
                        os.replace(temp, path)
                    else:
                        saved = time.monotonic()
                        with open(path, "w") as fh:
                            fh.write(text)
                    current = new
                    # Wait for a call offered after the save to run the new version.
                    with anyio.fail_after(30):
                        while True:
                            await anyio.sleep(0.05)
                            hit = next((t for t, c in offered if t >= saved and c.ended
                                        and fmt(c) == new), None)
                            if hit is not None:
                                results[how].append(hit - saved)
                                break
                    offered.clear()
                tg.cancel_scope.cancel()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            shutil.rmtree(tmp, ignore_errors=True)
    return {how: {"median_ms": round(statistics.median(v) * 1000, 1),
                  "max_ms": round(max(v) * 1000, 1), "rounds": len(v)}
            for how, v in results.items()} | {"resolution_ms": interval * 1000}


def measure_reload(rounds: int = 5, interval: float = 0.005) -> dict[str, Any]:
    return anyio.run(_measure, rounds, interval, backend="asyncio")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--interval", type=float, default=0.005)
    args = parser.parse_args()
    print(json.dumps(measure_reload(args.rounds, args.interval)))
