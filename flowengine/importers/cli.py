"""``flowengine import studio|swml SOURCE [-o OUT.yaml] [--tests]``.

Reads a Twilio Studio flow definition (JSON) or a SWML script (YAML or JSON), converts it
with :mod:`flowengine.importers.studio` or :mod:`flowengine.importers.swml`, reports what
did not translate as ``SOURCE:LINE:COL: warning: …`` on stderr, writes the flow (to OUT,
else stdout) and checks it as ``flowengine check`` would.

Exit status: 0 when the result checks (warnings allowed), 1 when the result cannot run
(its check found errors), 2 when the input cannot be read or is not of that kind.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
from pathlib import Path
from typing import IO

from .base import ImportResult, SourceError, dump_flow

#: kind → (module, what it reads).
KINDS = {
    "studio": ("flowengine.importers.studio", "a Twilio Studio flow definition (JSON)"),
    "swml": ("flowengine.importers.swml", "a SWML script (YAML or JSON)"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``import``'s arguments to its subparser."""
    parser.add_argument("kind", choices=sorted(KINDS), help="what SOURCE is: "
                        + "; ".join(f"{k}: {v[1]}" for k, v in sorted(KINDS.items())))
    parser.add_argument("source", metavar="SOURCE", help="the file to import")
    parser.add_argument("-o", "--output", metavar="OUT.yaml", default=None,
                        help="write the flow here (default: standard output); subflows the "
                             "import produces are written next to it")
    parser.add_argument("--tests", action="store_true",
                        help="also write a scenario file walking each path the import could "
                             "infer, as tests/OUT.test.yaml next to OUT (needs -o)")


def run(args: argparse.Namespace, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    """Import; print findings; write the result; return the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    from flowengine.flow.compiler import _read_error
    from flowengine.flow.diagnostics import FlowError
    from flowengine.flow.loader import UnreadableFile, load_yaml, read_flow_file

    if args.tests and not args.output:
        print("flowengine import: --tests needs -o OUT.yaml (the scenario file names the flow "
              "file it tests)", file=err)
        return 2
    source: str = args.source
    try:
        text = read_flow_file(source).decode("utf-8")
    except (UnreadableFile, OSError) as exc:
        print(_read_error(source, exc), file=err)
        return 2
    except UnicodeDecodeError as exc:
        print(f"{source}:1:1: error: not UTF-8 text ({exc.reason} at byte {exc.start})",
              file=err)
        return 2
    try:
        doc = load_yaml(text, source)
    except FlowError as exc:
        if args.kind == "studio":
            # Studio flows are JSON: say where the JSON breaks, in JSON's words.
            import json

            try:
                json.loads(text)
            except json.JSONDecodeError as bad:
                print(f"{source}:{bad.lineno}:{bad.colno}: error: not JSON: {bad.msg}",
                      file=err)
                return 2
        for diagnostic in exc.diagnostics:
            print(diagnostic, file=err)
        return 2
    module = importlib.import_module(KINDS[args.kind][0])
    try:
        result: ImportResult = module.convert(doc)
    except SourceError as exc:
        print(exc.format(source), file=err)
        return 2
    for finding in result.findings:
        print(finding.format(source), file=err)
    header = f"imported by flowengine from {os.path.basename(source)} ({args.kind})"
    if args.output:
        target = Path(args.output)
        _write(target, result, header)
        return _check(target, err)
    text_out = dump_flow(result.flow, header)
    out.write(text_out)
    if result.subflows:
        # Standard output holds one file; the subflows it calls need -o to be written.
        print(f"flowengine import: the flow calls {len(result.subflows)} subflow file(s) "
              f"({', '.join(sorted(result.subflows))}), written only with -o OUT.yaml",
              file=err)
    with tempfile.TemporaryDirectory(prefix="flowengine-import-") as tmp:
        target = Path(tmp) / "imported.yaml"
        _write(target, result, header, scenarios=False)
        return _check(target, err)


def _write(target: Path, result: ImportResult, header: str, *, scenarios: bool = True) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(dump_flow(result.flow, header), encoding="utf-8")
    for name, flow in result.subflows.items():
        # A subflow may live in a folder of its own (lib/), as docs/flow-language.md
        # recommends, so that the daemon does not serve it as a flow.
        path = target.parent / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dump_flow(flow, header), encoding="utf-8")
    if scenarios and result.scenarios is not None:
        tests = target.parent / "tests"
        tests.mkdir(exist_ok=True)
        data = {"flow": f"../{target.name}", **result.scenarios}
        (tests / f"{target.stem}.test.yaml").write_text(dump_flow(data, header),
                                                        encoding="utf-8")


def _check(target: Path, err: IO[str]) -> int:
    """Check the written flow (and its subflows through ``call:``); 1 when it cannot run."""
    from flowengine.flow.compiler import check_paths

    diagnostics = [d for d in check_paths([str(target)]) if d.is_error]
    for diagnostic in diagnostics:
        print(f"the imported flow does not check: {diagnostic}", file=err)
    return 1 if diagnostics else 0
