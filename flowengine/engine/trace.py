"""Call traces: one JSON line per step (``--trace FILE``) and ``flowengine trace FILE``.

A trace line holds the call, flow, version, step, action, the parameters as rendered for
the call (secrets redacted), the RELAY method and control_id, the outcome, the result and
the duration. The file is append-only JSON Lines, so several calls — or several runs — can
share it, and ``flowengine trace`` groups the lines by call.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

# REDACTED and redact_url are re-exported: older code imports them from here.
from flowengine.redact import (  # noqa: F401
    REDACTED,
    SECRET_NAME,
    redact,
    redact_text,
    redact_url,
)

if TYPE_CHECKING:
    from flowengine.engine.session import TraceEntry

# The redaction itself lives in flowengine.redact (one place for prints, logs and traces);
# these names stay importable from here.
SECRET_KEY = SECRET_NAME


def entry_record(entry: TraceEntry) -> dict[str, Any]:
    """The JSON object of one trace line."""
    return {
        "at": round(entry.at, 6),
        "call": entry.call_id,
        "flow": entry.flow,
        "version": entry.version,
        "step": entry.step,
        "action": entry.action,
        "params": redact(entry.params),
        **({"played": entry.played} if entry.played is not None else {}),
        **({"within": entry.within} if entry.within is not None else {}),
        "method": entry.method,
        "control_id": entry.control_id,
        "outcome": entry.outcome,
        "next": entry.next_step,
        "result": redact(entry.result),
        "error": redact_text(entry.error) if entry.error else entry.error,
        "started": round(entry.started, 6),
        "duration": round(entry.duration, 6),
    }


class TraceWriter:
    """Appends one JSON line per step to a file; usable as a Session's ``on_step``."""

    def __init__(self, path: str | Path) -> None:
        # Line-buffered: a line is on disk as soon as its step ends, even if the run dies.
        self._file = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115

    def __call__(self, entry: TraceEntry) -> None:
        self._file.write(json.dumps(entry_record(entry), default=str, ensure_ascii=False) + "\n")

    def close(self) -> None:
        self._file.close()


def read_trace(path: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The trace's records, and a message for each line that is not a trace record."""
    records: list[dict[str, Any]] = []
    problems: list[str] = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{path}:{number}: not JSON ({exc.msg}); skipped")
                continue
            if not isinstance(record, dict) or "call" not in record or "step" not in record:
                problems.append(f"{path}:{number}: not a trace record; skipped")
                continue
            records.append(record)
    return records, problems


def format_timeline(records: Iterable[Mapping[str, Any]]) -> str:
    """A readable timeline, one block per call, steps in the order they ran."""
    calls: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        calls.setdefault(str(record["call"]), []).append(record)
    lines: list[str] = []
    for call_id, steps in calls.items():
        first = steps[0]
        when = datetime.fromtimestamp(float(first.get("at") or 0), tz=UTC)
        lines.append(f"call {call_id} — flow {first.get('flow')} "
                     f"@{str(first.get('version'))[:12]} — {when:%Y-%m-%d %H:%M:%S} UTC")
        for r in steps:
            duration = float(r.get("duration") or 0)
            took = f"{duration * 1000:.0f} ms" if duration < 1 else f"{duration:.2f} s"
            offset = f"+{float(r.get('started') or 0):.3f}s"
            step = f"{r['within']}/{r.get('step')}" if r.get("within") else r.get("step")
            lines.append(
                f"  {offset:<10} {step!s:<16} "
                f"{r.get('action')!s:<7} {r.get('method') or '-':<16} → "
                f"{r.get('outcome')!s:<9} {took:>9}  next: {r.get('next') or '(flow ends)'}")
            result = r.get("result") or {}
            if isinstance(result, Mapping) and result.get("url"):
                lines.append(f"{'':14}recording: {result['url']} ({result.get('duration')} s)")
            if r.get("action") == "log" and isinstance(result, Mapping):
                lines.append(f"{'':14}log: {result.get('text')}")
            if r.get("error"):
                lines.append(f"{'':14}error: {r['error']}")
        lines.append("")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="a trace file written by --trace")
    parser.add_argument("--call", default=None, metavar="ID",
                        help="only this call (a prefix of its id is enough)")


def run(args: argparse.Namespace, out: IO[str] = sys.stdout, err: IO[str] = sys.stderr) -> int:
    try:
        records, problems = read_trace(args.file)
    except OSError as exc:
        print(f"{args.file}: cannot read: {exc.strerror or exc}", file=err)
        return 2
    for problem in problems:
        print(problem, file=err)
    if args.call:
        records = [r for r in records if str(r["call"]).startswith(args.call)]
    if not records:
        print(f"{args.file}: no steps" + (f" for call {args.call}" if args.call else ""),
              file=err)
        return 1
    print(format_timeline(records), file=out, end="")
    return 0
