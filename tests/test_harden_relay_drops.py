"""A link that drops again and again loses no call: ``serve`` against the simulator with
hundreds of calls in flight and the TCP link aborted (no close frame) every few moments.

What a resumed session gets from RELAY, on both sides (docs/relay-client.md, "What survives
a dropped link"): events not ACKed are sent again; a request whose reply was lost is sent
again with its control_id (play, record, …) or because it is idempotent anyway (answer,
end), and the simulator takes a repeated control_id as the same action.

Run the full-size load by hand (numbers in the commit that added this file)::

    .venv/bin/python -m tests.test_harden_relay_drops 3000 300 1.5 1.0 1.0

(calls, in flight, seconds between drops, time scale, reconnect delay).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from flowengine.daemon import Daemon
from flowengine.relay import RelayConfig
from flowengine.sim import Simulator
from flowengine.sim.calls import SimCall
from tests.test_daemon import PROJECT, TOKEN, flow_text, serving, write

pytestmark = pytest.mark.anyio


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

    @property
    def commands(self) -> int:
        """The RELAY commands the simulator received for the calls (repeats included)."""
        return sum(len(c.commands) for c in self.calls)

    @property
    def progress(self) -> int:
        """The calls' steps so far: each call's distinct commands (a command sent again
        after a drop is no step further)."""
        return sum(len(set(c.commands)) for c in self.calls)


def ended_counts(daemon: Daemon) -> dict[str, float]:
    """flowengine_calls_total by its ``ended`` label, summed over flows and versions."""
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(daemon.metrics.render().decode()):
        for sample in family.samples:
            if sample.name == "flowengine_calls_total":
                label = sample.labels["ended"]
                counts[label] = counts.get(label, 0) + sample.value
    return counts


async def run_under_drops(directory: Path, *, total: int, in_flight: int, time_scale: float,
                          drop_every: float | None = None, drop_every_commands: int = 0,
                          reconnect_delay: float = 1.0, deadline: float = 600.0) -> DropRun:
    """Keep ``in_flight`` calls up until ``total`` were offered, until every call ended,
    aborting every client socket (no close frame) each ``drop_every`` simulated seconds,
    or each time the calls made ``drop_every_commands`` more steps (:attr:`DropRun.progress`):
    drops as frequent relative to the calls' progress whatever the time scale or the load
    of the machine. The daemon reconnects after ``reconnect_delay`` simulated seconds (the
    production default: 1 s)."""
    run = DropRun()
    started = time.monotonic()
    async with Simulator(port=0, project=PROJECT, token=TOKEN, time_scale=time_scale) as sim, \
            serving(sim, [directory], drain_timeout=30.0,
                    config=RelayConfig(url=sim.url, project=PROJECT, token=TOKEN,
                                       reconnect_delay=reconnect_delay * time_scale)) as daemon:

        async def dropper() -> None:
            since = 0
            while True:
                if drop_every is not None:
                    await anyio.sleep(drop_every * time_scale)
                else:
                    while run.progress - since < drop_every_commands:
                        await anyio.sleep(0.002)
                    since = run.progress
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
    # 300 calls in flight, the link aborted each time the calls made 300 more steps (new
    # commands): what every 1.5 s amounts to with 300 voicemail calls in flight (the
    # full-size run: 12,000 steps, 40 drops). Many requests are on the wire, or their
    # replies, when a socket goes. Counting steps rather than seconds keeps the drops as
    # frequent relative to the calls' progress at 20 times real speed, and on a busy
    # machine, where a link up for a fixed real time would carry less and less.
    run = await run_under_drops(desk(tmp_path), total=600, in_flight=300, time_scale=0.05,
                                drop_every_commands=300, deadline=120)
    assert not run.not_ended
    assert run.ended == {"completed": 600.0}, (run.ended, run.drops)
    assert run.drops >= 6 and run.reconnects >= 6, (run.drops, run.reconnects)
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
              f"{run.reconnects} reconnects, {run.commands} commands, ended {run.ended}, "
              f"not ended {len(run.not_ended)}, {run.seconds:.1f} s")

    anyio.run(main, backend="asyncio")
