"""Running flows over the real simulator, for the engine's tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowengine.engine import FlowRuntime, SessionReport
from flowengine.engine.runner import run_calls
from flowengine.flow import FlowVersion, load_flow
from flowengine.flow.schedules import WALL_CLOCK, Clock, SetClock, parse_at
from flowengine.relay import RelayClient, RelayConfig
from flowengine.sim import Simulator

ROOT = Path(__file__).resolve().parent.parent
FLOWS = ROOT / "flows"
#: Simulated time runs this much faster than real time in tests.
TIME_SCALE = 0.01


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
                   time_scale: float = TIME_SCALE, setup: Callable[[Simulator], Any] | None = None,
                   inside: Callable[[Run], Awaitable[Any]] | None = None,
                   at: str | None = None, tz: str | None = None, **offer: Any) -> Run:
    """Offer ``calls`` inbound calls on the flow's context and run each through the flow.

    ``setup(sim)`` runs before the calls are offered (fault injection); ``inside(run)``
    runs once the calls ended, while the simulator still serves (to fetch recordings).
    ``at`` (in ``tz``, default UTC) sets the calls' clock, as ``flowengine run --at`` does.
    """
    if not isinstance(flow, FlowVersion):
        flow = load_flow(flow)
    runtime = FlowRuntime(flow)
    async with Simulator(port=0, project="p", token="t", time_scale=time_scale) as sim:
        if setup is not None:
            setup(sim)
        sim_calls = [sim.offer_call(context=flow.contexts[0], caller=caller, **offer)
                     for _ in range(calls)]
        async with RelayClient(RelayConfig(url=sim.url, project="p", token="t"),
                               flow.contexts) as client:
            clock: Clock = WALL_CLOCK if at is None else SetClock(parse_at(at, tz), time_scale)
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
