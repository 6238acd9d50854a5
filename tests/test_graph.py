"""`flowengine graph`: the example flows' pictures as committed text, and what the arrows say."""

from __future__ import annotations

import io
import textwrap
from argparse import Namespace
from pathlib import Path

import pytest

from flowengine.cli import main
from flowengine.flow import load_flow
from flowengine.flow.graph import build_graph, render_graph, run

ROOT = Path(__file__).resolve().parent.parent
GRAPHS = Path(__file__).parent / "graphs"
EXAMPLES = ("voicemail", "after_hours", "voicemail_hangup", "reminder")


def flow_from(tmp_path: Path, text: str):
    path = tmp_path / "flow.yaml"
    path.write_text(textwrap.dedent(text))
    return load_flow(path)


@pytest.mark.parametrize("name", EXAMPLES)
@pytest.mark.parametrize("fmt,suffix", [("mermaid", "mmd"), ("dot", "dot")])
def test_example_flow_graph_matches_the_committed_text(name, fmt, suffix):
    flow = load_flow(ROOT / "flows" / f"{name}.yaml")
    expected = (GRAPHS / f"{name}.{suffix}").read_text()
    assert render_graph(flow, fmt) == expected


def test_all_draws_the_unhandled_error_and_hangup_ends():
    flow = load_flow(ROOT / "flows" / "voicemail.yaml")
    text = render_graph(flow, "mermaid", include_implicit=True)
    assert text == (GRAPHS / "voicemail.all.mmd").read_text()
    assert '    s_greet -.->|"error"| flow_end\n    s_greet -.->|"hangup"| flow_end\n' in text
    assert '    s_bye -.->|"error"| flow_end\n' in text
    assert "--all draws them" not in text


def test_voicemail_arrows_carry_outcomes_and_branch_conditions():
    graph = build_graph(load_flow(ROOT / "flows" / "voicemail.yaml"))
    arrows = {(e.source, e.target): (e.kind, e.labels) for e in graph.edges}
    assert arrows == {
        ("greet", "prompt"): ("normal", ("answered",)),
        ("prompt", "take_message"): ("normal", ("finished",)),
        ("take_message", "check_length"): ("normal", ("finished",)),
        ("take_message", "nothing_heard"): ("normal", ("no_input",)),
        ("check_length", "thanks"): ("normal", ("steps.take_message.duration >= 2",)),
        ("check_length", "too_short"): ("normal", ("otherwise",)),
        ("thanks", "bye"): ("normal", ("finished",)),
        ("too_short", "bye"): ("normal", ("finished",)),
        ("nothing_heard", "bye"): ("normal", ("finished",)),
        ("bye", "end"): ("normal", ()),
        ("end", None): ("normal", ()),
    }
    # 6 steps wait on the call (error + hangup each), 3 do not (error): 15 implicit ends.
    assert graph.hidden == 15


def test_handlers_explicit_edges_no_match_and_timeouts(tmp_path):
    flow = flow_from(tmp_path, """\
        name: g
        on_error: oops
        on_hangup: gone
        steps:
          greet:
            answer: {}
            on: {error: null}
          pick:
            branch:
              - when: call.from == "+1<2>"
                goto: greet_again
          hold:
            play: [{ringtone: us, duration: 30}]
            timeout: 10
            on: {timeout: greet_again, finished: greet_again}
          greet_again:
            play: [{say: hi}]
            description: Say "hi" again
          oops:
            log: failed
            next: null
          gone:
            log: gone
        """)
    text = render_graph(flow, "mermaid")
    lines = text.splitlines()
    # An explicit `on: {error: null}` is drawn even without --all; the handler edges are dotted.
    assert '    s_greet -.->|"error"| flow_end' in lines
    assert '    s_greet -.->|"hangup"| s_gone' in lines
    assert '    s_pick -->|"call.from == #quot;+1#lt;2#gt;#quot;"| s_greet_again' in lines
    assert '    s_pick -->|"no match"| s_hold' in lines
    assert '    s_pick -.->|"error"| s_oops' in lines
    assert '    s_hold -->|"finished, timeout"| s_greet_again' in lines
    assert ('    s_greet_again("<b>greet_again</b><br/>play<br/><i>Say #quot;hi#quot; again</i>")'
            in lines)
    assert '    s_oops["<b>oops</b><br/>log<br/>on_error"]' in lines
    assert "    class s_oops,s_gone handler" in lines
    # Error arrows are red: linkStyle counts every arrow, the start arrow first.
    error_links = [i for i, line in enumerate(a for a in lines if "-->" in a or "-.->" in a)
                   if '"error' in line]
    assert lines[-1] == "    linkStyle " + ",".join(map(str, error_links)) + " stroke:#c0392b"
    dot = render_graph(flow, "dot")
    assert '    "pick" -> "greet_again" [label="call.from == \\"+1<2>\\""];' in dot
    assert ('    "greet" -> "(end)" [label="error", style=dashed, color="#c0392b", '
            'fontcolor="#c0392b"];') in dot
    assert '    "oops" [label="oops\\nlog\\non_error", shape=note, style="dashed"];' in dot


def test_a_step_named_like_a_terminal_or_keyword_keeps_its_own_node(tmp_path):
    flow = flow_from(tmp_path, """\
        name: g
        steps:
          graph:
            log: a
          end:
            hangup: {}
        """)
    text = render_graph(flow, "mermaid")
    assert "    s_graph --> s_end\n    s_end --> flow_end\n" in text


def test_graph_command_prints_mermaid_by_default(capsys):
    assert main(["graph", str(ROOT / "flows" / "after_hours.yaml")]) == 0
    assert capsys.readouterr().out == (GRAPHS / "after_hours.mmd").read_text()


def test_graph_command_writes_dot_to_a_file(tmp_path):
    target = tmp_path / "out.dot"
    assert main(["graph", str(ROOT / "flows" / "voicemail.yaml"), "--format", "dot",
                 "-o", str(target)]) == 0
    assert target.read_text() == (GRAPHS / "voicemail.dot").read_text()


def test_graph_of_an_invalid_flow_shows_the_findings_and_exits_1():
    out, err = io.StringIO(), io.StringIO()
    bad = str(ROOT / "tests" / "flows_bad" / "edge_to_missing_step.yaml")
    code = run(Namespace(flow=bad, format="mermaid", all=False, output=None), out, err)
    assert code == 1
    assert out.getvalue() == ""
    assert err.getvalue().splitlines() == [
        f"{bad}:5:11: error: unknown step 'thank' in next; did you mean 'thanks'?",
        f"{bad}: invalid flow, no graph (run `flowengine check {bad}`)",
    ]
