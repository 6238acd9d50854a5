"""The compiled flow: an immutable ``FlowVersion`` of ``Step``\\ s, and where each outcome leads.

A ``FlowVersion`` is built once per file version (``load_flow``) and shared by every call
running it; nothing in it changes afterwards (frozen, slotted dataclasses; mappings are
read-only; lists are tuples). The engine keeps per-call state elsewhere.

The flow as a table: ``FlowVersion.edges[step_id][outcome]`` is the step that outcome leads
to (``None``: the flow ends), built with :func:`route`, which the engine, the checker and
the graph command share.

Step parameters (``Step.params``), one shape per action, after
:func:`~flowengine.flow.templates.render`:

``answer``
    ``{"max_duration": int}`` or ``{}``.
``play``
    ``{"media": [item, ...], "volume": float | None}``; each item is exactly one of
    ``{"say": str, "language"?: str, "gender"?: "male"|"female", "voice"?: str}``,
    ``{"audio": url}``, ``{"silence": seconds}``, ``{"ringtone": code, "duration"?: seconds}``.
``record``
    The RELAY audio parameters the flow sets (RELAY's defaults apply to the others):
    ``direction``, ``format``, ``stereo``, ``initial_timeout``, ``end_silence_timeout``,
    ``terminators``, ``beep``, ``input_sensitivity``.
``hangup``
    ``{"reason": str}`` (default ``"hangup"``).
``set``
    ``{name: value}``; a value that is one ``{{ expression }}`` keeps the expression's type.
``log``
    the rendered text (``str``).
``branch``
    ``{}``; the choices are ``Step.branches`` (use ``choose_branch``).
``goto``
    ``{"step": target, "max_visits"?: int}``; ``Step.next`` is the target.
Other actions
    the mapping as written, each parameter compiled as the spec's ``fields`` say
    (``flowengine.flow.actions.ACTIONS``); see docs/flow-language.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, Protocol

from .actions import ACTIONS, CALL_OUTCOMES, TIMEOUT_OUTCOME, ActionSpec
from .diagnostics import Diagnostic
from .inputs import InputSpec

if TYPE_CHECKING:
    from .schedules import Schedule
    from .templates import CompiledExpression

#: The outcome of a step whose action has no named outcomes (set, log, hangup) or of a
#: branch step where no choice matched: the flow follows ``next``.
NEXT = "next"
#: The outcome every step can end with: it failed (RELAY error, a template that cannot render).
ERROR = "error"
#: The outcome of a step during which the caller hung up.
HANGUP = "hangup"
#: Prefix of a branch step's outcomes: ``branch0`` is its first choice (the engine's
#: machine triggers use the same names, see ``flowengine.actions.logic``).
BRANCH_PREFIX = "branch"


def branch_outcome(index: int) -> str:
    """The outcome of a branch step that took its ``index``-th choice (0-based)."""
    return f"{BRANCH_PREFIX}{index}"


@dataclass(frozen=True, slots=True, eq=False)
class Branch:
    """One choice of a ``branch`` step."""

    #: 0-based position among the step's choices.
    index: int
    #: The compiled condition; None for the default choice (written without ``when``).
    when: CompiledExpression | None
    #: The condition as written (None for the default).
    when_text: str | None
    #: Where to go when it matches (None: the flow ends).
    goto: str | None
    line: int
    col: int


@dataclass(frozen=True, slots=True, eq=False)
class Step:
    """One step: an action with its compiled parameters and its edges."""

    id: str
    #: The action name: answer, play, record, branch, set, log, hangup.
    action: str
    #: The compiled parameter tree (read-only; see the module docstring for each shape).
    params: Any
    #: outcome → step id (None: the flow ends), as written under ``on:``.
    on: Mapping[str, str | None]
    #: Where the flow goes after this step by default: the explicit ``next``, else the step
    #: written after it, else None (the flow ends). None after a ``hangup`` without ``next``.
    next: str | None
    #: Seconds; the step ends with outcome ``timeout`` if it runs longer. None: no limit.
    timeout: float | None
    #: Position of the step's id in the file.
    line: int
    col: int
    #: The choices of a ``branch`` step, in order; empty for other actions.
    branches: tuple[Branch, ...] = ()
    description: str | None = None
    #: The keys of ``steps.<id>`` when they depend on the step rather than its action: a
    #: ``call`` step's are what its subflow's ``return`` steps give, a ``return`` step's its
    #: own keys. None: the action's ``result_fields``.
    results: tuple[str, ...] | None = None

    @property
    def spec(self) -> ActionSpec:
        """The action's registry entry (outcomes, result fields, whether it needs the call)."""
        return ACTIONS[self.action]

    @property
    def result_fields(self) -> tuple[str, ...]:
        """The keys of this step's result under ``steps.<id>``."""
        return self.results if self.results is not None else ACTIONS[self.action].result_fields

    def outcomes(self) -> tuple[str, ...]:
        """Every outcome this step can end with (including ``error``; ``timeout`` only with a
        timeout; ``branchN`` for each choice of a branch step)."""
        return possible_outcomes(self.action, has_timeout=self.timeout is not None,
                                 branches=len(self.branches), has_default=any(
                                     b.when is None for b in self.branches),
                                 params=self.params)


#: What dialling a call placed for a flow can come to (``outbound.on``), in this order.
DIAL_OUTCOMES = ("answered", "machine", "busy", "no_answer", "failed")
#: The dial outcomes without a call: the steps they lead to run call-less.
CALLLESS_OUTCOMES = ("busy", "no_answer", "failed")


@dataclass(frozen=True, slots=True, eq=False)
class Outbound:
    """A flow's ``outbound:``: how a call placed for it is dialled, where each outcome leads."""

    #: The caller id: a compiled template (render over vars, flow and call), a literal
    #: string, or None (the call must be given one).
    from_: Any
    #: What is rung: each entry a serial group, a compiled template (one device) or a tuple
    #: of them (rung at once). ``call.to`` is the number the call is placed to.
    devices: tuple[Any, ...]
    #: Seconds each device rings; None: RELAY's default.
    timeout: float | None
    #: Seconds the answered call may last; None: no limit of its own.
    max_duration: float | None
    #: The machine detector's RELAY params (``detect_message_end`` for ``wait_for_beep``),
    #: ``{}`` for RELAY's defaults; None: no detection (no outcome ``machine``).
    detect_machine: Mapping[str, Any] | None
    #: dial outcome → step, as written under ``on:``.
    on: Mapping[str, str | None]
    #: Every dial outcome that can happen → the step it starts at (None: no step runs):
    #: ``answered`` → ``start``; ``machine`` (only with detection) → ``on.machine``, else
    #: ``start``; busy, no_answer, failed → their ``on:`` step, else None.
    edges: Mapping[str, str | None]
    line: int = 0
    col: int = 0

    def outcomes(self) -> tuple[str, ...]:
        """The dial outcomes this flow's calls can come to."""
        return tuple(self.edges)


@dataclass(frozen=True, slots=True, eq=False, weakref_slot=True)
class FlowVersion:
    """One compiled version of one flow file. Immutable; shared by all calls running it.

    Compare versions with ``.version`` (identity otherwise); instances can be held in a
    ``weakref.WeakSet`` to track which versions still have calls.
    """

    name: str
    description: str | None
    #: The path the flow was loaded from, as given.
    file: str
    #: sha256 of the file's bytes, hex.
    version: str
    #: RELAY contexts whose inbound calls this flow takes.
    contexts: tuple[str, ...]
    #: Optional routing inside the contexts: ``to``/``from`` → exact number or glob.
    match: Mapping[str, str]
    #: The first step's id.
    start: str
    #: step id → Step, in file order.
    steps: Mapping[str, Step]
    on_hangup: str | None
    on_error: str | None
    max_steps: int
    #: Seconds, or None for no limit.
    max_duration: float | None
    #: name → compiled value (render with ``initial_vars``).
    vars: Mapping[str, Any]
    #: step id → outcome → next step id (None: the flow ends), via :func:`route` as for a
    #: call where neither on_hangup nor on_error has been taken yet.
    edges: Mapping[str, Mapping[str, str | None]]
    #: Warnings found when it was checked (it loaded, so there are no errors).
    warnings: tuple[Diagnostic, ...]
    #: ``flow`` in templates: ``name``, ``version`` (the short form), ``file``.
    template_flow: Mapping[str, str]
    #: A subflow's parameters: name → compiled default (``params.<name>`` in templates).
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: The flows its ``call`` steps run, by their resolved path (``Step.params["flow"]``).
    subflows: Mapping[str, FlowVersion] = field(default_factory=lambda: MappingProxyType({}))
    #: Every key its ``return`` steps give (a ``call`` step's result fields).
    returns: tuple[str, ...] = ()
    #: (path, sha256) of every subflow file it depends on, directly or not: a reload
    #: should recompile the flow when one of them changes.
    sources: tuple[tuple[str, str], ...] = ()
    #: ``schedules:``, compiled once: name → Schedule (``is_open('<name>')`` in templates).
    schedules: Mapping[str, Schedule] = field(default_factory=lambda: MappingProxyType({}))
    #: Its per-call inputs (``inputs:``), by name, in file order (``vars.<name>``).
    inputs: Mapping[str, InputSpec] = field(default_factory=lambda: MappingProxyType({}))
    #: How calls placed for it are dialled (``outbound:``); None: it has no such section.
    outbound: Outbound | None = None

    @property
    def short_version(self) -> str:
        """The first 12 hex digits of ``version``, for logs and ``flow.version``."""
        return self.version[:12]

    def __repr__(self) -> str:
        return (f"<FlowVersion {self.name}@{self.short_version} {self.file} "
                f"({len(self.steps)} steps)>")


def params_note(action: str, outcome: str) -> str | None:
    """Why ``outcome`` is not possible with a step's parameters (for ``check``), or None."""
    return ACTIONS[action].params_note(outcome)


def possible_outcomes(action: str, *, has_timeout: bool = False, branches: int = 0,
                      has_default: bool = False,
                      params: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """Every outcome a step with this action can end with.

    The registry's outcomes, plus ``error`` for every step (any template can fail to render),
    ``timeout`` when the step has a timeout, ``next`` for actions without named outcomes, and
    ``branchN`` for each choice of a branch (``next`` too when it has no default choice).
    Given the step's ``params``, outcomes those parameters rule out are left out (a connect
    that waits for the end of the bridge never ends ``connected``).
    """
    spec = ACTIONS[action]
    found: list[str] = list(spec.outcomes)
    if params is not None:
        found = [o for o in found if spec.allows(o, params)]
    if action == "branch":
        found = [branch_outcome(i) for i in range(branches)]
        if not has_default:
            found.append(NEXT)
    elif not spec.outcomes:
        found.append(NEXT)
    if ERROR not in found:
        found.append(ERROR)
    if has_timeout and spec.waits and TIMEOUT_OUTCOME not in found:
        found.append(TIMEOUT_OUTCOME)
    return tuple(found)


@dataclass(frozen=True, slots=True)
class Route:
    """Where one outcome of one step leads."""

    outcome: str
    #: The next step's id; None: the flow ends (the call is hung up if still live).
    target: str | None
    #: Why: ``on`` (the step's own edge), ``branch`` (a branch choice), ``next`` (the default
    #: path), ``on_error`` / ``on_hangup`` (the flow's handlers), ``end`` (an ``error`` or
    #: ``hangup`` no handler took: the flow ends with it).
    via: Literal["on", "branch", "next", "on_error", "on_hangup", "end"]

    @property
    def ends(self) -> bool:
        """True when the flow ends here."""
        return self.target is None


class Handlers(Protocol):
    """What :func:`route` needs of a flow: its two handlers (a FlowVersion has them)."""

    @property
    def on_error(self) -> str | None: ...

    @property
    def on_hangup(self) -> str | None: ...


def route(flow: Handlers, step: Step, outcome: str, *, hangup_handled: bool = False,
          error_handled: bool = False) -> Route:
    """Where the flow goes after ``step`` ended with ``outcome`` (the contract's edge rules).

    1. The step's own ``on: {outcome: target}`` edge, if it has one.
    2. A branch step's ``branchN`` outcome → that choice's ``goto``.
    3. ``error`` → the flow's ``on_error`` (once per call: pass ``error_handled=True`` after it
       was taken), else the flow ends with the error.
    4. ``hangup`` → the flow's ``on_hangup`` (once per call: pass ``hangup_handled=True``
       after it was taken), else the flow ends.
    5. Any other outcome → ``step.next`` (None: the flow ends).
    """
    if outcome in step.on:
        return Route(outcome, step.on[outcome], "on")
    if (step.branches and outcome.startswith(BRANCH_PREFIX)
            and outcome[len(BRANCH_PREFIX):].isdigit()):
        index = int(outcome[len(BRANCH_PREFIX):])
        return Route(outcome, step.branches[index].goto, "branch")
    if outcome == ERROR:
        if flow.on_error is not None and not error_handled:
            return Route(outcome, flow.on_error, "on_error")
        return Route(outcome, None, "end")
    if outcome == HANGUP:
        if flow.on_hangup is not None and not hangup_handled:
            return Route(outcome, flow.on_hangup, "on_hangup")
        return Route(outcome, None, "end")
    return Route(outcome, step.next, "next")


__all__ = [
    "BRANCH_PREFIX",
    "CALLLESS_OUTCOMES",
    "CALL_OUTCOMES",
    "DIAL_OUTCOMES",
    "ERROR",
    "HANGUP",
    "NEXT",
    "Branch",
    "FlowVersion",
    "Handlers",
    "Outbound",
    "Route",
    "Step",
    "branch_outcome",
    "params_note",
    "possible_outcomes",
    "route",
]
