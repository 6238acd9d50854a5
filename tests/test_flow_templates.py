"""Templates: compiled once, rendered in a strict sandbox with size limits; types kept only
for a single {{ expression }}; every render failure names the step and its file:line:col."""

from __future__ import annotations

import textwrap

import pytest

from flowengine.flow import (
    TemplateRenderError,
    choose_branch,
    compile_flow,
    initial_vars,
    render,
    render_params,
    template_context,
)
from flowengine.flow.templates import (
    MAX_RENDERED_LENGTH,
    CompiledTemplate,
    Origin,
    TemplateCompileError,
    compile_expression,
    compile_text,
)

ORIGIN = Origin("f.yaml", 7, 14, "greet", "say in play item 1")
CALL = {"id": "c-1", "from": "+15551234567", "to": "+15559870000", "direction": "inbound",
        "context": "office", "state": "answered"}
FLOW = {"name": "t", "version": "abc", "file": "f.yaml"}


def ctx(steps=None, vars=None):
    return template_context(CALL, steps or {}, vars or {}, FLOW)


def text(source, **kw):
    return render(compile_text(source, "text", ORIGIN), ctx(**kw))


def value(source, **kw):
    return render(compile_text(source, "value", ORIGIN), ctx(**kw))


def refused(source, mode="text", **kw):
    with pytest.raises(TemplateRenderError) as info:
        render(compile_text(source, mode, ORIGIN), ctx(**kw))
    assert str(info.value).startswith("f.yaml:7:14: in step 'greet' (say in play item 1): ")
    assert info.value.step == "greet"
    return info.value.reason


def test_plain_strings_are_not_compiled():
    assert compile_text("Hello there", "text", ORIGIN) == "Hello there"
    assert compile_text("+15551234567", "value", ORIGIN) == "+15551234567"
    assert isinstance(compile_text("{{ vars.x }}", "text", ORIGIN), CompiledTemplate)


def test_call_fields_including_from():
    assert text("{{ call.from }} → {{ call.to }} ({{ call.direction }}, {{ call.id }})") == \
        "+15551234567 → +15559870000 (inbound, c-1)"


def test_flow_and_step_results():
    assert text("{{ flow.name }}: {{ steps.rec.duration | round | int }} s",
                steps={"rec": {"duration": 3.6}}) == "t: 4 s"


def test_a_single_expression_keeps_its_type():
    assert value("{{ vars.n + 1 }}", vars={"n": 2}) == 3
    assert value("{{ steps.rec.duration }}", steps={"rec": {"duration": 2.5}}) == 2.5
    assert value("{{ vars.n > 1 }}", vars={"n": 2}) is True
    assert value("{{ [1, 2] }}") == [1, 2]
    assert value("{{ {'a': vars.n} }}", vars={"n": 1}) == {"a": 1}
    assert value("{{ none }}") is None


def test_text_around_an_expression_gives_text():
    assert value("n={{ vars.n }}", vars={"n": 2}) == "n=2"
    assert value(" {{ vars.n }}", vars={"n": 2}) == " 2"


def test_phone_numbers_stay_text():
    assert value("{{ call.from }}") == "+15551234567"
    assert value("{{ vars.code }}", vars={"code": "0123"}) == "0123"
    assert value("{{ vars.a }}{{ vars.b }}", vars={"a": 7, "b": 123}) == "7123"
    assert text("{{ call.from }}") == "+15551234567"


def test_filters_that_build_lazy_sequences_give_lists():
    assert value("{{ [1, 2, 3] | select('odd') }}") == [1, 3]


def test_expression_conditions():
    expr = compile_expression("steps.rec.duration >= 2 and call.from in vars.vips", ORIGIN)
    assert expr.is_true(ctx(steps={"rec": {"duration": 3}}, vars={"vips": ["+15551234567"]}))
    assert not expr.is_true(ctx(steps={"rec": {"duration": 1}}, vars={"vips": []}))
    assert compile_expression(True, ORIGIN).is_true(ctx())


def test_when_with_braces_is_a_compile_error():
    with pytest.raises(TemplateCompileError) as info:
        compile_expression("{{ vars.x }}", ORIGIN)
    assert info.value.message == "when is an expression without {{ }}; write: when: vars.x"


# -- the sandbox ------------------------------------------------------------------------------

def test_python_internals_are_refused_at_render():
    assert refused("{{ ''.__class__.__mro__ }}") == (
        "access to attribute '__class__' of 'str' object is unsafe.")


def test_modifying_methods_are_refused():
    assert "access to attribute 'update'" in refused("{{ vars.update({}) }}", vars={"x": 1})
    assert "access to attribute 'append'" in refused("{{ vars.l.append(1) }}", vars={"l": []})


def test_huge_repetition_is_refused_before_it_is_built():
    reason = refused("{{ 'x' * 100000000 }}")
    assert reason == ("repeating a str 100000000 times would build 100000000 items; templates "
                      "may repeat up to 10000")
    assert text("{{ 'ab' * 3 }}") == "ababab"


def test_power_operator_is_refused():
    assert refused("{{ 2 ** 100000000 }}") == "the ** operator is not allowed in templates"
    assert refused("{{ 'x' * 10 ** 7 }}") == "the ** operator is not allowed in templates"


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'x' | center(100000000) }}",
        "{{ '%100000000s' % 'x' }}",
        "{{ '{:>100000000}'.format('x') }}",
        "{{ 'x'.ljust(100000000) }}",
        "{{ range(100000) | join('x' * 4000) }}",
        "{{ ('x' * 9000).replace('x', 'y' * 1000) }}",
        "{{ ('x' * 9000) | replace('x', 'y' * 1000) }}",
        ("{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s | length }}"),
        ("{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}"
        "{% endfor %}{{ ns.s | length }}"),
        "{% for i in range(100000) %}xxxxxxxxxx{% endfor %}",
    ],
)
def test_templates_cannot_build_huge_strings(source):
    reason = refused(source)
    assert "not allowed in templates" in reason or f"at most {MAX_RENDERED_LENGTH}" in reason


def test_lipsum_is_not_available():
    assert refused("{{ lipsum(100000) }}") == "'lipsum' is undefined"


# -- strict undefined ---------------------------------------------------------------------------

def test_a_step_that_has_not_run_is_an_error_naming_the_step_and_place():
    with pytest.raises(TemplateRenderError) as info:
        text("{{ steps.take_message.url }}")
    assert str(info.value) == ("f.yaml:7:14: in step 'greet' (say in play item 1): "
                               "steps.take_message is undefined: step 'take_message' "
                               "has not run on this call")


def test_undefined_names_are_errors_not_empty_strings():
    assert refused("{{ vars.nope }}") == (
        "vars.nope is undefined: the variable 'nope' has not been set")
    assert refused("{{ call.nope }}") == "call.nope is undefined"
    assert refused("{{ nope }}") == "'nope' is undefined"
    assert refused("{{ steps.rec.nope }}", steps={"rec": {}}) == (
        "'dict object' has no attribute 'nope'")
    assert refused("{{ steps.nope }}", mode="value") == \
        "steps.nope is undefined: step 'nope' has not run on this call"


def test_default_and_is_defined_still_work():
    assert text("{{ steps.rec.url | default('none') }}") == "none"
    assert text("{% if steps.rec is defined %}yes{% else %}no{% endif %}") == "no"


def test_other_failures_are_render_errors():
    assert refused("{{ 1 / 0 }}") == "ZeroDivisionError: division by zero"
    assert refused("{{ vars.items }}", mode="value", vars={}) == (
        "the value is a builtin_function_or_method, not plain data (text, number, true/false, "
        "list or mapping)")


def test_compile_errors_carry_the_jinja_message():
    with pytest.raises(TemplateCompileError) as info:
        compile_text("{{ x | no_such_filter }}", "text", ORIGIN)
    assert info.value.message == "No filter named 'no_such_filter'."


# -- inside a compiled flow ------------------------------------------------------------------------

FLOW_TEXT = textwrap.dedent("""\
    name: t
    vars:
      caller: "{{ call.from }}"
      count: "{{ 41 + 1 }}"
      number: "+15551234567"
      vips: ["+15551230001"]
    steps:
      greet:
        play:
          - say: "Hello {{ vars.caller }}, {{ vars.count }}"
      check:
        branch:
          - when: call.from in vars.vips
            goto: vip
          - when: steps.greet is defined
            goto: bye
      vip:
        log: "vip"
      bye:
        log: "{{ steps.nope_not_run_yet_is_fine_because_guarded | default('x') }}"
      nope_not_run_yet_is_fine_because_guarded:
        log: "{{ flow.name }}@{{ flow.version }}"
""")


def test_flow_vars_render_over_call_and_keep_types():
    version = compile_flow(FLOW_TEXT, "f.yaml").version
    assert version is not None
    assert initial_vars(version, CALL) == {
        "caller": "+15551234567", "count": 42, "number": "+15551234567", "vips": ["+15551230001"],
    }


def test_render_params_and_choose_branch():
    version = compile_flow(FLOW_TEXT, "f.yaml").version
    assert version is not None
    context = template_context(CALL, {}, initial_vars(version, CALL), version.template_flow)
    assert render_params(version.steps["greet"], context) == {
        "media": [{"say": "Hello +15551234567, 42"}], "volume": None}
    assert choose_branch(version.steps["check"], context) is None  # no match → next
    context["steps"]["greet"] = {"state": "finished"}
    chosen = choose_branch(version.steps["check"], context)
    assert chosen is not None and (chosen.index, chosen.goto) == (1, "bye")
    assert render_params(version.steps["nope_not_run_yet_is_fine_because_guarded"], context) == \
        f"t@{version.short_version}"


def test_render_error_in_a_flow_points_at_the_template():
    version = compile_flow(FLOW_TEXT, "f.yaml").version
    assert version is not None
    context = template_context(CALL, {}, {}, version.template_flow)  # vars not rendered
    with pytest.raises(TemplateRenderError) as info:
        render_params(version.steps["greet"], context)
    assert str(info.value) == ("f.yaml:10:14: in step 'greet' (say in play item 1): vars.caller is "
                               "undefined: the variable 'caller' has not been set")


def test_default_covers_a_whole_chain_but_plain_use_does_not():
    assert text("{{ steps.rec.url | default('no recording') }}") == "no recording"
    assert text("{{ 'yes' if steps.rec.url is defined else 'no' }}") == "no"
    expr = compile_expression("steps.rec.duration >= 2", ORIGIN)
    with pytest.raises(TemplateRenderError) as info:
        expr.is_true(ctx())
    assert info.value.reason == "steps.rec is undefined: step 'rec' has not run on this call"
    assert refused("{% if steps.rec.url %}x{% endif %}") == \
        "steps.rec is undefined: step 'rec' has not run on this call"


def test_plain_dicts_in_the_context_get_the_same_messages():
    plain = {"call": dict(CALL), "steps": {}, "vars": {}, "flow": FLOW}
    with pytest.raises(TemplateRenderError) as info:
        render(compile_text("{{ steps.rec.url }}", "text", ORIGIN), plain)
    assert info.value.reason == "steps.rec is undefined: step 'rec' has not run on this call"
    with pytest.raises(TemplateRenderError) as info:
        render(compile_text("{{ vars.update({}) }}", "text", ORIGIN), plain)
    assert "access to attribute 'update'" in info.value.reason
