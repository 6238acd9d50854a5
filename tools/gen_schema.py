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

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "schemas" / "flow.schema.json"


def render() -> str:
    """The text of schemas/flow.schema.json."""
    from flowengine.flow.language import schema_text

    return schema_text()


def main(argv: list[str] | None = None) -> int:
    from generated import generator_main  # tools/ is on sys.path when run as a script

    return generator_main(__doc__, TARGET, render, "tools/gen_schema.py", argv)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
