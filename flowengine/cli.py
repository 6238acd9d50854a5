"""The `flowengine` command line.

Each subcommand lives in the module that owns its stage (see docs/internals.md); this file
only wires them together, importing a module when its command is used so that
`flowengine check` does not pay for the RELAY stack.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# command → (module, one-line help). Each module provides add_arguments(parser) and
# run(args) -> int (the exit code).
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("flowengine.engine.cli", "run a flow for one call (on the embedded simulator without credentials)"),
    "check": ("flowengine.flow.cli", "check flow files and report every problem as file:line:col"),
    "graph": ("flowengine.flow.graph", "print a flow's graph (states and edges) as Mermaid or DOT"),
    "test": ("flowengine.scenario.cli", "run the scenario tests of flows over the simulator"),
    "trace": ("flowengine.engine.trace", "print a readable timeline of the calls in a trace file"),
    "simulator": ("flowengine.sim.cli", "run the local RELAY simulator"),
    "serve": ("flowengine.daemon.cli", "serve flows: route every inbound call to its flow, hot-reload flow files"),
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
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
