"""goto over the simulator: the jump, the per-target visit limit, where exhausted goes, and
what check says about loops made with goto."""

from __future__ import annotations

import textwrap

import pytest

from flowengine.flow import compile_flow
from tests.flowtools import run_flow, variant, write_flow

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

RETRY = """
name: retry
context: office
steps:
  greet:
    answer: {}
  menu:
    prompt:
      play: [{say: "Press 1."}]
      digits: {}
      initial_timeout: 1
    on: {no_input: again}
  chosen:
    log: "pressed {{ steps.menu.digits }}"
    next: null
  again:
    goto: {step: menu, max_visits: 3}
  operator:
    log: "menu ran {{ steps.again.visits }} times"
"""


async def test_goto_jumps_back_until_the_target_has_run_max_visits_times(tmp_path):
    run = await run_flow(write_flow(tmp_path, RETRY), "silent")
    assert run.path() == [("greet", "answered"),
                          ("menu", "no_input"), ("again", "next"),
                          ("menu", "no_input"), ("again", "next"),
                          ("menu", "no_input"), ("again", "exhausted"),
                          ("operator", "next")]
    assert run.report.steps["again"] == {"target": "menu", "visits": 3}
    assert run.report.steps["operator"]["text"] == "menu ran 3 times"


async def test_an_answer_on_a_later_visit_leaves_the_loop(tmp_path):
    run = await run_flow(write_flow(tmp_path, RETRY), "digits:-/7")  # nothing, then 7
    assert run.path()[1:] == [("menu", "no_input"), ("again", "next"), ("menu", "digit"),
                              ("chosen", "next")]
    assert run.report.steps["chosen"]["text"] == "pressed 7"


async def test_exhausted_follows_its_own_edge_when_given(tmp_path):
    flow = write_flow(tmp_path, variant(RETRY, ("goto: {step: menu, max_visits: 3}",
                                               "goto: {step: menu, max_visits: 1}\n"
                                               "    on: {exhausted: chosen}")))
    run = await run_flow(flow, "silent")
    assert run.path()[-2:] == [("again", "exhausted"), ("chosen", "next")]


def test_a_goto_loop_without_a_limit_is_a_loop_with_no_way_out_and_a_limit_is_one():
    text = textwrap.dedent("""\
        name: loop
        steps:
          count:
            log: "again"
          again:
            goto: count
        """)
    [finding] = compile_flow(text, "loop.yaml").diagnostics
    assert str(finding).startswith("loop.yaml:3:3: error: steps 'count', 'again' loop forever")
    limited = variant(text, ("goto: count", "goto: {step: count, max_visits: 5}"))
    result = compile_flow(limited, "loop.yaml")
    assert result.ok and not result.diagnostics
    assert dict(result.version.edges["again"]) == {"next": "count", "exhausted": None,
                                                    "error": None}
