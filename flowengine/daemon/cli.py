"""``flowengine serve PATH...``: the daemon (see docs/daemon.md).

Connects to RELAY with the credentials in the environment (as the official SDK reads
them) or ``--relay-url``, or with ``--simulate`` to an embedded simulator that streams
scripted calls. SIGHUP reloads the flows at once; SIGTERM/SIGINT drain and exit 0.
Heavy imports wait inside :func:`run`.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the command line must start fast
    import signal
    from collections.abc import AsyncIterator

    from flowengine.daemon.server import Daemon
    from flowengine.relay import RelayConfig
    from flowengine.sim import Simulator


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _not_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The daemon's options."""
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="flow directories (every *.yaml / *.yml in them, dotfiles "
                             "skipped) and flow files")
    relay = parser.add_argument_group("RELAY")
    relay.add_argument("--relay-url", default=None, metavar="URL",
                       help="a ws:// or wss:// RELAY endpoint other than the space "
                            "(env FLOWENGINE_RELAY_URL; credentials from SIGNALWIRE_PROJECT_ID "
                            "and SIGNALWIRE_API_TOKEN or SIGNALWIRE_JWT_TOKEN)")
    relay.add_argument("--simulate", action="store_true",
                       help="run on an embedded RELAY simulator that streams scripted calls "
                            "to the flows, instead of RELAY")
    relay.add_argument("--sim-rate", type=_positive, default=1.0, metavar="CALLS_PER_S",
                       help="with --simulate: calls placed per second (default 1)")
    relay.add_argument("--sim-caller", default="speak:3", metavar="SCRIPT",
                       help="with --simulate: what every caller does (default speak:3; "
                            "see docs/simulator.md)")
    relay.add_argument("--sim-calls", type=int, default=0, metavar="N",
                       help="with --simulate: place N calls, then drain and exit once they "
                            "ended (default 0: until stopped)")
    relay.add_argument("--at", default=None, metavar="TIME",
                       help="with --simulate: set the clock the flows' templates read (now(), "
                            "is_open()) to TIME, e.g. 2026-12-24T18:00; it runs on from there")
    relay.add_argument("--tz", default=None, metavar="ZONE",
                       help="with --simulate: the time zone --at is written in (default UTC)")
    relay.add_argument("--time-scale", type=_positive, default=1.0, metavar="X",
                       help="simulated time runs X times real time (0.1 = ten times faster); "
                            "only for simulators: it also scales the flows' timeouts")
    reload = parser.add_argument_group("reloading")
    reload.add_argument("--rescan-interval", type=_not_negative, default=10.0,
                        metavar="SECONDS",
                        help="also rescan the flow files by hash this often, for changes a "
                             "watcher misses (default 10; 0: never)")
    reload.add_argument("--no-watch", action="store_true",
                        help="do not watch the directories: reload on SIGHUP and the "
                             "periodic rescan only")
    reload.add_argument("--poll", action="store_true",
                        help="watch by polling instead of inotify (NFS, SMB, some bind mounts)")
    stop = parser.add_argument_group("stopping")
    stop.add_argument("--drain-timeout", type=_not_negative, default=30.0, metavar="SECONDS",
                      help="on SIGTERM/SIGINT, how long calls in flight may run on before "
                           "they are hung up (default 30)")
    stop.add_argument("--hangup-grace", type=_not_negative, default=10.0, metavar="SECONDS",
                      help="after hanging up at the drain timeout, how long the flows' "
                           "on_hangup steps may take (default 10)")
    state = parser.add_argument_group("state (calls that outlive the process, docs/store.md)")
    state.add_argument("--state-dir", nargs="?", const="", default=None, metavar="DIR",
                       help="keep the RELAY session and a checkpoint per call in flight in "
                            "DIR (SQLite), so that serve restarted on it continues its calls; "
                            "without DIR: $FLOWENGINE_STATE_DIR, else $XDG_STATE_HOME/"
                            "flowengine, else ~/.local/state/flowengine. Without the option "
                            "no call is checkpointed; the call API (--api-port) keeps its "
                            "ledger of calls and campaigns in that same directory either way")
    state.add_argument("--store", default=None, metavar="URL",
                       help="keep the state in PostgreSQL (postgresql://user@host/db) "
                            "instead of --state-dir")
    state.add_argument("--daemon-id", default=None, metavar="ID",
                       help="this daemon's id in the store (default: the host name); a "
                            "daemon restarted under the same id resumes its calls")
    obs = parser.add_argument_group("observability")
    obs.add_argument("--log-format", choices=["text", "json"], default="text",
                     help="text (default) or json: one JSON object per line")
    obs.add_argument("--log-level", default="info",
                     choices=["debug", "info", "warning", "error"],
                     help="info (default): one line per call (how it ended, its steps, "
                          "its duration); debug adds a line per step")
    obs.add_argument("--trace", default=None, metavar="FILE",
                     help="append one JSON line per step to FILE (read it with "
                          "`flowengine trace FILE`)")
    obs.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                     help="serve /metrics (Prometheus) and /healthz on this port "
                          "(0: any free port, logged)")
    obs.add_argument("--metrics-host", default="127.0.0.1", metavar="ADDRESS",
                     help="address of the metrics endpoint (default 127.0.0.1; 0.0.0.0 for "
                          "a scraper on another host)")
    api = parser.add_argument_group("call API (docs/api.md)")
    api.add_argument("--api-port", type=int, default=None, metavar="PORT",
                     help="serve the call API (POST /v1/calls, /v1/campaigns…) on this port "
                          "(0: any free port, logged); bearer token from FLOWENGINE_API_TOKEN")
    api.add_argument("--api-host", default="127.0.0.1", metavar="ADDRESS",
                     help="address of the call API (default 127.0.0.1); another than "
                          "loopback needs FLOWENGINE_API_TOKEN")
    api.add_argument("--max-outbound", type=int, default=100, metavar="N",
                     help="outbound calls in flight at once, across every campaign "
                          "(default 100)")
    api.add_argument("--default-from", default=None, metavar="NUMBER",
                     help="the caller id of outbound calls that give none")


#: The cyclic garbage collector's thresholds for ``serve`` (CPython's default: 700, 10, 10).
GC_THRESHOLDS = (50_000, 20, 10)


def tune_gc() -> None:
    """Make the cyclic garbage collector run less often, for a process that serves calls.

    Each call in flight holds ~55 objects the collector walks (its coroutines, session,
    relay state); at CPython's default a full collection comes every few thousand calls and
    walks all of them, which took 30 % of the daemon's CPU at 5,000 calls in flight
    (docs/benchmarks.md). A call creates no reference cycle, so collecting less often costs
    no memory; cycles made elsewhere (exceptions and their tracebacks) are still collected,
    after 50,000 allocations instead of 700. ``FLOWENGINE_GC_THRESHOLDS=700,10,10`` (three
    comma-separated integers) sets others; ``0`` turns the collector off.
    """
    import gc
    import os

    text = os.environ.get("FLOWENGINE_GC_THRESHOLDS", "").strip()
    thresholds: tuple[int, ...] = GC_THRESHOLDS
    if text:
        try:
            thresholds = tuple(int(part) for part in text.split(","))
            if not 1 <= len(thresholds) <= 3 or min(thresholds) < 0:
                raise ValueError
        except ValueError:
            import logging

            logging.getLogger("flowengine.daemon").warning(
                "FLOWENGINE_GC_THRESHOLDS=%r: expected up to three non-negative integers "
                "(e.g. 700,10,10); using %s", text, ",".join(map(str, GC_THRESHOLDS)))
            thresholds = GC_THRESHOLDS
    gc.set_threshold(*thresholds)


def run(args: argparse.Namespace) -> int:
    """Run the daemon until it is stopped; the exit code (0 after a drain)."""
    import logging
    import os
    import sys

    import anyio

    from flowengine.daemon.logs import configure_logging
    from flowengine.relay import RelayConfig

    configure_logging(args.log_format, args.log_level)
    log = logging.getLogger("flowengine.daemon")
    missing = [p for p in args.paths if not os.path.exists(p)]
    if missing:
        log.error("no such file or directory: %s", ", ".join(missing))
        return 2
    config = None
    if args.at is not None or args.tz is not None:
        from flowengine.flow.schedules import ScheduleError, parse_at

        # A set clock is for trying flows out: a daemon on real calls keeps the real time.
        if not args.simulate:
            log.error("--at sets a clock for trying flows out; it needs --simulate")
            return 2
        if args.at is None:
            log.error("--tz says which zone --at is written in; give --at too")
            return 2
        try:
            args.at_time = parse_at(args.at, args.tz)
        except ScheduleError as exc:
            log.error("--at: %s", exc)
            return 2
    if not args.simulate:
        try:
            config = RelayConfig.from_env(args.relay_url)
        except ValueError as exc:
            log.error("%s", exc)
            return 2
        if config is None:
            log.error("no RELAY credentials: set SIGNALWIRE_PROJECT_ID and SIGNALWIRE_API_TOKEN "
                      "(or SIGNALWIRE_JWT_TOKEN) and SIGNALWIRE_SPACE, or give --relay-url; "
                      "or try it out with --simulate")
            return 2
    elif args.sim_caller:
        from flowengine.sim.caller import CallerScript, CallerScriptError

        try:
            CallerScript.parse(args.sim_caller)
        except CallerScriptError as exc:
            log.error("--sim-caller: %s", exc)
            return 2
    if args.api_port is not None:
        from flowengine.api.server import is_loopback

        if not 0 <= args.api_port <= 65535:
            log.error("--api-port must be from 0 to 65535, not %d", args.api_port)
            return 2
        if args.max_outbound < 1:
            log.error("--max-outbound must be at least 1, not %d", args.max_outbound)
            return 2
        if not os.environ.get("FLOWENGINE_API_TOKEN") and not is_loopback(args.api_host):
            log.error("--api-host %s is not a loopback address: set FLOWENGINE_API_TOKEN "
                      "(the API's bearer token) to serve it there", args.api_host)
            return 2
    tune_gc()
    try:
        return anyio.run(_main, args, config, backend="asyncio")
    except KeyboardInterrupt:  # a signal before the handlers were installed
        print("interrupted", file=sys.stderr)
        return 130


async def _main(args: argparse.Namespace, config: RelayConfig | None) -> int:
    import logging
    import secrets
    import signal
    from contextlib import AsyncExitStack

    import anyio

    from flowengine.daemon.server import Daemon
    from flowengine.flow.schedules import WALL_CLOCK, Clock, SetClock
    from flowengine.relay import RelayConfig

    async with AsyncExitStack() as stack:
        sim = None
        if args.simulate:
            from flowengine.sim import Simulator

            token = secrets.token_hex(16)
            sim = await stack.enter_async_context(Simulator(
                port=0, project="sim-project", token=token, time_scale=args.time_scale))
            config = RelayConfig(url=sim.url, project="sim-project", token=token)
        assert config is not None
        durable = None
        if args.state_dir is not None or args.store is not None:
            from flowengine.daemon.durable import Durable, default_state_dir
            from flowengine.store import StoreError

            if args.state_dir is not None and args.store is not None:
                logging.getLogger("flowengine.daemon").error(
                    "--state-dir and --store name two stores: give one")
                return 2
            target = args.store if args.store is not None else (
                args.state_dir or default_state_dir())
            try:
                durable = Durable(target, args.daemon_id)
                await durable.open()
            except StoreError as exc:
                logging.getLogger("flowengine.daemon").error("%s", exc)
                return 2
            except OSError as exc:  # the state dir is a file, unwritable, on a full disk…
                logging.getLogger("flowengine.daemon").error(
                    "cannot keep the state in %s: %s", target, exc.strerror or exc)
                return 1
            logging.getLogger("flowengine.daemon").info(
                "state store %s (daemon %s): %d call(s) of a previous run to resume",
                durable.where, durable.daemon_id, len(durable.to_resume))
        writer = None
        if args.trace:
            from flowengine.engine.trace import TraceWriter

            writer = TraceWriter(args.trace)
            stack.callback(writer.close)
        api = None
        if args.api_port is not None:
            import os

            from flowengine.daemon.api import ApiOptions, default_state_dir

            secret = os.environ.get("FLOWENGINE_WEBHOOK_SECRET")
            api = ApiOptions(port=args.api_port, host=args.api_host,
                             token=os.environ.get("FLOWENGINE_API_TOKEN") or None,
                             webhook_secret=secret.encode() if secret else None,
                             state_dir=args.state_dir or default_state_dir(),
                             max_outbound=args.max_outbound, default_from=args.default_from)
        clock: Clock = WALL_CLOCK
        if getattr(args, "at_time", None) is not None:
            clock = SetClock(args.at_time, args.time_scale)
        daemon = Daemon(args.paths, config, time_scale=args.time_scale,
                        drain_timeout=args.drain_timeout, hangup_grace=args.hangup_grace,
                        watch=not args.no_watch, force_polling=args.poll,
                        rescan_interval=args.rescan_interval, metrics_host=args.metrics_host,
                        metrics_port=args.metrics_port, on_step=writer, clock=clock,
                        api=api, durable=durable)
        if durable is not None:
            stack.push_async_callback(lambda: durable.close(retire=durable.retire_on_close))
        # The handlers are in place before the daemon loads anything: a signal sent as soon
        # as the process runs is a drain, not a crash.
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_handle_signals, signals, daemon)
                if sim is not None:
                    tg.start_soon(_simulate, sim, daemon, args)
                code = await daemon.run()
                tg.cancel_scope.cancel()
        if durable is not None and code == 0 and not daemon.calls_in_flight:
            # Drained: nothing to resume, the session is forgotten.
            durable.retire_on_close = True
    return code


async def _handle_signals(signals: AsyncIterator[signal.Signals], daemon: Daemon) -> None:
    import logging
    import signal

    log = logging.getLogger("flowengine.daemon")
    async for signum in signals:
        if signum == signal.SIGHUP:
            log.info("SIGHUP: reloading the flows")
            daemon.request_reload("SIGHUP")
        else:
            log.info("%s: draining", signal.Signals(signum).name)
            daemon.request_drain()


async def _simulate(sim: Simulator, daemon: Daemon, args: argparse.Namespace) -> None:
    """Stream calls once the daemon serves; with ``--sim-calls`` drain when they are done."""
    import logging

    from flowengine.daemon.simulate import stream_calls

    log = logging.getLogger("flowengine.daemon")
    await daemon.wait_serving()
    log.info("simulating: %s call(s) at %g per second on the embedded simulator at %s, "
             "caller %r, time scale %g", args.sim_calls or "unlimited", args.sim_rate,
             sim.url, args.sim_caller, args.time_scale)
    placed = await stream_calls(sim, lambda: daemon.registry, rate=args.sim_rate,
                                caller=args.sim_caller, count=args.sim_calls,
                                going_on=lambda: daemon.state == "serving")
    if daemon.state == "serving":
        log.info("simulation done: %d call(s) ended", placed)
        daemon.request_drain()
