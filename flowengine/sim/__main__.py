"""``python -m flowengine.sim``: ``flowengine simulator`` without the other commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from flowengine.sim import cli


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the simulator's options and run it; returns the exit code."""
    parser = argparse.ArgumentParser(prog="flowengine simulator",
                                     description="run the local RELAY simulator")
    cli.add_arguments(parser)
    try:
        return cli.run(parser.parse_args(argv))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
