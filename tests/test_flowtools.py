"""The test helpers' own contract: a flow variant whose edit misses fails loudly."""

import re

import pytest

from tests.flowtools import variant

TEXT = "steps:\n  greet:\n    answer: {}\n"


def test_a_variant_applies_each_edit_in_turn():
    assert variant(TEXT, ("answer: {}", "hangup: {}"), ("greet", "bye")) == \
        "steps:\n  bye:\n    hangup: {}\n"


def test_an_edit_whose_text_is_not_there_fails_instead_of_running_the_original():
    with pytest.raises(AssertionError, match=re.escape("'answr: {}' does not occur")):
        variant(TEXT, ("answr: {}", "hangup: {}"))
    # …also when an earlier edit removed what a later one looks for.
    with pytest.raises(AssertionError, match="'greet' does not occur"):
        variant(TEXT, ("greet", "hello"), ("greet", "bye"))
