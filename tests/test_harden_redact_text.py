"""flowengine.redact's rules on text: what is masked, and what an operator still reads."""

from __future__ import annotations

import logging

import pytest

from flowengine.redact import REDACTED, RedactingFormatter, redact, redact_text, register


@pytest.mark.parametrize(("text", "shown"), [
    (('HTTP Request: GET http://bob:hunter2@127.0.0.1:8080/x?api_key=abc123&kind=vm '
     '"HTTP/1.1 200 OK"'),
     (f'HTTP Request: GET http://bob:{REDACTED}@127.0.0.1:8080/x?api_key={REDACTED}&kind=vm '
     '"HTTP/1.1 200 OK"')),
    ('{"project":"p-1","token":"xyz","authorization_state":"blob"}',
     f'{{"project":"p-1","token":"{REDACTED}","authorization_state":"{REDACTED}"}}'),
    ("[(b'Host', b'h'), (b'Authorization', b'Bearer zz'), (b'X-Api-Key', b'kk')]",
     f"[(b'Host', b'h'), (b'Authorization', b'{REDACTED}'), (b'X-Api-Key', b'{REDACTED}')]"),
    ("Authorization: Bearer abc, X-Auth-Key: foo",
     f"Authorization: {REDACTED}, X-Auth-Key: {REDACTED}"),
    ('message: "< {\\"token\\":\\"xyz\\"}"', f'message: "< {{\\"token\\":\\"{REDACTED}\\"}}"'),
    ("wss://relay.example/?token=abcd&x=1", f"wss://relay.example/?token={REDACTED}&x=1"),
])
def test_credentials_in_urls_headers_and_json_are_masked(text: str, shown: str) -> None:
    assert redact_text(text) == shown


@pytest.mark.parametrize("text", [
    ("2026-12-04 18:56:17.739 INFO  [1e607193 voicemail@4da92850c176] call from +15551230000 "
    "to +15559870000 ended: completed after 7 step(s) (hangup): greet > prompt > end (92 ms)"),
    "monkey=1 keys=2 author=3 signal: up, http://host/recordings/a.mp3?kind=vm",
])
def test_an_ordinary_line_is_left_as_it_is(text: str) -> None:
    assert redact_text(text) == text


def test_a_registered_value_is_masked_anywhere_and_a_short_one_is_not() -> None:
    register("reg-value-123456", "abc")
    assert redact_text("echo reg-value-123456!") == f"echo {REDACTED}!"
    assert redact_text("abc") == "abc"


def test_structures_mask_by_key_and_by_text() -> None:
    value = {"headers": {"X-Auth-Key": "a", "Keys": "b"}, "url": "http://u:pw@h/?sig=1"}
    assert redact(value) == {"headers": {"X-Auth-Key": REDACTED, "Keys": "b"},
                             "url": f"http://u:{REDACTED}@h/?sig={REDACTED}"}


def test_the_formatter_masks_the_traceback_too() -> None:
    try:
        raise ValueError("cannot reach http://u:pw-123@h/")
    except ValueError:
        import sys

        record = logging.LogRecord("httpx", logging.ERROR, "", 0, "failed", None,
                                   sys.exc_info())
    line = RedactingFormatter().format(record)
    assert "pw-123" not in line and "ValueError" in line
