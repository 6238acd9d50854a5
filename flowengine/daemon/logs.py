"""Log lines of ``flowengine serve``: readable by default, JSON (one object per line) for machines.

Every line about a call carries its call id, flow name and version: the engine adds them
(``extra``) to its one line per step, together with the step, action, outcome and
duration; the daemon adds them to its own lines about a call. The readable format puts
them in a bracket in front of the message::

    2025-05-01 12:00:03.120 INFO  [3f2a…e1 voicemail@9c1d2e3f4a5b] step greet (answer) -> answered

The JSON format writes them as fields (``call_id``, ``flow``, ``version``, ``step``,
``action``, ``outcome``, ``next``, ``duration_ms``, plus ``event``/``file``/``errors`` on
reload lines).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any

__all__ = ["JsonFormatter", "ReadableFormatter", "configure_logging"]

#: Attributes every LogRecord has: anything else on a record came in through ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}
#: Renamed for the JSON output: the engine's ``flow_version`` is the line's ``version``.
_RENAMED = {"flow_version": "version", "next_step": "next"}


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message`` and the extras."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
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
        return json.dumps(line, default=str, ensure_ascii=False)


class ReadableFormatter(logging.Formatter):
    """``time LEVEL [call flow@version] message`` for call lines, ``time LEVEL logger: message``
    for the others."""

    def format(self, record: logging.LogRecord) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        when = f"{when}.{int(record.msecs):03d}"
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


def configure_logging(fmt: str = "text", level: str = "info",
                      stream: IO[str] | None = None) -> logging.Handler:
    """Send every flowengine log line to ``stream`` (stderr) in ``fmt`` (``text``/``json``).

    Returns the handler installed on the root logger.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ReadableFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    if level.lower() != "debug":
        # Chatty libraries: watchfiles logs every batch at INFO, websockets its handshakes,
        # transitions every state change.
        for name in ("watchfiles", "websockets", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
    return handler
