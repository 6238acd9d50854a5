"""What the API accepts: the bodies of ``POST /v1/calls`` and ``POST /v1/campaigns``, checked
field by field before anything is queued (so nothing is dialled for a bad request).

Every check raises :class:`~flowengine.api.errors.ApiError` naming the field: an unknown
field, a missing or ill-typed one, a number that is not E.164, a flow that is not served,
an input the flow declares that is missing or of the wrong type.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import time as dtime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ApiError

__all__ = [
    "E164", "MAX_CONTACTS", "CallRequest", "CampaignRequest", "Contact", "QuietHours",
    "RetryRule", "VarsCheck", "parse_call", "parse_campaign", "parse_campaign_csv",
]

#: A phone number as RELAY's phone device takes it: ``+``, country code, up to 15 digits.
E164 = re.compile(r"\+[1-9][0-9]{5,14}")
#: Contacts in one campaign (a CSV of 1 MiB holds ~30,000).
MAX_CONTACTS = 100_000
#: The outcomes a campaign may retry, and the restart case (a dial in flight at a crash).
RETRYABLE = ("busy", "no_answer", "failed", "interrupted")
#: What a retry rule defaults to when a campaign names none: busy and no answer are not
#: retried; a dial in flight when the daemon stopped is placed once more.
DEFAULT_RETRY: Mapping[str, tuple[int, float]] = {"interrupted": (1, 0.0)}

#: (flow name, the caller's vars, to, from) → the inputs to run with (checked, converted,
#: defaults applied), or ApiError naming the field: ``vars.<input>``, ``to`` or ``from``.
VarsCheck = Callable[[str, Mapping[str, Any], str, "str | None"], dict[str, Any]]


@dataclass(frozen=True)
class RetryRule:
    """Retry an outcome up to ``count`` more times, ``delay`` seconds after it."""

    count: int
    delay: float


@dataclass(frozen=True)
class QuietHours:
    """No dialling from ``start`` to ``end`` (local time in ``timezone``; wraps midnight
    when ``end`` is before ``start``)."""

    start: dtime
    end: dtime
    timezone: str

    def to_json(self) -> dict[str, str]:
        """As the API shows it."""
        return {"start": self.start.strftime("%H:%M"), "end": self.end.strftime("%H:%M"),
                "timezone": self.timezone}


@dataclass(frozen=True)
class CallRequest:
    """One call to place."""

    flow: str
    to: str
    from_: str | None
    vars: dict[str, Any]
    status_url: str | None


@dataclass(frozen=True)
class Contact:
    """One contact of a campaign."""

    to: str
    vars: dict[str, Any]


@dataclass(frozen=True)
class CampaignRequest:
    """A campaign to run."""

    flow: str
    from_: str | None
    contacts: list[Contact]
    max_concurrent: int
    calls_per_second: float
    retry: dict[str, RetryRule]
    quiet_hours: QuietHours | None
    status_url: str | None
    name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def spec(self) -> dict[str, Any]:
        """The settings as the store keeps them (and ``GET /v1/campaigns/{id}`` shows)."""
        return {"name": self.name, "from": self.from_, "max_concurrent": self.max_concurrent,
                "calls_per_second": self.calls_per_second,
                "retry": {k: {"count": r.count, "delay": r.delay} for k, r in self.retry.items()},
                "quiet_hours": None if self.quiet_hours is None else self.quiet_hours.to_json(),
                "status_url": self.status_url}


# --- the pieces ---------------------------------------------------------------------------

def _object(value: Any, where: str | None) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ApiError.invalid(where, f"{where or 'the body'} must be a JSON object")
    return value


def _only(value: Mapping[str, Any], allowed: Sequence[str], prefix: str = "") -> None:
    for key in value:
        if key not in allowed:
            raise ApiError(422, "unknown_field",
                           f"unknown field {prefix}{key!r}; expected one of "
                           f"{', '.join(allowed)}", f"{prefix}{key}")


def _text(value: Any, where: str, *, required: bool = True) -> str | None:
    if value is None:
        if required:
            raise ApiError.invalid(where, f"{where} is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise ApiError.invalid(where, f"{where} must be a non-empty string")
    return value


def number(value: Any, where: str, *, required: bool = True) -> str | None:
    """An E.164 phone number (``+15551230000``), or None when not required and absent."""
    text = _text(value, where, required=required)
    if text is None:
        return None
    if not E164.fullmatch(text):
        raise ApiError.invalid(where, f"{where} must be an E.164 phone number such as "
                                      f"+15551230000, not {text[:40]!r}")
    return text


def _int(value: Any, where: str, low: int, high: int, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ApiError.invalid(where, f"{where} must be an integer from {low} to {high}")
    return value


def _float(value: Any, where: str, low: float, high: float, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not low < value <= high or value != value:
        raise ApiError.invalid(where, f"{where} must be a number above {low:g}, at most "
                                      f"{high:g}")
    return float(value)


def _seconds(value: Any, where: str) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not 0 <= value <= 7 * 86400:
        try:
            value = float(value) if isinstance(value, str) else None
        except ValueError:
            value = None
        if value is None or not 0 <= value <= 7 * 86400:
            raise ApiError.invalid(where, f"{where} must be seconds from 0 to 604800")
    return float(value)


def status_url(value: Any, where: str = "status_url") -> str | None:
    """An http(s) URL for the status webhooks, or None."""
    text = _text(value, where, required=False)
    if text is None:
        return None
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiError.invalid(where, f"{where} must be an http:// or https:// URL")
    return text


def _vars(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ApiError.invalid(where, f"{where} must be a JSON object")
    return dict(value)


def _flow(value: Any, known: Callable[[str], bool]) -> str:
    name = _text(value, "flow")
    assert name is not None
    if not known(name):
        raise ApiError(422, "unknown_flow", f"no flow named {name[:80]!r} is served", "flow")
    return name


def _clock(value: Any, where: str) -> dtime:
    text = _text(value, where)
    assert text is not None
    try:
        hours, minutes = text.split(":")
        return dtime(int(hours), int(minutes))
    except ValueError:
        raise ApiError.invalid(where, f"{where} must be a time of day as HH:MM") from None


def _quiet_hours(value: Any) -> QuietHours | None:
    if value is None:
        return None
    spec = _object(value, "quiet_hours")
    _only(spec, ("start", "end", "timezone"), "quiet_hours.")
    zone = _text(spec.get("timezone"), "quiet_hours.timezone")
    assert zone is not None
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ApiError.invalid("quiet_hours.timezone",
                               f"unknown time zone {zone[:60]!r} (an IANA name such as "
                               "America/New_York)") from None
    start = _clock(spec.get("start"), "quiet_hours.start")
    end = _clock(spec.get("end"), "quiet_hours.end")
    if start == end:
        raise ApiError.invalid("quiet_hours.end", "quiet_hours.end must differ from start")
    return QuietHours(start, end, zone)


def _retry(value: Any) -> dict[str, RetryRule]:
    rules = {k: RetryRule(c, d) for k, (c, d) in DEFAULT_RETRY.items()}
    if value is None:
        return rules
    spec = _object(value, "retry")
    _only(spec, RETRYABLE, "retry.")
    for outcome, rule in spec.items():
        where = f"retry.{outcome}"
        body = _object(rule, where)
        _only(body, ("count", "delay"), f"{where}.")
        rules[outcome] = RetryRule(
            _int(body.get("count"), f"{where}.count", 0, 20, 1),
            _seconds(body.get("delay"), f"{where}.delay"))
    return rules


# --- the requests ---------------------------------------------------------------------------

_CALL_FIELDS = ("flow", "to", "from", "vars", "status_url")
_CAMPAIGN_FIELDS = ("flow", "from", "contacts", "max_concurrent", "calls_per_second", "retry",
                    "quiet_hours", "status_url", "name")


def parse_call(body: Any, known: Callable[[str], bool], check_vars: VarsCheck) -> CallRequest:
    """``POST /v1/calls``'s body, checked."""
    spec = _object(body, None)
    _only(spec, _CALL_FIELDS)
    flow = _flow(spec.get("flow"), known)
    to = number(spec.get("to"), "to")
    assert to is not None
    from_ = number(spec.get("from"), "from", required=False)
    url = status_url(spec.get("status_url"))
    variables = _checked_vars(check_vars, flow, _vars(spec.get("vars"), "vars"), to, from_,
                              "")
    return CallRequest(flow=flow, to=to, from_=from_, vars=variables, status_url=url)


def _checked_vars(check: VarsCheck, flow: str, values: Mapping[str, Any], to: str,
                  from_: str | None, prefix: str) -> dict[str, Any]:
    try:
        return check(flow, values, to, from_)
    except ApiError as exc:
        # The checker names the field of one call; a contact's are within the contact
        # (the caller id is the campaign's).
        if prefix and exc.field is not None and exc.field.split(".")[0] in ("vars", "to"):
            exc.field = f"{prefix}{exc.field}"
        raise


def parse_campaign(body: Any, known: Callable[[str], bool], check_vars: VarsCheck
                   ) -> CampaignRequest:
    """``POST /v1/campaigns``'s JSON body, checked (every contact too)."""
    spec = _object(body, None)
    _only(spec, _CAMPAIGN_FIELDS)
    flow = _flow(spec.get("flow"), known)
    raw = spec.get("contacts")
    if not isinstance(raw, list) or not raw:
        raise ApiError.invalid("contacts", "contacts must be a non-empty list of "
                                           '{"to": NUMBER, "vars": {...}}')
    if len(raw) > MAX_CONTACTS:
        raise ApiError.invalid("contacts", f"at most {MAX_CONTACTS} contacts per campaign")
    from_ = number(spec.get("from"), "from", required=False)
    contacts = []
    for index, item in enumerate(raw):
        where = f"contacts[{index}]"
        contact = _object(item, where)
        _only(contact, ("to", "vars"), f"{where}.")
        to = number(contact.get("to"), f"{where}.to")
        assert to is not None
        variables = _checked_vars(check_vars, flow, _vars(contact.get("vars"), f"{where}.vars"),
                                  to, from_, f"{where}.")
        contacts.append(Contact(to=to, vars=variables))
    return _campaign(spec, flow, contacts)


def _campaign(spec: Mapping[str, Any], flow: str, contacts: list[Contact]) -> CampaignRequest:
    name = _text(spec.get("name"), "name", required=False)
    return CampaignRequest(
        flow=flow, from_=number(spec.get("from"), "from", required=False), contacts=contacts,
        max_concurrent=_int(spec.get("max_concurrent"), "max_concurrent", 1, 10_000, 1),
        calls_per_second=_float(spec.get("calls_per_second"), "calls_per_second", 0.0,
                                1000.0, 1.0),
        retry=_retry(spec.get("retry")), quiet_hours=_quiet_hours(spec.get("quiet_hours")),
        status_url=status_url(spec.get("status_url")), name=name)


def parse_campaign_csv(text: str, query: Mapping[str, str], known: Callable[[str], bool],
                       check_vars: VarsCheck) -> CampaignRequest:
    """A ``text/csv`` campaign: one contact per row — a ``to`` column, every other column a
    var (text) — and the settings in the query string, dotted for the nested ones
    (``?flow=reminder&from=+1555…&max_concurrent=5&retry.busy.count=2&quiet_hours.start=21:00``)."""
    spec: dict[str, Any] = {}
    for key, value in query.items():
        head, _, rest = key.partition(".")
        if head not in _CAMPAIGN_FIELDS or head == "contacts":
            raise ApiError(422, "unknown_field", f"unknown query parameter {key!r}", key)
        node: Any = spec
        path = [head, *rest.split(".")] if rest else [head]
        for part in path[:-1]:
            node = node.setdefault(part, {}) if isinstance(node, dict) else None
        if not isinstance(node, dict) or isinstance(node.get(path[-1]), dict) \
                or (path[-1] in node and not rest):
            # ``retry=…`` and ``retry.busy.count=…`` together: one cannot be both.
            raise ApiError(422, "invalid", f"query parameter {key!r} conflicts with another "
                                           "one for the same setting", key)
        node[path[-1]] = value
    flow = _flow(spec.get("flow"), known)
    reader = csv.reader(io.StringIO(text))
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise ApiError(400, "bad_csv", f"the CSV body cannot be read: {exc}") from None
    if not rows or "to" not in [c.strip() for c in rows[0]]:
        raise ApiError.invalid("contacts", "the CSV needs a header row with a 'to' column")
    header = [c.strip() for c in rows[0]]
    body = [r for r in rows[1:] if any(cell.strip() for cell in r)]
    if not body:
        raise ApiError.invalid("contacts", "the CSV has no contact rows")
    if len(body) > MAX_CONTACTS:
        raise ApiError.invalid("contacts", f"at most {MAX_CONTACTS} contacts per campaign")
    from_ = number(spec.get("from"), "from", required=False)
    contacts = []
    for index, row in enumerate(body):
        where = f"contacts[{index}]"
        if len(row) != len(header):
            raise ApiError.invalid(where, f"CSV row {index + 2} has {len(row)} cells; the "
                                          f"header has {len(header)}")
        values = dict(zip(header, (cell.strip() for cell in row), strict=True))
        to = number(values.pop("to"), f"{where}.to")
        assert to is not None
        variables = _checked_vars(check_vars, flow, values, to, from_, f"{where}.")
        contacts.append(Contact(to=to, vars=variables))
    return _campaign(spec, flow, contacts)
