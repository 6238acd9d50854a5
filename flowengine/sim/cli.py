"""``flowengine simulator``: run the local RELAY simulator on its own.

The first line on stdout is the websocket URL (flushed at once, so a script can read it);
with ``--calls N`` it offers N inbound calls, keeps ``--concurrency`` of them in flight and
exits once all have ended. It also stops on SIGINT/SIGTERM. The last line on stdout is a
one-line JSON summary. Heavy imports wait inside :func:`run`.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the command line must start fast
    from flowengine.sim.caller import CallerScript
    from flowengine.sim.server import Simulator


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The simulator's options (see docs/simulator.md)."""
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0,
                        help="port to listen on; 0 picks a free one (default 0)")
    parser.add_argument("--project", default=None,
                        help="the project id clients must present (default: accept any "
                             "credentials; with --token only: sim-project)")
    parser.add_argument("--token", default=None,
                        help="the API token (or JWT) clients must present (default: accept "
                             "any credentials; with --project only: sim-token)")
    parser.add_argument("--context", default="default",
                        help="the context the offered calls arrive on (default 'default')")
    parser.add_argument("--calls", type=int, default=0, metavar="N",
                        help="offer N inbound calls once a client has subscribed, then exit "
                             "when all have ended (default 0: offer none, run until stopped)")
    parser.add_argument("--concurrency", type=int, default=10, metavar="C",
                        help="keep at most C of those calls in flight (default 10)")
    parser.add_argument("--caller", default=None, metavar="SCRIPT",
                        help="what each caller does, e.g. speak:3, silent, hangup@record:2 "
                             "(default speak:3; grammar in docs/simulator.md)")
    parser.add_argument("--callee", action="append", default=[], metavar="[NUMBER=]SCRIPT",
                        help="what the numbers a client dials do: SCRIPT for every number, "
                             "NUMBER=SCRIPT for one (repeatable), e.g. busy, noanswer, "
                             "machine:6, +15550001111=answer:5,speak:2 (default answer; "
                             "grammar in docs/simulator.md)")
    parser.add_argument("--refer", action="append", default=[], metavar="[URI=]ANSWER",
                        help="how SIP REFER targets answer: ANSWER for every target, "
                             "URI=ANSWER for one (repeatable), e.g. 403, 202:486, "
                             "sip:desk@pbx.example.com=503 (default 202: accepted)")
    parser.add_argument("--time-scale", type=float, default=1.0, metavar="X",
                        help="multiply every simulated duration by X (0.01 = 100 times faster)")
    parser.add_argument("--from", dest="from_number", default="+15551230000", metavar="NUMBER",
                        help="the callers' number (default +15551230000)")
    parser.add_argument("--to", dest="to_number", default="+15559870000", metavar="NUMBER",
                        help="the number they call (default +15559870000)")
    parser.add_argument("--resume-window", type=float, default=30.0, metavar="SECONDS",
                        help="how long a session without a socket keeps its calls (default 30)")
    parser.add_argument("--ping-interval", type=float, default=None, metavar="SECONDS",
                        help="send signalwire.ping to every client this often (default: never)")
    parser.add_argument("--noise", type=float, default=0.0, metavar="RATE",
                        help="before each event, with probability RATE (0 to 1), send a junk "
                             "frame a real server never would (not JSON, impossible states, "
                             "events for unknown calls…): does your client drop them and keep "
                             "its calls? The summary counts them (default 0)")
    parser.add_argument("--latency", action="store_true",
                        help="measure the time from each call event to the client's next "
                             "command; the summary gains a 'latency' object (p50/p99 in ms)")
    parser.add_argument("--log-level", default="warning",
                        choices=["debug", "info", "warning", "error"],
                        help="logging on stderr (default warning)")


def run(args: argparse.Namespace) -> int:
    """Run until the calls are done or a signal arrives; the exit code (0, or 2 for bad options)."""
    import logging
    import sys

    import anyio

    from flowengine.sim.caller import CallerScript, CallerScriptError

    try:
        caller = CallerScript.parse(args.caller)
        args.callees = parse_callees(args.callee)
        args.refers = parse_refers(args.refer)
    except (CallerScriptError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.calls < 0 or args.concurrency < 1 or not args.time_scale > 0:
        print("error: --calls must be ≥ 0, --concurrency ≥ 1 and --time-scale > 0",
              file=sys.stderr)
        return 2
    if not 0 <= args.noise <= 1:
        print(f"error: --noise is a probability, from 0 to 1, not {args.noise:g}",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return anyio.run(_main, args, caller, backend="asyncio")


async def _main(args: argparse.Namespace, caller: CallerScript) -> int:
    import json
    import signal
    import sys

    import anyio

    from flowengine.sim.server import Simulator

    checks_credentials = args.project is not None or args.token is not None
    sim = Simulator(args.host, args.port, args.project or "sim-project",
                    args.token or "sim-token", args.time_scale,
                    resume_window=args.resume_window, ping_interval=args.ping_interval,
                    record_latency=args.latency)
    sim.core.accept_any_credentials = not checks_credentials
    for number, script in args.callees.items():
        sim.set_callee(number, script)
    for uri, answer in args.refers.items():
        sim.set_refer_target(uri, answer)
    if args.noise:
        sim.inject_noise(args.noise)
    # The handlers are in place before the URL is printed: whoever reads the URL may
    # signal at once.
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        try:
            async with sim:
                print(sim.url, flush=True)
                print(how_to_connect(sim.url, args, checks_credentials), file=sys.stderr,
                      flush=True)
                async with anyio.create_task_group() as tg:

                    async def stop_on_signal() -> None:
                        async for _ in signals:
                            tg.cancel_scope.cancel()
                            return

                    tg.start_soon(stop_on_signal)
                    if args.calls:
                        await _offer_calls(sim, args, caller)
                        tg.cancel_scope.cancel()
                    else:
                        await anyio.sleep_forever()
        except OSError as exc:  # the port is taken, the host does not exist …
            print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(sim.summary(), separators=(",", ":")), flush=True)
    return 0


def parse_callees(values: list[str]) -> dict[str | None, CallerScript]:
    """``--callee`` values → callee scripts by number (``None``: every other number).

    ``NUMBER=SCRIPT`` is for one number (``+`` and digits, or a ``sip:`` address); any
    other value is the default script (a ``say:`` phrase may hold an ``=``).

    Raises:
        CallerScriptError: a script does not parse, or the number is empty (the message
            names the value).
    """
    import re

    from flowengine.sim.caller import CallerScript, CallerScriptError

    callees: dict[str | None, CallerScript] = {}
    for value in values:
        number, sep, script = value.partition("=")
        if sep and not number.strip():
            raise CallerScriptError(f"--callee {value!r}: no number before '='")
        if not (sep and re.fullmatch(r"\+\d+|sip:\S+", number.strip())):
            number, script = "", value
        try:
            callees[number.strip() or None] = CallerScript.parse(script)
        except CallerScriptError as exc:
            raise CallerScriptError(f"--callee {value!r}: {exc}") from None
    return callees


def parse_refers(values: list[str]) -> dict[str | None, str]:
    """``--refer`` values → REFER answers by target URI (``None``: every other target).

    Raises:
        ValueError: an answer is not a SIP code such as 202, 202:486 or 403 (the message
            names the value).
    """
    from flowengine.sim.refer import ReferAnswer

    refers: dict[str | None, str] = {}
    for value in values:
        uri, sep, answer = value.rpartition("=")
        if sep and not uri.strip():
            raise ValueError(f"--refer {value!r}: no URI before '='")
        try:
            ReferAnswer.parse(answer)
        except ValueError as exc:
            raise ValueError(f"--refer {value!r}: {exc}") from None
        refers[uri.strip() or None] = answer.strip()
    return refers


def how_to_connect(url: str, args: argparse.Namespace, checks_credentials: bool) -> str:
    """The lines after the URL (on stderr): how to point ``run`` and ``serve`` at it.

    The simulator's credentials were the first thing a user tripped on: they were only in
    docs/simulator.md. Given credentials are never echoed (they may be real ones).
    """
    if args.calls:
        calls = (f"offers {args.calls} call(s) on context '{args.context}' once a client "
                 "subscribes to it")
    else:
        calls = "offers no calls (--calls N offers N)"
    lines = [f"RELAY simulator at {url}: {calls}"]
    if checks_credentials:
        project = "<your --project>" if args.project is not None else "sim-project"
        env = f"SIGNALWIRE_PROJECT_ID={project} SIGNALWIRE_API_TOKEN=<your --token> "
        lines.append("clients must present the --project and --token given; run a flow on it:")
    else:
        env = ""
        lines.append("accepting any credentials (give --project and --token to check them); "
                     "run a flow on it:")
    lines += [f"  {env}flowengine run FLOW.yaml --relay-url {url}",
              f"  {env}flowengine serve flows/ --relay-url {url}",
              f"  (or export FLOWENGINE_RELAY_URL={url}; the flow's context must be "
              f"'{args.context}')"]
    return "\n".join(lines)


async def _offer_calls(sim: Simulator, args: argparse.Namespace, caller: CallerScript) -> None:
    """Offer ``--calls`` calls, at most ``--concurrency`` in flight; return when all ended."""
    import anyio

    from flowengine.sim.calls import SimCall

    slots = anyio.Semaphore(args.concurrency)

    async def until_ended(call: SimCall) -> None:
        try:
            await call.wait_ended()
        finally:
            slots.release()

    async with anyio.create_task_group() as tg:
        for _ in range(args.calls):
            await slots.acquire()
            call = sim.offer_call(args.context, args.from_number, args.to_number, caller)
            tg.start_soon(until_ended, call)
