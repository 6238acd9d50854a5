"""Templates in flows: compiled once at load, rendered per call in a strict sandbox.

Every string in a step's parameters is a Jinja template; ``when:`` is a Jinja expression
without braces. This module owns the one Jinja environment flowengine uses:

* ``ImmutableSandboxedEnvironment``: no access to Python internals (``__class__`` …), no
  methods that modify a value (``vars.update({})``);
* strict undefined: an undefined name is an error, never an empty string; the message says
  what is missing (``steps.take_message is undefined: step 'take_message' has not run``);
  ``| default(...)`` and ``is defined`` work on whole chains (``steps.rec.url | default('')``);
* size limits: ``**`` is refused; repeating a string or list (``'x' * n``) is refused past
  :data:`MAX_REPEAT`; every string a template builds (``~``, ``+``, ``%``, ``join``,
  ``replace``, ``center``, ``format`` …) and every rendered text is capped at
  :data:`MAX_RENDERED_LENGTH`. There is no CPU-time bound: flow authors are trusted not to
  write ``range(100000)`` loops inside loops, and caller-supplied strings are never compiled.

Compilation (:func:`compile_text`, :func:`compile_expression`, :func:`compile_tree`)
happens when a flow loads; a string with no ``{{`` or ``{%`` stays a plain ``str`` and costs
nothing to render. :func:`render` turns a compiled tree into plain values. Any failure while
rendering raises :class:`TemplateRenderError`, whose message names the step and the
``file:line:col`` of the template.

The names a template sees (:func:`template_context`): ``call`` (``id``, ``from``, ``to``,
``direction``, ``context``, ``state``), ``steps`` (results of the steps that have run),
``vars`` and ``flow`` (``name``, ``version``, ``file``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import wraps
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from jinja2 import ChainableUndefined, StrictUndefined, TemplateSyntaxError, nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.environment import Template
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.parser import Parser
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing

if TYPE_CHECKING:
    from .model import Branch, FlowVersion, Step

#: The longest text a template may produce, or build on its way (characters).
MAX_RENDERED_LENGTH = 65_536
#: The longest string or list that ``*`` may build by repetition.
MAX_REPEAT = 10_000
#: The largest list or mapping a ``{{ expression }}`` value may be.
MAX_VALUE_ITEMS = 10_000
#: The largest width a format (``%-20s``, ``{:>10}``, ``center(n)``) may ask for.
MAX_WIDTH = 1_000

#: Fields of ``call`` in templates.
CALL_FIELDS = ("id", "from", "to", "direction", "context", "state")
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
        return f"{place}: in step '{self.step}' ({self.where})" if self.step else f"{place}: in {self.where}"


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
                     flow: Mapping[str, Any]) -> dict[str, Any]:
    """The names a template sees. Cheap (a few dict copies); build one per step.

    Args:
        call: ``id``, ``from``, ``to``, ``direction``, ``context``, ``state`` of the call.
        steps: step id → result of that step's latest run (only steps that have run).
        vars: the call's flow variables.
        flow: ``FlowVersion.template_flow`` (``name``, ``version``, ``file``).
    """
    return {
        "call": call if type(call) is CallInfo else CallInfo(call),
        "steps": steps if type(steps) is StepResults else StepResults(steps),
        "vars": vars if type(vars) is FlowVars else FlowVars(vars),
        "flow": flow,
    }


# -- the sandbox -------------------------------------------------------------------------------

def _too_long(what: str, size: int, limit: int = MAX_RENDERED_LENGTH) -> SecurityError:
    return SecurityError(f"{what} would be {size} long; templates may build at most {limit}")


def _check_size(value: Any) -> Any:
    if isinstance(value, (str, list, tuple)) and len(value) > MAX_RENDERED_LENGTH:
        raise _too_long("the result", len(value))
    return value


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_BRACE_SPEC = re.compile(r"\{[^{}]*?:([^{}]*)\}")


def _check_percent_format(fmt: str) -> None:
    for match in _PERCENT_SPEC.finditer(fmt):
        for part in match.groups():
            if part == "*" or (part and int(part) > MAX_WIDTH):
                raise SecurityError(f"format widths above {MAX_WIDTH} are not allowed in templates")


def _check_brace_format(fmt: str) -> None:
    if re.search(r"\{[^{}]*:[^{}]*\{", fmt):
        raise SecurityError("nested format fields are not allowed in templates")
    for spec in _BRACE_SPEC.findall(fmt):
        if any(int(n) > MAX_WIDTH for n in re.findall(r"\d+", spec)):
            raise SecurityError(f"format widths above {MAX_WIDTH} are not allowed in templates")


def _check_width(width: Any) -> None:
    if isinstance(width, int) and width > MAX_WIDTH:
        raise SecurityError(f"widths above {MAX_WIDTH} are not allowed in templates")


def _check_replace(s: Any, old: Any, new: Any, count: Any) -> None:
    if not (isinstance(s, str) and isinstance(old, str) and isinstance(new, str)):
        return
    times = s.count(old) if old else len(s) + 1
    if isinstance(count, int) and count >= 0:
        times = min(times, count)
    size = len(s) + times * (len(new) - len(old))
    if size > MAX_RENDERED_LENGTH:
        raise _too_long("the replaced text", size)


def _joined(items: Iterable[Any], sep: Any) -> list[Any]:
    """Materialise what ``join`` joins, refusing it when the result would be too long."""
    result: list[Any] = []
    size = 0
    sep_len = len(sep) if isinstance(sep, str) else 0
    for item in items:
        size += (len(item) if isinstance(item, str) else 16) + (sep_len if result else 0)
        if size > MAX_RENDERED_LENGTH:
            raise _too_long("the joined text", size)
        result.append(item)
    return result


class _CodeGenerator(CodeGenerator):
    """Routes ``~`` through :meth:`FlowEnvironment.checked_concat` (it is not a binop)."""

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.checked_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class FlowEnvironment(ImmutableSandboxedEnvironment):
    """The sandboxed, strict Jinja environment of flow templates, with size limits."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})
    code_generator_class = _CodeGenerator

    def __init__(self) -> None:
        super().__init__(undefined=_Undefined, autoescape=False, keep_trailing_newline=True,
                         trim_blocks=True, auto_reload=False, cache_size=0)
        self.globals.pop("lipsum", None)  # generates text of any size
        self._guard_filters()

    def _guard_filters(self) -> None:
        f = self.filters

        def guarded(name: str, check: Any) -> None:
            original = f[name]

            @wraps(original)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                args = check(*args, **kwargs) or args
                return _check_size(original(*args, **kwargs))

            f[name] = wrapper

        def center(value: Any, width: Any = 80) -> None:
            _check_width(width)

        def indent(s: Any, width: Any = 4, *a: Any, **k: Any) -> None:
            lines = str(s).count("\n") + 1
            size = len(str(s)) + lines * (width if isinstance(width, int) else len(str(width)))
            if size > MAX_RENDERED_LENGTH:
                raise _too_long("the indented text", size)

        def format_(value: Any, *a: Any, **k: Any) -> None:
            if isinstance(value, str):
                _check_percent_format(value)

        def replace(ctx: Any, s: Any, old: Any, new: Any, count: Any = None) -> None:
            _check_replace(s, old, new, count)

        def join(ctx: Any, value: Any, d: Any = "", attribute: Any = None) -> tuple[Any, ...] | None:
            if attribute is None and not isinstance(value, (str, Undefined)):
                return (ctx, _joined(value, d), d)
            return None

        guarded("center", center)
        guarded("indent", indent)
        guarded("format", format_)
        guarded("replace", replace)
        guarded("join", join)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        """Refuse ``**`` and oversized repetition; cap what ``+`` and ``%`` build."""
        if operator == "**":
            raise SecurityError("the ** operator is not allowed in templates")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(times, int):
                    size = len(seq) * times
                    if size > MAX_REPEAT:
                        raise SecurityError(
                            f"repeating a {type(seq).__name__} {times} times would build {size} "
                            f"items; templates may repeat up to {MAX_REPEAT}")
        if operator == "%" and isinstance(left, str):
            _check_percent_format(left)
        return _check_size(super().call_binop(context, operator, left, right))

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Check string methods that can build large strings before calling them."""
        # The sandbox hands out str.format wrapped; the bound method is under __wrapped__.
        target = getattr(obj, "__wrapped__", obj)
        owner = getattr(target, "__self__", None)
        if isinstance(owner, str):
            name = getattr(target, "__name__", "")
            if name in ("ljust", "rjust", "center", "zfill") and args:
                _check_width(args[0])
            elif name == "expandtabs":
                tab = args[0] if args else kwargs.get("tabsize", 8)
                _check_width(tab)
                if isinstance(tab, int) and owner.count("\t") * tab > MAX_RENDERED_LENGTH:
                    raise _too_long("the expanded text", owner.count("\t") * tab)
            elif name in ("format", "format_map"):
                _check_brace_format(owner)
            elif name == "replace" and len(args) >= 2:
                _check_replace(owner, args[0], args[1], args[2] if len(args) > 2 else kwargs.get("count", -1))
            elif name == "join" and args:
                args = (_joined(args[0], owner), *args[1:])
        return _check_size(super().call(context, obj, *args, **kwargs))

    def checked_concat(self, parts: tuple[Any, ...]) -> str:
        """``a ~ b``: join as text, refusing results beyond the cap."""
        texts = [str(p) for p in parts]
        size = sum(len(t) for t in texts)
        if size > MAX_RENDERED_LENGTH:
            raise _too_long("the joined text", size)
        return "".join(texts)


#: The one environment every flow template is compiled in.
ENV = FlowEnvironment()


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


class _RefCollector:
    def __init__(self) -> None:
        self.refs: list[Reference] = []
        self.unsafe: list[tuple[str, int]] = []

    def visit(self, node: nodes.Node, guards: frozenset[tuple[str, ...]], guarded: bool) -> None:
        lineno = getattr(node, "lineno", 1) or 1
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

    def visit_children_guarded(self, node: nodes.Filter, guards: frozenset[tuple[str, ...]]) -> None:
        if node.node is not None:
            self.visit(node.node, guards, True)
        for child in (*node.args, *[kw.value for kw in node.kwargs]):
            self.visit(child, guards, False)


def _analyse(tree: nodes.Node) -> tuple[tuple[Reference, ...], tuple[tuple[str, int], ...]]:
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
    return refs, tuple(collector.unsafe)


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

    __slots__ = ("_expression", "_template", "mode", "origin", "references", "source", "unsafe")

    def __init__(self, source: str, mode: Mode, origin: Origin, template: Template,
                 expression: bool, references: tuple[Reference, ...],
                 unsafe: tuple[tuple[str, int], ...]) -> None:
        self.source = source
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
        """Render for one call. Raises TemplateRenderError."""
        try:
            if self._expression:
                return _plain(_evaluate(self._template, context))
            return _render_text(self._template, context)
        except TemplateRenderError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure inside a template is the flow's
            raise TemplateRenderError(self.origin, _reason(exc)) from None


class CompiledExpression:
    """A ``when:`` condition: a Jinja expression without braces (or a literal true/false)."""

    __slots__ = (
        "_constant",
        "_template",
        "ensures_defined",
        "origin",
        "references",
        "source",
        "unsafe",
    )

    def __init__(self, source: str, origin: Origin, template: Template | None,
                 references: tuple[Reference, ...], unsafe: tuple[tuple[str, int], ...],
                 constant: bool | None = None,
                 ensures_defined: frozenset[tuple[str, ...]] = frozenset()) -> None:
        self.source = source
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
            return _plain(_evaluate(self._template, context))
        except Exception as exc:  # noqa: BLE001 - any failure inside a template is the flow's
            raise TemplateRenderError(self.origin, _reason(exc)) from None

    def is_true(self, context: Mapping[str, Any]) -> bool:
        """Evaluate for one call and take its truth. Raises TemplateRenderError."""
        return bool(self.evaluate(context))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, (UndefinedError, SecurityError)):
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


def _render_text(template: Template, context: Mapping[str, Any]) -> str:
    out = []
    size = 0
    for chunk in template.root_render_func(template.new_context(_names(context))):
        size += len(chunk)
        if size > MAX_RENDERED_LENGTH:
            raise _too_long("the rendered text", size)
        out.append(chunk)
    return "".join(out)


def _plain(value: Any, depth: int = 0) -> Any:
    """Make an expression's value plain data (what a flow variable can hold)."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        _check_size(value)
        return str(value)  # a Markup or other str subclass becomes a plain str
    if depth > 32:
        raise SecurityError("the value is nested too deeply")
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    if isinstance(value, Mapping):
        if len(value) > MAX_VALUE_ITEMS:
            raise SecurityError(f"the value has more than {MAX_VALUE_ITEMS} entries")
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, range, Iterator)):
        items: list[Any] = []
        for item in value:
            if len(items) >= MAX_VALUE_ITEMS:
                raise SecurityError(f"the value has more than {MAX_VALUE_ITEMS} entries")
            items.append(_plain(item, depth + 1))
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
        references, unsafe = _analyse(tree)
        if expression is not None:
            template = _expression_template(expression)
        else:
            template = ENV.from_string(tree)
    except TemplateSyntaxError as exc:
        raise TemplateCompileError(exc.message or str(exc), exc.lineno or 1) from None
    return CompiledTemplate(source, mode, origin, template, expression is not None,
                            references, unsafe)


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
            raise TemplateSyntaxError(f"unexpected '{parser.stream.current.value}' after the expression",
                                      parser.stream.current.lineno, None, None)
        references, unsafe = _analyse(expr)
        ensured = _conjunct_defined(expr)
        template = _expression_template(expr)
    except TemplateSyntaxError as exc:
        raise TemplateCompileError(exc.message or str(exc), exc.lineno or 1) from None
    return CompiledExpression(source, origin, template, references, unsafe,
                              ensures_defined=ensured)


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
    """Render a compiled tree into fresh plain values (dicts, lists, str, numbers …).

    A :class:`CompiledExpression` (a ``when:``) gives the expression's value.

    Raises:
        TemplateRenderError: naming the step and the template's file:line:col.
    """
    if isinstance(tree, CompiledTemplate):
        return tree.render(context)
    if isinstance(tree, CompiledExpression):
        return tree.evaluate(context)
    if isinstance(tree, Mapping):
        return {k: render(v, context) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return [render(v, context) for v in tree]
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
    None when none matches (the flow then follows ``step.next``).

    Raises:
        TemplateRenderError: when a ``when`` cannot be evaluated.
    """
    for branch in step.branches:
        if branch.when is None or branch.when.is_true(context):
            return branch
    return None


def initial_params(flow: FlowVersion, call: Mapping[str, Any],
                   given: Mapping[str, Any] | None = None) -> FlowParams:
    """A (sub)flow's ``params``: its ``params:`` defaults rendered over ``call`` and ``flow``,
    with the values the calling step passed (``given``, already rendered) in their place.

    Raises:
        TemplateRenderError: when a default cannot be rendered.
    """
    given = given or {}
    context = template_context(call, StepResults(), FlowVars(), flow.template_flow)
    return FlowParams({name: given[name] if name in given else render(value, context)
                       for name, value in flow.params.items()})


def initial_vars(flow: FlowVersion, call: Mapping[str, Any],
                 params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A new call's ``vars``: the flow's ``vars`` rendered over ``call``, ``flow`` and (for a
    subflow) ``params``.

    Raises:
        TemplateRenderError: when a value cannot be rendered.
    """
    context = template_context(call, StepResults(), FlowVars(), flow.template_flow)
    context["params"] = FlowParams(params or {})
    return {name: render(value, context) for name, value in flow.vars.items()}
