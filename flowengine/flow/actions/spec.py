"""What one action is, as the flow layer sees it: :class:`ActionSpec`, and what its hooks get.

A spec is data (h11-style tables): its outcomes, result fields, the schema fragment of its
parameters, its doc text, which outcomes only some parameters allow, and an optional
``check`` hook for what the schema cannot say. The compiler, the graph, the schema generator
and the docs generator read specs generically; none of them names an action. The runner —
the part that talks to a call — lives in ``flowengine.actions`` and is named by ``runner``
(``module:function``), imported only by the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

#: Outcomes every action that talks to the call can end with, besides its own.
CALL_OUTCOMES = ("error", "hangup")
#: The outcome of a step that ran longer than its ``timeout``.
TIMEOUT_OUTCOME = "timeout"

#: How the compiler reads one top-level parameter of an action:
#: ``text`` a template rendered to text; ``value`` a template that keeps the type of a lone
#: ``{{ expression }}`` (as in ``set``), recursively through lists and mappings; ``texts`` a
#: list of text templates; ``text_map`` a mapping whose values are text templates;
#: ``media`` a list of play items (``say``/``audio``/``silence``/``ringtone``);
#: ``devices`` a list whose items are text templates or lists of them. Parameters not
#: listed are literals (numbers, true/false, fixed choices).
FieldKind = Literal["text", "value", "texts", "text_map", "media", "devices"]

#: A position inside the action's value, as YAML keys and list indexes (``("digits",)``);
#: ``()`` is the action's own key.
RelPath = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding of a spec's ``check`` hook, placed inside the action's value."""

    #: Where, relative to the action's value (``()``: the action's key).
    path: RelPath
    message: str
    hint: str | None = None
    #: Point at the key rather than its value.
    key: bool = False
    #: A warning (the flow still loads) rather than an error.
    warning: bool = False


@dataclass(frozen=True, slots=True)
class CheckContext:
    """What a ``check`` hook may know about the rest of the flow."""

    #: step id → its action name, in file order.
    actions: Mapping[str, str]
    #: The actions the flow uses (a set: a hook stays O(1) per step on a big flow).
    used: AbstractSet[str] = frozenset()


#: ``check(step_id, value, ctx)``: the action's value as written (schema-valid), → findings.
CheckHook = Callable[[str, Any, CheckContext], "list[Problem]"]


@dataclass(frozen=True, slots=True)
class Conditional:
    """An outcome that only some parameters make possible."""

    #: True when the step's (compiled) parameters allow the outcome.
    allowed: Callable[[Mapping[str, Any]], bool]
    #: Why it is not possible otherwise (a ``check`` hint for an ``on:`` edge that names it).
    note: str


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """Everything the flow layer knows about one action."""

    name: str
    #: Outcome names the action can end with (the RELAY terminal states themselves where
    #: there are some).
    outcomes: tuple[str, ...]
    #: Keys of the result stored under ``steps.<id>``.
    result_fields: tuple[str, ...]
    #: ``module:function`` that runs it; imported only by the engine.
    runner: str
    #: One line for docs/actions.md's table and ``flowengine.flow.actions`` readers.
    summary: str
    #: The JSON Schema (draft-07) of the action's value: ``definitions["action.<name>"]`` of
    #: schemas/flow.schema.json (tools/gen_schema.py writes the file from the specs).
    schema: Mapping[str, Any]
    #: False for actions that need no live call (they still run after a hangup).
    needs_call: bool = True
    #: True when nothing runs after the step by default (``hangup``, ``return``).
    ends_flow: bool = False
    #: Outcomes after which the call is no longer this flow's (a REFER the far end took,
    #: a transfer to another flow): the flow ends after them unless ``on:`` says otherwise,
    #: and the call's end during the step does not turn them into ``hangup``.
    hands_off: tuple[str, ...] = ()
    #: What the step sends: a RELAY method (``calling.play``), ``HTTP`` for ``request``,
    #: None for steps that send nothing (their ``error`` comes only from a template).
    method: str | None = None
    #: True when the step waits for something (the call, a server, the clock): its
    #: ``timeout:`` applies and it can then end with ``timeout``. None: as ``needs_call``.
    waits: bool | None = None
    #: True when the action applies ``timeout:`` itself (it stops its RELAY action and
    #: keeps the result); otherwise the engine cancels the step when the time is up.
    own_timeout: bool = False
    #: When the action's value may be written as one scalar or list (``sleep: 2``,
    #: ``play: [...]``), the parameter it stands for (``{"seconds": 2}``).
    shorthand: str | None = None
    #: How the compiler reads the parameters (see :data:`FieldKind`).
    fields: Mapping[str, FieldKind] = field(default_factory=_empty)
    #: Parameters the compiled mapping always has: these values when the flow leaves them
    #: out (a hangup's ``reason``, a play's ``volume``).
    defaults: Mapping[str, Any] = field(default_factory=_empty)
    #: True when the step can end with ``error`` for a reason other than a template.
    #: None: when it sends something (``method``).
    fails: bool | None = None
    #: Outcome → what it means for this action (the schema's ``on:`` key descriptions).
    outcome_docs: Mapping[str, str] = field(default_factory=_empty)
    #: Outcomes only some parameters allow.
    conditional: Mapping[str, Conditional] = field(default_factory=_empty)
    #: What the schema cannot say about the parameters (see :data:`CheckHook`).
    check: CheckHook | None = None
    #: How docs/actions.md introduces the parameters when the schema alone would mislead:
    #: every key optional to the schema, but ``check`` needs some (``connect: {}``).
    params_intro: str | None = None
    #: Schema definitions the fragment refers to (``#/definitions/<key>``) that belong to
    #: this action's family (``media`` for play); merged into the schema's definitions.
    definitions: Mapping[str, Any] = field(default_factory=_empty)

    def __post_init__(self) -> None:
        if self.waits is None:
            object.__setattr__(self, "waits", self.needs_call)
        for name in (*self.conditional, *self.outcome_docs):
            if name not in self.outcomes and name not in (*CALL_OUTCOMES, TIMEOUT_OUTCOME):
                raise ValueError(f"{self.name}: {name!r} is not one of its outcomes")

    @property
    def can_fail(self) -> bool:
        """True when the step can end with ``error`` for a reason other than a template."""
        return self.fails if self.fails is not None else self.method is not None

    def allows(self, outcome: str, params: Mapping[str, Any]) -> bool:
        """False when ``params`` rule ``outcome`` out (see :attr:`conditional`)."""
        rule = self.conditional.get(outcome)
        return rule is None or rule.allowed(params)

    def params_note(self, outcome: str) -> str | None:
        """Why ``outcome`` needs other parameters, or None when it does not depend on them."""
        rule = self.conditional.get(outcome)
        return None if rule is None else rule.note


def fields(**kinds: FieldKind) -> Mapping[str, FieldKind]:
    """A read-only ``fields`` table (``fields(url="text")``)."""
    return MappingProxyType(kinds)


def frozen(schema: dict[str, Any]) -> Mapping[str, Any]:
    """A schema fragment as a read-only mapping (top level; the generator copies it)."""
    return MappingProxyType(schema)


def devices_schema(title: str, description: str, examples: list[Any]) -> dict[str, Any]:
    """The schema of a list of devices to ring (``connect.devices``, ``outbound.devices``):
    entries tried one after another, an entry that is a list rung all at once (§5.6)."""
    return {
        "title": title,
        "description": description,
        "type": "array",
        "minItems": 1,
        "maxItems": 50,
        "items": {
            "type": ["string", "array"],
            "maxLength": 256,
            "minItems": 1,
            "maxItems": 50,
            "items": {"type": "string", "maxLength": 256},
        },
        "examples": examples,
    }
