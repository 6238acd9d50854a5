"""Helpers for the call API's tests: a daemon serving the API on an in-process simulator,
an HTTP client for it, and a watch on the simulator's outbound legs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx

from flowengine.daemon import Daemon
from flowengine.daemon.api import ApiOptions
from flowengine.sim import Simulator
from flowengine.sim.calls import SimCall
from tests.test_daemon import serving

#: A flow for outbound calls: it says something and hangs up.
NOTIFY = """\
name: notify
context: outbound
inputs:
  patient: {type: string, default: "there"}
outbound:
  from: "+15559870000"
steps:
  hello:
    play:
      - say: "Your appointment is tomorrow at nine."
  bye:
    hangup: {}
"""


@dataclass
class DialWatch:
    """Every outbound leg the simulator places: when (simulated seconds), to whom, and how
    many were up at once at most. Wraps the simulator core's ``leg_created``."""

    sim: Simulator
    started: list[tuple[float, str]] = field(default_factory=list)
    up: int = 0
    max_up: int = 0
    #: The numbers with a leg up now.
    live: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        core = self.sim.core
        original = core.leg_created

        def leg_created(session: Any, leg: SimCall) -> None:
            original(session, leg)
            self.started.append((core.now / core.time_scale, leg.to_number))
            self.up += 1
            self.max_up = max(self.max_up, self.up)
            self.live.add(leg.to_number)
            end = leg.end

            def ended(reason: str) -> None:
                if leg.state not in ("ending", "ended"):
                    self.up -= 1
                    self.live.discard(leg.to_number)
                end(reason)

            leg.end = ended  # type: ignore[method-assign]

        core.leg_created = leg_created  # type: ignore[method-assign]

    @property
    def count(self) -> int:
        """Legs placed so far."""
        return len(self.started)

    def by_number(self) -> dict[str, int]:
        """How many times each number was dialled."""
        counts: dict[str, int] = {}
        for _, number in self.started:
            counts[number] = counts.get(number, 0) + 1
        return counts

    def max_per_window(self, window: float = 1.0) -> int:
        """The most starts in any ``window`` simulated seconds."""
        times = sorted(t for t, _ in self.started)
        best, low = 0, 0
        for high, t in enumerate(times):
            while times[low] <= t - window:
                low += 1
            best = max(best, high - low + 1)
        return best


def write_flows(tmp_path: Path, *texts: str) -> Path:
    """A flow directory holding ``texts`` (flow0.yaml, flow1.yaml…)."""
    directory = tmp_path / "flows"
    directory.mkdir(exist_ok=True)
    for index, text in enumerate(texts):
        (directory / f"flow{index}.yaml").write_text(text)
    return directory


@asynccontextmanager
async def api_serving(sim: Simulator, paths: Iterable[Path | str], state_dir: Path, *,
                      token: str | None = None, **options: Any
                      ) -> AsyncIterator[tuple[Daemon, httpx.AsyncClient]]:
    """A daemon serving the call API (any free port), and a client for it (with the token)."""
    api_fields = {k: options.pop(k) for k in list(options)
                  if k in ("max_outbound", "webhook_secret", "max_body", "default_from",
                            "webhook_backoff", "webhook_timeout", "webhook_flush")}
    api = ApiOptions(port=0, state_dir=str(state_dir), token=token, **api_fields)
    async with serving(sim, paths, api=api, **options) as daemon:
        assert daemon.api is not None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.api.port}",
                                     headers=headers, timeout=10) as client:
            yield daemon, client


async def wait_call(client: httpx.AsyncClient, call_id: str, states: Iterable[str] = (
        "completed", "failed", "canceled"), timeout: float = 15.0) -> dict[str, Any]:
    """Poll ``GET /v1/calls/{id}`` until its state is one of ``states``."""
    wanted = set(states)
    with anyio.fail_after(timeout):
        while True:
            body: dict[str, Any] = (await client.get(f"/v1/calls/{call_id}")).json()
            if body["state"] in wanted:
                return body
            await anyio.sleep(0.02)


async def wait_campaign(client: httpx.AsyncClient, campaign_id: str,
                        states: Iterable[str] = ("completed", "canceled"),
                        timeout: float = 60.0) -> dict[str, Any]:
    """Poll ``GET /v1/campaigns/{id}`` until its state is one of ``states``."""
    wanted = set(states)
    with anyio.fail_after(timeout):
        while True:
            body: dict[str, Any] = (await client.get(f"/v1/campaigns/{campaign_id}")).json()
            if body["state"] in wanted:
                return body
            await anyio.sleep(0.05)
