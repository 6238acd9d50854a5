import os

import pytest

#: The simulator core's fixtures (clock, core, peer) for its tests.
pytest_plugins = ["tests.simpeer"]

# The official SDK allows one RelayClient per process unless told otherwise, and honours
# HTTP(S)_PROXY even for loopback (docs/relay-protocol.md §8).
os.environ.setdefault("RELAY_MAX_CONNECTIONS", "64")
os.environ.setdefault("no_proxy", "127.0.0.1,localhost")
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def anyio_backend():
    # transitions' AsyncMachine and the websockets asyncio API need the asyncio backend.
    return "asyncio"
