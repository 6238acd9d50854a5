"""``flowengine check PATH...``: check flow files and report every problem, compiler-style.

One line per finding on stdout (``file:line:col: error: message``), or a JSON array with
``--format json``; a one-line summary on stderr. Exit status: 0 when there are no errors
(warnings allowed, unless ``--strict``), 1 when there are errors.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``check``'s arguments to its subparser."""
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="flow files, or directories whose *.yaml / *.yml files to check")
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="text: one line per finding (default); json: a JSON array")
    parser.add_argument("--strict", action="store_true",
                        help="treat warnings as errors (exit status 1)")


def run(args: argparse.Namespace) -> int:
    """Check the paths; print the findings; return the exit status."""
    import json

    from .compiler import check_paths, flow_files

    diagnostics = check_paths(args.paths)
    if args.format == "json":
        print(json.dumps([d.as_dict() for d in diagnostics], indent=2))
    else:
        for diagnostic in diagnostics:
            print(diagnostic)
    files, _ = flow_files(args.paths)
    errors = sum(1 for d in diagnostics if d.is_error)
    warnings = len(diagnostics) - errors
    counts = [f"{n} {word}{'' if n == 1 else 's'}" for n, word in
              ((errors, "error"), (warnings, "warning")) if n]
    checked = f"checked {len(files)} file{'' if len(files) == 1 else 's'}"
    print(f"{checked}: {', '.join(counts) if counts else 'no problems'}", file=sys.stderr)
    if errors or (args.strict and warnings):
        return 1
    return 0
