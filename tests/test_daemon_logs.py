"""``flowengine serve``'s log lines: one write per loop turn, in order, nothing lost; the
readable and JSON formats."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
import time
from collections.abc import Iterator

import pytest

from flowengine.daemon.logs import JsonFormatter, LineHandler, ReadableFormatter


class CountingStream(io.StringIO):
    """A text stream that counts the writes it gets."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, CountingStream, LineHandler]]:
    stream = CountingStream()
    handler = LineHandler(stream)
    handler.setFormatter(ReadableFormatter())
    logger = logging.getLogger("flowengine.test-line-handler")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield logger, stream, handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def messages(stream: io.StringIO) -> list[str]:
    return [line.split("flowengine.test-line-handler: ", 1)[1]
            for line in stream.getvalue().splitlines()]


def test_the_lines_of_one_loop_turn_leave_in_one_write_in_order(logged) -> None:
    logger, stream, _ = logged

    async def main() -> None:
        for n in range(5):
            logger.info("first turn %d", n)
        assert stream.writes == 0  # not yet: at the start of the next turn
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert stream.writes == 1
        for n in range(3):
            logger.info("second turn %d", n)
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(main())
    assert stream.writes == 2
    assert messages(stream) == [f"first turn {n}" for n in range(5)] + [
        f"second turn {n}" for n in range(3)]


def test_a_warning_goes_out_at_once_after_what_was_pending(logged) -> None:
    logger, stream, _ = logged

    async def main() -> None:
        logger.info("one")
        logger.info("two")
        logger.warning("trouble")
        assert messages(stream) == ["one", "two", "trouble"]
        logger.info("three")
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(main())
    assert messages(stream) == ["one", "two", "trouble", "three"]


def test_lines_without_an_event_loop_are_written_as_they_come(logged) -> None:
    logger, stream, _ = logged
    logger.info("no loop here")
    assert messages(stream) == ["no loop here"]

    async def main() -> None:
        logger.info("from the loop")
        thread = threading.Thread(target=logger.info, args=("from a thread",))
        thread.start()
        thread.join()

    asyncio.run(main())
    # The thread's line takes what the loop had pending with it: the order holds.
    assert messages(stream) == ["no loop here", "from the loop", "from a thread"]


def test_flush_writes_what_is_pending_at_once(logged) -> None:
    logger, stream, handler = logged

    async def main() -> None:
        logger.info("pending")
        assert messages(stream) == []
        handler.flush()  # what logging.shutdown() does at exit
        assert messages(stream) == ["pending"]
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(main())
    assert messages(stream) == ["pending"] and stream.writes == 1


def test_json_lines_carry_the_extras_and_survive_values_orjson_refuses() -> None:
    formatter = JsonFormatter()
    record = logging.LogRecord("flowengine.engine", logging.INFO, __file__, 1,
                               "step %s (%s) -> %s", ("greet", "answer", "answered"), None)
    record.__dict__.update(call_id="c1", flow="voicemail", flow_version="abc", duration=0.0123,
                           next_step="bye", odd={1: "int key"}, huge=2**70, when=time)
    line = json.loads(formatter.format(record))
    assert line["message"] == "step greet (answer) -> answered"
    assert (line["call_id"], line["flow"], line["version"], line["next"]) == (
        "c1", "voicemail", "abc", "bye")
    assert line["duration_ms"] == 12.3 and line["huge"] == 2**70
    assert line["odd"] == {"1": "int key"} and line["when"].startswith("<module 'time'")
    assert line["ts"].endswith("Z") and line["level"] == "info"


def test_the_time_prefix_follows_the_clock() -> None:
    formatter = ReadableFormatter()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    stamps = []
    for created in (1_700_000_000.25, 1_700_000_000.75, 1_700_000_001.5, 1_700_003_600.0):
        record.created, record.msecs = created, (created % 1) * 1000
        stamps.append(formatter.format(record).split(" INFO")[0])
    expected = [time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(int(c))) + f".{ms:03d}"
                for c, ms in ((1_700_000_000.25, 250), (1_700_000_000.75, 750),
                              (1_700_000_001.5, 500), (1_700_003_600.0, 0))]
    assert stamps == expected
