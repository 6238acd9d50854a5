"""A link that drops again and again loses no call: ``serve`` against the simulator with
hundreds of calls in flight and the TCP link aborted (no close frame) every few moments.

What a resumed session gets from RELAY, on both sides (docs/relay-client.md, "What survives
a dropped link"): events not ACKed are sent again; a request whose reply was lost is sent
again with its control_id (play, record, …) or because it is idempotent anyway (answer,
end), and the simulator takes a repeated control_id as the same action.

Run the full-size load by hand (numbers in the commit that added this file)::

    .venv/bin/python -m tests.test_harden_relay_drops 3000 300 1.5 1.0 1.0
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from flowengine.daemon import Daemon
from flowengine.relay import RelayConfig
from flowengine.sim import Simulator
from flowengine.sim.calls import SimCall
from tests.test_daemon import PROJECT, TOKEN, flow_text, write

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def serving(sim: Simulator, paths: list[Path], config: RelayConfig, **options: Any
                  ) -> AsyncIterator[Daemon]:
    """A daemon serving ``paths`` from ``sim`` with ``config``, drained on the way out
    (exit code 0): tests/test_daemon.py's helper with a RELAY config of one's own."""
    settings: dict[str, Any] = {"time_scale": sim.core.time_scale, "rescan_interval": 0,
                                "settle": 0.05, "drain_timeout": 10.0, **options}
    daemon = Daemon([str(p) for p in paths], config, **settings)
    codes: list[int] = []

    async def run(*, task_status: Any) -> None:
        codes.append(await daemon.run(task_status=task_status))

    async with anyio.create_task_group() as tg:
        with anyio.fail_after(10):
            await tg.start(run)
        try:
            yield daemon
        finally:
            daemon.request_drain()
    assert codes == [0]


@dataclass
class DropRun:
    """What a run under drops produced."""

    calls: list[SimCall] = field(default_factory=list)
    drops: int = 0
    reconnects: int = 0
    ended: dict[str, float] = field(default_factory=dict)  # metrics' `ended` label → count
    seconds: float = 0.0

    @property
    def not_ended(self) -> list[SimCall]:
        return [c for c in self.calls if not c.ended]


def ended_counts(daemon: Daemon) -> dict[str, float]:
    """flowengine_calls_total by its ``ended`` label, summed over flows and versions."""
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(daemon.metrics.render().decode()):
        for sample in family.samples:
            if sample.name == "flowengine_calls_total":
                label = sample.labels["ended"]
                counts[label] = counts.get(label, 0) + sample.value
    return counts


async def run_under_drops(directory: Path, *, total: int, in_flight: int,
                          drop_every: float, time_scale: float, reconnect_delay: float = 1.0,
                          deadline: float = 600.0) -> DropRun:
    """Keep ``in_flight`` calls up until ``total`` were offered, aborting every client
    socket each ``drop_every`` simulated seconds (so drops stay as frequent relative to a
    call's progress at any time scale), until every call ended. The daemon reconnects
    after ``reconnect_delay`` simulated seconds (the production default: 1 s)."""
    run = DropRun()
    started = time.monotonic()
    async with Simulator(port=0, project=PROJECT, token=TOKEN, time_scale=time_scale) as sim, \
            serving(sim, [directory], drain_timeout=30.0,
                    config=RelayConfig(url=sim.url, project=PROJECT, token=TOKEN,
                                       reconnect_delay=reconnect_delay * time_scale)) as daemon:

        async def dropper() -> None:
            while True:
                await anyio.sleep(drop_every * time_scale)
                await sim.drop_connections()
                run.drops += 1

        with anyio.fail_after(deadline):
            async with anyio.create_task_group() as tg:
                tg.start_soon(dropper)
                while len(run.calls) < total:
                    up = sum(1 for c in run.calls if not c.ended)
                    for _ in range(min(in_flight - up, total - len(run.calls))):
                        run.calls.append(sim.offer_call("desk", caller="speak:3"))
                    await anyio.sleep(0.02 * time_scale + 0.005)
                while run.not_ended:
                    await anyio.sleep(0.05)
                tg.cancel_scope.cancel()
            # Every call's task has finished its books once the daemon has none running.
            while daemon.metrics is not None and sum(ended_counts(daemon).values()) < total:
                await anyio.sleep(0.05)
        assert daemon.relay is not None
        run.reconnects = daemon.relay.reconnects
        run.ended = ended_counts(daemon)
    run.seconds = time.monotonic() - started
    return run


def desk(tmp_path: Path) -> Path:
    directory = tmp_path / "flows"
    directory.mkdir()
    write(directory / "desk.yaml", flow_text("desk", "desk"))
    return directory


async def test_calls_in_flight_lose_nothing_when_the_link_drops_every_few_moments(
        tmp_path: Path) -> None:
    # 300 calls in flight, the link aborted every 1.5 simulated seconds (a call lasts about
    # 5): many requests are on the wire, or their replies, when a socket goes. Time runs 5
    # times faster; the reconnect delay is 0.5 simulated seconds rather than 1 so that the
    # link stays up long enough, in real time, for the resumed session's traffic (what it
    # costs does not shrink with the time scale). The full-size run uses the defaults.
    run = await run_under_drops(desk(tmp_path), total=600, in_flight=300, drop_every=1.5,
                                time_scale=0.2, reconnect_delay=0.5, deadline=60)
    assert run.drops >= 3 and run.reconnects >= 3, run
    assert not run.not_ended
    assert run.ended == {"completed": 600.0}, run.ended
    assert {c.end_reason for c in run.calls} == {"hangup"}
    # Every call went the whole way: answered, greeted, recorded, hung up by the flow.
    for call in run.calls:
        assert {"calling.answer", "calling.play", "calling.record", "calling.end"} <= set(
            call.commands), call.commands
        assert len(call.recordings) == 1, (call.commands, call.recordings)


if __name__ == "__main__":  # the full-size run, by hand
    import tempfile

    total, in_flight, every, scale, reconnect = (
        int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]),
        float(sys.argv[5]))

    async def main() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            run = await run_under_drops(desk(Path(tmp)), total=total, in_flight=in_flight,
                                        drop_every=every, time_scale=scale,
                                        reconnect_delay=reconnect, deadline=3600)
        print(f"{total} calls, {in_flight} in flight, link aborted every {every} s "
              f"(time scale {scale}, reconnect delay {reconnect} s): {run.drops} drops, "
              f"{run.reconnects} reconnects, ended {run.ended}, not ended {len(run.not_ended)}, {run.seconds:.1f} s")

    anyio.run(main, backend="asyncio")
