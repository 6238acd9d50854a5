"""Checkpoints per second written to the state store, by batch size, backend by backend.

Each batch is one ``save_checkpoints`` transaction of N checkpoints (N = 1, 100, 1,000: one
call per transaction, versus what the Batcher writes for 100 or 1,000 calls in one loop
turn), every one a realistic checkpoint (~0.9 KB: steps, vars, a pending action, deadlines)
replacing that call's previous one. Side by side:

* ``sqlite``: the default, WAL with ``synchronous=NORMAL`` (a commit survives a killed
  process, not always a power loss);
* ``sqlite-full``: WAL with ``synchronous=FULL`` (each commit waits for the disk);
* ``postgres``: a local PostgreSQL cluster with its default durability (fsync on,
  ``synchronous_commit=on``), started by tests/pgcluster.py, over TCP on 127.0.0.1.

A last row drives the Batcher the way the daemon would: 1,000 calls as tasks, each putting a
checkpoint per "step" and yielding to the loop; it reports the steps checkpointed per
second, the flushes (transactions) and the rows written: a call that moved on several
steps during one flush has only its latest checkpoint written by the next.

Usage: ``python -m bench.store [--seconds 1.0]`` from the repository root.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from flowengine.store import Batcher, CallCheckpoint, Deadlines, PendingAction, Store, version_hash
from flowengine.store.sqlite import SQLiteStore

BATCH_SIZES = (1, 100, 1000)


def checkpoint(i: int, step: int) -> CallCheckpoint:
    """A checkpoint of the size a real call's is, at step ``step``."""
    return CallCheckpoint(
        call_id=f"call-{i:05}", daemon_id="bench", flow_name="voicemail",
        version_sha=version_hash("voicemail"), step=f"step{step}",
        steps={f"step{s}": {"outcome": "finished", "url": f"https://rec.test/{i}/{s}.wav",
                            "duration": 3.5, "digits": "1"} for s in range(max(1, step % 6))},
        vars={"caller": "+15550100", "attempt": step, "greeting": "Hello, " * 8},
        pending=PendingAction(kind="play", control_id=f"ctl-{i}-{step}", step=f"step{step}",
                              started_at=time.time()),
        deadlines=Deadlines(max_duration=time.time() + 600, step=time.time() + 30),
        visits={f"step{step}": 1})


async def rate(store: Store, size: int, seconds: float) -> float:
    """Checkpoints/s, writing batches of ``size`` for about ``seconds``."""
    await store.save_checkpoints([checkpoint(i, 0) for i in range(size)])   # rows exist
    written, step = 0, 1
    start = time.perf_counter()
    while True:
        await store.save_checkpoints([checkpoint(i, step) for i in range(size)])
        written += size
        step += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and step > 3:
            return written / elapsed


async def batcher_rate(store: Store, calls: int = 1000, steps: int = 20) -> dict[str, float]:
    """The Batcher under ``calls`` concurrent calls, ``steps`` checkpoints each."""
    async with Batcher(store) as batcher:
        async def call(i: int) -> None:
            for step in range(steps):
                batcher.put(checkpoint(i, step))
                await anyio.sleep(0)            # the call awaits RELAY between steps
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(calls):
                tg.start_soon(call, i)
        await batcher.flushed()
        elapsed = time.perf_counter() - start
    return {"checkpoints_per_s": calls * steps / elapsed, "flushes": batcher.flushes,
            "written": batcher.written}


async def measure(name: str, make: Callable[[], Store], seconds: float) -> dict[str, Any]:
    store = make()
    await store.open()
    try:
        result: dict[str, Any] = {str(size): await rate(store, size, seconds)
                                  for size in BATCH_SIZES}
        result["batcher"] = await batcher_rate(store)
    finally:
        await store.close()
    return result


async def main(seconds: float) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = await measure("sqlite", lambda: SQLiteStore(Path(tmp) / "n"),
                                          seconds)
        results["sqlite-full"] = await measure(
            "sqlite-full", lambda: SQLiteStore(Path(tmp) / "f", synchronous="FULL"), seconds)
    from tests.pgcluster import PgCluster, pg_unavailable
    reason = pg_unavailable()
    if reason:
        print(f"postgres: skipped ({reason})")
    else:
        from flowengine.store.postgres import PostgresStore
        with PgCluster(durable=True) as pg:
            url = pg.create_database("bench")
            results["postgres"] = await measure("postgres", lambda: PostgresStore(url), seconds)
    return results


def report(results: dict[str, dict[str, Any]]) -> None:
    names = list(results)
    print("checkpoints/s by batch size (one transaction per batch)")
    print(f"{'batch':>8}" + "".join(f"{n:>14}" for n in names))
    for size in BATCH_SIZES:
        print(f"{size:>8}" + "".join(f"{results[n][str(size)]:>14,.0f}" for n in names))
    print(f"{'batcher':>8}" + "".join(f"{results[n]['batcher']['checkpoints_per_s']:>14,.0f}"
                                      for n in names)
          + "   steps/s: 1,000 calls x 20 put()s; flushes / rows written: "
          + ", ".join(f"{n} {results[n]['batcher']['flushes']} / {results[n]['batcher']['written']}"
                      for n in names))
    print(json.dumps(results))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="time spent on each batch size (default 1.0)")
    args = parser.parse_args()
    report(anyio.run(main, args.seconds, backend="asyncio"))
