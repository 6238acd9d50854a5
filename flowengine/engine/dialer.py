"""The body of ``flowengine dial``: check everything, then place the calls through a Pacer.

Nothing is dialled until every input is known good: the ``--callee`` scripts, the
``--var`` values, the flow, the numbers and — with ``--csv`` — every row (each problem
with its line; ``--skip-invalid`` leaves the bad rows out instead). This happens before
the event loop starts (it reads files and compiles the flow). Then each call is
:func:`~flowengine.engine.outbound.run_outbound`, its trace printed as ``run`` prints one
(:class:`~flowengine.engine.runner.TracePrinter`), and a CSV run ends with a summary by
outcome.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import IO, Any

import anyio

from flowengine.engine.machine import FlowRuntime
from flowengine.engine.outbound import OutboundReport, run_outbound
from flowengine.engine.pacing import Pacer
from flowengine.engine.runner import (
    EXIT_FLOW_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    TracePrinter,
    _load,
    open_relay,
)
from flowengine.engine.session import TraceEntry
from flowengine.engine.trace import TraceWriter
from flowengine.flow import FlowVersion
from flowengine.flow.contacts import Contact, parse_contacts
from flowengine.flow.inputs import InputError, parse_number, validate_inputs
from flowengine.flow.model import DIAL_OUTCOMES
from flowengine.flow.schedules import WALL_CLOCK, Clock, SetClock
from flowengine.redact import redact_text

__all__ = ["Prepared", "dial_command", "prepare"]

#: The order the summary lists outcomes in.
_SUMMARY_ORDER = (*DIAL_OUTCOMES, "error")


@dataclass
class Prepared:
    """Everything ``dial`` checked before the event loop starts."""

    flow: FlowVersion
    contacts: list[Contact]
    #: number (None: every other number) → callee script, for the embedded simulator.
    callees: dict[str | None, Any] = field(default_factory=dict)
    #: Rows left out by ``--skip-invalid``.
    skipped: int = 0
    #: True for a CSV run (a summary at the end, the trace prefixed by call).
    campaign: bool = False


def _vars(values: list[str], err: IO[str]) -> dict[str, str] | None:
    found: dict[str, str] = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key.strip():
            print(f"error: --var {value!r}: write KEY=VALUE", file=err)
            return None
        if key.strip() in found:
            print(f"error: --var {key.strip()} is given twice", file=err)
            return None
        found[key.strip()] = text
    return found


def prepare(args: argparse.Namespace, err: IO[str] | None = None) -> Prepared | int:
    """Check the command line, the flow and the contacts; the exit code 2 (after saying
    why) when anything is wrong."""
    err = err or sys.stderr
    from flowengine.sim.caller import CallerScriptError
    from flowengine.sim.cli import parse_callees

    try:
        callees = parse_callees(args.callee)
    except CallerScriptError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_INVALID
    if args.concurrency < 1:
        print("error: --concurrency must be at least 1", file=err)
        return EXIT_INVALID
    if not args.rate >= 0:
        print("error: --rate must be 0 (no limit) or more calls per second", file=err)
        return EXIT_INVALID
    given = _vars(args.var, err)
    if given is None:
        return EXIT_INVALID
    flow = _load(args.flow, err)
    if flow is None:
        return EXIT_INVALID
    if flow.outbound is None:
        print(f"note: {flow.file} has no outbound: section; answered calls start at "
              f"{flow.start}, and no step runs for busy, no_answer or failed", file=err)
    from_ = None
    try:
        if args.from_number is not None:
            from_ = parse_number("from", args.from_number)
    except InputError as exc:
        _print_problems(exc, err)
        return EXIT_INVALID
    if args.csv is None:
        try:
            to = parse_number("to", args.to_number)
            values = validate_inputs(flow, given)
        except InputError as exc:
            _print_problems(exc, err)
            print("nothing dialled", file=err)
            return EXIT_INVALID
        return Prepared(flow, [Contact(0, to, from_, values)], callees)
    try:
        with open(args.csv, encoding="utf-8-sig", newline="") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(f"error: {args.csv}: cannot read: {why}", file=err)
        return EXIT_INVALID
    if given:
        try:  # --var gives what a row does not: checked once, not in every row's problems
            validate_inputs(flow, given)
        except InputError as exc:
            exc.problems = [(n, m) for n, m in exc.problems if n in given]
            if exc.problems:
                _print_problems(exc, err)
                return EXIT_INVALID
    contacts, problems = parse_contacts(text, flow, base=given)
    contacts = [Contact(c.line, c.to, c.from_ or from_, c.vars) for c in contacts]
    for problem in problems:
        print(f"{args.csv}:{problem.line}: {problem.field}: {problem.message}", file=err)
    if problems and not args.skip_invalid:
        rows = len({p.line for p in problems})
        print(f"{args.csv}: {rows} row(s) with problems: nothing dialled "
              "(--skip-invalid dials the others)", file=err)
        return EXIT_INVALID
    if not contacts:
        print(f"error: {args.csv}: no contacts to call", file=err)
        return EXIT_INVALID
    skipped = len({p.line for p in problems if p.line > 1})
    return Prepared(flow, contacts, callees, skipped=skipped, campaign=True)


def _print_problems(exc: InputError, err: IO[str]) -> None:
    for name, message in exc.problems:
        option = {"to": "--to", "from": "--from"}.get(name, f"--var {name}")
        print(redact_text(f"error: {option}: {message}"), file=err)


async def dial_command(args: argparse.Namespace, prepared: Prepared,
                       out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    """Place every prepared call; the exit code (0 all their flows ran, 1 not)."""
    out, err = out or sys.stdout, err or sys.stderr
    flow, contacts = prepared.flow, prepared.contacts
    printer = TracePrinter(out, flow, quiet=args.quiet, multi=prepared.campaign)
    runtime = FlowRuntime(flow)

    def set_up(sim: Any) -> str:
        for number, script in prepared.callees.items():
            sim.set_callee(number, script)
        shown = "; ".join(f"{n}={s.source}" if n else s.source
                          for n, s in prepared.callees.items()) or "answer"
        return f"callee {shown!r}"

    print(f"flow {flow.name} (version {flow.version[:12]}) from {flow.file}", file=out)
    results: list[OutboundReport | None] = []
    async with AsyncExitStack() as stack:
        # No contexts: dialling needs none, and subscribing would take inbound calls meant
        # for a daemon serving the same contexts.
        relay = await open_relay(
            stack, relay_url=args.relay_url, time_scale=args.time_scale, contexts=[],
            out=out, err=err, on_simulator=set_up,
            connecting=f"placing {len(contacts)} call(s)")
        if isinstance(relay, int):
            return relay
        if relay.sim is None and prepared.callees:
            print("note: --callee is for the embedded simulator; real numbers do what they "
                  "do", file=err)
        writer = TraceWriter(args.trace) if args.trace else None
        if writer is not None:
            stack.callback(writer.close)

        def on_step(entry: TraceEntry) -> None:
            printer.step(entry)
            if writer is not None:
                writer(entry)

        pacer = Pacer(args.concurrency, args.rate) if prepared.campaign else Pacer(1, 0)
        clock: Clock = WALL_CLOCK
        if getattr(args, "at_time", None) is not None:
            # Set now, it runs with the calls (at the simulator's pace on the simulator).
            clock = SetClock(args.at_time, relay.time_scale)

        async def one(contact: Contact) -> None:
            try:
                result = await run_outbound(
                    relay.client, flow, to=contact.to, from_=contact.from_, vars=contact.vars,
                    on_step=on_step, on_dialed=printer.dialed, runtime=runtime,
                    time_scale=relay.time_scale, clock=clock)
            except InputError as exc:  # a device or caller id template rendered wrong
                where = f"{args.csv}:{contact.line}: " if prepared.campaign else ""
                for name, message in exc.problems:
                    print(redact_text(f"{where}error: {name}: {message}"), file=err)
                results.append(None)
            else:
                results.append(result)
                printer.outbound_report(result)
            finally:
                pacer.release()

        async with anyio.create_task_group() as tg:
            for contact in contacts:
                await pacer.acquire()
                tg.start_soon(one, contact, name=f"dial {contact.to}")
    ok = all(r is not None and r.ok for r in results) and len(results) == len(contacts)
    if prepared.campaign:
        _summary(out, results, prepared.skipped)
    return EXIT_OK if ok and not prepared.skipped else EXIT_FLOW_FAILED


def _summary(out: IO[str], results: list[OutboundReport | None], skipped: int) -> None:
    by = Counter("error" if r is None else r.outcome for r in results)
    failed = sum(1 for r in results if r is not None and not r.ok)
    parts = ", ".join(f"{outcome} {by[outcome]}" for outcome in _SUMMARY_ORDER if by[outcome])
    line = f"campaign: {len(results)} call(s): {parts or 'none'}; flows failed {failed}"
    if skipped:
        line += f"; invalid rows skipped {skipped}"
    print(line, file=out, flush=True)

