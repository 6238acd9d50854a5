"""``flowengine dial FLOW --to NUMBER``: place a call and run the flow its outcome leads to.

``--csv FILE`` places one call per row (``to[,from][,inputs…]``), paced by ``--concurrency``
and ``--rate``. Without RELAY credentials in the environment the calls go to the embedded
simulator, whose numbers do what ``--callee`` says.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("flow", help="the flow file to run (YAML, with an outbound: section)")
    whom = parser.add_mutually_exclusive_group(required=True)
    whom.add_argument("--to", dest="to_number", default=None, metavar="NUMBER",
                      help="the number to call (E.164, e.g. +15550001111, or sip:…)")
    whom.add_argument("--csv", default=None, metavar="FILE",
                      help="call every row of FILE: a header row to[,from][,input columns…], "
                           "then one contact per row")
    parser.add_argument("--from", dest="from_number", default=None, metavar="NUMBER",
                        help="the caller id (default: the flow's outbound.from)")
    parser.add_argument("--var", action="append", default=[], metavar="KEY=VALUE",
                        help="an input of the flow (repeatable); with --csv, for every row "
                             "that does not give it")
    parser.add_argument("--callee", action="append", default=[], metavar="[NUMBER=]SCRIPT",
                        help="on the embedded simulator, what the number called does: answer, "
                             "busy, noanswer, decline, fail, machine[:N], … (repeatable; "
                             "NUMBER=SCRIPT for one number; see docs/simulator.md)")
    parser.add_argument("--concurrency", type=int, default=1, metavar="N",
                        help="with --csv: at most N calls up at once (default 1)")
    parser.add_argument("--rate", type=float, default=1.0, metavar="R",
                        help="with --csv: at most R calls started per second (default 1; "
                             "0: no limit)")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="with --csv: skip the rows that do not check (each is listed) "
                             "instead of dialling nothing")
    parser.add_argument("--at", default=None, metavar="TIME",
                        help="set the clock the flow's templates read (now(), is_open()) to "
                             "TIME, e.g. 2026-12-24T18:00; it runs on from there")
    parser.add_argument("--tz", default=None, metavar="ZONE",
                        help="the time zone --at is written in (default UTC)")
    parser.add_argument("--time-scale", type=float, default=1.0, metavar="X",
                        help="simulated time runs X times real time (0.1 = ten times faster)")
    parser.add_argument("--relay-url", default=None, metavar="URL",
                        help="a ws:// or wss:// RELAY endpoint other than the space "
                             "(env FLOWENGINE_RELAY_URL)")
    parser.add_argument("--trace", default=None, metavar="FILE",
                        help="append one JSON line per step to FILE (`flowengine trace FILE`)")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="print only the summary of each call")
    parser.add_argument("--log-level", default="warning",
                        choices=["debug", "info", "warning", "error"],
                        help="logging on stderr (default warning)")


def run(args: argparse.Namespace) -> int:
    """Place the call(s); the exit code: 0 every call's flow ran to its end, 1 one did not
    (or the connection failed), 2 bad input (nothing was dialled)."""
    import logging
    import os
    import sys

    import anyio

    from flowengine.engine.dialer import dial_command, prepare
    from flowengine.flow.schedules import ScheduleError, parse_at
    from flowengine.redact import protect, register_environment

    args.at_time = None
    if args.at is not None or args.tz is not None:
        if args.at is None:
            print("error: --tz says which zone --at is written in; give --at too",
                  file=sys.stderr)
            return 2
        try:
            args.at_time = parse_at(args.at, args.tz)
        except ScheduleError as exc:
            print(f"error: --at: {exc}", file=sys.stderr)
            return 2
    prepared = prepare(args)
    if isinstance(prepared, int):
        return prepared
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    protect(logging.getLogger().handlers)
    register_environment(os.environ)
    return anyio.run(dial_command, args, prepared, backend="asyncio")
