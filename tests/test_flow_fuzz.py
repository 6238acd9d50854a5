"""No input, however broken, makes the compiler raise: every problem is a finding."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from flowengine.flow import compile_flow

VOICEMAIL = (Path(__file__).parent.parent / "flows" / "voicemail.yaml").read_text()
LINES = VOICEMAIL.splitlines(keepends=True)
SNIPPETS = ["", " ", "  ", "\t", ":", "- ", "{", "}", "[", "]", "'", '"', "{{", "}}", "{%", "%}",
            "#", "&a ", "*a", "!!str ", "null", "true", "0123", "+1555", "on", "next: x\n",
            "play: 3\n", "record: {}\n", "goto: greet\n", "when: x ==\n", "\n", "é", "\x00"]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(0, len(LINES) - 1), st.integers(0, 80),
                          st.sampled_from(SNIPPETS), st.integers(0, 3)), min_size=1, max_size=4))
def test_mutated_flows_give_findings_not_exceptions(edits):
    lines = list(LINES)
    for line_no, col, snippet, cut in edits:
        line = lines[line_no]
        col = min(col, len(line))
        lines[line_no] = line[:col] + snippet + line[col + cut:]
    result = compile_flow("".join(lines), "fuzz.yaml")
    if result.version is None:
        assert any(d.is_error for d in result.diagnostics)
    for d in result.diagnostics:
        assert str(d).startswith("fuzz.yaml")
        assert d.line is None or (d.line >= 1 and d.col is not None and d.col >= 1)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(["name", "steps", "a", "play", "record", "say", "on",
                                       "next", "branch", "when", "goto", "set", "log", "media",
                                       "vars", "limits", "match", "hangup", "answer"]),
                      children, max_size=4),
    max_leaves=12))
def test_arbitrary_structures_give_findings_not_exceptions(data):
    import json

    result = compile_flow(json.dumps(data), "fuzz.yaml")
    assert result.version is not None or result.diagnostics
