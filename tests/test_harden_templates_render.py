"""Template limits at render level, what `check` says of them, the whole-value entry limit,
`vars` errors running `on_error`, and None printed as empty text (issue "Hardening").

The runaway forms themselves run in tests/test_harden_templates.py, in a child process;
what is here finishes quickly with or without the limits."""

from __future__ import annotations

import textwrap

import pytest

from flowengine.flow import TemplateRenderError, compile_flow, render, template_context
from flowengine.flow.templates import MAX_VALUE_ITEMS, Origin, compile_text
from tests.flowtools import FLOWS, run_flow, write_flow

ORIGIN = Origin("f.yaml", 3, 9, "greet", "log")
CALL = {"id": "c-1", "from": "+15551234567", "to": "+15559870000", "direction": "inbound",
        "context": "office", "state": "answered"}
FLOW = {"name": "t", "version": "abc", "file": "f.yaml"}


def ctx(vars=None, steps=None):
    return template_context(CALL, steps or {}, vars or {}, FLOW)


def text(source, **kw):
    return render(compile_text(source, "text", ORIGIN), ctx(**kw))


def value(source, **kw):
    return render(compile_text(source, "value", ORIGIN), ctx(**kw))


def refused(source, mode="text", **kw):
    with pytest.raises(TemplateRenderError) as info:
        render(compile_text(source, mode, ORIGIN), ctx(**kw))
    assert str(info.value).startswith("f.yaml:3:9: in step 'greet' (log): ")
    return info.value.reason


# -- None prints as empty text ------------------------------------------------------------------

def test_a_missing_value_prints_as_empty_text():
    assert (text("voicemail for sales: {{ vars.url }}", vars={"url": None})
            == "voicemail for sales: ")
    assert text("[{{ none }}]") == "[]"
    assert text("{{ 'url: ' ~ vars.url }}", vars={"url": None}) == "url: "
    assert text("{{ 'a' ~ none ~ 'b' }}") == "ab"
    # Only printing changes: the value itself is still None where it is data.
    assert value("{{ vars.url }}", vars={"url": None}) is None
    assert text("{{ vars.url is none }}", vars={"url": None}) == "True"
    # Other values print as before.
    assert text("{{ 0 }} {{ false }} {{ [1, 2] }}") == "0 False [1, 2]"


@pytest.mark.anyio
@pytest.mark.virtual_time
async def test_the_voicemail_goodbye_does_not_print_none():
    run = await run_flow(FLOWS / "voicemail.yaml", caller="silent")
    bye = next(e for e in run.report.trace if e.step == "bye")
    assert bye.result["text"] == "voicemail for sales: "


# -- the entry limit counts the whole value -----------------------------------------------------

def test_the_entry_limit_counts_every_list_inside_a_value():
    # 200 lists of 100: each list is small, the value has 20,200 entries.
    reason = refused("{{ [[0] * 100] * 200 }}", mode="value")
    assert reason == (f"the value has more than {MAX_VALUE_ITEMS:,} entries in all (lists and "
                      "mappings inside it included)")
    assert refused("{{ {'a': [[0] * 100] * 99, 'b': [0] * 200} }}", mode="value").startswith(
        "the value has more than")
    # Just within: 99 lists of 100 plus the 99 entries that hold them.
    assert len(value("{{ [[0] * 100] * 99 }}")) == 99


@pytest.mark.anyio
@pytest.mark.virtual_time
async def test_a_set_value_over_the_total_takes_the_error_edge(tmp_path):
    flow = write_flow(tmp_path, textwrap.dedent("""\
        name: total
        context: office
        steps:
          grow:
            set:
              table: "{{ [[0] * 100] * 200 }}"
            on: {error: caught}
          done:
            log: "not reached"
            next: null
          caught:
            log: "caught"
        """))
    run = await run_flow(flow)
    assert run.path() == [("grow", "error"), ("caught", "next")]
    assert "entries in all" in run.report.trace[0].error
    assert "table" not in run.report.vars


# -- a vars render error runs on_error ----------------------------------------------------------

VARS_ERROR = """\
name: broken_vars
context: office
vars:
  mailbox: sales
  ratio: "{{ 1 / 0 }}"
  owner: "{{ call.from }}"
on_error: handler
steps:
  start:
    log: "not reached"
    next: null
  handler:
    log: "sorry, {{ vars.mailbox }} ({{ vars.ratio }})"
"""


@pytest.mark.anyio
@pytest.mark.virtual_time
async def test_a_vars_render_error_runs_on_error(tmp_path):
    run = await run_flow(write_flow(tmp_path, VARS_ERROR))
    assert run.path() == [("handler", "next")]
    assert run.report.trace[0].result["text"] == "sorry, sales ()"
    # The value that failed is None; the others are set.
    assert run.report.vars == {"mailbox": "sales", "ratio": None,
                               "owner": run.sim_calls[0].from_number}
    assert run.report.status == "completed"
    assert run.sim_calls[0].end_reason is not None


@pytest.mark.anyio
@pytest.mark.virtual_time
async def test_a_vars_render_error_without_on_error_fails_the_call(tmp_path):
    run = await run_flow(write_flow(tmp_path, VARS_ERROR.replace("on_error: handler\n", "")))
    assert run.path() == []
    assert run.report.status == "failed"
    assert "ZeroDivisionError" in run.report.error and "ratio in vars" in run.report.error


@pytest.mark.anyio
@pytest.mark.virtual_time
async def test_a_subflow_params_default_that_fails_runs_the_subflows_on_error(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "inner.yaml").write_text(textwrap.dedent("""\
        name: inner
        params:
          ratio: "{{ 1 / 0 }}"
        on_error: sorry
        steps:
          use:
            log: "ratio {{ params.ratio }}"
          sorry:
            return: {ok: false}
        """))
    flow = write_flow(tmp_path, textwrap.dedent("""\
        name: outer
        context: office
        steps:
          sub:
            call: {flow: lib/inner.yaml}
          after:
            log: "ok={{ steps.sub.ok }}"
        """))
    run = await run_flow(flow)
    assert run.path() == [("sorry", "next"), ("sub", "returned"), ("after", "next")]
    assert run.report.steps["after"]["text"] == "ok=False"


# -- the limits name themselves -----------------------------------------------------------------

def test_macros_nest_at_most_so_deep():
    assert refused("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}") == (
        "macro calls nested more than 50 deep (a macro that calls itself without end?)")


def test_one_budget_for_all_the_templates_of_a_step():
    # 600,000 characters printed into a block: within the limit on its own...
    block = ("{% set s %}{% for i in range(60) %}{{ vars.big }}{% endfor %}{% endset %}"
             "{{ s | length }}")
    big = {"big": "x" * 10_000}
    assert text(block, vars=big) == "600000"
    # ...but two templates of one step share the budget: 1,200,000 in all.
    tree = {"a": compile_text(block, "text", ORIGIN), "b": compile_text(block, "text", ORIGIN)}
    with pytest.raises(TemplateRenderError) as info:
        render(tree, ctx(vars=big))
    assert info.value.reason == ("the template printed more than 1,048,576 characters in all "
                                 "(in loops, macros and blocks included)")


def test_ordinary_templates_stay_within_the_limits():
    assert text("{% for i in range(10000) %}{{ i % 10 }}{% endfor %}") == "0123456789" * 1000
    tree_macro = ("{% macro depth(n) %}{% if n %}{{ depth(n - 1) }}{% endif %}{{ n }}"
                  "{% endmacro %}{{ depth(20) }}")
    assert text(tree_macro) == "".join(str(n) for n in range(21))
    recursive = ("{% for item in vars.tree recursive %}{{ item.name }}"
                 "{% if item.children is defined %}({{ loop(item.children) }}){% endif %}"
                 "{% endfor %}")
    tree = [{"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}]}]
    assert text(recursive, vars={"tree": tree}) == "a(b(c))"
    assert value("{{ range(10000) | list }}") == list(range(10000))
    assert value("{{ [vars.row] * 10 }}", vars={"row": list(range(100))}) == [list(range(100))] * 10
    assert (text("{{ range(10000) | join(',') | length }}")
            == str(len(",".join(map(str, range(10000))))))
    assert value("{{ dict(a=[1, 2], b={'c': 3}) }}") == {"a": [1, 2], "b": {"c": 3}}
    assert text("{% set ns = namespace(s='') %}{% for i in range(100) %}{% set ns.s = ns.s ~ i %}"
                "{% endfor %}{{ ns.s | length }}") == "190"


# -- what check says ----------------------------------------------------------------------------

def _warnings(template: str) -> list[str]:
    source = textwrap.dedent("""\
        name: w
        context: office
        steps:
          a:
            log: "TEMPLATE"
        """).replace("TEMPLATE", template.replace('"', '\\"'))
    result = compile_flow(source, "w.yaml")
    assert result.version is not None, result.diagnostics
    return [d.message for d in result.diagnostics if d.severity == "warning"]


def test_check_warns_of_a_macro_that_calls_itself():
    found = _warnings("{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}"
                      "{% endmacro %}{{ f(40) }}")
    assert found == ["macro 'f' calls itself 2 times (its work multiplies at each level): a "
                     "render stops after 50 nested calls, 100,000 loop iterations and macro "
                     "calls, or 100 ms"]


def test_check_warns_of_loops_and_sizes_it_can_count():
    assert _warnings("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}"
                     "{% endfor %}") == [
        "nested loops that run 1,000,000 times: a render stops after 100,000 loop iterations "
        "and macro calls"]
    assert _warnings("{{ range(1000000) | list }}") == [
        "range of 1,000,000 numbers: templates may use ranges of at most 100,000; this fails "
        "when it runs"]
    assert _warnings("{{ 'x' * 100000 }}") == [
        "repeating 100,000 times: templates may repeat up to 10,000 items; this fails when it runs"]


def test_check_is_quiet_about_ordinary_templates():
    assert _warnings("{% for i in range(100) %}{% for j in range(100) %}{{ i * j }}{% endfor %}"
                     "{% endfor %}{{ 'x' * 10 }}{% macro m(n) %}{{ n }}{% endmacro %}"
                     "{{ m(1) }}") == []
