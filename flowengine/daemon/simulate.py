"""``flowengine serve --simulate``: a steady stream of scripted calls for the daemon's flows.

Calls go to the flows being served *now* (the registry is read before every call, so a
flow added or edited while it runs gets calls too), one flow after another: each call is
placed on the flow's first context, from and to numbers that its ``match`` takes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

import anyio

from .routing import FlowEntry, Registry, is_glob

if TYPE_CHECKING:
    from flowengine.sim import Simulator
    from flowengine.sim.calls import SimCall

__all__ = ["example_number", "stream_calls"]

logger = logging.getLogger("flowengine.daemon.simulate")

DEFAULT_FROM = "+15551230000"
DEFAULT_TO = "+15559870000"


def example_number(pattern: str | None, default: str) -> str:
    """A number that ``pattern`` (exact or glob) takes: ``+1555987*`` → ``+1555987``.

    ``default`` when there is no pattern or no simple number fits it.
    """
    if pattern is None:
        return default
    if not is_glob(pattern):
        return pattern
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            pass
        elif char == "?":
            out.append("0")
        elif char == "[":
            end = pattern.find("]", i + 2)
            body = pattern[i + 1:end] if end != -1 else ""
            if not body or body.startswith(("!", "^")):
                return default
            out.append(body[0])
            i = end
        else:
            out.append(char)
        i += 1
    number = "".join(out)
    return number if fnmatchcase(number, pattern) else default


def call_for(entry: FlowEntry) -> tuple[str, str, str]:
    """(context, from, to) of a call that ``entry`` takes."""
    match = entry.flow.match
    return (entry.flow.contexts[0], example_number(match.get("from"), DEFAULT_FROM),
            example_number(match.get("to"), DEFAULT_TO))


async def stream_calls(sim: Simulator, registry: Callable[[], Registry], *, rate: float,
                       caller: str, count: int = 0,
                       going_on: Callable[[], bool] = lambda: True) -> int:
    """Place a call every ``1/rate`` seconds (``count`` of them, 0: no limit), one flow
    after another, while ``going_on()``; return once the calls placed have ended."""
    placed: list[SimCall] = []
    turn = 0
    while (count <= 0 or len(placed) < count) and going_on():
        # Flows for calls we place (outbound:) take no inbound call: none is simulated.
        entries = [e for e in registry().flows.values() if e.flow.outbound is None]
        if entries:
            entry = entries[turn % len(entries)]
            turn += 1
            context, from_number, to_number = call_for(entry)
            placed.append(sim.offer_call(context, from_number, to_number, caller))
            logger.debug("simulated call to %s from %s on %s (for flow %s)", to_number,
                         from_number, context, entry.name)
            if count <= 0:
                placed = [c for c in placed if not c.ended]  # keep only what is in flight
        await anyio.sleep(1.0 / rate)
    for call in placed:
        # A daemon that drains hangs up what it still runs: this never waits forever.
        await call.wait_ended()
    return len(placed)
