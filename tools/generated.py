"""What every generator in tools/ shares: write its file, or with --check say it is stale."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def generator_main(doc: str, target: Path, render: Callable[[], str], script: str,
                   argv: list[str] | None = None) -> int:
    """Write ``render()`` to ``target``; with ``--check``, exit 1 when ``target`` differs."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help=f"exit 1 if {target.relative_to(ROOT)} differs from the "
                             "generated text")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = target.read_text(encoding="utf-8") if target.exists() else ""
        if current != text:
            print(f"{target.relative_to(ROOT)} is out of date: run python {script}",
                  file=sys.stderr)
            return 1
        return 0
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target.relative_to(ROOT)}")
    return 0
