"""Which flow takes a call: the routing rule of ``flowengine serve``.

A flow takes the calls of its ``context`` (one or several) whose numbers fit its ``match``:
each of ``to`` / ``from`` is an exact number or a glob (``*``, ``?``, ``[...]``, matched
case-sensitively over the whole number). Among the flows that take a call, **the most
specific wins**, compared in this order:

1. more keys given as an exact number;
2. then more keys given at all (a glob counts);
3. then more characters fixed by the globs (a ``[...]`` class fixes one character);
4. then the flow name, alphabetically (two flows that tie this far are logged as a
   warning when the tie appears — once, not again on every reload: one of them never
   gets those calls).

So ``to: "+15559870001"`` beats ``from: "+1555*"``, which beats a flow without ``match``
(the catch-all of its context). A call that no flow takes is declined by the daemon. A
flow with ``outbound:`` is for the calls the daemon places (the call API); it takes no
inbound calls, whatever its ``context``.

Everything here is immutable: a :class:`Registry` is built by a reload and swapped in as
one reference, so the code routing a call reads it without a lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from types import MappingProxyType

from flowengine.engine import FlowRuntime
from flowengine.flow import FlowVersion

__all__ = ["FlowEntry", "Registry", "TieWarnings", "is_glob", "number_matches", "specificity"]

_GLOB_CHARS = frozenset("*?[")


def is_glob(pattern: str) -> bool:
    """True when ``pattern`` has a glob character (``*``, ``?`` or ``[``)."""
    return not _GLOB_CHARS.isdisjoint(pattern)


def number_matches(pattern: str, number: str) -> bool:
    """Does ``number`` fit ``pattern`` (an exact number, or a glob over the whole number)?"""
    if is_glob(pattern):
        return fnmatchcase(number, pattern)
    return number == pattern


def _fixed_chars(pattern: str) -> int:
    """How many characters a glob fixes: literals, plus one per ``[...]`` class."""
    fixed, i = 0, 0
    while i < len(pattern):
        char = pattern[i]
        if char == "[":
            end = pattern.find("]", i + 2)  # "[]...]" puts "]" inside the class
            if end != -1:
                fixed += 1
                i = end + 1
                continue
        if char not in "*?":
            fixed += 1
        i += 1
    return fixed


def specificity(match: Mapping[str, str]) -> tuple[int, int, int]:
    """The rank of a flow's ``match`` (higher is more specific); see the module docstring."""
    exact = sum(1 for value in match.values() if not is_glob(value))
    fixed = sum(_fixed_chars(value) for value in match.values() if is_glob(value))
    return exact, len(match), fixed


@dataclass(frozen=True, slots=True, eq=False)
class FlowEntry:
    """One flow version as the daemon serves it: the version, its runtime, when it loaded.

    A call holds on to the entry it was routed to until it ends, so a reload never changes
    the flow of a call in progress.
    """

    flow: FlowVersion
    #: The flow's machine and action runners, built once for this version.
    runtime: FlowRuntime
    #: When this version started taking calls (seconds since the epoch).
    loaded_at: float
    rank: tuple[int, int, int] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rank", specificity(self.flow.match))

    @property
    def name(self) -> str:
        """The flow's name."""
        return self.flow.name

    def takes(self, from_number: str, to_number: str) -> bool:
        """Do the call's numbers fit this flow's ``match``?"""
        match = self.flow.match
        if "to" in match and not number_matches(match["to"], to_number):
            return False
        return not ("from" in match and not number_matches(match["from"], from_number))

    def describe_match(self) -> str:
        """``to=+1555*, from=+1666*``, or ``any number`` without a match."""
        if not self.flow.match:
            return "any number"
        return ", ".join(f"{key}={value}" for key, value in sorted(self.flow.match.items(),
                                                                    reverse=True))


def _order(entry: FlowEntry) -> tuple[int, int, int, str]:
    exact, keys, fixed = entry.rank
    return -exact, -keys, -fixed, entry.name


class Registry:
    """An immutable snapshot of the flows being served, and the routing table built from it.

    Attributes:
        flows: flow name → entry.
        contexts: every context some flow takes (what the daemon subscribes to).
    """

    __slots__ = ("_routes", "contexts", "flows")

    def __init__(self, entries: Iterable[FlowEntry] = ()) -> None:
        by_name = {entry.name: entry for entry in entries}
        routes: dict[str, list[FlowEntry]] = {}
        for entry in by_name.values():
            if entry.flow.outbound is not None:
                # A flow for calls we place (``outbound:``): started by the call API or
                # `dial`, never offered an inbound call — not even on its context.
                continue
            for context in entry.flow.contexts:
                routes.setdefault(context, []).append(entry)
        self.flows: Mapping[str, FlowEntry] = MappingProxyType(dict(sorted(by_name.items())))
        self._routes: Mapping[str, tuple[FlowEntry, ...]] = MappingProxyType(
            {context: tuple(sorted(found, key=_order)) for context, found in routes.items()})
        self.contexts: frozenset[str] = frozenset(routes)

    def __repr__(self) -> str:
        shown = ", ".join(f"{e.name}@{e.flow.short_version}" for e in self.flows.values())
        return f"<Registry {shown or 'empty'}>"

    def candidates(self, context: str) -> tuple[FlowEntry, ...]:
        """The flows on ``context``, most specific first."""
        return self._routes.get(context, ())

    def route(self, context: str, from_number: str, to_number: str) -> FlowEntry | None:
        """The flow that takes a call, or ``None`` when no flow does."""
        for entry in self._routes.get(context, ()):
            if entry.takes(from_number, to_number):
                return entry
        return None

    def ties(self) -> list[tuple[str, FlowEntry, FlowEntry]]:
        """(context, winner, loser) for flows with the same ``match`` on one context: the
        loser never gets a call there."""
        found = []
        for context, entries in self._routes.items():
            first_with: dict[frozenset[tuple[str, str]], FlowEntry] = {}
            for entry in entries:  # most specific first, then by name: the winner comes first
                key = frozenset(entry.flow.match.items())
                if key in first_with:
                    found.append((context, first_with[key], entry))
                else:
                    first_with[key] = entry
        return found


#: What identifies one tie across reloads: context, winner, loser, the ``match`` they share.
TieKey = tuple[str, str, str, frozenset[tuple[str, str]]]


class TieWarnings:
    """Remembers the ties already reported, so that each is warned about once.

    A reload rebuilds the registry, and with it the list of ties; without this, every save
    of any flow (and every SIGHUP) repeated the same warnings. A tie that goes away and comes
    back is new again.
    """

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: frozenset[TieKey] = frozenset()

    def new(self, registry: Registry) -> list[tuple[str, FlowEntry, FlowEntry]]:
        """The ties of ``registry`` not reported for the registry before it."""
        ties = registry.ties()
        keys = [(context, won.name, lost.name, frozenset(won.flow.match.items()))
                for context, won, lost in ties]
        fresh = [tie for tie, key in zip(ties, keys, strict=True) if key not in self._seen]
        self._seen = frozenset(keys)
        return fresh
