"""The strict YAML reader: YAML 1.2 scalars (as editors read them), duplicate keys, positions."""

from __future__ import annotations

import pytest

from flowengine.flow import FlowError
from flowengine.flow.loader import load_yaml


def load(text: str):
    return load_yaml(text, "t.yaml").data


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("on", "on"), ("off", "off"), ("yes", "yes"), ("no", "no"), ("y", "y"), ("Yes", "Yes"),
        # YAML 1.2 core numbers, as editors read them: quote digit strings and phone numbers.
        ("0123", 123), ("0777", 777), ("+15551234567", 15551234567), ("0x1F", 31),
        ("0o17", 15), (".5", 0.5), ("+1.5", 1.5), ("1.", 1.0),
        ("12:30", "12:30"), ("1_000", "1_000"),
        ("2024-01-01", "2024-01-01"), (".inf", ".inf"),
        ("true", True), ("false", False), ("True", True), ("FALSE", False),
        ("null", None), ("~", None), ("", None),
        ("0", 0), ("42", 42), ("-7", -7), ("1.5", 1.5), ("-2e3", -2000.0),
        ('"42"', "42"), ("'true'", "true"),
    ],
)
def test_plain_scalars_follow_yaml_1_2(written, value):
    loaded = load(f"k: {written}\n")["k"]
    assert loaded == value
    assert isinstance(loaded, type(value)) and isinstance(loaded, bool) == isinstance(value, bool)


def test_on_is_a_string_key():
    assert load("on:\n  finished: next_step\n") == {"on": {"finished": "next_step"}}


def test_keys_are_always_text():
    assert load("1: a\ntrue: b\nnull: c\n") == {"1": "a", "true": "b", "null": "c"}


def test_a_ringtone_called_no_stays_no():
    assert load("ringtone: no\n") == {"ringtone": "no"}


def test_duplicate_keys_are_errors_at_the_second_key():
    with pytest.raises(FlowError) as info:
        load_yaml("a: 1\nb:\n  c: 1\n  c: 2\n", "t.yaml")
    assert str(info.value) == "t.yaml:4:3: error: duplicate key 'c' (first at line 3)"


def test_every_duplicate_is_reported():
    with pytest.raises(FlowError) as info:
        load_yaml("a: 1\na: 2\nb: 1\nb: 2\n", "t.yaml")
    assert [d.line for d in info.value.diagnostics] == [2, 4]


def test_positions_of_values_and_keys():
    doc = load_yaml("steps:\n  greet:\n    play:\n      - say: hi\n", "t.yaml")
    assert doc.position(("steps", "greet", "play", 0, "say")) == (4, 14)
    assert doc.position(("steps", "greet"), key=True) == (2, 3)
    # An unknown path falls back to its nearest ancestor.
    assert doc.position(("steps", "greet", "play", 0, "nope")) == (4, 9)


def test_syntax_error_is_a_positioned_finding_not_a_traceback():
    with pytest.raises(FlowError) as info:
        load_yaml("a:\n  b: 1\n   c: 2\n", "t.yaml")
    assert str(info.value) == ("t.yaml:3:4: error: this line is indented deeper than 'b' above "
                               "it, so YAML reads it as more of b's value; indent it like 'b' "
                               "to make it a key of the same mapping")


def test_unsupported_tags_are_refused():
    with pytest.raises(FlowError) as info:
        load_yaml("a: !!python/object:os.system x\n", "t.yaml")
    assert "unsupported YAML tag 'tag:yaml.org,2002:python/object:os.system'" in str(info.value)


def test_recursive_alias_is_refused():
    with pytest.raises(FlowError) as info:
        load_yaml("a: &x [1, *x]\n", "t.yaml")
    assert "an alias refers to the list or mapping that contains it" in str(info.value)


def test_alias_expansion_is_bounded():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 8):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    with pytest.raises(FlowError) as info:
        load_yaml("\n".join(lines) + "\n", "t.yaml")
    assert "the document is too large" in str(info.value)


def test_aliases_within_bounds_are_expanded():
    assert load("a: &m {say: hi}\nb: *m\n") == {"a": {"say": "hi"}, "b": {"say": "hi"}}


def test_a_second_document_is_refused():
    with pytest.raises(FlowError) as info:
        load_yaml("a: 1\n---\nb: 2\n", "t.yaml")
    assert str(info.value) == (
        "t.yaml:2:1: error: a flow file holds one YAML document, but this is a second one")
