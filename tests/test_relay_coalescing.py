"""CoalescingTransport: the writes of one event-loop turn reach the socket in one write,
in order; closing sees the buffer first, aborting drops it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flowengine.relay.connection import CoalescingTransport

pytestmark = pytest.mark.anyio


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.calls: list[str] = []
        self.closing = False
        self.extra = "peer"

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        self.calls.append("write")

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.calls.append("close")
        self.closing = True

    def write_eof(self) -> None:
        self.calls.append("write_eof")

    def abort(self) -> None:
        self.calls.append("abort")
        self.closing = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> Any:
        return self.extra


def wrap() -> tuple[FakeTransport, CoalescingTransport]:
    fake = FakeTransport()
    return fake, CoalescingTransport(fake, asyncio.get_running_loop())  # type: ignore[arg-type]


async def test_one_turn_one_write_in_order() -> None:
    fake, transport = wrap()
    transport.write(b"a")
    transport.write(bytearray(b"b"))
    transport.write(memoryview(b"c"))
    assert fake.writes == [] and transport.get_write_buffer_size() == 3
    await asyncio.sleep(0)
    assert fake.writes == [b"abc"]
    transport.write(b"d")
    await asyncio.sleep(0)
    assert fake.writes == [b"abc", b"d"]
    assert transport.get_extra_info("peername") == "peer"  # the rest is the real transport's


async def test_close_and_eof_flush_first_abort_drops() -> None:
    fake, transport = wrap()
    transport.write(b"x")
    transport.write_eof()
    assert fake.calls == ["write", "write_eof"]
    transport.write(b"y")
    transport.close()
    assert fake.calls[-2:] == ["write", "close"] and fake.writes == [b"x", b"y"]
    fake2, transport2 = wrap()
    transport2.write(b"lost")
    transport2.abort()
    await asyncio.sleep(0)
    assert fake2.writes == [] and fake2.calls == ["abort"]


async def test_nothing_is_written_to_a_closing_transport() -> None:
    fake, transport = wrap()
    transport.write(b"late")
    fake.closing = True
    await asyncio.sleep(0)
    assert fake.writes == []

