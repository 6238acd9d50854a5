"""The Pacer: at most N in flight, at most R starts per second, on a fake clock.

The clock is fake (its sleep advances it at once), so the tests count starts per window of
the pacer's own time and never depend on how fast the machine is.
"""

from __future__ import annotations

import math

import anyio
import anyio.lowlevel
import pytest

from flowengine.engine.pacing import Pacer

pytestmark = pytest.mark.anyio


class FakeClock:
    """Time that moves only when someone sleeps: a sleep of d advances it by d."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps = 0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        assert seconds > 0, "the pacer never sleeps for nothing"
        self.sleeps += 1
        self.now += seconds
        await anyio.lowlevel.checkpoint()


def most_in_any_window(times: list[float], width: float) -> int:
    """The most starts that fall into any half-open window [t, t + width)."""
    times = sorted(times)
    best = 0
    for i, start in enumerate(times):
        best = max(best, sum(1 for t in times[i:] if t < start + width - 1e-9))
    return best


async def test_the_rate_holds_in_every_second_and_every_start_happens() -> None:
    clock = FakeClock()
    pacer = Pacer(max_concurrent=100, rate=10, clock=clock, sleep=clock.sleep)
    starts: list[float] = []

    async def one() -> None:
        async with pacer:
            starts.append(clock())

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(35):
                tg.start_soon(one)
    assert len(starts) == 35 and pacer.started == 35 and pacer.in_flight == 0
    assert most_in_any_window(starts, 1.0) == 10
    # 35 starts, one every 0.1 s of the pacer's time: the last at 3.4 s.
    assert math.isclose(max(starts), 3.4, abs_tol=1e-6)
    # Sleeping, not polling: about one sleep per start that had to wait.
    assert clock.sleeps <= 2 * 35


async def test_never_more_than_max_concurrent_hold_it() -> None:
    pacer = Pacer(max_concurrent=3, rate=0)
    holding = 0
    peak = 0
    release = anyio.Event()
    done = 0

    async def one() -> None:
        nonlocal holding, peak, done
        async with pacer:
            holding += 1
            peak = max(peak, holding)
            await release.wait()
            holding -= 1
        done += 1

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(one)
            while pacer.in_flight < 3:
                await anyio.sleep(0.001)
            for _ in range(10):  # the others stay waiting while the three hold it
                await anyio.lowlevel.checkpoint()
            assert holding == 3 and pacer.started == 3
            release.set()
    assert peak == 3 and done == 20 and pacer.started == 20 and pacer.in_flight == 0


async def test_a_burst_starts_at_once_after_a_quiet_spell_then_the_rate_applies() -> None:
    clock = FakeClock()
    pacer = Pacer(max_concurrent=10, rate=2, burst=3, clock=clock, sleep=clock.sleep)
    starts = []
    for _ in range(5):
        await pacer.acquire()
        starts.append(clock())
        pacer.release()
    assert starts[:3] == [0.0, 0.0, 0.0]
    assert [round(t, 6) for t in starts[3:]] == [0.5, 1.0]


async def test_a_cancelled_wait_holds_nothing() -> None:
    clock = FakeClock()
    pacer = Pacer(max_concurrent=1, rate=1, clock=clock, sleep=clock.sleep)
    await pacer.acquire()
    with anyio.move_on_after(0.05):  # waits for the slot the first holds
        await pacer.acquire()
    assert pacer.in_flight == 1 and pacer.started == 1
    pacer.release()

    never = anyio.Event()

    async def stuck(seconds: float) -> None:
        await never.wait()

    blocked = Pacer(max_concurrent=1, rate=1, clock=clock, sleep=stuck)
    await blocked.acquire()  # the first token
    blocked.release()
    with anyio.move_on_after(0.05):  # has the slot, waits for the next token
        await blocked.acquire()
    assert blocked.in_flight == 0 and blocked.started == 1
    with anyio.fail_after(1):  # the slot was given back
        await blocked._slots.acquire()


def test_bad_settings_are_refused() -> None:
    for kwargs in ({"max_concurrent": 0, "rate": 1}, {"max_concurrent": 1, "rate": -1},
                   {"max_concurrent": 1, "rate": float("nan")},
                   {"max_concurrent": 1, "rate": 1, "burst": 0}):
        with pytest.raises(ValueError):
            Pacer(**kwargs)
