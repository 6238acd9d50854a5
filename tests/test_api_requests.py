"""The request checks on their own: whatever JSON arrives, a body is either taken or
refused with a 4xx ApiError naming a field — never another exception (property tests)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from flowengine.api.errors import ApiError
from flowengine.api.requests import parse_call, parse_campaign, parse_campaign_csv

FIELDS = ["flow", "to", "from", "vars", "status_url", "contacts", "max_concurrent",
          "calls_per_second", "retry", "quiet_hours", "name", "busy", "count", "delay",
          "start", "end", "timezone", "x"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                    st.text(max_size=20), st.sampled_from(
                        ["notify", "+15550001111", "21:00", "UTC", "http://x/", "busy"]))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.sampled_from(FIELDS), inner, max_size=6)), max_leaves=20)


def known(name: str) -> bool:
    return name == "notify"


def check(flow: str, values: Any, to: str, from_: str | None) -> dict[str, Any]:
    return dict(values)


def _refused_properly(exc: ApiError) -> None:
    assert 400 <= exc.status < 500 and exc.code and exc.message
    assert exc.field is None or isinstance(exc.field, str)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_any_call_body_is_taken_or_refused_with_a_4xx(body: Any) -> None:
    try:
        call = parse_call(body, known, check)
    except ApiError as exc:
        _refused_properly(exc)
    else:
        assert call.flow == "notify" and call.to.startswith("+")


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_any_campaign_body_is_taken_or_refused_with_a_4xx(body: Any) -> None:
    try:
        campaign = parse_campaign(body, known, check)
    except ApiError as exc:
        _refused_properly(exc)
    else:
        assert campaign.contacts and campaign.max_concurrent >= 1
        assert campaign.calls_per_second > 0


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.dictionaries(
    st.sampled_from(["flow", "from", "max_concurrent", "retry.busy.count", "quiet_hours.end",
                     "retry", "x.y"]), st.text(max_size=10), max_size=4))
def test_any_csv_body_is_taken_or_refused_with_a_4xx(text: str, query: dict[str, str]) -> None:
    try:
        parse_campaign_csv(text, {"flow": "notify", **query}, known, check)
    except ApiError as exc:
        _refused_properly(exc)
