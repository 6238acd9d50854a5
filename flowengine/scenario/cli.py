"""``flowengine test [PATH...]``: run scenario tests over the simulator, like a test runner.

One line per scenario (``ok`` / ``FAIL``), each failure with what was expected and what
happened, then the edge coverage of each flow and the summary ``N passed, M failed``.
Exit status 0 when every scenario passed, 1 otherwise (and with ``--require-coverage``
when an edge was not taken).
"""

from __future__ import annotations

import argparse
import sys
from typing import IO

#: Where ``flowengine test`` looks without a PATH.
DEFAULT_PATHS = ("flows",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``test``'s arguments to its subparser."""
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="scenario files, or directories searched (recursively) for "
                             "*.test.yaml (default: flows)")
    parser.add_argument("-k", dest="names", action="append", default=None, metavar="TEXT",
                        help="run only scenarios whose name contains TEXT (repeatable)")
    parser.add_argument("--coverage", action="store_true",
                        help="list every edge of each flow with the scenarios that took it")
    parser.add_argument("--no-coverage", action="store_true",
                        help="leave the coverage report out of the summary")
    parser.add_argument("--require-coverage", action="store_true",
                        help="exit 1 when some edge of a flow was taken by no scenario")
    parser.add_argument("--time-scale", type=float, default=None, metavar="X",
                        help="override every scenario's time scale (default 1.0, or the file's)")


def run(args: argparse.Namespace, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    """Run the scenarios; print the report; return the exit status."""
    import anyio

    from flowengine.testing import VirtualClockLoop

    # Virtual time: the clock jumps to the next timer whenever the call waits, so a
    # scenario runs in the CPU time of its steps, and its timings are exact.
    return int(anyio.run(_main, args, out or sys.stdout, err or sys.stderr, backend="asyncio",
                         backend_options={"loop_factory": VirtualClockLoop}))


async def _main(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    import dataclasses

    from .coverage import Coverage
    from .model import ScenarioFile, ScenarioFileError, load_scenarios, scenario_files
    from .runner import run_file

    def p(text: str = "") -> None:
        print(text, file=out, flush=True)

    files, problems = scenario_files(list(args.paths or DEFAULT_PATHS))
    passed = failed = 0
    for problem in problems:
        print(problem, file=err)
        failed += 1
    coverage = Coverage()
    for file in files:
        try:
            loaded: ScenarioFile = load_scenarios(file)
        except ScenarioFileError as exc:
            for diagnostic in exc.diagnostics:
                p(str(diagnostic))
            p(f"FAIL  {file}: the scenario file cannot run")
            failed += 1
            continue
        if args.time_scale is not None:
            loaded = dataclasses.replace(loaded, scenarios=tuple(
                dataclasses.replace(s, time_scale=args.time_scale) for s in loaded.scenarios))
        results = await run_file(loaded, names=args.names)
        for result in results:
            where = f"{file}:{result.scenario.line}"
            if result.passed:
                passed += 1
                p(f"ok    {where}: {result.scenario.name}")
            else:
                failed += 1
                p(f"FAIL  {where}: {result.scenario.name}")
                for line in result.failure_text().splitlines():
                    p(f"      {line}")
        coverage.add(results)
    if coverage.flows and not args.no_coverage:
        p()
        for line in coverage.lines(detail=args.coverage):
            p(line)
    p()
    p(f"{passed} passed, {failed} failed")
    if failed:
        return 1
    if args.require_coverage and not coverage.complete:
        print("some edges were taken by no scenario (--require-coverage)", file=err)
        return 1
    return 0
