"""The one place that decides what never leaves the process: credentials in what flowengine
prints, logs or traces.

It masks

- the password of a ``scheme://user:password@host`` URL;
- the values of query or form parameters, headers, JSON and ``repr`` keys whose names look
  secret (:func:`is_secret_name`: ``api_key``, ``token``, ``password``, ``secret``,
  ``signature``, ``authorization``, ``cookie``, ``x-api-key``, anything with a ``key``
  part…);
- every occurrence of a value registered with :func:`register` — the RELAY token, JWT and
  project id, ``FLOWENGINE_API_TOKEN``, the values of a flow's secret-looking ``vars`` —
  wherever it appears (a server that echoes the token, an exception's text).

:func:`redact_text` masks a line of text, :func:`redact` a structure (trace parameters,
results, variables), :func:`redact_url` a URL. :func:`protect` makes a logging handler
mask every line it writes, whichever logger it came from (ours, httpx, httpcore,
websockets). This module imports nothing of flowengine's, so every layer (``flow``,
``relay``, ``engine``, ``daemon``) can use it without a cycle.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["REDACTED", "SECRET_NAME", "RedactingFormatter", "is_secret_name", "protect",
           "redact", "redact_text", "redact_url", "redact_vars", "register",
           "register_environment", "registered"]

REDACTED = "[redacted]"

#: The parts of a name that make its value secret. ``key``, ``auth`` and ``sig`` count only
#: as a word of their own (``X-Auth-Key``, ``sig=``), not inside ``keys`` or ``author``.
_WORDS = (r"authorization|token|secret|passw(?:or)?d|pwd|api[-_]?key|access[-_]?key|"
          r"private[-_]?key|cookie|signature|credential|jwt|"
          r"(?<![a-z])key(?![a-z])|(?<![a-z])auth(?![a-z])|(?<![a-z])sig(?![a-z])")
SECRET_NAME = re.compile(_WORDS, re.IGNORECASE)

#: Substrings one of which every secret name holds (lowercase): a line with none of them
#: needs no name-based masking, which keeps an ordinary log line at a microsecond or two.
_HINTS = ("auth", "token", "secret", "passw", "pwd", "key", "cookie", "sig", "credential",
          "jwt")
#: ``user:password@`` after any scheme (http, https, ws, wss, …). It starts at the literal
#: ``://`` rather than at the scheme: a regex that tried every word boundary for a scheme
#: cost 6 us on every log line with a URL and a ``flow@version`` in it; this one 0.7 us.
_USERINFO = re.compile(r"(://)([^\s/@:?#'\"]*):([^\s/@'\"]*)@")
# The patterns below find every ``name=value``, ``"name": "value"`` and ``Name: value``;
# the replacement masks the value only when the name is secret (is_secret_name).
#: ``name=value`` in a query string, a form body or free text.
_PARAM = re.compile(r"(?<![\w.-])([\w.-]+)(=)([^\s&#;'\"<>,]+)")
#: ``"name": "value"``, ``'name': 'value'`` (JSON, a dict's repr) and ``(b'name', b'value')``
#: (httpcore's header lists).
_QUOTED = re.compile(r"""(["'])([\w.-]+)\1(\s*[:,]\s*b?)(["'])((?:\\.|(?!\4).)*)\4""")
#: The same inside a JSON string (a frame logged in a JSON log line): ``\"token\":\"…\"``.
_ESCAPED = re.compile(r'(\\")([\w.-]+)\\"(\s*:\s*)\\"((?:(?!\\").)*)\\"')
#: ``Name: value`` (a header as text): the value, with its scheme (``Bearer …``).
_HEADER = re.compile(r"(?<![\w.-])([\w.-]+)(:[ \t]*)((?:(?:bearer|basic|token|digest)[ \t]+)?"
                     r"[^\s,;'\"]+)", re.IGNORECASE)


def _may_hold_a_secret_name(lower: str) -> bool:
    # Spelled out: a generator over _HINTS costs ten times as much, on every log line.
    return ("auth" in lower or "token" in lower or "secret" in lower or "passw" in lower
            or "pwd" in lower or "key" in lower or "cookie" in lower or "sig" in lower
            or "credential" in lower or "jwt" in lower)


def _param(match: re.Match[str]) -> str:
    return f"{match[1]}{match[2]}{REDACTED}" if is_secret_name(match[1]) else match[0]


def _quoted(match: re.Match[str]) -> str:
    if not is_secret_name(match[2]):
        return match[0]
    return f"{match[1]}{match[2]}{match[1]}{match[3]}{match[4]}{REDACTED}{match[4]}"


def _escaped(match: re.Match[str]) -> str:
    if not is_secret_name(match[2]):
        return match[0]
    return f'{match[1]}{match[2]}\\"{match[3]}\\"{REDACTED}\\"'


#: Shorter values are not registered: masking every "p" would make the log unreadable, and a
#: real credential is longer.
MIN_REGISTERED = 6
_registered: set[str] = set()
# Longest first, so a value that contains another is masked whole.
_ordered: tuple[str, ...] = ()
_lock = threading.Lock()


def is_secret_name(name: str) -> bool:
    """Whether a header, parameter, key or variable called ``name`` holds a secret."""
    return SECRET_NAME.search(name) is not None


def register(*values: object) -> None:
    """Mask every later occurrence of these values in what :func:`redact_text` sees.

    Values that are not text, or shorter than :data:`MIN_REGISTERED` characters, are ignored.
    Registration lasts for the process (a credential stays secret after its client closed).
    """
    global _ordered
    new = {v.strip() for v in values if isinstance(v, str) and len(v.strip()) >= MIN_REGISTERED}
    with _lock:
        if new <= _registered:
            return
        _registered.update(new)
        _ordered = tuple(sorted(_registered, key=len, reverse=True))


#: The environment variables whose values are credentials (the RELAY project, token, JWT
#: and space, flowengine's own API token and the status webhooks' signing secret).
CREDENTIAL_VARIABLES = ("SIGNALWIRE_PROJECT_ID", "SIGNALWIRE_API_TOKEN", "SIGNALWIRE_JWT_TOKEN",
                        "SIGNALWIRE_SPACE", "FLOWENGINE_API_TOKEN", "FLOWENGINE_WEBHOOK_SECRET")


def register_environment(environ: Mapping[str, str]) -> None:
    """Register the values of :data:`CREDENTIAL_VARIABLES` set in ``environ``."""
    register(*(environ.get(name, "") for name in CREDENTIAL_VARIABLES))


def registered() -> frozenset[str]:
    """The values registered so far (for tests and diagnostics; never print them)."""
    return frozenset(_registered)


def _userinfo(match: re.Match[str]) -> str:
    return f"{match[1]}{match[2]}:{REDACTED}@"


def redact_text(text: str) -> str:
    """``text`` with every credential this module knows of masked (see the module's doc)."""
    for value in _ordered:
        if value in text:
            text = text.replace(value, REDACTED)
    if "@" in text and "://" in text:
        text = _USERINFO.sub(_userinfo, text)
    if not _may_hold_a_secret_name(text.lower()):
        return text
    if "=" in text:
        text = _PARAM.sub(_param, text)
    if "'" in text or '"' in text:
        text = _QUOTED.sub(_quoted, text)
        if "\\" in text:
            text = _ESCAPED.sub(_escaped, text)
    if ":" in text:
        text = _HEADER.sub(lambda m: f"{m[1]}{m[2]}{REDACTED}" if is_secret_name(m[1])
                           else m[0], text)
    return text


def redact_url(url: str) -> str:
    """``url`` without credentials: the password of ``user:password@``, the values of
    secret-looking query parameters (``?api_key=…``, ``token=…``) and any registered
    value are replaced."""
    return redact_text(url)


def redact(value: Any) -> Any:
    """A copy of ``value`` with every secret-looking key's value replaced, and every text in
    it passed through :func:`redact_text`."""
    if isinstance(value, Mapping):
        return {k: REDACTED if isinstance(k, str) and is_secret_name(k) else redact(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_vars(variables: Mapping[str, Any]) -> dict[str, Any]:
    """A flow's variables as they may be shown: secret-looking names' values masked, and
    those values registered so that they are masked wherever else they appear."""
    register(*(v for k, v in variables.items() if is_secret_name(k)))
    masked: dict[str, Any] = redact(variables)  # a mapping comes back as a dict
    return masked


class RedactingFormatter(logging.Formatter):
    """Wraps another formatter and masks the whole line it makes, the traceback included."""

    def __init__(self, inner: logging.Formatter | None = None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(self.inner.format(record))


def protect(handlers: Iterable[logging.Handler]) -> None:
    """Make each handler mask every line it writes, whichever logger the record came from.

    Masking at the handler (not at each logger) covers the libraries' loggers too —
    httpx's ``HTTP Request: GET https://user:pw@…`` line, httpcore's and websockets'
    debug lines — and records that propagate from loggers created later.
    """
    for handler in handlers:
        if not isinstance(handler.formatter, RedactingFormatter):
            handler.setFormatter(RedactingFormatter(handler.formatter))
