"""Docs that must not drift: docs/actions.md is generated from the flow schema and the action
registry (the committed file must be exactly what tools/gen_actions_doc.py writes), and
docs/flow-language.md's complete example is flows/voicemail.yaml."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

from flowengine.flow.actions import ACTIONS

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT / "tools" / "gen_actions_doc.py"


def test_committed_actions_reference_is_the_generators_output():
    render = runpy.run_path(str(GENERATOR))["render"]
    assert (ROOT / "docs" / "actions.md").read_text(encoding="utf-8") == render()


def test_every_action_has_a_section_and_a_row():
    text = (ROOT / "docs" / "actions.md").read_text(encoding="utf-8")
    for name in ACTIONS:
        assert f"\n## {name}\n" in text
        assert f"| [`{name}`](#{name}) |" in text


def test_check_mode_accepts_the_committed_file():
    run = subprocess.run([sys.executable, str(GENERATOR), "--check"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=False)
    assert (run.returncode, run.stderr) == (0, "")


def test_the_language_guides_complete_example_is_the_shipped_voicemail_flow():
    # docs/flow-language.md shows flows/voicemail.yaml whole: the two must not drift apart.
    doc = (ROOT / "docs" / "flow-language.md").read_text(encoding="utf-8")
    section = doc[doc.index("## A complete example"):]
    start = section.index("```yaml\n") + len("```yaml\n")
    shown = section[start:section.index("```", start)]
    assert shown == (ROOT / "flows" / "voicemail.yaml").read_text(encoding="utf-8")
