"""From flow file to ``FlowVersion``: strict YAML → JSON Schema → semantic checks → build.

The stages, each reporting every problem it finds with its ``file:line:col``:

1. read the bytes (their sha256 is the version) and decode UTF-8;
2. strict YAML 1.2 load (:mod:`.loader`): syntax errors, duplicate keys;
3. the JSON Schema (:mod:`.schema`): unknown keys, wrong types, missing keys;
4. semantic checks, once the file matches the schema:

   * edges (``start``, ``next``, ``on``, ``goto``, ``on_hangup``, ``on_error``) to steps that
     do not exist; ``on:`` outcomes the action cannot end with;
   * templates that do not compile, or read names that cannot exist: top-level names other
     than ``call``/``steps``/``vars``/``flow``, ``steps.X`` of no step, a result field step X
     does not have, ``vars.X`` that neither ``vars`` nor any ``set`` step defines, unknown
     ``call``/``flow`` fields, ``**`` and ``_``-attributes;
   * loops with no way out (error); steps no path reaches, ``steps.X`` read where X may not
     have run, loops only a caller's hangup ends (warnings).

Stages 3 and 4 run only when the previous stage found no errors.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .actions import ACTIONS, CheckContext
from .diagnostics import ERROR, WARNING, Diagnostic, FlowError, did_you_mean, sort_key
from .inputs import InputSpec, coerce_input, is_phone_number
from .loader import (
    MAX_FILE_BYTES,
    Document,
    Path,
    UnreadableFile,
    load_yaml,
    path_problem,
    read_flow_file,
)
from .model import (
    BRANCH_PREFIX,
    CALLLESS_OUTCOMES,
    Branch,
    FlowVersion,
    Outbound,
    Step,
    params_note,
    possible_outcomes,
    route,
)
from .schedules import (
    SCHEDULE_FUNCTIONS,
    ZONE_FUNCTIONS,
    Schedule,
    ScheduleError,
    check_format,
    compile_schedule,
    zone,
    zone_hint,
)
from .schema import describe, flow_schema, validate
from .templates import (
    CALL_FIELDS,
    CONTEXT_NAMES,
    ENV,
    FLOW_FIELDS,
    NOT_CONSTANT,
    CompiledExpression,
    CompiledTemplate,
    Mode,
    Origin,
    TemplateCompileError,
    compile_expression,
    compile_text,
    freeze,
)

#: Default of ``limits.max_steps``.
DEFAULT_MAX_STEPS = 1000
#: Default RELAY context.
DEFAULT_CONTEXT = "default"
#: File name endings ``check`` and the daemon read in a directory.
FLOW_SUFFIXES = (".yaml", ".yml")
#: Names a step id or variable cannot take: ``steps.items`` would be the mapping's method.
RESERVED_NAMES = frozenset(n for n in dir(dict) if not n.startswith("_"))
#: Common keys of a step (besides its action).
STEP_KEYS = ("next", "on", "timeout", "description")
#: Seconds one compile may take (the file and its subflows) before it is given up: with
#: the size and node limits of the loader this bounds the work a flow file can cause.
COMPILE_BUDGET = 60.0
#: The owner of the ``outbound:`` section's templates (rendered before the call exists).
OUTBOUND_OWNER = "(outbound)"
#: Characters YAML does not allow in a document (C0 controls but tab, LF and CR; DEL; C1
#: controls but NEL; the non-characters U+FFFE, U+FFFF).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ufffe\uffff]")


class _OverBudget(Exception):
    """Raised inside a compile that took longer than its budget."""


@dataclass(frozen=True, slots=True)
class CompileResult:
    """What compiling one flow file gave: the version (None if there were errors) and findings."""

    version: FlowVersion | None
    diagnostics: tuple[Diagnostic, ...]

    @property
    def ok(self) -> bool:
        """True when the flow compiled (warnings allowed)."""
        return self.version is not None


def compile_flow(source: bytes | str, file: str, *,
                 budget: float | None = COMPILE_BUDGET) -> CompileResult:
    """Compile the text of one flow file; never raises for a problem in the flow.

    ``budget``: seconds the compile may take, subflows included (None: no limit); a flow
    that takes longer is rejected with an error saying so.
    """
    result, _ = _compile(source, file, deadline=_deadline(budget))
    return result


def _deadline(budget: float | None) -> float | None:
    return None if budget is None else time.monotonic() + budget


def _read_error(file: str, exc: UnreadableFile | OSError) -> Diagnostic:
    if isinstance(exc, FileNotFoundError):
        why = path_problem(file) if os.path.islink(file) else exc.strerror
        return Diagnostic(file, None, None, ERROR, f"cannot read the file: {why}")
    return Diagnostic(file, None, None, ERROR, str(exc))


def load_flow(path: str | os.PathLike[str]) -> FlowVersion:
    """Load, check and compile one flow file.

    Raises:
        FlowError: carrying every finding when the file cannot be read or has errors.
    """
    file = os.fspath(path)
    try:
        source = read_flow_file(file)
    except (UnreadableFile, FileNotFoundError) as exc:
        raise FlowError([_read_error(file, exc)]) from None
    result = compile_flow(source, file)
    if result.version is None:
        raise FlowError(result.diagnostics)
    return result.version


def flow_files(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[str], list[Diagnostic]]:
    """The flow files named by ``paths``: files as given, and each directory's ``*.yaml`` /
    ``*.yml`` (not recursive; dotfiles skipped, as the daemon does)."""
    files: list[str] = []
    problems: list[Diagnostic] = []
    for path in paths:
        name = os.fspath(path)
        if os.path.isdir(name):
            # Everything named *.yaml but directories: a FIFO, a device or a link that loops
            # is refused when read (without blocking), not skipped without a word.
            found = sorted(
                os.path.join(name, entry) for entry in os.listdir(name)
                if entry.endswith(FLOW_SUFFIXES) and not entry.startswith(".")
                and not os.path.isdir(os.path.join(name, entry))
                and (os.path.exists(os.path.join(name, entry))
                     or _is_link_loop(os.path.join(name, entry)))
            )
            if not found:
                problems.append(Diagnostic(name, None, None, WARNING,
                                           "no flow files (*.yaml, *.yml) in this directory"))
            files.extend(found)
        elif os.path.exists(name) or _is_link_loop(name):
            files.append(name)
        else:
            problems.append(Diagnostic(name, None, None, ERROR, path_problem(name)))
    return files, problems


def _is_link_loop(path: str) -> bool:
    return os.path.islink(path) and path_problem(path).startswith("symbolic link loop")


def check_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Diagnostic]:
    """Check flow files and directories; every finding, sorted by file and position.

    Besides each file's own findings, two flows with the same ``name`` are an error (one
    daemon serves flows by name).
    """
    files, diagnostics = flow_files(paths)
    names: dict[str, str] = {}
    for file in files:
        try:
            source = read_flow_file(file)
        except (UnreadableFile, FileNotFoundError) as exc:
            diagnostics.append(_read_error(file, exc))
            continue
        result, doc = _compile(source, file, deadline=_deadline(COMPILE_BUDGET))
        diagnostics.extend(result.diagnostics)
        name = doc.data.get("name") if doc is not None and isinstance(doc.data, dict) else None
        if isinstance(name, str):
            if name in names:
                diagnostics.append(doc.diagnostic(  # type: ignore[union-attr]
                    ("name",), f"flow name '{name}' is also used by {names[name]}",
                    hint="flow names must be unique among the flows one daemon serves"))
            else:
                names[name] = file
    return sorted(diagnostics, key=sort_key)


#: Subflow files already compiled during one compile: absolute path → result.
_Loaded = dict[str, "CompileResult | str"]


def _compile(source: bytes | str, file: str, *, stack: tuple[str, ...] = (),
             loaded: _Loaded | None = None,
             deadline: float | None = None) -> tuple[CompileResult, Document | None]:
    """Compile one file. ``stack`` holds the absolute paths of the flows whose ``call`` steps
    led here (a subflow cycle); ``loaded`` the subflows compiled so far; ``deadline`` the
    ``time.monotonic()`` after which the compile is given up."""
    # surrogatepass: a str with a lone surrogate becomes bytes that fail to decode below,
    # a positioned "not valid UTF-8" finding instead of a UnicodeEncodeError.
    raw = source.encode("utf-8", "surrogatepass") if isinstance(source, str) else source
    digest = hashlib.sha256(raw).hexdigest()
    if len(raw) > MAX_FILE_BYTES:
        too_large = f"the file is too large ({len(raw)} bytes; at most {MAX_FILE_BYTES})"
        return _failed(Diagnostic(file, None, None, ERROR, too_large)), None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        return _failed(Diagnostic(file, line, col, ERROR, "the file is not valid UTF-8 text")), None
    control = _CONTROL.search(text)
    if control is not None:
        at = control.start()
        line = text.count("\n", 0, at) + 1
        col = at - (text.rfind("\n", 0, at) + 1) + 1
        char = control.group()
        what = "a NUL character" if char == "\0" else f"the control character U+{ord(char):04X}"
        return _failed(Diagnostic(file, line, col, ERROR, f"{what} is not allowed in a flow "
                                  "file", "a flow file is YAML text; is this a binary file?")), None
    try:
        doc = load_yaml(text, file)
    except FlowError as exc:
        return CompileResult(None, exc.diagnostics), None
    if doc.data is None:
        return _failed(Diagnostic(file, 1, 1, ERROR, "the file is empty; a flow needs at least "
                                  "name and steps")), doc
    if not isinstance(doc.data, dict):
        shape = "a list" if isinstance(doc.data, list) else "a single value"
        return _failed(doc.diagnostic((), f"a flow is a mapping with name, steps, …, not {shape}")
                       ), doc
    if doc.data and not set(doc.data) & set(flow_schema().get("properties", {})):
        # Not a flow at all (some other YAML file): its keys are not listed back.
        return _failed(doc.diagnostic((), "this is not a flow file: a flow is a mapping with "
                                      "name, steps, …", hint="a flow file has name: and "
                                      "steps: at the top")), doc
    problems = validate(doc)
    if problems:
        return CompileResult(None, tuple(sorted(problems, key=sort_key))), doc
    compiler = _Compiler(doc, digest, (*stack, os.path.abspath(file)),
                         {} if loaded is None else loaded, deadline)
    try:
        version = compiler.build()
    except _OverBudget:
        return _failed(Diagnostic(file, None, None, ERROR, "the flow takes too long to "
                                  "compile: it went over the time budget of one compile "
                                  "(subflows included)", "make it smaller, or split it into "
                                  "subflows")), doc
    diagnostics = tuple(sorted(compiler.diagnostics, key=sort_key))
    if any(d.is_error for d in diagnostics):
        return CompileResult(None, diagnostics), doc
    return CompileResult(version, diagnostics), doc


def _failed(diagnostic: Diagnostic) -> CompileResult:
    return CompileResult(None, (diagnostic,))


_Checked = CompiledTemplate | CompiledExpression
#: Jinja's message for a filter or test that does not exist.
_UNKNOWN_NAME = re.compile(r"No (filter|test) named '(\w+)'(?: found)?")
#: What the may-not-have-run dataflow tracks: ("step", id) ran, ("var", name) was set.
_Token = tuple[str, str]


class _Compiler:
    """Builds the FlowVersion of one schema-valid document, collecting semantic findings."""

    def __init__(self, doc: Document, digest: str, stack: tuple[str, ...] = (),
                 loaded: _Loaded | None = None, deadline: float | None = None) -> None:
        self.doc = doc
        self.stack = stack
        self.deadline = deadline
        #: The directory of the top-level flow: subflows must be inside it (links resolved).
        self.root = os.path.realpath(os.path.dirname(stack[0] if stack else
                                                     os.path.abspath(doc.file)))
        self.loaded: _Loaded = {} if loaded is None else loaded
        #: resolved path → the subflow its call steps run.
        self.subflows: dict[str, FlowVersion] = {}
        #: step id → its result keys, where they are the step's own (call, return).
        self.step_results: dict[str, tuple[str, ...]] = {}
        self.declared_params = set(doc.data.get("params") or {})
        self.data: dict[str, Any] = doc.data
        self.file = doc.file
        self.digest = digest
        self.diagnostics: list[Diagnostic] = []
        self.step_data: dict[str, dict[str, Any]] = self.data["steps"]
        self.step_ids = list(self.step_data)
        self.actions = {sid: _action_of(step) for sid, step in self.step_data.items()}
        #: What the specs' check hooks may read of the flow.
        self.check_context = CheckContext(MappingProxyType(self.actions),
                                          frozenset(self.actions.values()))
        self.known_vars = set(self.data.get("vars") or {})
        #: The per-call inputs (``vars.<name>`` like the flow's own vars).
        self.input_names = set(self.data.get("inputs") or {})
        self.known_vars |= self.input_names
        for step in self.step_data.values():
            if isinstance(step.get("set"), dict):
                self.known_vars.update(step["set"])
        #: (step id or None for vars, path, compiled template/expression)
        self.templates: list[tuple[str | None, Path, _Checked]] = []

    def tick(self) -> None:
        """Give up (``_OverBudget``) once the compile is past its deadline."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise _OverBudget

    # -- findings -----------------------------------------------------------------------------

    def error(self, path: Path, message: str, *, key: bool = False,
              hint: str | None = None) -> None:
        self.diagnostics.append(self.doc.diagnostic(path, message, key=key, hint=hint))

    def warning(self, path: Path, message: str, *, key: bool = False,
                hint: str | None = None) -> None:
        self.diagnostics.append(self.doc.diagnostic(path, message, key=key, hint=hint,
                                                    severity=WARNING))

    def origin(self, path: Path, step: str | None) -> Origin:
        line, col = self.doc.position(path)
        return Origin(self.file, line, col, step, describe(path))

    # -- building -----------------------------------------------------------------------------

    def build(self) -> FlowVersion:
        data = self.data
        self.check_names()
        name = data["name"]
        version_short = self.digest[:12]
        template_flow = MappingProxyType({"name": name, "version": version_short,
                                          "file": self.file})
        schedules = self.schedules()
        variables = {key: self.value(value, ("vars", key), None)
                     for key, value in (data.get("vars") or {}).items()}
        params = {key: self.value(value, ("params", key), None)
                  for key, value in (data.get("params") or {}).items()}
        steps = {sid: self.step(sid, index) for index, sid in enumerate(self.step_ids)}
        returns = tuple(dict.fromkeys(key for step in steps.values() if step.action == "return"
                                      for key in step.params))
        start = data.get("start", self.step_ids[0])
        for key in ("start", "on_hangup", "on_error"):
            if key in data:
                self.check_target(data[key], (key,), key)
        inputs = self.inputs()
        outbound = self.outbound(start) if "outbound" in data else None
        context = data.get("context", DEFAULT_CONTEXT)
        limits = data.get("limits") or {}
        version = FlowVersion(
            name=name,
            description=data.get("description"),
            file=self.file,
            version=self.digest,
            contexts=tuple([context] if isinstance(context, str) else context),
            match=MappingProxyType(dict(data.get("match") or {})),
            start=start,
            steps=MappingProxyType(steps),
            on_hangup=data.get("on_hangup"),
            on_error=data.get("on_error"),
            max_steps=limits.get("max_steps", DEFAULT_MAX_STEPS),
            max_duration=limits.get("max_duration"),
            vars=MappingProxyType(freeze(variables)),
            edges=MappingProxyType({}),
            warnings=(),
            template_flow=template_flow,
            params=MappingProxyType(freeze(params)),
            subflows=MappingProxyType(self.subflows),
            returns=returns,
            sources=tuple(dict.fromkeys(
                item for path, sub in self.subflows.items()
                for item in ((path, sub.version), *sub.sources))),
            schedules=MappingProxyType(schedules),
            inputs=MappingProxyType(inputs),
            outbound=outbound,
        )
        edges = {sid: MappingProxyType({o: route(version, step, o).target for o in step.outcomes()})
                 for sid, step in steps.items()}
        for owner, path, compiled in self.templates:
            self.tick()
            self.check_references(owner, path, compiled)
        if not any(d.is_error for d in self.diagnostics):
            self.check_graph(version, edges)
            self.check_callless(version)
        warnings = tuple(sorted((d for d in self.diagnostics if not d.is_error), key=sort_key))
        changes: dict[str, Any] = {"edges": MappingProxyType(edges), "warnings": warnings}
        if version.sources:
            # The flow's behaviour is its file and the subflows it calls: the version covers
            # all of them, so an edit of a subflow is a new version of every flow calling it.
            combined = hashlib.sha256(self.digest.encode())
            for source_path, source_version in version.sources:
                combined.update(f"\0{source_path}\0{source_version}".encode())
            digest = combined.hexdigest()
            changes["version"] = digest
            changes["template_flow"] = MappingProxyType({**template_flow, "version": digest[:12]})
        return dataclasses.replace(version, **changes)

    def schedules(self) -> dict[str, Schedule]:
        """``schedules:``, each compiled once into its frozen Schedule."""
        compiled: dict[str, Schedule] = {}
        for name, raw in (self.data.get("schedules") or {}).items():
            self.tick()
            base: Path = ("schedules", name)

            def report(path: tuple[str | int, ...], message: str, key: bool,
                       hint: str | None, base: Path = base) -> None:
                self.error((*base, *path), f"{describe(base)}: {message}", key=key, hint=hint)

            schedule = compile_schedule(name, raw, report)
            if schedule is not None:
                compiled[name] = schedule
        return compiled

    def check_time_calls(self, compiled: _Checked,
                         report: Callable[[str, str | None], None]) -> None:
        """Schedule names, time zones and strftime formats written as constants."""
        known = list(self.data.get("schedules") or {})
        for function, arg, _ in compiled.calls:
            if arg is NOT_CONSTANT:
                continue  # known only when the call runs
            if function in SCHEDULE_FUNCTIONS:
                if arg is None:
                    report(f"{function}() needs the name of a schedule: {function}('support')",
                           f"this flow's schedules: {', '.join(known)}" if known
                           else "define one under schedules: at the top of the flow")
                elif not isinstance(arg, str) or arg not in known:
                    report(f"unknown schedule {arg!r} in {function}({arg!r})",
                           did_you_mean(str(arg), known) or (
                               f"this flow's schedules: {', '.join(known)}" if known
                               else "define it under schedules: at the top of the flow"))
            elif function in ZONE_FUNCTIONS and arg is not None:
                try:
                    zone(arg)
                except ScheduleError as exc:
                    report(f"{exc} in {function}({arg!r})",
                           zone_hint(arg) if isinstance(arg, str) else None)
            elif function == "strftime" and arg is not None:
                try:
                    check_format(arg)
                except ScheduleError as exc:
                    report(str(exc), None)

    def check_names(self) -> None:
        for sid in self.step_ids:
            if sid in RESERVED_NAMES:
                self.error(("steps", sid), f"'{sid}' cannot be a step id: in templates "
                           f"steps.{sid} is a method of the mapping", key=True,
                           hint="choose another name")
        for path in [(top, n) for top in ("vars", "params", "inputs")
                     for n in self.data.get(top) or {}] + [
                ("steps", sid, "set", n) for sid, step in self.step_data.items()
                for n in (step.get("set") or {})]:
            name = path[-1]
            if name in RESERVED_NAMES:
                self.error(path, f"'{name}' cannot be a variable name: in templates vars.{name} "
                           "is a method of the mapping", key=True, hint="choose another name")

    def step(self, sid: str, index: int) -> Step:
        self.tick()
        raw = self.step_data[sid]
        action = self.actions[sid]
        base: Path = ("steps", sid)
        line, col = self.doc.position(base, key=True)
        params: Any = MappingProxyType({})
        branches: tuple[Branch, ...] = ()
        value = raw[action]
        apath: Path = (*base, action)
        if action == "set":
            params = freeze({k: self.value(v, (*apath, k), sid) for k, v in value.items()})
        elif action == "log":
            params = self.text(value, apath, sid)
        elif action == "branch":
            branches = tuple(self.branch(sid, value, apath))
        elif action == "return":
            params = freeze({k: self.value(v, (*apath, k), sid) for k, v in (value or {}).items()})
            self.step_results[sid] = tuple(params)
        else:
            compiled = self.action_params(sid, action, value, apath)
            if action == "call":
                compiled = self.subflow_call(sid, compiled, value, apath)
            params = freeze(compiled)
        self.check_action(sid, action, value, apath)

        on = dict(raw.get("on") or {})
        timeout = raw.get("timeout")
        self.check_outcomes(sid, action, on, timeout is not None, branches, params)
        following = self.step_ids[index + 1] if index + 1 < len(self.step_ids) else None
        if action == "goto":
            # A goto's default path is its target; when the visit limit is reached it goes
            # on to the step written after it, unless on: {exhausted: …} says otherwise.
            nxt = params["step"]
            self.check_target(nxt, (*apath, "step") if isinstance(value, dict) else apath,
                              "goto")
            if "next" in raw:
                self.error((*base, "next"), f"a goto step goes to its step ('{nxt}'); it has "
                           "no next:", key=True, hint="say where to go when max_visits is "
                           "reached with on: {exhausted: STEP}")
            if params.get("max_visits") is not None and "exhausted" not in on:
                on["exhausted"] = following
        elif "next" in raw:
            nxt = raw["next"]
            self.check_target(nxt, (*base, "next"), "next")
            if action == "branch" and branches and branches[-1].when is None:
                self.warning((*base, "next"), f"next in step '{sid}' is never used: the branch "
                             "always takes one of its choices (the last has no when)", key=True)
        elif ACTIONS[action].ends_flow:
            nxt = None
        else:
            nxt = following
        if timeout is not None and not ACTIONS[action].waits:
            self.warning((*base, "timeout"), f"timeout has no effect on a {action} step "
                         "(it does not wait for anything)", key=True)
        if action == "return" and "next" in raw:
            self.error((*base, "next"), "a return step ends the flow; it has no next:",
                       key=True, hint="put the steps to run before it ahead of it")
        return Step(id=sid, action=action, params=params, on=MappingProxyType(on), next=nxt,
                    timeout=timeout, line=line, col=col, branches=branches,
                    description=raw.get("description"), results=self.step_results.get(sid))

    def subflow_call(self, sid: str, compiled: dict[str, Any], value: Any,
                     path: Path) -> dict[str, Any]:
        """A ``call`` step: load its subflow (relative to this file), refuse cycles and
        parameters it does not declare; the step's ``flow`` becomes the resolved path."""
        written = str(compiled["flow"])
        fpath: Path = (*path, "flow") if isinstance(value, dict) else path
        resolved = os.path.normpath(os.path.join(os.path.dirname(self.file), written))
        target = os.path.abspath(resolved)
        compiled = {**compiled, "flow": resolved}
        self.step_results[sid] = ()
        refused = self.refuse_subflow_path(written, target)
        if refused is not None:
            self.error(fpath, refused, hint="subflows live in the flow's directory or below "
                       "it (lib/)")
            return compiled
        if target in self.stack:
            chain = [*self.stack[self.stack.index(target):], target]
            self.error(fpath, "subflow cycle: " + " → ".join(os.path.relpath(f) for f in chain),
                       hint="a flow cannot call itself, directly or through other flows")
            return compiled
        result = self.loaded.get(target)
        if result is None:
            try:
                source = read_flow_file(target)
            except FileNotFoundError as exc:
                why = path_problem(target) if os.path.islink(target) else exc.strerror
                result = f"cannot read the subflow {written}: {why}"
            except UnreadableFile as exc:
                why = str(exc).removeprefix("cannot read the file: ")
                result = f"cannot read the subflow {written}: {why}"
            else:
                result = _compile(source, resolved, stack=self.stack, loaded=self.loaded,
                                  deadline=self.deadline)[0]
            self.loaded[target] = result
        if isinstance(result, str):
            self.error(fpath, result, hint="the path is relative to this flow's file")
            return compiled
        if result.version is None:
            errors = [d for d in result.diagnostics if d.is_error]
            self.error(fpath, f"the subflow {written} does not load ({len(errors)} "
                       f"error{'s' if len(errors) != 1 else ''})",
                       hint=f"run `flowengine check {resolved}`")
            # Its own findings, at their own file:line:col (once per compile).
            known = {(d.file, d.line, d.col, d.message) for d in self.diagnostics}
            self.diagnostics.extend(d for d in errors
                                    if (d.file, d.line, d.col, d.message) not in known)
            return compiled
        sub = result.version
        self.subflows[resolved] = sub
        self.step_results[sid] = sub.returns
        for name in compiled.get("params") or {}:
            if name not in sub.params:
                declared = list(sub.params)
                self.error((*path, "params", name), f"subflow {written} has no parameter "
                           f"'{name}'", key=True, hint=did_you_mean(name, declared) or (
                               f"its params: {', '.join(declared)}" if declared
                               else f"declare it under params: in {written}"))
        return compiled

    def refuse_subflow_path(self, written: str, target: str) -> str | None:
        """Why the subflow path ``written`` (``target`` once joined) may not be read, or
        None. A flow reads only flow files inside its directory: never ``/etc/passwd``,
        never ``../../x.yaml`` out of it, never a link that leads out."""
        if os.path.isabs(written) or written.startswith("~"):
            return f"the subflow path {written} is absolute; write it relative to this file"
        if not written.endswith(FLOW_SUFFIXES):
            return f"the subflow {written} is not a flow file (*.yaml or *.yml)"
        if not _inside(target, self.root):
            return f"the subflow {written} is outside the flow directory"
        if not _inside(os.path.realpath(target), self.root):
            return f"the subflow {written} is a symbolic link to outside the flow directory"
        return None

    def check_action(self, sid: str, action: str, value: Any, path: Path) -> None:
        """What the schema cannot say about one action's parameters: its spec's ``check``."""
        check = ACTIONS[action].check
        if check is None:
            return
        for problem in check(sid, value, self.check_context):
            where = (*path, *problem.path)
            if problem.warning:
                self.warning(where, problem.message, key=problem.key, hint=problem.hint)
            else:
                self.error(where, problem.message, key=problem.key, hint=problem.hint)

    def action_params(self, sid: str, action: str, value: Any, path: Path) -> dict[str, Any]:
        """The parameters of an action described by its spec: a scalar or list written
        for the whole action stands for its ``shorthand`` parameter; each parameter is
        compiled as its ``fields`` kind says (literals otherwise); ``defaults`` fill in
        what is not written."""
        spec = ACTIONS[action]
        if value is None:
            compiled: dict[str, Any] = {}
        elif not isinstance(value, dict):
            assert spec.shorthand is not None  # the schema allows a scalar only then
            compiled = {spec.shorthand: self.field(spec.fields.get(spec.shorthand), value,
                                                   path, sid)}
        else:
            compiled = {key: self.field(spec.fields.get(key), item, (*path, key), sid)
                        for key, item in value.items()}
        compiled.update((key, item) for key, item in spec.defaults.items()
                        if key not in compiled)
        return compiled

    def field(self, kind: str | None, value: Any, path: Path, sid: str) -> Any:
        """One parameter compiled as ``kind`` says (see ``flowengine.flow.actions.FieldKind``)."""
        if value is None or kind is None:
            return value
        if kind == "text":
            return self.text(value, path, sid) if isinstance(value, str) else value
        if kind == "value":
            return self.value(value, path, sid)
        if kind == "texts":
            return [self.text(v, (*path, i), sid) for i, v in enumerate(value)]
        if kind == "text_map":
            return {k: self.text(v, (*path, k), sid) if isinstance(v, str) else v
                    for k, v in value.items()}
        if kind == "media":
            return [self.media(item, (*path, i), sid) for i, item in enumerate(value)]
        if kind == "devices":
            return [[self.text(v, (*path, i, j), sid) for j, v in enumerate(item)]
                    if isinstance(item, list) else self.text(item, (*path, i), sid)
                    for i, item in enumerate(value)]
        raise ValueError(f"unknown parameter kind {kind!r}")

    def media(self, item: dict[str, Any], path: Path, sid: str) -> dict[str, Any]:
        if "say" in item:
            out = {"say": self.text(item["say"], (*path, "say"), sid)}
            for key in ("language", "gender", "voice"):
                if key in item:
                    out[key] = self.text(item[key], (*path, key), sid)
            return out
        if "audio" in item:
            return {"audio": self.text(item["audio"], (*path, "audio"), sid)}
        if "silence" in item:
            return {"silence": item["silence"]}
        out = {"ringtone": item["ringtone"]}
        if "duration" in item:
            out["duration"] = item["duration"]
        return out

    def branch(self, sid: str, choices: list[dict[str, Any]], path: Path) -> Iterator[Branch]:
        last = len(choices) - 1
        for i, choice in enumerate(choices):
            cpath = (*path, i)
            line, col = self.doc.position(cpath)
            when = None
            if "when" in choice:
                wpath = (*cpath, "when")
                try:
                    when = compile_expression(choice["when"], self.origin(wpath, sid))
                    self.templates.append((sid, wpath, when))
                except TemplateCompileError as exc:
                    self.template_error(wpath, exc)
            elif i != last:
                self.error(cpath, "only the last choice of a branch can leave out when (it is "
                           "the default); choices after it are never tried")
            goto = choice["goto"]
            self.check_target(goto, (*cpath, "goto"), "goto")
            text = choice.get("when")
            yield Branch(index=i, when=when, when_text=None if text is None else str(text).lower()
                         if isinstance(text, bool) else text, goto=goto, line=line, col=col)

    def text(self, value: str, path: Path, sid: str | None) -> Any:
        return self.compile(value, path, sid, "text")

    def value(self, value: Any, path: Path, sid: str | None) -> Any:
        if isinstance(value, dict):
            return {k: self.value(v, (*path, k), sid) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v, (*path, i), sid) for i, v in enumerate(value)]
        if isinstance(value, str):
            return self.compile(value, path, sid, "value")
        return value

    def compile(self, value: str, path: Path, sid: str | None, mode: Mode) -> Any:
        self.tick()
        try:
            compiled = compile_text(value, mode, self.origin(path, sid))
        except TemplateCompileError as exc:
            self.template_error(path, exc)
            return value
        if isinstance(compiled, CompiledTemplate):
            self.templates.append((sid, path, compiled))
        return compiled

    def template_error(self, path: Path, exc: TemplateCompileError) -> None:
        message = exc.message.rstrip(".")
        hint = None
        unknown = _UNKNOWN_NAME.fullmatch(message)
        if unknown:
            # Jinja's "No filter named 'uper'": say it our way, with the closest name.
            kind, name = unknown[1], unknown[2]
            message = f"unknown {kind} '{name}'"
            hint = did_you_mean(name, ENV.filters if kind == "filter" else ENV.tests)
        if exc.lineno > 1:
            message += f" (line {exc.lineno} of the template)"
        self.error(path, f"invalid template in {describe(path)}: {message}", hint=hint)

    # -- inputs and outbound calls ------------------------------------------------------------

    def inputs(self) -> dict[str, InputSpec]:
        """``inputs:``: each declaration checked (a default of the input's type, not both
        required and a default, no name also under vars: or params:)."""
        found: dict[str, InputSpec] = {}
        for name, decl in (self.data.get("inputs") or {}).items():
            path: Path = ("inputs", name)
            kind = decl["type"]
            required = bool(decl.get("required", False))
            default = decl.get("default")
            if name in (self.data.get("vars") or {}):
                self.error(path, f"'{name}' is both an input and a variable under vars:",
                           key=True, hint="an input is vars." + name + " already; remove one")
            if "default" in decl:
                if required:
                    self.error((*path, "required"), f"input '{name}' is required and has a "
                               "default; a required input is given by every call", key=True,
                               hint="remove required: true, or the default")
                try:
                    default = coerce_input(kind, default)
                except ValueError as exc:
                    self.error((*path, "default"), f"the default of input '{name}' ({kind}) "
                               f"{exc}")
                else:
                    if isinstance(decl["default"], str) and kind != "string" \
                            and kind != "phone":
                        # "3" for an integer reads as a mistake in a file (quoted): say so.
                        self.error((*path, "default"), f"the default of input '{name}' is "
                                   f"the string {decl['default']!r}, not "
                                   f"{'an' if kind == 'integer' else 'a'} {kind}",
                                   hint="write it without quotes")
            line, col = self.doc.position(path, key=True)
            found[name] = InputSpec(name=name, type=kind, required=required,
                                    default=default, description=decl.get("description"),
                                    line=line, col=col)
        return found

    def outbound(self, start: str) -> Outbound:
        """``outbound:``: caller id and devices compiled as templates, the dial outcomes'
        edges checked."""
        raw: dict[str, Any] = self.data["outbound"]
        base: Path = ("outbound",)
        from_: Any = None
        if "from" in raw:
            from_ = self.text(raw["from"], (*base, "from"), OUTBOUND_OWNER)
            if isinstance(from_, str):
                self.check_address(from_, (*base, "from"), "the caller id")
        devices: list[Any] = []
        for i, item in enumerate(raw.get("devices") or ()):
            group = item if isinstance(item, list) else [item]
            compiled = []
            for j, address in enumerate(group):
                where: Path = (*base, "devices", i, j) if isinstance(item, list) \
                    else (*base, "devices", i)
                value = self.text(address, where, OUTBOUND_OWNER)
                if isinstance(value, str):
                    self.check_address(value, where, "a device")
                compiled.append(value)
            devices.append(tuple(compiled))
        detect = raw.get("detect_machine", False)
        detect_params: dict[str, Any] | None = None
        if detect is True:
            detect_params = {}
        elif isinstance(detect, dict):
            detect_params = {k: v for k, v in detect.items() if k != "wait_for_beep"}
            if detect.get("wait_for_beep"):
                detect_params["detect_message_end"] = True
        on: dict[str, str | None] = dict(raw.get("on") or {})
        for outcome, target in on.items():
            self.check_target(target, (*base, "on", outcome), f"outbound.on.{outcome}")
        if "machine" in on and detect_params is None:
            self.error((*base, "on", "machine"), "outbound.on.machine needs detect_machine: "
                       "without a machine detector a dial never ends with machine", key=True,
                       hint="add detect_machine: {wait_for_beep: true} to outbound")
        edges: dict[str, str | None] = {"answered": start}
        if detect_params is not None:
            edges["machine"] = on.get("machine", start)
        for outcome in CALLLESS_OUTCOMES:
            edges[outcome] = on.get(outcome)
        line, col = self.doc.position(base, key=True)
        return Outbound(from_=from_, devices=tuple(devices), timeout=raw.get("timeout"),
                        max_duration=raw.get("max_duration"),
                        detect_machine=None if detect_params is None
                        else MappingProxyType(detect_params),
                        on=MappingProxyType(on), edges=MappingProxyType(edges),
                        line=line, col=col)

    def check_address(self, value: str, path: Path, what: str) -> None:
        if not (is_phone_number(value) or value.startswith("sip:")):
            self.error(path, f"{what} {value!r} is not a phone number in E.164 (+ and digits) "
                       "or a sip: address", hint="e.g. +15559870000")

    def check_callless(self, version: FlowVersion) -> None:
        """The steps of a busy/no_answer/failed path run without a call: refuse a step that
        needs one (a subflow with such a step included). On these paths on_error and
        on_hangup are not taken (they may need the call): an error ends the flow."""
        outbound = version.outbound
        if outbound is None:
            return
        for outcome in CALLLESS_OUTCOMES:
            first = outbound.edges.get(outcome)
            if first is None:
                continue
            came_from: dict[str, str | None] = {first: None}
            todo = [first]
            while todo:
                sid = todo.pop(0)
                step = version.steps[sid]
                why = _needs_call(step, version)
                if why is not None:
                    chain = [sid]
                    while (prev := came_from[chain[-1]]) is not None:
                        chain.append(prev)
                    path = " → ".join(reversed(chain))
                    self.error(("steps", sid), f"step '{sid}' ({why}) needs a call, but it "
                               f"runs on the outbound {outcome} path, which has none "
                               f"(outbound.on.{outcome} → {path})", key=True,
                               hint="a busy, no_answer or failed path runs only log, set, "
                               "request, send_sms, branch, goto and the end")
                    continue
                for o in step.outcomes():
                    target = route(version, step, o, hangup_handled=True,
                                   error_handled=True).target
                    if target is not None and target not in came_from:
                        came_from[target] = sid
                        todo.append(target)


    # -- edges --------------------------------------------------------------------------------

    def check_target(self, target: str | None, path: Path, what: str) -> None:
        if target is None or target in self.step_data:
            return
        self.error(path, f"unknown step '{target}' in {what}",
                   hint=did_you_mean(target, self.step_ids))

    def check_outcomes(self, sid: str, action: str, on: dict[str, Any], has_timeout: bool,
                       branches: tuple[Branch, ...], params: Any) -> None:
        spec = ACTIONS[action]
        allowed = possible_outcomes(action, has_timeout=has_timeout,
                                    params=params if isinstance(params, Mapping) else None)
        writable = [o for o in allowed if o != "next" and not (action == "branch" and o != "error")]
        for outcome, target in on.items():
            path: Path = ("steps", sid, "on", outcome)
            if outcome not in writable:
                if outcome == "timeout" and spec.waits:
                    self.error(path, f"step '{sid}' has no timeout, so it cannot end with "
                               "'timeout'", key=True, hint="add timeout: SECONDS to the step")
                elif not spec.outcomes:
                    how = ("a branch goes where its choices say" if action == "branch"
                           else "use next: to say where to go after it")
                    self.error(path, f"{action} cannot end with '{outcome}'; its only outcome "
                               f"for on: is error", key=True, hint=how)
                else:
                    hint = params_note(action, outcome) or did_you_mean(outcome, writable)
                    self.error(path, f"{action} cannot end with '{outcome}'; its outcomes are "
                               + ", ".join(writable), key=True, hint=hint)
            self.check_target(target, path, f"on.{outcome}")

    # -- templates ----------------------------------------------------------------------------

    def check_references(self, owner: str | None, path: Path, compiled: _Checked) -> None:
        reported: set[str] = set()

        def report(message: str, hint: str | None = None) -> None:
            if message not in reported:
                reported.add(message)
                self.error(path, message, hint=hint)

        for message, _ in compiled.unsafe:
            report(message)
        self.check_time_calls(compiled, report)
        for message, _ in compiled.limits:  # what will or may run past a render's limits
            self.warning(path, message)
        for ref in compiled.references:
            chain = ref.chain
            root = chain[0]
            if root not in CONTEXT_NAMES and root != "params":
                if root not in ENV.globals:
                    report(f"unknown name '{root}' in a template; templates can use call, steps, "
                           "vars and flow", did_you_mean(root, CONTEXT_NAMES))
                continue
            if root == "params":
                if not self.declared_params:
                    report("params is not declared: this flow has no params:",
                           "a subflow declares its parameters, with defaults, under params: at "
                           "the top of its file")
                elif len(chain) >= 2 and chain[1] not in self.declared_params:
                    report(f"unknown parameter '{chain[1]}' in params.{chain[1]}",
                           did_you_mean(chain[1], self.declared_params)
                           or "declare it under params:")
                continue
            if owner == OUTBOUND_OWNER:
                if root == "steps":
                    report("outbound can use call, vars and flow (no step has run when the "
                           "call is dialled)")
                    continue
                elif root == "vars" and len(chain) >= 2 and chain[1] not in (
                        self.input_names | set(self.data.get("vars") or {})):
                    report(f"vars.{chain[1]} is not known when the call is dialled",
                           "outbound can use the flow's inputs and its vars: values, not "
                           "what set steps give")
                    continue
                elif root == "call" and len(chain) >= 2 and chain[1] not in ("to", "from"):
                    report(f"call.{chain[1]} is not known when the call is dialled",
                           "outbound can use call.to and call.from")
                    continue
            if owner is None and root in ("steps", "vars"):
                report(f"vars values can use only call and flow ({root} is not set yet when "
                       "the call starts)")
                continue
            if len(chain) < 2:
                continue
            key = chain[1]
            if root == "steps":
                if key not in self.step_data:
                    report(f"unknown step '{key}' in steps.{key}", did_you_mean(key, self.step_ids))
                    continue
                action = self.actions[key]
                fields = self.step_results.get(key, ACTIONS[action].result_fields)
                if len(chain) >= 3 and chain[2] not in fields:
                    if action == "call":
                        listed = (f"its subflow returns {', '.join(fields)}" if fields
                                  else "its subflow returns nothing")
                    else:
                        listed = (f"a {action} step's results are {', '.join(fields)}" if fields
                                  else f"a {action} step has no results")
                    report(f"steps.{key} has no result '{chain[2]}'",
                           did_you_mean(chain[2], fields) or listed)
            elif root == "vars":
                if key not in self.known_vars:
                    report(f"unknown variable '{key}' in vars.{key}",
                           did_you_mean(key, self.known_vars)
                           or "define it under vars: or in a set step")
            elif root == "call" and key not in CALL_FIELDS:
                report(f"unknown call field '{key}' in call.{key}",
                       did_you_mean(key, CALL_FIELDS) or f"call has {', '.join(CALL_FIELDS)}")
            elif root == "flow" and key not in FLOW_FIELDS:
                report(f"unknown flow field '{key}' in flow.{key}",
                       did_you_mean(key, FLOW_FIELDS) or f"flow has {', '.join(FLOW_FIELDS)}")

    # -- the graph ----------------------------------------------------------------------------

    def check_graph(self, version: FlowVersion, edges: dict[str, Any]) -> None:
        roots = [r for r in (version.start, version.on_hangup, version.on_error) if r]
        if version.outbound is not None:  # the dial outcomes' steps are roots too
            roots += [t for t in version.outbound.edges.values() if t and t not in roots]
        reachable: set[str] = set()
        todo = list(roots)
        while todo:
            sid = todo.pop()
            if sid in reachable:
                continue
            reachable.add(sid)
            todo.extend(t for t in edges[sid].values() if t is not None)
        for sid in self.step_ids:
            if sid not in reachable:
                self.warning(("steps", sid), f"step '{sid}' is never reached", key=True,
                             hint="no path leads to it from start, on_hangup"
                             + (", on_error or outbound.on" if version.outbound is not None
                                else " or on_error"))
        self.check_after_hangup(version, reachable, edges)
        self.check_loops(version, edges)
        self.check_may_not_have_run(version, roots, reachable, edges)

    def check_after_hangup(self, version: FlowVersion, reachable: set[str],
                           edges: dict[str, Any]) -> None:
        """Warn about steps that need the call but run only after the caller hung up."""
        live: set[str] = set()
        todo = [version.start]
        if version.outbound is not None:  # check_callless has the call-less paths' steps
            todo += [t for t in version.outbound.edges.values() if t]
        while todo:
            sid = todo.pop()
            if sid in live:
                continue
            live.add(sid)
            todo.extend(t for o, t in edges[sid].items() if t is not None and o != "hangup")
        for sid in self.step_ids:
            spec = ACTIONS[self.actions[sid]]
            if sid in reachable and sid not in live and spec.needs_call and not spec.ends_flow:
                self.warning(("steps", sid), f"step '{sid}' ({spec.name}) runs only after the "
                             "caller hung up (every path to it takes a hangup edge), so it ends "
                             "at once with outcome hangup", key=True,
                             hint="after a hangup only steps that need no live call (log, set, "
                             "branch, request…) do something")

    def check_loops(self, version: FlowVersion, edges: dict[str, Any]) -> None:
        steps = version.steps

        def exits(sid: str, with_hangup: bool) -> set[str | None]:
            found: set[str | None] = set()
            for outcome, target in edges[sid].items():
                if outcome == "error" or (outcome == "hangup" and not with_hangup):
                    continue
                found.add(target)
            if with_hangup and steps[sid].spec.needs_call:
                found.add(None)  # the caller can always hang up, and a second hangup ends the flow
            return found

        trapped: set[str] = set()
        for with_hangup in (True, False):
            graph = {sid: exits(sid, with_hangup) for sid in self.step_ids}
            for component in _bottom_components(self.step_ids, graph):
                if trapped & set(component):
                    continue
                trapped |= set(component)
                names = ", ".join(f"'{s}'" for s in component)
                first = component[0]
                if with_hangup:
                    subject = (f"step '{first}' always goes back to itself" if len(component) == 1
                               else f"steps {names} loop forever")
                    self.error(("steps", first), f"{subject}: no path leads out of the loop or "
                               "to the end of the flow", key=True,
                               hint="give one of them a way out (a branch choice, next or on: "
                               "to a step outside the loop)")
                else:
                    subject = (f"step '{first}' repeats" if len(component) == 1
                               else f"steps {names} repeat")
                    self.warning(("steps", first), f"{subject} until the caller hangs up", key=True,
                                 hint="add a way out if that is not what you want")

    def check_may_not_have_run(self, version: FlowVersion, roots: list[str], reachable: set[str],
                               edges: dict[str, Any]) -> None:
        # A reference to steps.X (vars.V) in step S is fine when on every path from a root to
        # S step X ran (a set step defined V) before — or the path took a branch choice whose
        # when checks `steps.X is defined` (`vars.V is defined`). That is a question of
        # dominance: without such guards, "X ran on every path to S" is "X dominates S",
        # answered from the dominator tree in O(1). A token with guards or several setters
        # gets one walk of the graph that avoids them (cached per token). A dataflow of
        # per-step sets of everything done was quadratic in time and memory (10,000 steps:
        # 47 s, 5 GB).
        setters: dict[str, list[str]] = {}
        for sid in self.step_ids:
            if self.actions[sid] == "set":
                for name in self.step_data[sid]["set"]:
                    setters.setdefault(name, []).append(sid)
        # token → the (step, outcome) edges whose branch choice ensures it.
        guarded: dict[_Token, set[tuple[str, str]]] = {}
        for sid in reachable:
            step = version.steps[sid]
            if not step.branches:
                continue
            for outcome, target in edges[sid].items():
                if target is None or not outcome.startswith(BRANCH_PREFIX):
                    continue
                when = step.branches[int(outcome[len(BRANCH_PREFIX):])].when
                if when is None:
                    continue
                for c in when.ensures_defined:
                    if len(c) >= 2 and c[0] in ("steps", "vars"):
                        token = ("step" if c[0] == "steps" else "var", c[1])
                        guarded.setdefault(token, set()).add((sid, outcome))
        dominates = _dominance(self.step_ids, roots, reachable, edges)
        avoiding: dict[_Token, set[str]] = {}

        def surely_done(token: _Token, owner: str) -> bool:
            self.tick()
            doers = [token[1]] if token[0] == "step" else setters.get(token[1], [])
            if token not in guarded and len(doers) == 1:
                return dominates(doers[0], owner)
            reached = avoiding.get(token)
            if reached is None:
                reached = avoiding[token] = _reach_avoiding(
                    roots, edges, set(doers), guarded.get(token, set()))
            return owner not in reached

        initial = set(self.data.get("vars") or {}) | self.input_names
        warned: set[tuple[str, str, Path]] = set()
        for owner, path, compiled in self.templates:
            if owner is None or owner not in reachable:
                continue
            for ref in compiled.references:
                if ref.guarded or len(ref.chain) < 2 or ref.chain[0] not in ("steps", "vars"):
                    continue
                key = ref.chain[1]
                if (owner, ref.chain[0] + key, path) in warned:
                    continue
                if ref.chain[0] == "steps":
                    if key not in self.step_data or surely_done(("step", key), owner):
                        continue
                    self.warning(path, f"steps.{key} may be undefined here: step '{owner}' can "
                                 f"be reached without '{key}' having run",
                                 hint=f"guard it with `steps.{key} is defined` or "
                                 "`| default(...)`")
                else:
                    if key in initial or key not in setters or surely_done(("var", key), owner):
                        continue
                    by = ", ".join(f"'{s}'" for s in setters[key])
                    self.warning(path, f"vars.{key} may be undefined here: step '{owner}' can be "
                                 f"reached before a set step defines it ({by})",
                                 hint=f"give it a first value under vars:, or guard it with "
                                 f"`vars.{key} is defined` or `| default(...)`")
                warned.add((owner, ref.chain[0] + key, path))


def _dominance(order: list[str], roots: list[str], reachable: set[str],
               edges: Mapping[str, Mapping[str, str | None]]) -> Callable[[str, str], bool]:
    """``dominates(a, b)``: every path from a root to step b passes through step a first
    (a != b). The Cooper-Harvey-Kennedy iteration over the reverse postorder, then one
    numbering of the dominator tree for constant-time questions."""
    top = "\0roots"  # a virtual node before every root
    succ: dict[str, list[str]] = {top: list(dict.fromkeys(roots))}
    for sid in order:
        if sid in reachable:
            succ[sid] = [t for t in dict.fromkeys(edges[sid].values()) if t is not None]
    # Postorder, iteratively (a 10,000-step chain is deeper than Python's recursion limit).
    post: list[str] = []
    seen = {top}
    work: list[tuple[str, Iterator[str]]] = [(top, iter(succ[top]))]
    while work:
        node, it = work[-1]
        for nxt in it:
            if nxt not in seen:
                seen.add(nxt)
                work.append((nxt, iter(succ[nxt])))
                break
        else:
            work.pop()
            post.append(node)
    number = {node: i for i, node in enumerate(post)}
    preds: dict[str, list[str]] = {node: [] for node in post}
    for node in post:
        for nxt in succ[node]:
            preds[nxt].append(node)
    idom: dict[str, str] = {top: top}

    def intersect(a: str, b: str) -> str:
        while a != b:
            while number[a] < number[b]:
                a = idom[a]
            while number[b] < number[a]:
                b = idom[b]
        return a

    changed = True
    while changed:
        changed = False
        for node in reversed(post):
            if node == top:
                continue
            new: str | None = None
            for pred in preds[node]:
                if pred in idom:
                    new = pred if new is None else intersect(pred, new)
            if new is not None and idom.get(node) != new:
                idom[node] = new
                changed = True
    children: dict[str, list[str]] = {node: [] for node in post}
    for node, parent in idom.items():
        if node != top:
            children[parent].append(node)
    enter: dict[str, int] = {}
    leave: dict[str, int] = {}
    clock = 0
    stack: list[tuple[str, bool]] = [(top, False)]
    while stack:
        node, done = stack.pop()
        if done:
            leave[node] = clock
            clock += 1
            continue
        enter[node] = clock
        clock += 1
        stack.append((node, True))
        stack.extend((child, False) for child in children[node])

    def dominates(a: str, b: str) -> bool:
        if a == b or a not in enter or b not in enter:
            return False
        return enter[a] < enter[b] and leave[b] < leave[a]

    return dominates


def _reach_avoiding(roots: list[str], edges: Mapping[str, Mapping[str, str | None]],
                    doers: set[str], ensuring: set[tuple[str, str]]) -> set[str]:
    """The steps some path from a root reaches without passing through ``doers`` and
    without taking an ``ensuring`` edge (those paths have the token done)."""
    reached = set(roots)
    todo = list(reached)
    while todo:
        sid = todo.pop()
        if sid in doers:
            continue
        for outcome, target in edges[sid].items():
            if target is not None and target not in reached and (sid, outcome) not in ensuring:
                reached.add(target)
                todo.append(target)
    return reached


def _inside(path: str, root: str) -> bool:
    """True when ``path`` is ``root`` or below it (both absolute)."""
    return os.path.commonpath([path, root]) == root


def _needs_call(step: Step, version: FlowVersion) -> str | None:
    """What in ``step`` needs a live call (its action, or a step of the subflow it calls),
    or None. ``hangup`` and the like end the flow: with no call there is nothing to end."""
    spec = ACTIONS[step.action]
    if spec.needs_call and not spec.ends_flow:
        return step.action
    if step.action == "call":
        sub = version.subflows.get(step.params["flow"])
        if sub is not None:
            for inner in sub.steps.values():
                if _needs_call(inner, sub) is not None:
                    return f"call: its subflow's step '{inner.id}' is {inner.action}"
    return None


def _action_of(step: dict[str, Any]) -> str:
    return next(key for key in step if key in ACTIONS)


def _bottom_components(order: list[str], graph: dict[str, set[str | None]]) -> list[list[str]]:
    """Strongly connected sets of steps that nothing leads out of (and not to the end).

    Each is returned in file order; the list is in the order of each set's first step.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    # Positions, not order.index (linear per call, so quadratic over the flow).
    position = {sid: i for i, sid in enumerate(order)}

    def strongconnect(root: str) -> None:
        nonlocal counter
        # Iterative Tarjan: (node, iterator over its successors).
        work = [(root, iter(sorted((t for t in graph[root] if t is not None),
                                   key=position.__getitem__)))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            advanced = False
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = counter
                    counter += 1
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted((t for t in graph[succ] if t is not None),
                                                   key=position.__getitem__))))
                    advanced = True
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)

    for sid in order:
        if sid not in index:
            strongconnect(sid)
    bottoms = []
    for component in components:
        members = set(component)
        leaves = any(t is None or t not in members for sid in component for t in graph[sid])
        if not leaves:
            bottoms.append(sorted(component, key=position.__getitem__))
    return sorted(bottoms, key=lambda c: position[c[0]])
