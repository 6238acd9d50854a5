"""SWML's JavaScript expressions as Jinja: the text written, and what it evaluates to in
flowengine's own template sandbox (the value a JavaScript engine gives for the same data)."""

from __future__ import annotations

from typing import Any

import pytest

from flowengine.flow.templates import ENV, template_context
from flowengine.importers.jsexpr import (
    ATOM,
    Jinja,
    JsError,
    parse,
    translate_expression,
    translate_template,
)

#: What the test's names resolve to, as the SWML importer would resolve them.
NAMES: dict[str, Jinja] = {
    "prompt_value": Jinja("steps.menu.digits", ATOM, "str"),
    "count": Jinja("vars.count", ATOM, "num"),
}


def resolve(root: str, chain: tuple[str | int, ...], pos: int) -> tuple[Jinja, int]:
    if root == "call" and chain and chain[0] == "call_id":
        return Jinja("call.id", ATOM, "str"), 1
    if root == "call" and chain:
        return Jinja(f"call.{chain[0]}", ATOM, "str"), 1
    if root in NAMES:
        return NAMES[root], 0
    if root == "params":
        return Jinja("params", ATOM, "any"), 0
    return Jinja(f"vars.{root}", ATOM, "any"), 0


DATA: dict[str, Any] = template_context(
    {"id": "c-1", "from": "+15551230000", "to": "+15559870000", "direction": "inbound",
     "context": "office", "state": "answered"},
    {"menu": {"digits": "1"}},
    {"count": 2, "name": "Alice", "things": ["a", "b", "c"], "flag": True, "empty": None,
     "n": "42", "user": {"first": "Ada", "last": "Lovelace", "tags": ["x"]}},
    {"name": "t", "version": "v", "file": "f"},
)
DATA["params"] = {"a": "2", "b": "3", "price": 2.5}


def evaluate(jinja: str) -> Any:
    return ENV.compile_expression(jinja)(**DATA)


# (JavaScript, the Jinja written, the value JavaScript gives for DATA)
CASES = [
    ("prompt_value == 1", "steps.menu.digits == '1'", True),
    ("prompt_value === '1'", "steps.menu.digits == '1'", True),
    ("prompt_value != 2", "steps.menu.digits != '2'", True),
    ("count == 2", "vars.count == 2", True),
    ("name == 'Alice'", "vars.name == 'Alice'", True),
    ("n == 42", "(vars.n | string) == '42'", True),
    ("count < 3 && count >= 2", "vars.count < 3 and vars.count >= 2", True),
    ("!flag || count > 5", "not vars.flag or vars.count > 5", False),
    ("!(count == 2)", "not vars.count == 2", False),
    ("count > 1 ? 'many' : 'one'", "'many' if vars.count > 1 else 'one'", "many"),
    ("call.from + ' calls'", "call.from ~ ' calls'", "+15551230000 calls"),
    ("'n=' + count", "'n=' ~ vars.count", "n=2"),
    ("count + 1 + 'x'", "(vars.count + 1) ~ 'x'", "3x"),
    ("'x' + (count + 1)", "'x' ~ (vars.count + 1)", "x3"),
    ("user.first + ' ' + user.last", "vars.user.first ~ ' ' ~ vars.user.last",
     "Ada Lovelace"),
    ("call.from.length", "call.from | length", 12),
    ("things.length > 2", "(vars.things | length) > 2", True),
    ("things[things.length - 1]", "vars.things[(vars.things | length) - 1]", "c"),
    ("things[0]", "vars.things[0]", "a"),
    ("user['first']", "vars.user.first", "Ada"),
    ("user.tags[0]", "vars.user.tags[0]", "x"),
    ("name.toLowerCase()", "vars.name | lower", "alice"),
    ("name.toUpperCase() == 'ALICE'", "(vars.name | upper) == 'ALICE'", True),
    ("parseInt(params.a) + parseInt(params.b)", "(params.a | int) + (params.b | int)", 5),
    ("parseInt(n, 10) * 2", "(vars.n | int) * 2", 84),
    ("parseFloat(params.price) * 2", "(params.price | float) * 2", 5.0),
    ("call.call_id", "call.id", "c-1"),
    ("empty == null", "vars.empty is none", True),
    ("empty !== undefined", "vars.empty is not none", False),
    ("empty ?? 'none'", "vars.empty if vars.empty is not none else 'none'", "none"),
    ("call.from.substring(0, 5)", "call.from[0:5]", "+1555"),
    ("call.from.startsWith('+1')", "call.from.startswith('+1')", True),
    ("things.includes('b')", "'b' in vars.things", True),
    ("things.join('-')", "vars.things | join('-')", "a-b-c"),
    ("Math.round(params.price)", "params.price | round | int", 2),
    ("Math.max(count, 7)", "[vars.count, 7] | max", 7),
    ("-count + 5", "-vars.count + 5", 3),
    ("count % 2 == 0", "vars.count % 2 == 0", True),
    ("true && !false", "true and not false", True),
    ("[1, 2].length", "[1, 2] | length", 2),
    ("'it\\'s'", "'it\\'s'", "it's"),
]


@pytest.mark.parametrize("js,jinja,value", CASES, ids=[c[0] for c in CASES])
def test_an_expression_becomes_jinja_that_gives_javascripts_value(js, jinja, value):
    translated = translate_expression(js, resolve)
    assert translated.text == jinja
    assert evaluate(translated.text) == value


@pytest.mark.parametrize("js,message,offset", [
    ("a => a + 1", "arrow functions are not supported", 2),
    ("x = 1", "assignment are not supported", 2),
    ("`hi ${x}`", "template literals (`…`) are not supported", 0),
    ("typeof x", "'typeof' is not supported", 0),
    ("call.from.padStart(3)", "the method .padStart() is not supported", 10),
    ("eval('1')", "the function eval() is not supported", 4),
    ("({a: 1})", "object literals are not supported", 1),
    ("a ?. b", "optional chaining (?.) are not supported", 2),
    ("'open", "a text in quotes that does not end", 0),
    ("a +", "expected a value, found the end of the expression", 3),
    ("a b", "unexpected 'b' after the expression", 2),
    ("a # b", "unexpected character '#'", 2),
    ("parseInt(x, 16)", "parseInt() with a radix other than 10 is not supported", 8),
    ("x in y", "the operator 'in' is not supported", 2),
])
def test_what_is_outside_the_subset_is_an_error_at_its_offset(js, message, offset):
    with pytest.raises(JsError) as caught:
        translate_expression(js, resolve)
    assert caught.value.message == message
    assert caught.value.offset == offset


def test_percent_substitution_inside_a_condition_is_the_expression_itself():
    # SWML's docs write `when: '%{prompt_value} == 1'`.
    assert translate_expression("%{prompt_value} == 1", resolve).text == \
        "steps.menu.digits == '1'"


def test_the_parser_keeps_javascripts_precedence():
    tree = parse("a || b && c == 1 + 2 * 3")
    assert type(tree).__name__ == "Binary" and tree.op == "||"  # type: ignore[union-attr]


def test_a_template_translates_each_substitution_and_keeps_the_text():
    result = translate_template("say: ${prompt_value} was terminated by %{name}", resolve)
    assert result.text == "say: {{ steps.menu.digits }} was terminated by {{ vars.name }}"
    assert result.errors == [] and result.single is None and result.expressions == 2


def test_a_single_substitution_keeps_its_type():
    result = translate_template("${count + 1}", resolve)
    assert result.text == "{{ vars.count + 1 }}"
    assert result.single is not None and result.single.type == "num"


def test_swml_template_functions_lc_and_enc_url():
    assert translate_template("${lc:name}", resolve).text == "{{ vars.name | lower }}"
    assert translate_template("q=${enc:url:name}", resolve).text == \
        "q={{ vars.name | urlencode }}"


def test_a_substitution_that_does_not_translate_is_kept_and_reported_at_its_offset():
    result = translate_template("Hi ${things.map(x => x)} and ${name}", resolve)
    assert result.text == "Hi ${things.map(x => x)} and {{ vars.name }}"
    assert [(e.message, e.offset) for e in result.errors] == [
        ("arrow functions are not supported", 18)]


def test_an_unclosed_substitution_is_reported_and_the_text_kept():
    result = translate_template("Hi ${name", resolve)
    assert result.text == "Hi ${name"
    assert [(e.message, e.offset) for e in result.errors] == [
        ("a ${…} that is not closed with '}'", 3)]


def test_jinja_syntax_in_plain_text_stays_plain_text():
    result = translate_template("{{ not a template }} ${name}", resolve)
    rendered = ENV.from_string(result.text).render(**DATA)
    assert rendered == "{{ not a template }} Alice"


def test_braces_inside_strings_do_not_end_a_substitution():
    result = translate_template("${name + '}'}!", resolve)
    assert result.text == "{{ vars.name ~ '}' }}!"
    assert ENV.from_string(result.text).render(**DATA) == "Alice}!"
