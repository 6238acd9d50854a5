"""Test support for flows and RELAY code: virtual time and the simulator in memory.

* :class:`VirtualClockLoop` / :func:`run`: an asyncio loop whose clock jumps to the next
  timer whenever every task waits (trio's ``MockClock(autojump_threshold=0)``).
* :func:`connector` / :func:`config_for`: a :class:`~flowengine.relay.RelayClient`
  reaches a :class:`~flowengine.sim.Simulator` started with ``listen=False`` in memory.
* :func:`simulated`: both at once — a simulator and a client joined in memory.

See docs/testing.md ("Your own tests on virtual time").
"""

from flowengine.testing.clock import VirtualClockLoop, run
from flowengine.testing.memory import (
    Connect,
    MemoryTransport,
    config_for,
    connector,
    simulated,
    transport_pair,
)

__all__ = ["Connect", "MemoryTransport", "VirtualClockLoop", "config_for", "connector", "run",
           "simulated", "transport_pair"]
