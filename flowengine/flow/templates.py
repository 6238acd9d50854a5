"""Templates in flows: compiled once at load, rendered per call in a strict sandbox.

Every string in a step's parameters is a Jinja template; ``when:`` is a Jinja expression
without braces. This module owns the one Jinja environment flowengine uses:

* ``ImmutableSandboxedEnvironment``: no access to Python internals (``__class__`` …), no
  methods that modify a value (``vars.update({})``);
* strict undefined: an undefined name is an error, never an empty string; the message says
  what is missing (``steps.take_message is undefined: step 'take_message' has not run``);
  ``| default(...)`` and ``is defined`` work on whole chains (``steps.rec.url | default('')``);
* limits of form and of work (flow/sandbox.py): ``**`` is refused, repetition, built text
  and rendered text are capped, and every render (all templates of one step, or all
  ``vars``) has a budget: 100 ms, 100,000 loop iterations and macro calls, macros nested
  50 deep, 1,048,576 characters printed, values built of size 250,000 (shared parts counted
  each time). Caller-supplied strings are never compiled;
* ``None`` prints as empty text (``{{ steps.rec.url }}`` after a recording that did not
  happen), in ``{{ }}`` and with ``~``; as data (``set``, ``vars``, ``when``) it stays None.

Compilation (:func:`compile_text`, :func:`compile_expression`, :func:`compile_tree`)
happens when a flow loads; a string with no ``{{`` or ``{%`` stays a plain ``str`` and costs
nothing to render. :func:`render` turns a compiled tree into plain values. Any failure while
rendering raises :class:`TemplateRenderError`, whose message names the step and the
``file:line:col`` of the template (and, for a limit, which one).

The names a template sees (:func:`template_context`): ``call`` (``id``, ``from``, ``to``,
``direction``, ``context``, ``state``), ``steps`` (results of the steps that have run),
``vars`` and ``flow`` (``name``, ``version``, ``file``); and the functions ``now(tz)``,
``today(tz)``, ``is_open(name)``, ``next_open(name)``, ``next_close(name)`` and the filter
``strftime``, which read the call's clock and the flow's schedules (flow/schedules.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from jinja2 import ChainableUndefined, StrictUndefined, TemplateSyntaxError, nodes, pass_context
from jinja2.environment import Template
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.parser import Parser
from jinja2.runtime import Undefined
from jinja2.sandbox import MAX_RANGE
from jinja2.utils import missing

# The sandbox and its limits live in sandbox.py; the names are re-exported here, where
# callers have always found them.
from .sandbox import (  # noqa: F401 - re-exported
    MAX_CALL_DEPTH,
    MAX_INT_BITS,
    MAX_ITERATIONS,
    MAX_NESTING,
    MAX_OUTPUT_TOTAL,
    MAX_RENDER_SECONDS,
    MAX_RENDERED_LENGTH,
    MAX_REPEAT,
    MAX_VALUE_ITEMS,
    MAX_VALUE_SIZE,
    MAX_WIDTH,
    FlowEnvironment,
    LimitExceeded,
    _bounded_filter,
    active_budget,
    budgeted,
    check_size,
)
from .schedules import (
    SCHEDULE_FUNCTIONS,
    TIME_KEY,
    ZONE_FUNCTIONS,
    CallTime,
    FlowTime,
    ScheduleError,
    call_time,
    strftime_filter,
)

if TYPE_CHECKING:
    from .model import Branch, FlowVersion, Step

#: Fields of ``call`` in templates.
#: ``dial`` is what dialling a call we placed came to (``answered``, ``machine``, ``busy``,
#: ``no_answer``, ``failed``; None on a call that came in).
CALL_FIELDS = ("id", "from", "to", "direction", "context", "state", "dial")
#: Fields of ``flow`` in templates.
FLOW_FIELDS = ("name", "version", "file")
#: The names a step's templates can use (besides Jinja's ``range``, ``dict``, ``namespace``…).
CONTEXT_NAMES = ("call", "steps", "vars", "flow")

Mode = Literal["text", "value"]


# -- errors ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Origin:
    """Where a template was written: for error messages at render time."""

    file: str
    line: int
    col: int
    #: The step whose parameters hold it; None for the flow's ``vars``.
    step: str | None
    #: What the string is, e.g. ``say in play item 1`` or ``when in branch choice 2``.
    where: str

    def __str__(self) -> str:
        place = f"{self.file}:{self.line}:{self.col}"
        if self.step:
            return f"{place}: in step '{self.step}' ({self.where})"
        return f"{place}: in {self.where}"


class TemplateRenderError(Exception):
    """Raised when a template cannot be rendered for a call: an undefined name, a sandbox
    refusal, a failing operation (``1 / 0``). The message names the step and the template's
    ``file:line:col``; the step should end with outcome ``error``."""

    def __init__(self, origin: Origin | None, reason: str) -> None:
        self.origin = origin
        self.reason = reason
        super().__init__(f"{origin}: {reason}" if origin else reason)

    @property
    def step(self) -> str | None:
        """The id of the step whose template failed (None for the flow's ``vars``)."""
        return self.origin.step if self.origin else None


# -- the namespaces a template sees -------------------------------------------------------------

class StepResults(dict[str, Any]):
    """``steps`` in templates: step id → that step's latest result."""

    __slots__ = ()


class FlowVars(dict[str, Any]):
    """``vars`` in templates: the call's flow variables."""

    __slots__ = ()


class FlowParams(dict[str, Any]):
    """``params`` in templates: a subflow's parameters (its ``params:`` defaults, replaced by
    what the calling step passed)."""

    __slots__ = ()


class CallInfo(dict[str, Any]):
    """``call`` in templates: ``id``, ``from``, ``to``, ``direction``, ``context``, ``state``."""

    __slots__ = ()


class _Undefined(ChainableUndefined, StrictUndefined):
    """Strict: using an undefined value (printing, comparing, testing its truth) is an error.

    Chainable: ``steps.rec.url`` is still undefined (not an error) while only looked at, so
    ``steps.rec.url | default('none')`` and ``steps.rec.url is defined`` work when step
    ``rec`` has not run. The message names the first missing link: which step, variable or
    call field."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        obj, name = self._undefined_obj, self._undefined_name
        if self._undefined_hint:
            return self._undefined_hint
        if obj is missing:
            return f"'{name}' is undefined"
        if isinstance(obj, StepResults):
            return f"steps.{name} is undefined: step '{name}' has not run on this call"
        if isinstance(obj, FlowVars):
            return f"vars.{name} is undefined: the variable '{name}' has not been set"
        if isinstance(obj, FlowParams):
            return f"params.{name} is undefined"
        if isinstance(obj, CallInfo):
            return f"call.{name} is undefined"
        return str(super()._undefined_message)


def template_context(call: Mapping[str, Any], steps: Mapping[str, Any], vars: Mapping[str, Any],
                     flow: Mapping[str, Any], time: CallTime | None = None) -> dict[str, Any]:
    """The names a template sees. Cheap (a few dict copies); build one per step.

    Args:
        call: ``id``, ``from``, ``to``, ``direction``, ``context``, ``state`` of the call.
        steps: step id → result of that step's latest run (only steps that have run).
        vars: the call's flow variables.
        flow: ``FlowVersion.template_flow`` (``name``, ``version``, ``file``).
        time: the call's clock and its flow's schedules (``now()``, ``is_open()``); None:
            the wall clock, no schedules.
    """
    context: dict[str, Any] = {
        "call": call if type(call) is CallInfo else CallInfo(call),
        "steps": steps if type(steps) is StepResults else StepResults(steps),
        "vars": vars if type(vars) is FlowVars else FlowVars(vars),
        "flow": flow,
    }
    if time is not None:
        context[TIME_KEY] = time
    return context


# -- the sandbox (flow/sandbox.py) -------------------------------------------------------

#: The one environment every flow template is compiled in.
ENV = FlowEnvironment(_Undefined)

# -- queue figures (enqueue steps, flow/actions/queue.py) ----------------------------------

#: ``queue`` outside an enqueue step's announcement: every figure is None (prints empty).
#: An enqueue step renders its ``announce`` with the caller's own figures instead.
NO_QUEUE: Mapping[str, Any] = MappingProxyType(
    {"name": None, "position": None, "size": None, "expected_wait": None, "waited": None})
#: The context key under which the engine puts what its RELAY client knows of the queues
#: (an object with ``peek(name)`` → figures with ``size`` and ``expected_wait``, or None).
QUEUE_BOARD = "queue_board"


@pass_context
def queue_size(context: Any, name: Any) -> int:
    """``queue_size('support')``: callers waiting in the queue, as RELAY last told this
    engine (0 for a queue it has not seen)."""
    board = context.get(QUEUE_BOARD)
    figures = board.peek(str(name)) if board is not None else None
    return int(figures.size) if figures is not None else 0


@pass_context
def queue_wait(context: Any, name: Any) -> int | None:
    """``queue_wait('support')``: the expected wait in whole seconds (the average of the
    latest waits of callers an agent took), None before the first."""
    board = context.get(QUEUE_BOARD)
    figures = board.peek(str(name)) if board is not None else None
    wait = figures.expected_wait if figures is not None else None
    return None if wait is None else round(wait)


ENV.globals.update(queue=NO_QUEUE, queue_size=queue_size, queue_wait=queue_wait)


# -- time and schedules (flow/schedules.py) --------------------------------------------------
# Globals that read the call's clock from the context (TIME_KEY); pass_context also keeps
# Jinja from folding them into constants when a template compiles.

@pass_context
def _now(context: Any, tz: str = "UTC") -> FlowTime:
    """``now(tz)``: the time now in the zone ``tz`` (default UTC)."""
    return call_time(context).now(tz)


@pass_context
def _today(context: Any, tz: str = "UTC") -> str:
    """``today(tz)``: today's date in ``tz``, ``2026-12-24``."""
    return call_time(context).today(tz)


@pass_context
def _is_open(context: Any, name: str) -> bool:
    """``is_open('support')``: whether the flow's schedule is open now."""
    return call_time(context).is_open(name)


@pass_context
def _next_open(context: Any, name: str) -> FlowTime | None:
    """``next_open('support')``: now when open, else when it opens next."""
    return call_time(context).next_open(name)


@pass_context
def _next_close(context: Any, name: str) -> FlowTime | None:
    """``next_close('support')``: when the schedule closes next."""
    return call_time(context).next_close(name)


ENV.globals.update(now=_now, today=_today, is_open=_is_open, next_open=_next_open,
                   next_close=_next_close)
ENV.filters["strftime"] = _bounded_filter(strftime_filter)


# -- what a template refers to (for the checker) -----------------------------------------------

@dataclass(frozen=True, slots=True)
class Reference:
    """A name a template reads: ``steps.take_message.url`` is ``("steps", "take_message", "url")``.

    ``guarded`` is True inside ``| default(...)``, under ``is defined``, or in a branch of an
    ``if``/``and`` whose test checks ``is defined`` — the template copes with it being missing.
    """

    chain: tuple[str, ...]
    guarded: bool
    #: Line inside the template (1 for one-line strings).
    lineno: int


def _chain(node: nodes.Node) -> tuple[str, ...] | None:
    """``steps.a["b"].c`` → ("steps", "a", "b", "c"); None when not a constant chain."""
    parts: list[str] = []
    while True:
        if isinstance(node, nodes.Getattr):
            parts.append(node.attr)
            node = node.node
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) \
                and isinstance(node.arg.value, str):
            parts.append(node.arg.value)
            node = node.node
        elif isinstance(node, nodes.Name):
            parts.append(node.name)
            return tuple(reversed(parts))
        else:
            return None


def _defined_tests(node: nodes.Node) -> set[tuple[str, ...]]:
    """Chains checked by ``is defined`` anywhere in ``node`` (an ``if`` or ``and`` test)."""
    found = set()
    tests = [node] if isinstance(node, nodes.Test) else []
    for test in (*tests, *node.find_all(nodes.Test)):
        if test.name == "defined":
            chain = _chain(test.node)
            if chain:
                found.add(chain)
    return found


#: What :class:`_RefCollector` notes of a call the checker can check: (function, its
#: first argument when it is a constant (else :data:`NOT_CONSTANT`; None when there is
#: none), lineno). ``strftime`` stands for the filter and the method, with their format.
TimeCall = tuple[str, Any, int]
NOT_CONSTANT = object()
_TIME_FUNCTIONS = frozenset((*SCHEDULE_FUNCTIONS, *ZONE_FUNCTIONS))


def _first_argument(args: list[nodes.Expr], kwargs: list[nodes.Keyword],
                    names: tuple[str, ...]) -> Any:
    arg: nodes.Node | None = args[0] if args else next(
        (k.value for k in kwargs if k.key in names), None)
    if arg is None:
        return None
    return arg.value if isinstance(arg, nodes.Const) else NOT_CONSTANT


class _RefCollector:
    def __init__(self) -> None:
        self.refs: list[Reference] = []
        self.unsafe: list[tuple[str, int]] = []
        self.calls: list[TimeCall] = []

    def visit(self, node: nodes.Node, guards: frozenset[tuple[str, ...]], guarded: bool) -> None:
        lineno = getattr(node, "lineno", 1) or 1
        if isinstance(node, nodes.Call):
            if isinstance(node.node, nodes.Name) and node.node.name in _TIME_FUNCTIONS:
                self.calls.append((node.node.name, _first_argument(
                    node.args, node.kwargs, ("tz", "name")), lineno))
            elif isinstance(node.node, nodes.Getattr) and node.node.attr == "strftime" \
                    and node.args:
                self.calls.append(("strftime", _first_argument(node.args, [], ()), lineno))
        elif isinstance(node, nodes.Filter) and node.name == "strftime" and node.args:
            self.calls.append(("strftime", _first_argument(node.args, [], ()), lineno))
        if isinstance(node, nodes.Pow):
            self.unsafe.append(("the ** operator is not allowed in templates", lineno))
        if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
            self.unsafe.append((f"'{node.attr}'", lineno))
        if isinstance(node, nodes.Test) and node.name in ("defined", "undefined"):
            guarded = True
        if isinstance(node, nodes.Filter) and node.name in ("default", "d"):
            self.visit_children_guarded(node, guards)
            return
        if isinstance(node, (nodes.Getattr, nodes.Getitem, nodes.Name)):
            chain = _chain(node)
            if chain is not None:
                covered = guarded or any(chain[:len(g)] == g for g in guards)
                self.refs.append(Reference(chain, covered, lineno))
                # Also look inside non-constant subscripts and attributes of the chain.
                return
        if isinstance(node, nodes.If):
            self.visit(node.test, guards, guarded)
            inner = guards | _defined_tests(node.test)
            for child in node.body:
                self.visit(child, inner, guarded)
            for child in (*node.elif_, *node.else_):
                self.visit(child, guards, guarded)
            return
        if isinstance(node, nodes.CondExpr):
            self.visit(node.test, guards, guarded)
            self.visit(node.expr1, guards | _defined_tests(node.test), guarded)
            if node.expr2 is not None:
                self.visit(node.expr2, guards, guarded)
            return
        if isinstance(node, nodes.And):
            self.visit(node.left, guards, guarded)
            self.visit(node.right, guards | _defined_tests(node.left), guarded)
            return
        for child in node.iter_child_nodes():
            self.visit(child, guards, guarded)

    def visit_children_guarded(self, node: nodes.Filter,
                               guards: frozenset[tuple[str, ...]]) -> None:
        if node.node is not None:
            self.visit(node.node, guards, True)
        for child in (*node.args, *[kw.value for kw in node.kwargs]):
            self.visit(child, guards, False)


def _analyse(tree: nodes.Node) -> tuple[tuple[Reference, ...], tuple[tuple[str, int], ...],
                                        tuple[TimeCall, ...]]:
    from jinja2 import meta

    collector = _RefCollector()
    collector.visit(tree, frozenset(), False)
    private = sorted({m for m, _ in collector.unsafe if m.startswith("'")})
    if private:
        # One finding for all of them: ''.__class__.__mro__ is one mistake.
        names = ", ".join(private)
        verb = "is" if len(private) == 1 else "are"
        lineno = min(n for m, n in collector.unsafe if m.startswith("'"))
        collector.unsafe = [(m, n) for m, n in collector.unsafe if not m.startswith("'")]
        collector.unsafe.append(((f"{names} {verb} not allowed in templates (names starting "
                                 "with '_' reach Python internals)"), lineno))
    # Names bound inside the template ({% set %}, loop variables) are not context names.
    if isinstance(tree, nodes.Template):
        free = meta.find_undeclared_variables(tree)
        refs = tuple(r for r in collector.refs if r.chain[0] in free)
    else:
        refs = tuple(collector.refs)
    return refs, tuple(collector.unsafe), tuple(collector.calls)


def _const_range(node: nodes.Node) -> int | None:
    """How many numbers ``range(<constants>)`` gives; None when it is not that."""
    if not (isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name)
            and node.node.name == "range" and not node.kwargs and node.dyn_args is None
            and node.dyn_kwargs is None and 1 <= len(node.args) <= 3):
        return None
    values = [a.value for a in node.args if isinstance(a, nodes.Const)]
    if len(values) != len(node.args) or not all(type(v) is int for v in values):
        return None
    try:
        return len(range(*values))
    except (ValueError, OverflowError):
        return None


def _loop_length(node: nodes.Node) -> int | None:
    """How many times a ``{% for %}`` over ``node`` runs, when the source says it."""
    count = _const_range(node)
    if count is not None:
        return count
    if isinstance(node, (nodes.List, nodes.Tuple)):
        return len(node.items)
    if isinstance(node, nodes.Const) and isinstance(node.value, (str, list, tuple)):
        return len(node.value)
    return None


def _limit_warnings(tree: nodes.Node) -> tuple[tuple[str, int], ...]:
    """(message, lineno) for what will, or may well, run past a render's limits, as far as
    the source tells: a ``range`` too large for Jinja, nested loops over constants that run
    more than MAX_ITERATIONS times, repetition beyond MAX_REPEAT, macros calling themselves."""
    found: list[tuple[str, int]] = []
    for call in tree.find_all(nodes.Call):
        count = _const_range(call)
        if count is not None and count > MAX_RANGE:
            found.append((f"range of {count:,} numbers: templates may use ranges of at most "
                          f"{MAX_RANGE:,}; this fails when it runs", call.lineno))
    for mul in tree.find_all(nodes.Mul):
        for seq, times in ((mul.left, mul.right), (mul.right, mul.left)):
            if isinstance(times, nodes.Const) and type(times.value) is int \
                    and times.value > MAX_REPEAT \
                    and isinstance(seq, (nodes.List, nodes.Tuple, nodes.Const)) \
                    and not (isinstance(seq, nodes.Const) and not isinstance(seq.value, str)):
                found.append((f"repeating {times.value:,} times: templates may repeat up to "
                              f"{MAX_REPEAT:,} items; this fails when it runs", mul.lineno))

    def loops(node: nodes.Node, times: int) -> None:
        for child in node.iter_child_nodes():
            if isinstance(child, nodes.For):
                length = _loop_length(child.iter)
                inner = times * length if length is not None else times
                if length is not None and times > 1 and inner > MAX_ITERATIONS:
                    found.append((f"nested loops that run {inner:,} times: a render stops after "
                                  f"{MAX_ITERATIONS:,} loop iterations and macro calls",
                                  child.lineno))
                    continue
                loops(child, inner)
            else:
                loops(child, times)

    loops(tree, 1)
    for macro in tree.find_all(nodes.Macro):
        calls = [c for c in macro.find_all(nodes.Call)
                 if isinstance(c.node, nodes.Name) and c.node.name == macro.name]
        if calls:
            how = (f"itself {len(calls)} times (its work multiplies at each level)"
                   if len(calls) > 1 else "itself")
            found.append((f"macro '{macro.name}' calls {how}: a render stops after "
                          f"{MAX_CALL_DEPTH} nested calls, {MAX_ITERATIONS:,} loop iterations "
                          f"and macro calls, or {MAX_RENDER_SECONDS * 1000:g} ms",
                          macro.lineno))
    return tuple(found)


# -- compiled templates ------------------------------------------------------------------------

class TemplateCompileError(Exception):
    """Raised at load when a template does not compile; ``lineno`` is inside the template."""

    def __init__(self, message: str, lineno: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.lineno = lineno


class CompiledTemplate:
    """One template string, compiled at load.

    In ``text`` mode rendering gives a ``str``. In ``value`` mode (``set`` values, ``vars``) a
    string that is exactly one ``{{ expression }}`` gives the expression's value with its type
    (a number stays a number, a list stays a list); any other template gives a ``str``.
    ``"+15551234567"`` is never turned into a number: only an expression's own value keeps
    its type, the text around it is never re-parsed.
    """

    __slots__ = ("_expression", "_template", "calls", "limits", "mode", "origin", "references",
                 "source", "unsafe")

    def __init__(self, source: str, mode: Mode, origin: Origin, template: Template,
                 expression: bool, references: tuple[Reference, ...],
                 unsafe: tuple[tuple[str, int], ...],
                 limits: tuple[tuple[str, int], ...] = (),
                 calls: tuple[TimeCall, ...] = ()) -> None:
        self.source = source
        #: Calls of the time functions and strftime, for the checker (schedule and zone
        #: names, formats).
        self.calls = calls
        #: (message, lineno) of what may run past a render's limits (warnings of the checker).
        self.limits = limits
        self.mode = mode
        self.origin = origin
        #: Context names the template reads (for the checker).
        self.references = references
        #: (message, lineno) of constructs the checker refuses (``**``, ``_`` attributes).
        self.unsafe = unsafe
        self._template = template
        self._expression = expression

    def __repr__(self) -> str:
        return f"CompiledTemplate({self.source!r}, mode={self.mode!r})"

    def render(self, context: Mapping[str, Any]) -> Any:
        """Render for one call, within the render's budget (a fresh one unless a step's
        :func:`render` started one). Raises TemplateRenderError."""
        try:
            # Inside a step's render() its budget is active: no second frame for budgeted().
            if self._expression:
                if active_budget() is None:
                    return budgeted(_value, self._template, context)
                return _plain(_evaluate(self._template, context))
            if active_budget() is None:
                return budgeted(_render_text, self._template, context)
            return _render_text(self._template, context)
        except TemplateRenderError:
            raise
        except Exception as exc:  # any failure inside a template is the flow's
            raise TemplateRenderError(self.origin, _reason(exc)) from None


class CompiledExpression:
    """A ``when:`` condition: a Jinja expression without braces (or a literal true/false)."""

    __slots__ = (
        "_constant",
        "_template",
        "calls",
        "ensures_defined",
        "limits",
        "origin",
        "references",
        "source",
        "unsafe",
    )

    def __init__(self, source: str, origin: Origin, template: Template | None,
                 references: tuple[Reference, ...], unsafe: tuple[tuple[str, int], ...],
                 constant: bool | None = None,
                 ensures_defined: frozenset[tuple[str, ...]] = frozenset(),
                 limits: tuple[tuple[str, int], ...] = (),
                 calls: tuple[TimeCall, ...] = ()) -> None:
        self.source = source
        #: Calls of the time functions and strftime, for the checker.
        self.calls = calls
        #: (message, lineno) of what may run past a render's limits (warnings of the checker).
        self.limits = limits
        self.origin = origin
        self.references = references
        self.unsafe = unsafe
        #: Chains the expression checks with ``is defined`` in its top-level ``and`` terms:
        #: when it is true, those are defined (``steps.rec is defined and …``).
        self.ensures_defined = ensures_defined
        self._template = template
        self._constant = constant

    def __repr__(self) -> str:
        return f"CompiledExpression({self.source!r})"

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        """The expression's value for one call. Raises TemplateRenderError."""
        if self._template is None:
            return self._constant
        try:
            return budgeted(_value, self._template, context)
        except Exception as exc:  # any failure inside a template is the flow's
            raise TemplateRenderError(self.origin, _reason(exc)) from None

    def is_true(self, context: Mapping[str, Any]) -> bool:
        """Evaluate for one call and take its truth. Raises TemplateRenderError."""
        return bool(self.evaluate(context))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, (UndefinedError, SecurityError, ScheduleError)):
        return str(exc)
    if isinstance(exc, RecursionError):
        return "the template recursed too deeply"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_NAMESPACES = (("call", CallInfo), ("steps", StepResults), ("vars", FlowVars),
               ("params", FlowParams))


def _names(context: Mapping[str, Any]) -> dict[str, Any]:
    """The template's variables; plain dicts for call/steps/vars get their namespace type
    (a cheap copy) so that undefined-name messages can say which step or variable is missing."""
    names = dict(context)
    for name, kind in _NAMESPACES:
        value = names.get(name)
        if type(value) is dict:
            names[name] = kind(value)
    return names


def _evaluate(template: Template, context: Mapping[str, Any]) -> Any:
    ctx = template.new_context(_names(context))
    for _ in template.root_render_func(ctx):
        pass
    value = ctx.vars["result"]
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    return value


def _value(template: Template, context: Mapping[str, Any]) -> Any:
    return _plain(_evaluate(template, context))


def _render_text(template: Template, context: Mapping[str, Any]) -> str:
    out = []
    size = 0
    for chunk in template.root_render_func(template.new_context(_names(context))):
        size += len(chunk)
        if size > MAX_RENDERED_LENGTH:
            raise SecurityError(f"the rendered text would be {size} long; templates may "
                                f"build at most {MAX_RENDERED_LENGTH}")
        out.append(chunk)
    return "".join(out)


class _Entries:
    """How many entries :func:`_plain` may still copy, for one whole value."""

    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = MAX_VALUE_ITEMS

    def take(self) -> None:
        self.left -= 1
        if self.left < 0:
            # Counted over the whole value: [[1] * 100] * 100 is 10,100 entries.
            raise SecurityError(f"the value has more than {MAX_VALUE_ITEMS:,} entries in all "
                                "(lists and mappings inside it included)")


def _plain(value: Any, depth: int = 0, entries: _Entries | None = None) -> Any:
    """Make an expression's value plain data (what a flow variable can hold): at most
    MAX_VALUE_ITEMS entries in all, nested at most MAX_NESTING deep."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        check_size(value)
        return str(value)  # a Markup or other str subclass becomes a plain str
    if isinstance(value, FlowTime):
        return value.isoformat()  # a time as data is its ISO text
    if depth > MAX_NESTING:
        raise SecurityError("the value is nested too deeply")
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    if entries is None:
        entries = _Entries()
    if isinstance(value, Mapping):
        result: dict[str, Any] = {}
        for k, v in value.items():
            entries.take()
            result[str(k)] = _plain(v, depth + 1, entries)
        return result
    if isinstance(value, (list, tuple, range, Iterator)):
        items: list[Any] = []
        for item in value:
            entries.take()
            items.append(_plain(item, depth + 1, entries))
        return items
    raise SecurityError(f"the value is a {type(value).__name__}, not plain data "
                        "(text, number, true/false, list or mapping)")


def has_template(text: str) -> bool:
    """Whether ``text`` is a template (contains ``{{`` or ``{%``) rather than plain text."""
    return "{{" in text or "{%" in text


def compile_text(source: str, mode: Mode, origin: Origin) -> str | CompiledTemplate:
    """Compile one string from a flow. Plain text (no ``{{``/``{%``) is returned as is.

    Raises:
        TemplateCompileError: when the template does not parse or names an unknown filter.
    """
    if not has_template(source):
        return source
    try:
        tree = ENV.parse(source)
        expression = None
        if mode == "value" and len(tree.body) == 1 and isinstance(tree.body[0], nodes.Output) \
                and len(tree.body[0].nodes) == 1 \
                and not isinstance(tree.body[0].nodes[0], nodes.TemplateData):
            expression = tree.body[0].nodes[0]
        references, unsafe, calls = _analyse(tree)
        limits = _limit_warnings(tree)
        if expression is not None:
            template = _expression_template(expression)
        else:
            template = ENV.from_string(tree)
    except TemplateSyntaxError as exc:
        raise TemplateCompileError(exc.message or str(exc), exc.lineno or 1) from None
    return CompiledTemplate(source, mode, origin, template, expression is not None,
                            references, unsafe, limits, calls)


def _expression_template(expr: nodes.Expr) -> Template:
    expr.set_environment(ENV)
    body = [nodes.Assign(nodes.Name("result", "store"), expr, lineno=1)]
    return ENV.from_string(nodes.Template(body, lineno=1))


def compile_expression(source: str | bool, origin: Origin) -> CompiledExpression:
    """Compile a ``when:`` condition (an expression without braces, or true/false).

    Raises:
        TemplateCompileError: when it does not parse, or is written with ``{{ }}``.
    """
    if isinstance(source, bool):
        return CompiledExpression(str(source).lower(), origin, None, (), (), constant=source)
    stripped = source.strip()
    if stripped.startswith(("{{", "{%")):
        inner = stripped.removeprefix("{{").removesuffix("}}").strip()
        raise TemplateCompileError(f"when is an expression without {{{{ }}}}; write: when: {inner}")
    try:
        parser = Parser(ENV, source, state="variable")
        expr = parser.parse_expression()
        if not parser.stream.eos:
            raise TemplateSyntaxError(
                f"unexpected '{parser.stream.current.value}' after the expression",
                parser.stream.current.lineno, None, None)
        references, unsafe, calls = _analyse(expr)
        limits = _limit_warnings(expr)
        ensured = _conjunct_defined(expr)
        template = _expression_template(expr)
    except TemplateSyntaxError as exc:
        raise TemplateCompileError(exc.message or str(exc), exc.lineno or 1) from None
    return CompiledExpression(source, origin, template, references, unsafe,
                              ensures_defined=ensured, limits=limits, calls=calls)


def _conjunct_defined(expr: nodes.Node) -> frozenset[tuple[str, ...]]:
    """Chains tested with ``is defined`` in the top-level ``and`` terms of ``expr``."""
    if isinstance(expr, nodes.And):
        return _conjunct_defined(expr.left) | _conjunct_defined(expr.right)
    if isinstance(expr, nodes.Test) and expr.name == "defined":
        chain = _chain(expr.node)
        return frozenset([chain]) if chain else frozenset()
    return frozenset()


# -- compiled trees ----------------------------------------------------------------------------

def freeze(value: Any) -> Any:
    """A read-only copy of a compiled tree (mappings become MappingProxyType, lists tuples)."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def render(tree: Any, context: Mapping[str, Any]) -> Any:
    """Render a compiled tree into fresh plain values (dicts, lists, str, numbers …), all its
    templates within one budget (see flow/sandbox.py).

    A :class:`CompiledExpression` (a ``when:``) gives the expression's value.

    Raises:
        TemplateRenderError: naming the step and the template's file:line:col, and for a
            limit which one.
    """
    if type(tree) is str:
        return tree
    return budgeted(_render_tree, tree, context)


def _render_tree(tree: Any, context: Mapping[str, Any]) -> Any:
    if isinstance(tree, CompiledTemplate):
        return tree.render(context)
    if isinstance(tree, CompiledExpression):
        return tree.evaluate(context)
    if isinstance(tree, Mapping):
        return {k: _render_tree(v, context) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return [_render_tree(v, context) for v in tree]
    return tree


def iter_templates(tree: Any) -> Iterator[CompiledTemplate]:
    """Every compiled template in a tree."""
    if isinstance(tree, CompiledTemplate):
        yield tree
    elif isinstance(tree, Mapping):
        for v in tree.values():
            yield from iter_templates(v)
    elif isinstance(tree, (tuple, list)):
        for v in tree:
            yield from iter_templates(v)


# -- helpers for the engine --------------------------------------------------------------------

def render_params(step: Step, context: Mapping[str, Any]) -> Any:
    """The step's parameters rendered for this call (see ``Step`` for each action's shape).

    Raises:
        TemplateRenderError: naming the step and the failing template's file:line:col.
    """
    return render(step.params, context)


def choose_branch(step: Step, context: Mapping[str, Any]) -> Branch | None:
    """The first of a ``branch`` step's choices whose ``when`` is true (or the default);
    None when none matches (the flow then follows ``step.next``). All the ``when``s share
    one budget.

    Raises:
        TemplateRenderError: when a ``when`` cannot be evaluated.
    """
    return budgeted(_choose_branch, step, context)


def _choose_branch(step: Step, context: Mapping[str, Any]) -> Branch | None:
    for branch in step.branches:
        if branch.when is None or branch.when.is_true(context):
            return branch
    return None


def _render_each(values: Mapping[str, Any], context: Mapping[str, Any],
                 errors: list[TemplateRenderError] | None) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in values.items():
        try:
            result[name] = render(value, context)
        except TemplateRenderError as exc:
            if errors is None:
                raise
            errors.append(exc)
            result[name] = None
    return result


def initial_params(flow: FlowVersion, call: Mapping[str, Any],
                   given: Mapping[str, Any] | None = None, *,
                   errors: list[TemplateRenderError] | None = None,
                   time: CallTime | None = None) -> FlowParams:
    """A (sub)flow's ``params``: its ``params:`` defaults rendered over ``call`` and ``flow``,
    with the values the calling step passed (``given``, already rendered) in their place.
    All defaults share one budget.

    Args:
        errors: when given, a default that cannot be rendered is None and its error is
            appended here instead of raised (the session then runs the flow's on_error).
        time: the call's clock and schedules (default: the wall clock, the flow's schedules).

    Raises:
        TemplateRenderError: when a default cannot be rendered (and ``errors`` is None).
    """
    given = given or {}
    context = template_context(call, StepResults(), FlowVars(), flow.template_flow,
                               time or CallTime(schedules=flow.schedules))
    defaults = {name: value for name, value in flow.params.items() if name not in given}
    rendered = budgeted(_render_each, defaults, context, errors)
    return FlowParams({name: given[name] if name in given else rendered[name]
                       for name in flow.params})


def initial_vars(flow: FlowVersion, call: Mapping[str, Any],
                 params: Mapping[str, Any] | None = None, *,
                 errors: list[TemplateRenderError] | None = None,
                 time: CallTime | None = None) -> dict[str, Any]:
    """A new call's ``vars``: the flow's ``vars`` rendered over ``call``, ``flow`` and (for a
    subflow) ``params``, all within one budget.

    Args:
        errors: when given, a value that cannot be rendered is None and its error is
            appended here instead of raised (the session then runs the flow's on_error).
        time: the call's clock and schedules (default: the wall clock, the flow's schedules).

    Raises:
        TemplateRenderError: when a value cannot be rendered (and ``errors`` is None).
    """
    context = template_context(call, StepResults(), FlowVars(), flow.template_flow,
                               time or CallTime(schedules=flow.schedules))
    context["params"] = FlowParams(params or {})
    return budgeted(_render_each, flow.vars, context, errors)
