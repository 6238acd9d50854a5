"""RelayClient.incoming_calls(): a burst of offers is taken in one turn of the loop."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest

from flowengine.relay.client import IncomingCalls

pytestmark = pytest.mark.anyio


def _stream(size: int = 100) -> tuple[Any, IncomingCalls]:
    send, receive = anyio.create_memory_object_stream[Any](size)
    return send, IncomingCalls(receive)


async def test_waiting_calls_are_taken_without_a_turn_of_the_loop_each() -> None:
    send, incoming = _stream()
    turns = 0
    taken: list[int] = []

    async def count_turns() -> None:
        nonlocal turns
        while True:
            await anyio.lowlevel.checkpoint()
            turns += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(count_turns)
        await anyio.lowlevel.checkpoint()
        for i in range(50):
            send.send_nowait(i)
        before = turns
        async for call in incoming:
            taken.append(call)
            if len(taken) == 50:
                break
        assert turns - before <= 1
        tg.cancel_scope.cancel()
    assert taken == list(range(50))


async def test_it_ends_when_the_sender_closes_and_honours_cancellation() -> None:
    send, incoming = _stream()
    send.send_nowait("a")
    with anyio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(anyio.get_cancelled_exc_class()):
            await incoming.receive()  # cancelled: the waiting call stays for later
    assert incoming.statistics().current_buffer_used == 1
    send.close()
    assert [c async for c in incoming] == ["a"]
    with pytest.raises(anyio.EndOfStream):
        incoming.receive_nowait()
    await incoming.aclose()
