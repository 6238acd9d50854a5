"""Findings about a flow file, and the one exception a user sees for a flow that cannot load.

Every finding points at a place in a file (``file:line:col``, 1-based) so that editors and
terminals can jump to it, the way a compiler reports errors::

    flows/voicemail.yaml:23:7: error: unknown key 'end_silence_timout' in record; did you mean 'end_silence_timeout'?
"""  # noqa: E501

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]

ERROR: Severity = "error"
WARNING: Severity = "warning"

#: Longest quoted piece a message keeps; the rest becomes "…".
MAX_QUOTED = 60
#: Longest run of digits a message keeps (a 100,000-digit number).
MAX_DIGITS = 40
# A quoted word of more than MAX_QUOTED characters; a quoted text with spaces only when it
# is very long (shorter ones could be the text between two quoted names of a message).
_LONG_WORD = re.compile(rf"'([^'\s]{{{MAX_QUOTED}}})[^'\s]+'")
_LONG_QUOTE = re.compile(rf"'([^'\n]{{{MAX_QUOTED}}})[^'\n]{{160,}}'")
_LONG_DIGITS = re.compile(rf"(\d{{{MAX_DIGITS}}})\d+")


def _cut(text: str) -> str:
    """Shorten what a message quotes from the file: a 100,000-digit number or a very long
    key is shown by its first characters, not echoed whole."""
    if len(text) <= MAX_QUOTED:
        return text
    text = _LONG_DIGITS.sub(lambda m: f"{m[1]}…", text)
    text = _LONG_WORD.sub(lambda m: f"'{m[1]}…'", text)
    return _LONG_QUOTE.sub(lambda m: f"'{m[1]}…'", text)


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One finding about a flow file.

    ``line`` and ``col`` are 1-based; both are ``None`` when the finding concerns the file as
    a whole (it cannot be read, for instance). ``hint`` is a short suggestion such as
    ``did you mean 'play'?``; ``str()`` appends it to the message after a semicolon.
    """

    file: str
    line: int | None
    col: int | None
    severity: Severity
    message: str
    hint: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", _cut(self.message))
        if self.hint is not None:
            object.__setattr__(self, "hint", _cut(self.hint))

    @property
    def location(self) -> str:
        """``file:line:col``, or just ``file`` when there is no position."""
        if self.line is None:
            return self.file
        return f"{self.file}:{self.line}:{self.col or 1}"

    @property
    def is_error(self) -> bool:
        """True for an error (a warning does not stop a flow from loading)."""
        return self.severity == ERROR

    def as_dict(self) -> dict[str, object]:
        """The finding as plain JSON-ready values (``flowengine check --format json``)."""
        return {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "severity": self.severity,
            "message": self.message,
            "hint": self.hint,
        }

    def __str__(self) -> str:
        text = f"{self.location}: {self.severity}: {self.message}"
        return f"{text}; {self.hint}" if self.hint else text


class FlowError(Exception):
    """Raised when a flow file cannot be loaded; carries every finding (errors and warnings).

    ``str()`` lists the findings one per line, compiler-style. Any other exception escaping
    ``load_flow`` is a bug in flowengine, not in the flow.
    """

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        """Only the errors."""
        return tuple(d for d in self.diagnostics if d.is_error)


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """A ``did you mean 'x'?`` hint for a misspelled name, or None when nothing is close."""
    options = list(candidates)
    same_letters = [c for c in options if c.casefold() == word.casefold()]
    matches = same_letters or difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"did you mean '{matches[0]}'?" if matches else None


def sort_key(d: Diagnostic) -> tuple[str, int, int, int]:
    """Order findings by file and position, errors before warnings at the same place."""
    return (d.file, d.line or 0, d.col or 0, 0 if d.is_error else 1)
