"""The sandbox flow templates run in, and the budget that bounds every render.

Templates are written by flow authors, never by callers, but one render holds the event
loop: while it runs, every other call waits. So a render is bounded by the work it does,
not only by the shape of the template:

* form, checked at each operation: ``**`` is refused; ``'x' * n`` / ``[…] * n`` may build
  at most :data:`MAX_REPEAT` items; every string built (``~``, ``+``, ``%``, ``join``,
  ``replace``, ``format`` …) and every rendered text is at most :data:`MAX_RENDERED_LENGTH`;
  numbers at most :data:`MAX_INT_BITS` bits;
* work, counted in a :class:`Budget` for the whole render (all templates of one step):
  :data:`MAX_RENDER_SECONDS` of wall-clock time, :data:`MAX_ITERATIONS` loop iterations and
  macro calls, macros (and recursive loops) nested at most :data:`MAX_CALL_DEPTH` deep,
  :data:`MAX_OUTPUT_TOTAL` characters printed in all (inside macros and ``{% set %}`` blocks
  too), and every list or mapping a template builds at most :data:`MAX_VALUE_SIZE` in size,
  a shared part counted each time it appears (``[x] * 100`` is 100 times the size of ``x``).

The hooks: the code generator wraps every ``{% for %}`` iterable in
:meth:`FlowEnvironment.bounded_iter`, every non-constant list, tuple and dict literal in
:meth:`FlowEnvironment.built`, every constant chunk of output in
:meth:`FlowEnvironment.emit` and ``~`` in :meth:`FlowEnvironment.checked_concat`; the
sandbox's ``call`` (macros, ``loop()``, methods, globals), ``call_binop`` (``*``, ``+``,
``%``) and every filter check the budget and the size of what they return; ``finalize``
prints ``None`` as empty text and counts what is printed. Exceeding a limit raises
:class:`LimitExceeded`, which names the limit; the caller turns it into the step's error.

Without an active budget (compile-time constant folding) the hooks only apply the form
checks. :func:`budgeted` runs a function under a fresh budget unless one is active.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from functools import wraps
from time import perf_counter
from typing import Any, TypeVar

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, LoopContext, Macro, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Cycler, Namespace

#: The longest text a template may produce, or build on its way (characters).
MAX_RENDERED_LENGTH = 65_536
#: The longest string or list that ``*`` may build by repetition.
MAX_REPEAT = 10_000
#: The most entries (list items and mapping entries, in all) a ``{{ expression }}`` value
#: in ``set``/``vars`` may have.
MAX_VALUE_ITEMS = 10_000
#: The largest width a format (``%-20s``, ``{:>10}``, ``center(n)``) may ask for.
MAX_WIDTH = 1_000
#: Wall-clock time one render (all templates of a step) may take, in seconds.
MAX_RENDER_SECONDS = 0.1
#: Loop iterations plus macro calls one render may run, all loops counted together.
MAX_ITERATIONS = 100_000
#: How deep macro calls (and ``loop()`` in recursive loops) may nest.
MAX_CALL_DEPTH = 50
#: The largest size of a list or mapping a template builds: one per item or entry plus the
#: characters of its strings and the size of what it contains, shared parts counted each
#: time they appear.
MAX_VALUE_SIZE = 250_000
#: Characters one render may print in all, inside macros and ``{% set %}`` blocks included.
MAX_OUTPUT_TOTAL = 1_048_576
#: How deep lists and mappings may nest.
MAX_NESTING = 32
#: The largest number ``*`` may build, in bits.
MAX_INT_BITS = 4_096

#: How much work (ticks) passes between two looks at the clock: a look costs ~90 ns.
_CLOCK_EVERY = 16


class LimitExceeded(SecurityError):
    """A render went past one of its limits; ``limit`` says which (``time``,
    ``iterations``, ``depth``, ``size``, ``output``, ``nesting``, ``number``)."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit


class Budget:
    """What one render may still do. Created by :func:`budgeted`, found by the hooks through
    a context variable (renders are synchronous: one budget per thread or task at a time)."""

    __slots__ = ("deadline", "depth", "iterations", "next_check", "output", "seconds", "work")

    def __init__(self, seconds: float = MAX_RENDER_SECONDS) -> None:
        self.seconds = seconds
        self.deadline = perf_counter() + seconds
        #: Loop iterations and macro calls so far.
        self.iterations = 0
        #: Nested macro / ``loop()`` calls now.
        self.depth = 0
        #: Characters printed so far.
        self.output = 0
        #: Operations so far (a clock tick each); the clock is read every _CLOCK_EVERY.
        self.work = 0
        self.next_check = _CLOCK_EVERY

    def tick(self, amount: int = 1) -> None:
        """Count ``amount`` units of work; look at the clock now and then."""
        self.work += amount
        if self.work >= self.next_check:
            self.next_check = self.work + _CLOCK_EVERY
            if perf_counter() > self.deadline:
                raise LimitExceeded(
                    "time", f"the template took longer than {self.seconds * 1000:g} ms to "
                    "render (while it runs every other call waits)")

    def iteration(self) -> None:
        """One loop iteration or macro call."""
        self.iterations += 1
        if self.iterations > MAX_ITERATIONS:
            raise LimitExceeded("iterations", f"the template ran more than {MAX_ITERATIONS:,} "
                                "loop iterations and macro calls")
        self.tick()

    def printed(self, size: int) -> None:
        """``size`` characters were printed (maybe into a macro's or a block's buffer)."""
        self.output += size
        if self.output > MAX_OUTPUT_TOTAL:
            raise LimitExceeded("output", f"the template printed more than {MAX_OUTPUT_TOTAL:,} "
                                "characters in all (in loops, macros and blocks included)")

    def iterate(self, iterable: Iterable[Any], counted: bool = False) -> Iterator[Any]:
        """``iterable``'s items, one iteration counted for each (unless ``counted``: they
        were counted before the loop), the clock looked at every few."""
        for item in iterable:
            # iteration(), inlined: this runs once per loop turn.
            if not counted:
                self.iterations += 1
                if self.iterations > MAX_ITERATIONS:
                    self.iteration()
            self.work += 1
            if self.work >= self.next_check:
                self.tick(0)
            yield item

    def charge(self, value: Any) -> None:
        """An operation made ``value``: one unit of work, and one per 1,024 items or
        characters of it, so that heavy operations look at the clock sooner."""
        self.work += 1 + (len(value) >> 10 if isinstance(value, _CHARGED) else 0)
        if self.work >= self.next_check:
            self.tick(0)

    def size_of(self, value: Any) -> int:
        """The size of ``value`` (see :data:`MAX_VALUE_SIZE`); refuses nesting beyond
        :data:`MAX_NESTING`. Work is proportional to the distinct parts, not to the size."""
        memo: dict[int, tuple[int, int]] = {}
        size, _ = _measure(value, memo, 0)
        self.tick(len(memo))
        return size

    def check_built(self, value: Any, what: str = "a value") -> Any:
        """``value`` if its size is within :data:`MAX_VALUE_SIZE`, else LimitExceeded."""
        size = self.size_of(value)
        if size > MAX_VALUE_SIZE:
            raise _too_big(what, size)
        return value


def _too_big(what: str, size: int) -> LimitExceeded:
    return LimitExceeded("size", f"the template would build {what} of size {size:,}; values "
                         f"may have at most {MAX_VALUE_SIZE:,} items, entries and characters "
                         "(a shared part counted each time it appears)")


_SCALARS = (int, float, bool, type(None))
_SCALAR_TYPES = frozenset(_SCALARS)
#: Iterables whose length is known before a loop runs.
_SIZED = frozenset({list, tuple, range, dict, str, set, frozenset})
#: Results whose length says how much work made them.
_CHARGED = (str, list, tuple, dict, set, frozenset)


def _measure(value: Any, memo: dict[int, tuple[int, int]], depth: int) -> tuple[int, int]:
    """(size, height) of ``value``; ``memo`` (by id, for one walk: the objects stay alive)
    makes shared parts cost once however often they appear."""
    if isinstance(value, str):
        return len(value), 0
    if isinstance(value, (*_SCALARS, Undefined)):
        return 1, 0
    if isinstance(value, range):
        return len(value), 0
    if isinstance(value, (list, tuple, set, frozenset)):
        items: Iterable[Any] = value
    elif isinstance(value, Mapping):
        items = (*value.keys(), *value.values())
    elif isinstance(value, Namespace):
        attrs = object.__getattribute__(value, "_Namespace__attrs")
        items = (*attrs.keys(), *attrs.values())
    elif isinstance(value, Cycler):
        items = value.items
    else:
        return 1, 0  # an opaque object (a loop, a macro, an iterator): its own size only
    known = memo.get(id(value))
    if known is not None and depth + known[1] < MAX_NESTING:
        return known
    if depth >= MAX_NESTING or known is not None:
        raise LimitExceeded("nesting", f"the value is nested more than {MAX_NESTING} deep")
    size, height = 0, 0
    for item in items:
        if isinstance(item, str):
            size += 1 + len(item)
        elif isinstance(item, _SCALARS):
            size += 1
        else:
            s, h = _measure(item, memo, depth + 1)
            size += 1 + s
            height = max(height, h + 1)
    memo[id(value)] = (size, height)
    return size, height


#: The budget of the render running in this thread or task, None outside renders.
_BUDGET: ContextVar[Budget | None] = ContextVar("flowengine_template_budget", default=None)

T = TypeVar("T")


#: The active render's budget, or None: ``active_budget()`` (a C call, for hot paths).
active_budget = _BUDGET.get


def budgeted(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` under a fresh :class:`Budget`, unless a render's budget is active (then
    it shares that one: one budget for all templates of a step)."""
    if _BUDGET.get() is not None:
        return fn(*args)
    token = _BUDGET.set(Budget())
    try:
        return fn(*args)
    finally:
        _BUDGET.reset(token)


# -- form checks -------------------------------------------------------------------------------

def _too_long(what: str, size: int, limit: int = MAX_RENDERED_LENGTH) -> SecurityError:
    return SecurityError(f"{what} would be {size} long; templates may build at most {limit}")


def check_size(value: Any) -> Any:
    """``value``, unless it is a string, list or tuple longer than MAX_RENDERED_LENGTH."""
    if isinstance(value, (str, list, tuple)) and len(value) > MAX_RENDERED_LENGTH:
        raise _too_long("the result", len(value))
    return value


def _check_result(value: Any) -> Any:
    """A value a call returned: its length, its work, and its size when it is a container."""
    check_size(value)
    budget = _BUDGET.get()
    if budget is not None:
        budget.charge(value)
        if isinstance(value, (list, tuple, dict, set, frozenset)):
            budget.check_built(value)
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


def _printable(value: Any, what: str) -> str:
    """``value`` as text, refusing before ``str()`` a value whose text would be too long
    (a list's text is at least as long as its size)."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if not isinstance(value, _SCALARS):
        budget = _BUDGET.get()
        if budget is not None:
            size = budget.size_of(value)
            if size > MAX_RENDERED_LENGTH:
                raise _too_long(what, size)
    return str(value)


def _joined(items: Iterable[Any], sep: Any) -> list[Any]:
    """Materialise what ``join`` joins, refusing it when the result would be too long."""
    result: list[Any] = []
    size = 0
    sep_len = len(sep) if isinstance(sep, str) else 0
    budget = _BUDGET.get()
    for item in items:
        if isinstance(item, str):
            item_len = len(item)
        elif isinstance(item, _SCALARS):
            item_len = len(str(item))  # join prints it so anyway
        elif budget is not None:
            item_len = budget.size_of(item)  # a list's text is at least as long as its size
        else:
            item_len = 16
        size += item_len + (sep_len if result else 0)
        if size > MAX_RENDERED_LENGTH:
            raise _too_long("the joined text", size)
        result.append(item)
    return result


# -- the environment ---------------------------------------------------------------------------

class _CodeGenerator(CodeGenerator):
    """Routes loops, literals, ``~`` and constant output through the environment's checks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._output_frame: Frame | None = None
        #: ids of the ``{% for %}`` iterables about to be written (Jinja allows no custom
        #: node types, so the wrapper is written around the node when it is visited).
        self._bounded: set[int] = set()

    def visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> Any:
        if self._bounded and id(node) in self._bounded:
            self._bounded.discard(id(node))
            self.write("environment.bounded_iter(")
            super().visit(node, *args, **kwargs)
            self.write(")")
            return None
        return super().visit(node, *args, **kwargs)

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        # ``'a' ~ none`` is folded at compile time by Jinja, which prints None as "None";
        # at run time checked_concat prints it as empty text, so fold it the same way.
        for concat in node.find_all(nodes.Concat):
            concat.nodes = [nodes.Const("", lineno=n.lineno)
                            if isinstance(n, nodes.Const) and n.value is None else n
                            for n in concat.nodes]
        super().visit_Template(node, frame)

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        self._bounded.add(id(node.iter))
        super().visit_For(node, frame)

    @optimizeconst
    def visit_List(self, node: nodes.List, frame: Frame) -> None:
        # Constant literals were folded above (their size is the source's).
        self.write("environment.built(")
        super().visit_List(node, frame)
        self.write(")")

    @optimizeconst
    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        self.write("environment.built(")
        super().visit_Dict(node, frame)
        self.write(")")

    @optimizeconst
    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:
        if node.ctx != "load":  # a target: {% for a, b in … %}
            super().visit_Tuple(node, frame)
            return
        self.write("environment.built(")
        super().visit_Tuple(node, frame)
        self.write(")")

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.checked_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    # Output: what a template yields at its top level is counted by the renderer as it
    # comes (templates.py); what goes into a buffer (a macro's output, a {% set %} or
    # {% filter %} block), which is joined in one go, is counted here as it is written.

    def visit_Output(self, node: nodes.Output, frame: Frame) -> None:
        self._output_frame = frame
        super().visit_Output(node, frame)

    def _output_const_repr(self, group: Iterable[Any]) -> str:
        text = super()._output_const_repr(group)
        assert self._output_frame is not None  # only visit_Output calls this, after setting it
        # Constant text counts too: inside a loop it is printed once per iteration.
        return text if self._output_frame.buffer is None else f"environment.emit({text})"

    def _output_child_pre(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        if frame.eval_ctx.volatile or frame.eval_ctx.autoescape:
            super()._output_child_pre(node, frame, finalize)  # str(environment.finalize(…
        elif frame.buffer is None:
            self.write("environment.finalize(")
        else:
            self.write("environment.finalize_buffered(")

    def _output_child_post(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        if frame.eval_ctx.volatile or frame.eval_ctx.autoescape:
            super()._output_child_post(node, frame, finalize)
        else:
            self.write(")")


def _finalize(value: Any) -> str:
    """What ``{{ value }}`` prints: ``None`` prints as empty text."""
    if type(value) is str:
        return value
    if value is None:
        return ""
    if type(value) in _SCALAR_TYPES:
        return str(value)
    return _printable(value, "the printed value")


def _finalize_buffered(value: Any) -> str:
    """:func:`_finalize`, for output into a buffer: the characters count."""
    text = _finalize(value)
    budget = _BUDGET.get()
    if budget is not None:
        budget.output += len(text)
        if budget.output > MAX_OUTPUT_TOTAL:
            budget.printed(0)
    return text


class FlowEnvironment(ImmutableSandboxedEnvironment):
    """The sandboxed, strict Jinja environment of flow templates, with size and work limits."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})
    code_generator_class = _CodeGenerator

    def __init__(self, undefined: type[Undefined]) -> None:
        super().__init__(undefined=undefined, autoescape=False, keep_trailing_newline=True,
                         trim_blocks=True, auto_reload=False, cache_size=0, finalize=_finalize)
        self.globals.pop("lipsum", None)  # generates text of any size
        self.finalize_buffered = _finalize_buffered
        self._guard_filters()

    def _guard_filters(self) -> None:
        f = self.filters

        def guarded(name: str, check: Callable[..., Any]) -> None:
            original = f[name]

            @wraps(original)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                args = check(*args, **kwargs) or args
                return original(*args, **kwargs)

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

        def join(ctx: Any, value: Any, d: Any = "",
                 attribute: Any = None) -> tuple[Any, ...] | None:
            if attribute is None and not isinstance(value, (str, Undefined)):
                return (ctx, _joined(value, d), d)
            return None

        guarded("center", center)
        guarded("indent", indent)
        guarded("format", format_)
        guarded("replace", replace)
        guarded("join", join)
        # Every filter: its work is counted, and what it returns is checked (a filter can
        # build a list, or a text, from its input).
        for name, original in list(f.items()):
            f[name] = _bounded_filter(original)

    # -- the hooks the compiled code calls ----------------------------------------------------

    def bounded_iter(self, iterable: Any) -> Any:
        """A ``{% for %}``'s iterable, each iteration counted (all at once, before the loop
        runs, when its length is known), the clock looked at every few iterations."""
        budget = _BUDGET.get()
        if budget is None:
            return iterable
        if type(iterable) in _SIZED:
            # Counted before the loop runs: a loop that would go past the limit fails at once.
            budget.iterations += len(iterable)
            if budget.iterations > MAX_ITERATIONS:
                budget.iteration()
            return budget.iterate(iterable, counted=True)
        return budget.iterate(iterable)

    def built(self, value: T) -> T:
        """A list, tuple or dict literal the template built."""
        budget = _BUDGET.get()
        if budget is not None:
            budget.tick()
            budget.check_built(value)
        return value

    def emit(self, text: str) -> str:
        """Constant text printed by the template."""
        budget = _BUDGET.get()
        if budget is not None:
            budget.output += len(text)
            if budget.output > MAX_OUTPUT_TOTAL:
                budget.printed(0)
        return text

    def checked_concat(self, parts: tuple[Any, ...]) -> str:
        """``a ~ b``: join as text (None as empty text), refusing results beyond the cap."""
        texts = [_printable(p, "the joined text") for p in parts]
        size = sum(len(t) for t in texts)
        if size > MAX_RENDERED_LENGTH:
            raise _too_long("the joined text", size)
        text = "".join(texts)
        budget = _BUDGET.get()
        if budget is not None:
            budget.charge(text)
        return text

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        """Refuse ``**``, oversized repetition and numbers; cap what ``+`` and ``%`` build.

        No work is counted here: a binop repeats only inside a loop or a macro, which
        count their iterations and calls; each one is bounded by the size checks."""
        if operator == "*":
            self._check_repeat(left, right)
        elif operator == "+":
            if isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
                budget = _BUDGET.get()
                if budget is not None:
                    size = budget.size_of(left) + budget.size_of(right)
                    if size > MAX_VALUE_SIZE:
                        raise _too_big(f"a {type(left).__name__}", size)
        elif operator == "%":
            if isinstance(left, str):
                _check_percent_format(left)
        elif operator == "**":
            raise SecurityError("the ** operator is not allowed in templates")
        result = self.binop_table[operator](left, right)
        if isinstance(result, (str, list, tuple)):
            if len(result) > MAX_RENDERED_LENGTH:
                raise _too_long("the result", len(result))
            budget = _BUDGET.get()
            if budget is not None:
                budget.charge(result)
        return result

    @staticmethod
    def _check_repeat(left: Any, right: Any) -> None:
        if type(left) is int and type(right) is int:
            if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise LimitExceeded("number", "the template would build a number of more "
                                    f"than {MAX_INT_BITS:,} bits")
            return
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, (str, list, tuple)) and isinstance(times, int):
                size = len(seq) * times
                if size > MAX_REPEAT:
                    raise SecurityError(
                        f"repeating a {type(seq).__name__} {times} times would build {size} "
                        f"items; templates may repeat up to {MAX_REPEAT}")
                budget = _BUDGET.get()
                if budget is not None and not isinstance(seq, str) and times > 1:
                    size = budget.size_of(seq) * times
                    if size > MAX_VALUE_SIZE:
                        raise _too_big(f"a {type(seq).__name__}", size)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Count macro calls and their depth; check string methods that can build large
        strings before calling them, and what any call returns."""
        if isinstance(obj, (Macro, LoopContext)):
            budget = _BUDGET.get()
            if budget is not None:
                return self._nested_call(budget, context, obj, args, kwargs)
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
                _check_replace(owner, args[0], args[1],
                               args[2] if len(args) > 2 else kwargs.get("count", -1))
            elif name == "join" and args:
                args = (_joined(args[0], owner), *args[1:])
        return _check_result(super().call(context, obj, *args, **kwargs))

    def _nested_call(self, budget: Budget, context: Context, obj: Any, args: tuple[Any, ...],
                     kwargs: dict[str, Any]) -> Any:
        """A macro call, or ``loop(…)`` in a recursive loop: one iteration, one level."""
        budget.iteration()
        if budget.depth >= MAX_CALL_DEPTH:
            raise LimitExceeded("depth", f"macro calls nested more than {MAX_CALL_DEPTH} deep "
                                "(a macro that calls itself without end?)")
        if isinstance(obj, LoopContext) and args:
            args = (budget.iterate(args[0]), *args[1:])
        budget.depth += 1
        try:
            return super().call(context, obj, *args, **kwargs)
        finally:
            budget.depth -= 1


def _bounded_filter(original: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if isinstance(result, (str, list, tuple)) and len(result) > MAX_RENDERED_LENGTH:
            raise _too_long("the result", len(result))
        budget = _BUDGET.get()  # None while constants are folded at compile time
        if budget is not None:
            if isinstance(result, _CHARGED):
                budget.charge(result)
                if not isinstance(result, str):
                    budget.check_built(result)
            else:  # charge(), inlined: filters run often
                budget.work += 1
                if budget.work >= budget.next_check:
                    budget.tick(0)
        return result

    return wrapper
