"""The relay's JSON (orjson, with the standard library judging the odd cases) reads and
writes exactly what the standard encoder and decoder did."""

from __future__ import annotations

import json
import math

import pytest

from flowengine.relay.protocol import _decode, _encode

STRICT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode

VALUES = [
    {"jsonrpc": "2.0", "id": "abc-1", "method": "calling.play",
     "params": {"call_id": "c", "play": [{"type": "tts", "params": {"text": "Grüße 👋 \"hi\""}}],
                "volume": -4.5, "loop": 2, "flag": True}},
    {"a": None, "b": [None, 1]},  # null: written by json, the same text
    {"big": 2**70, "neg": -(2**65)},  # beyond 64 bits: orjson refuses, json writes it
    {1: "int key", None: "none key"},
    {True: "bool key"},  # apart: True and 1 are the same dict key
    {"nested": [[[]]], "empty": {}, "float": 0.1, "tiny": 1e-7, "exp": 1.5e300},
]


@pytest.mark.parametrize("value", VALUES)
def test_encoding_means_what_json_means(value: object) -> None:
    text = _encode(value)
    assert isinstance(text, str)
    assert json.loads(text) == json.loads(STRICT(value))


@pytest.mark.parametrize("value", [{"x": math.nan}, {"x": [math.inf]}, {"x": object()},
                                   {"x": {1, 2}}])
def test_what_json_refuses_is_still_refused(value: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        _encode(value)


@pytest.mark.parametrize("text", ['{"a":1}', b'{"a":[1,2.5,null,true]}', '{"n":NaN}',
                                  '"\\ud800"', '{"u":"Gr\\u00fc\\u00dfe"}'])
def test_decoding_accepts_what_json_accepted(text: str | bytes) -> None:
    expected = json.loads(text)
    got = _decode(text)
    if isinstance(expected, dict) and "n" in expected:
        assert math.isnan(got["n"])
    else:
        assert got == expected


def test_the_one_difference_integers_beyond_64_bits_are_read_as_floats() -> None:
    # orjson reads them as floats where json kept them exact; RELAY sends none (ids and
    # codes are strings, timestamps floats).
    assert _decode('{"big":123456789012345678901234567890}')["big"] == pytest.approx(1.2345e29,
                                                                                  rel=1e-3)


@pytest.mark.parametrize("text", ["", "{", "not json", b"\xff\xfe"])
def test_bad_input_raises_what_json_raised(text: str | bytes) -> None:
    with pytest.raises(ValueError):
        _decode(text)
