"""Running flows over the real simulator, for the engine's tests.

New engine and action tests run on virtual time: mark them ``@pytest.mark.virtual_time``
(or the module: ``pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]``) and
:func:`run_flow` joins the simulator and the client in memory, at ``time_scale`` 1.0
(simulated seconds are free), with every trace time exact. Unmarked tests run as before:
over a real websocket, on scaled wall-clock time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from flowengine.engine import FlowRuntime, SessionReport
from flowengine.engine.runner import run_calls
from flowengine.flow import FlowVersion, load_flow
from flowengine.flow.schedules import WALL_CLOCK, Clock, SetClock, parse_at
from flowengine.relay import RelayClient, RelayConfig
from flowengine.sim import Simulator
from flowengine.testing import VirtualClockLoop, config_for, connector

ROOT = Path(__file__).resolve().parent.parent
FLOWS = ROOT / "flows"
#: Simulated time runs this much faster than real time in tests on wall-clock time.
TIME_SCALE = 0.01
#: On virtual time a run that has not ended after this many simulated seconds is a hang.
HANG = 24 * 3600.0


def on_virtual_time() -> bool:
    """True when the running loop is a :class:`~flowengine.testing.VirtualClockLoop`."""
    return isinstance(asyncio.get_running_loop(), VirtualClockLoop)


def variant(text: str, *edits: tuple[str, str]) -> str:
    """``text`` with each ``(old, new)`` edit applied in turn (every occurrence of ``old``).

    A test that builds a flow variant must not silently run the original flow when the
    text it meant to change is not there (a reworded example flow): an ``old`` that does
    not occur fails the test here, naming it.
    """
    for old, new in edits:
        if old not in text:
            raise AssertionError(f"variant: {old!r} does not occur in the flow text")
        text = text.replace(old, new)
    return text


@dataclass
class Run:
    reports: list[SessionReport]
    summary: dict[str, Any]
    sim_calls: list[Any]

    @property
    def report(self) -> SessionReport:
        assert len(self.reports) == 1
        return self.reports[0]

    def path(self, index: int = 0) -> list[tuple[str, str]]:
        """The (step, outcome) pairs one call went through."""
        return [(e.step, e.outcome) for e in self.reports[index].trace]


async def run_flow(flow: FlowVersion | Path | str, caller: str = "speak:3", *, calls: int = 1,
                   time_scale: float | None = None,
                   setup: Callable[[Simulator], Any] | None = None,
                   inside: Callable[[Run], Awaitable[Any]] | None = None,
                   at: str | None = None, tz: str | None = None, **offer: Any) -> Run:
    """Offer ``calls`` inbound calls on the flow's context and run each through the flow.

    ``setup(sim)`` runs before the calls are offered (fault injection); ``inside(run)``
    runs once the calls ended, while the simulator still serves (to fetch recordings).

    On virtual time (a test marked ``virtual_time``) the simulator and the client meet in
    memory and ``time_scale`` defaults to 1.0; a run that does not end within
    :data:`HANG` simulated seconds fails. Otherwise they meet over a real websocket on
    ``127.0.0.1`` and ``time_scale`` defaults to :data:`TIME_SCALE`.
    ``at`` (in ``tz``, default UTC) sets the calls' clock, as ``flowengine run --at`` does.
    """
    if not isinstance(flow, FlowVersion):
        flow = load_flow(flow)
    runtime = FlowRuntime(flow)
    virtual = on_virtual_time()
    if time_scale is None:
        time_scale = 1.0 if virtual else TIME_SCALE
    with anyio.fail_after(HANG if virtual else None):
        async with Simulator(port=0, project="p", token="t", time_scale=time_scale,
                             listen=not virtual) as sim:
            if setup is not None:
                setup(sim)
            sim_calls = [sim.offer_call(context=flow.contexts[0], caller=caller, **offer)
                         for _ in range(calls)]
            if virtual:
                client = RelayClient(config_for(sim), flow.contexts, connect=connector(sim))
            else:
                client = RelayClient(RelayConfig(url=sim.url, project="p", token="t"),
                                     flow.contexts)
            async with client:
                clock: Clock = WALL_CLOCK if at is None else SetClock(
                    parse_at(at, tz), time_scale, monotonic=asyncio.get_running_loop().time)
                reports = await run_calls(runtime, client, calls, time_scale=time_scale,
                                          clock=clock)
            for call in sim_calls:
                await call.wait_ended()
            run = Run(reports, sim.summary(), sim_calls)
            if inside is not None:
                await inside(run)
    return run


def write_flow(tmp_path: Path, text: str, name: str = "flow.yaml") -> FlowVersion:
    path = tmp_path / name
    path.write_text(text)
    return load_flow(path)
