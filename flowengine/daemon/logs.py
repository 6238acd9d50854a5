"""Log lines of ``flowengine serve``: readable by default, JSON (one object per line) for machines.

Every line about a call carries its call id, flow name and version. At ``info`` (the
default) a call writes one line, when it ends: how it ended, the steps it took and how long
it lasted (plus the lines of the flow's own ``log`` steps). At ``debug`` the engine adds one
line per step (step, action, outcome, next step, duration) and the daemon one when the call
arrives. The readable format puts the call in a bracket in front of the message::

    2025-05-01 12:00:03.120 INFO  [3f2a…e1 voicemail@9c1d2e3f4a5b] call ended:
        completed after 7 step(s) (hangup), from +1555… to +1555…: greet > prompt > … > end (92 ms)

The JSON format writes them as fields (``call_id``, ``flow``, ``version``, ``ended``,
``path``, ``steps``, ``duration_ms``; ``step``, ``action``, ``outcome``, ``next`` on step
lines; ``event``/``file``/``errors`` on reload lines).

Every line is masked by :mod:`flowengine.redact` before it is written, whichever logger it
came from. A line must be cheap: the lines logged in one turn of the event loop leave in one
write (:class:`LineHandler`; warnings and errors at once), the time prefix is formatted once
a second, and records skip the source line, thread and process fields no format shows.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from typing import IO, Any

import orjson

from flowengine.redact import protect, register_environment

__all__ = ["JsonFormatter", "LineHandler", "ReadableFormatter", "configure_logging"]

#: Attributes every LogRecord has: anything else on a record came in through ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}
#: Renamed for the JSON output: the engine's ``flow_version`` is the line's ``version``.
_RENAMED = {"flow_version": "version", "next_step": "next"}


class _Seconds:
    """``strftime`` of a record's second, computed once per second (not once per line)."""

    __slots__ = ("_convert", "_format", "_second", "_text")

    def __init__(self, fmt: str, convert: Any) -> None:
        self._format, self._convert = fmt, convert
        self._second, self._text = -1, ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second = second
            self._text = time.strftime(self._format, self._convert(second))
        return self._text


def _timestamp(record: logging.LogRecord, seconds: _Seconds) -> str:
    return f"{seconds(record.created)}.{int(record.msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message`` and the extras."""

    def __init__(self) -> None:
        super().__init__()
        self._seconds = _Seconds("%Y-%m-%dT%H:%M:%S", time.gmtime)

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record, self._seconds),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key in _STANDARD or key.startswith("_"):
                continue
            if key == "duration" and isinstance(value, float):
                line["duration_ms"] = round(value * 1000, 3)
                continue
            line[_RENAMED.get(key, key)] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        try:
            return orjson.dumps(line, default=str).decode()
        except TypeError:  # what orjson refuses (a 65-bit integer, a key that is no str)
            return json.dumps(line, default=str, ensure_ascii=False)


class ReadableFormatter(logging.Formatter):
    """``time LEVEL [call flow@version] message`` for call lines, ``time LEVEL logger: message``
    for the others."""

    def __init__(self) -> None:
        super().__init__()
        self._seconds = _Seconds("%Y-%m-%d %H:%M:%S", time.localtime)

    def format(self, record: logging.LogRecord) -> str:
        when = f"{self._seconds(record.created)}.{int(record.msecs):03d}"
        call_id = getattr(record, "call_id", None)
        flow = getattr(record, "flow", None)
        message = record.getMessage()
        if call_id is not None:
            version = str(getattr(record, "flow_version", "") or "")[:12]
            where = f"{flow}@{version}" if flow else "-"
            duration = getattr(record, "duration", None)
            if isinstance(duration, float):
                message = f"{message} ({duration * 1000:.0f} ms)"
            text = f"{when} {record.levelname:<5} [{call_id} {where}] {message}"
        else:
            text = f"{when} {record.levelname:<5} {record.name}: {message}"
        if record.exc_info:
            text = f"{text}\n{self.formatException(record.exc_info)}"
        return text


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes the lines logged in one turn of the event loop with one
    ``write`` and one ``flush`` (one system call), at the start of the next turn.

    Lines at WARNING and above, lines from a thread without a running event loop, and
    lines when nothing is pending in a loop go out as they come (a warning first writes
    what is pending, so the order holds). ``flush()`` (also at exit, through
    ``logging.shutdown``) writes whatever is pending.
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._scheduled = False

    def emit(self, record: logging.LogRecord) -> None:
        # Called with the handler's lock held (Handler.handle).
        try:
            self._pending.append(self.format(record) + self.terminator)
            if record.levelno < logging.WARNING and self._schedule():
                return
            self._write()
        except RecursionError:
            raise
        except Exception:  # logging's own convention: report, go on
            self.handleError(record)

    def _schedule(self) -> bool:
        if self._scheduled:
            return True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop in this thread: write now
            return False
        loop.call_soon(self.flush)
        self._scheduled = True
        return True

    def _write(self) -> None:
        if self._pending:
            text = "".join(self._pending)
            self._pending.clear()
            self.stream.write(text)
        self.stream.flush()

    def flush(self) -> None:
        self.acquire()
        try:
            self._scheduled = False
            if self.stream and hasattr(self.stream, "write"):
                self._write()
        finally:
            self.release()


def configure_logging(fmt: str = "text", level: str = "info",
                      stream: IO[str] | None = None) -> logging.Handler:
    """Send every flowengine log line to ``stream`` (stderr) in ``fmt`` (``text``/``json``).

    For a process of its own (``serve``): records also stop collecting the caller's source
    line, thread and process, which no format shows (the logging HOWTO's "Optimization").
    Every line is masked by :mod:`flowengine.redact`. Returns the handler installed on the
    root logger.
    """
    logging._srcfile = None  # the documented knob
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = LineHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ReadableFormatter())
    # Every line this handler writes is masked (flowengine.redact), whichever logger it came
    # from: httpx logs each request's full URL at INFO, httpcore and websockets write
    # headers and frames at DEBUG.
    protect([handler])
    register_environment(os.environ)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    if level.lower() != "debug":
        # Chatty libraries: watchfiles logs every batch at INFO, websockets its handshakes,
        # httpx every request of a `request` step.
        for name in ("watchfiles", "websockets", "httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)
    return handler
