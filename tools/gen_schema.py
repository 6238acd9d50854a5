"""Generate schemas/flow.schema.json — the flow language's JSON Schema — from the action specs.

Each action's parameters (and what its outcomes mean) come from its spec in
``flowengine/flow/actions/``; the flow's top-level keys, a step's common keys and the shared
definitions from ``flowengine/flow/language.py``. The package ships the same file
(``flowengine/schemas`` links to ``schemas/``), which ``flowengine check`` and editors read,
so a test compares the committed file with this script's output.

    python tools/gen_schema.py            # rewrite schemas/flow.schema.json
    python tools/gen_schema.py --check    # exit 1 if schemas/flow.schema.json is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "schemas" / "flow.schema.json"


def render() -> str:
    """The text of schemas/flow.schema.json."""
    from flowengine.flow.language import schema_text

    return schema_text()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if schemas/flow.schema.json differs from the generated text")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET.relative_to(ROOT)} is out of date: run python tools/gen_schema.py",
                  file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
