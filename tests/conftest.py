import os

import pytest

from flowengine.testing import VirtualClockLoop

#: The simulator core's fixtures (clock, core, peer) for its tests.
pytest_plugins = ["tests.simpeer"]

# The official SDK allows one RelayClient per process unless told otherwise, and honours
# HTTP(S)_PROXY even for loopback (docs/relay-protocol.md §8).
os.environ.setdefault("RELAY_MAX_CONNECTIONS", "64")
os.environ.setdefault("no_proxy", "127.0.0.1,localhost")
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "virtual_time: run the (anyio) test on flowengine.testing.VirtualClockLoop: "
        "time jumps to the next timer whenever every task waits (docs/testing.md)")
    config.addinivalue_line(
        "markers", "wall_clock: run the test on a real event loop even in a virtual_time module "
        "(it needs real sockets or threads: the daemon, HTTP downloads)")


@pytest.fixture
def anyio_backend(request: pytest.FixtureRequest):
    # transitions' AsyncMachine and the websockets asyncio API need the asyncio backend.
    # A test (or module: pytestmark) marked virtual_time runs on virtual time: its
    # simulator and client meet in memory (tests/flowtools.py run_flow, or
    # flowengine.testing.simulated) and simulated seconds cost nothing.
    if (request.node.get_closest_marker("virtual_time") is not None
            and request.node.get_closest_marker("wall_clock") is None):
        return ("asyncio", {"loop_factory": VirtualClockLoop})
    return "asyncio"
