"""The `flowengine` command line.

Each subcommand lives in the module that owns its stage (see docs/internals.md); this file
only wires them together, importing a module when its command is used so that
`flowengine check` does not pay for the RELAY stack.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import signal
import sys
from collections.abc import Sequence

# command → (module, one-line help). Each module provides add_arguments(parser) and
# run(args) -> int (the exit code).
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("flowengine.engine.cli",
            "run a flow for one call (on the embedded simulator without credentials)"),
    "dial": ("flowengine.engine.dial_cli",
             "place a call (or a CSV file of them) and run the flow its outcome leads to"),
    "check": ("flowengine.flow.cli", "check flow files and report every problem as file:line:col"),
    "graph": ("flowengine.flow.graph", "print a flow's graph (states and edges) as Mermaid or DOT"),
    "test": ("flowengine.scenario.cli", "run the scenario tests of flows over the simulator"),
    "trace": ("flowengine.engine.trace", "print a readable timeline of the calls in a trace file"),
    "simulator": ("flowengine.sim.cli", "run the local RELAY simulator"),
    "import": ("flowengine.importers.cli",
               "convert a Twilio Studio flow or a SWML script into a flow file"),
    "serve": ("flowengine.daemon.cli",
              "serve flows: route every inbound call to its flow, hot-reload flow files"),
    "state": ("flowengine.daemon.state_cli",
              "print a state store's daemon sessions, leases and calls in flight"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowengine",
        description="Run declarative call flows over the SignalWire RELAY call API.",
    )
    from flowengine import __version__

    parser.add_argument("--version", action="version", version=f"flowengine {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module_name).add_arguments(p)
        p.set_defaults(_module=module_name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    module = importlib.import_module(args._module)
    try:
        code = int(module.run(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here when the output fit in the buffer
        return code
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:
        if not _is_broken_pipe(exc):
            raise
        return _exit_on_broken_pipe()


def _is_broken_pipe(exc: BaseException) -> bool:
    """True for a write to a closed pipe, also when a task group wrapped it in a group."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_broken_pipe(e) for e in exc.exceptions)
    return isinstance(exc, BrokenPipeError) or (
        isinstance(exc, OSError) and exc.errno == errno.EPIPE)


def _exit_on_broken_pipe() -> int:
    """`flowengine graph … | head` and a reader that went away: end quietly, as Unix tools do.

    Python would otherwise print "Exception ignored … BrokenPipeError" when it flushes
    stdout at exit, so stdout is pointed at /dev/null first. The status is the one a shell
    reports for a process ended by SIGPIPE.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout without a descriptor (in-process callers)
        pass
    return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
