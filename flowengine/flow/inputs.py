"""A flow's per-call inputs: what a call placed for it must be given (``inputs:``).

A flow that is started for a call we place (``flowengine dial``, the daemon's call API,
campaigns) says what it needs per call::

    inputs:
      patient: {type: string, default: "there"}
      appointment_at: {type: string, required: true, description: "when, as spoken"}
      callback: phone            # shorthand: just the type

Each input is ``vars.<name>`` in the flow's templates. :func:`validate_inputs` checks the
values one call is given before anything is dialled: unknown names, missing required
inputs, values of the wrong type (strings from a command line or a CSV file are converted
as the type says), phone numbers that are not E.164 — every problem at once, each naming
its field, in an :class:`InputError`.

Standard library only: the daemon's API and the command line both use it, and the flow
layer imports none of the engine.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model import FlowVersion

__all__ = ["INPUT_TYPES", "InputError", "InputSpec", "coerce_input", "is_phone_number",
           "normalize_phone", "parse_number", "validate_inputs"]

#: The types an input can have.
INPUT_TYPES = ("string", "number", "integer", "boolean", "phone")
#: Longest string value an input takes (as a template's text).
MAX_INPUT_LENGTH = 4096
#: E.164: a plus, a country code that does not start with 0, at most 15 digits in all.
_E164 = re.compile(r"^\+[1-9]\d{5,14}$")
#: What people write inside phone numbers and E.164 leaves out.
_PHONE_PUNCTUATION = re.compile(r"[\s().\-]")
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


@dataclass(frozen=True, slots=True)
class InputSpec:
    """One declared input."""

    name: str
    #: One of :data:`INPUT_TYPES`.
    type: str
    #: True: a call must be given it (it has no default then).
    required: bool
    #: The value when a call is not given one (already of the input's type); None: none.
    default: Any = None
    description: str | None = None
    line: int = 0
    col: int = 0


class InputError(ValueError):
    """The inputs given for one call do not fit the flow's ``inputs:``.

    ``problems`` lists ``(field, message)`` pairs, one per problem, ``field`` being the
    input's name (or the unknown name given): the API turns them into a 4xx JSON error
    naming the field, the command line into one line each.
    """

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"{name}: {message}" for name, message in self.problems))


def is_phone_number(value: str) -> bool:
    """True for an E.164 number (``+15550001111``)."""
    return bool(_E164.match(value))


def normalize_phone(value: str) -> str:
    """``value`` without the spaces, dots, dashes and parentheses people write in numbers
    (``+1 (555) 000-1111`` → ``+15550001111``); check it with :func:`is_phone_number`."""
    return _PHONE_PUNCTUATION.sub("", value)


def parse_number(field: str, value: Any) -> str:
    """A ``to`` or ``from`` given for one call: an E.164 number (its punctuation dropped,
    ``+1 (555) 000-1111`` → ``+15550001111``) or a ``sip:`` address.

    Raises:
        InputError: naming ``field``, for anything else.
    """
    text = value.strip() if isinstance(value, str) else ""
    if text.startswith("sip:") and len(text) > 4 and not any(c.isspace() for c in text):
        return text
    number = normalize_phone(text)
    if not is_phone_number(number):
        shown = _shown(value) if isinstance(value, str) else _kind_of(value)
        raise InputError([(field, f"{shown} is not a phone number in E.164 (+, the country "
                                  "code and the number, e.g. +15550001111) or a sip: address")])
    return number


def coerce_input(kind: str, value: Any) -> Any:
    """``value`` as an input of type ``kind``: a value of the type as it is, a string
    converted as a command line or CSV file writes it (``"42"`` for an integer, ``"yes"``
    for a boolean, ``"+1 555 000 1111"`` for a phone number).

    Raises:
        ValueError: with a message saying what the value should be.
    """
    if kind == "string":
        if not isinstance(value, str):
            raise ValueError(f"must be a string, not {_kind_of(value)}")
        if len(value) > MAX_INPUT_LENGTH:
            raise ValueError(f"is too long ({len(value)} characters; at most "
                             f"{MAX_INPUT_LENGTH})")
        return value
    if kind == "phone":
        if not isinstance(value, str):
            raise ValueError(f"must be a phone number in E.164 (+ and digits, e.g. "
                             f"+15550001111), not {_kind_of(value)}")
        number = normalize_phone(value.strip())
        if not is_phone_number(number):
            raise ValueError(f"{_shown(value)} is not a phone number in E.164 (+, the country "
                             "code and the number, e.g. +15550001111)")
        return number
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError(f"must be true or false, not {_shown(value)}")
    if kind == "integer":
        if isinstance(value, bool):
            raise ValueError("must be an integer, not a boolean")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d{1,18}\s*", value):
            return int(value)
        raise ValueError(f"must be an integer, not {_shown(value)}")
    if kind == "number":
        if isinstance(value, bool):
            raise ValueError("must be a number, not a boolean")
        if isinstance(value, (int, float)) and math.isfinite(value):
            return value
        if isinstance(value, str):
            text = value.strip()
            if re.fullmatch(r"[+-]?\d{1,18}", text):
                return int(text)
            if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text) and len(text) < 64:
                parsed = float(text)
                if math.isfinite(parsed):
                    return parsed
        raise ValueError(f"must be a number, not {_shown(value)}")
    raise ValueError(f"unknown input type {kind!r}")


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return type(value).__name__


def _shown(value: Any) -> str:
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:40] + "…"
        return repr(text)
    return _kind_of(value)


def validate_inputs(version: FlowVersion, values: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs of one call of ``version``: ``values`` checked and converted, defaults
    applied, an input neither given nor defaulted None.

    Raises:
        InputError: every problem, ``(field, message)`` each: a name the flow does not
            declare, a required input missing, a value of the wrong type.
    """
    declared: Mapping[str, InputSpec] = version.inputs
    problems: list[tuple[str, str]] = []
    out: dict[str, Any] = {}
    for name in values:
        if name not in declared:
            if declared:
                close = _closest(str(name), list(declared))
                hint = (f"; did you mean '{close}'?" if close
                        else f"; its inputs are {', '.join(declared)}")
            else:
                hint = "; it declares no inputs"
            problems.append((str(name), f"flow {version.name} has no input '{name}'{hint}"))
    for name, spec in declared.items():
        if name in values and values[name] is not None:
            try:
                out[name] = coerce_input(spec.type, values[name])
            except ValueError as exc:
                problems.append((name, f"input '{name}' ({spec.type}) {exc}"))
        elif spec.required:
            problems.append((name, f"input '{name}' ({spec.type}) is required"))
        else:
            out[name] = spec.default
    if problems:
        raise InputError(problems)
    return out


def _closest(name: str, names: list[str]) -> str | None:
    import difflib

    found = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return found[0] if found else None
