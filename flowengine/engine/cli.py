"""``flowengine run FLOW``: run a flow for one call (or ``--count N``) and print its trace.

Without RELAY credentials in the environment it starts the embedded simulator, places an
inbound call on the flow's context and runs the flow against it, over the same RELAY
protocol the real service speaks.
"""

from __future__ import annotations

import argparse

DEFAULT_FROM = "+15551230000"
DEFAULT_TO = "+15559870000"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("flow", help="the flow file to run (YAML)")
    parser.add_argument("--caller", default="speak:3", metavar="SCRIPT",
                        help="what the simulated caller does (default: speak:3 — speaks for 3 s "
                             "then presses #); see docs/simulator.md")
    parser.add_argument("--from", dest="from_number", default=None, metavar="NUMBER",
                        help=f"the simulated caller's number (default {DEFAULT_FROM}, "
                             "or the flow's match.from)")
    parser.add_argument("--to", dest="to_number", default=None, metavar="NUMBER",
                        help=f"the number the simulated caller dials (default {DEFAULT_TO}, "
                             "or the flow's match.to)")
    parser.add_argument("--time-scale", type=float, default=1.0, metavar="X",
                        help="simulated time runs X times real time (0.1 = ten times faster)")
    parser.add_argument("--at", default=None, metavar="TIME",
                        help="set the clock templates read (now(), is_open()) to TIME, e.g. "
                             "2026-12-24T18:00; it runs on from there with the call")
    parser.add_argument("--tz", default=None, metavar="ZONE",
                        help="the time zone --at is written in (default UTC), e.g. "
                             "Europe/Berlin")
    parser.add_argument("--count", type=int, default=1, metavar="N",
                        help="take N calls, run concurrently as they come (default 1)")
    parser.add_argument("--relay-url", default=None, metavar="URL",
                        help="a ws:// or wss:// RELAY endpoint other than the space "
                             "(env FLOWENGINE_RELAY_URL)")
    parser.add_argument("--save-recordings", default=None, metavar="DIR",
                        help="download each recording the flow produced into DIR (the embedded "
                             "simulator serves them only while `run` runs)")
    parser.add_argument("--trace", default=None, metavar="FILE",
                        help="append one JSON line per step to FILE (read it with "
                             "`flowengine trace FILE`)")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="print only the summary of each call")
    parser.add_argument("--log-level", default="warning",
                        choices=["debug", "info", "warning", "error"],
                        help="logging on stderr (default warning)")


def run(args: argparse.Namespace) -> int:
    """Run the flow; the exit code (0 ran to its end, 1 a step failed, 2 bad input)."""
    import logging
    import os
    import sys

    import anyio

    from flowengine.engine.runner import run_command
    from flowengine.redact import protect, register_environment
    from flowengine.sim.caller import CallerScript, CallerScriptError

    # A bad --caller is a mistake on the command line: say so before anything starts, as
    # `simulator --caller` and `serve --sim-caller` do, instead of failing mid-run.
    try:
        CallerScript.parse(args.caller)
    except CallerScriptError as exc:
        print(f"error: --caller: {exc}", file=sys.stderr)
        return 2

    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Every log line is masked, the libraries' (httpx logs each request's URL) included.
    protect(logging.getLogger().handlers)
    register_environment(os.environ)
    return anyio.run(run_command, args, backend="asyncio")
