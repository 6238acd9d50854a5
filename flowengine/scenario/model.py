"""Scenario files: reading, checking and the model the runner uses.

A scenario file (``*.test.yaml``, usually in ``flows/tests/``) names one flow and lists
scenarios: who calls, what the simulated caller does, which RELAY requests fail, and what
must happen. It is read with the flow language's strict YAML 1.2 loader, validated against
``schemas/scenario.schema.json`` and then against the flow itself (step ids, outcomes,
result fields, the caller script), every problem reported as ``file:line:col`` like
``flowengine check`` does. See ``docs/testing.md``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path as FsPath
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError

from flowengine.flow import FlowError, FlowVersion, load_flow
from flowengine.flow.actions import ACTIONS
from flowengine.flow.diagnostics import Diagnostic, did_you_mean, sort_key
from flowengine.flow.loader import Document, Path, load_yaml
from flowengine.flow.schedules import ScheduleError, has_offset, parse_at, zone, zone_hint
from flowengine.flow.schema import _show, translate_error

#: The scenario schema's file name in ``flowengine/schemas/``.
SCHEMA_FILE = "scenario.schema.json"
#: File names ``flowengine test`` picks up in a directory (recursively).
SCENARIO_SUFFIX = ".test.yaml"
#: Every simulated duration is multiplied by this unless a file or scenario says (scenarios
#: run on virtual time, so simulated seconds cost no real time at 1.0).
DEFAULT_TIME_SCALE = 1.0
DEFAULT_CALLER = "speak:3"
#: What the number an outbound flow's scenario dials does, unless it says.
DEFAULT_CALLEE = "answer"
#: The number an outbound flow's scenario dials, unless its call: says.
DEFAULT_DIALLED = "+15550001111"
DEFAULT_FROM = "+15551230000"
DEFAULT_TO = "+15559870000"
#: Default tolerance of ``recording.duration`` (seconds) and of ``approx`` matchers.
RECORDING_WITHIN = 0.6
APPROX_WITHIN = 0.5
#: The actions whose steps make a recording (``expect.recording``).
RECORDING_ACTIONS = ("record", "record_call")
#: What ``ACTIONS[...].method`` says for a step that sends HTTP, not RELAY (no fault applies).
HTTP_METHOD = "HTTP"


class ScenarioFileError(Exception):
    """A scenario file that cannot run; carries every finding, positioned."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        # Sorted by position within each file, the files in the order they were reported
        # (the scenario file's own findings first, then its flow's): an order that does not
        # depend on where the files happen to live.
        first_seen = {d.file: index for index, d in reversed(list(enumerate(diagnostics)))}
        self.diagnostics = tuple(sorted(
            diagnostics, key=lambda d: (first_seen[d.file], sort_key(d))))
        super().__init__("\n".join(str(d) for d in self.diagnostics))


@dataclass(frozen=True, slots=True)
class Fault:
    """The next run of ``step`` gets an error reply to its RELAY request."""

    step: str
    method: str
    code: str = "500"
    message: str = "Internal error"


#: In a scenario's ``vars``, replaced by the URL of its HTTP receiver.
RECEIVER_TOKEN = "${RECEIVER}"


@dataclass(frozen=True, slots=True)
class ReceiverSpec:
    """The scenario's local HTTP receiver: how it answers (``delay`` in simulated seconds)."""

    down: bool = False
    #: (status, json, body, delay) of each reply, in order; the last repeats.
    replies: tuple[tuple[int, Any, str | None, float], ...] = ()


@dataclass(frozen=True, slots=True)
class CallSpec:
    """One call of a scenario with several (``calls:``): its flow, when it comes in, who
    calls and what must happen on it."""

    name: str
    flow: FlowVersion
    #: Simulated seconds after the scenario starts.
    at: float
    from_number: str
    to_number: str
    context: str
    caller: str
    expect: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Scenario:
    """One simulated call and what must happen on it — or, with ``calls``, several calls
    on one simulator (then ``expect`` is empty and each call has its own)."""

    name: str
    #: Where the scenario is written (its ``name:``).
    line: int
    from_number: str
    to_number: str
    context: str
    caller: str
    time_scale: float
    faults: tuple[Fault, ...]
    #: The ``expect:`` mapping as written (checked against the flow when loaded).
    expect: Mapping[str, Any]
    description: str | None = None
    #: name → value replacing the flow's initial ``vars.<name>`` (``${RECEIVER}`` not yet
    #: replaced).
    vars: Mapping[str, Any] = field(default_factory=dict)
    #: The HTTP receiver to start, or None when the scenario needs none.
    receiver: ReceiverSpec | None = None
    #: For a flow with ``outbound:`` (the scenario places the call): what the number dialled
    #: (``to_number``) does; None for an inbound flow. ``from_number`` is then the caller
    #: id ("": the flow's outbound.from).
    callee: str | None = None
    #: The call's inputs (outbound flows; ``${RECEIVER}`` not yet replaced).
    inputs: Mapping[str, Any] = field(default_factory=dict)
    #: Several calls at once (``calls:``), in the order written; empty for one call.
    calls: tuple[CallSpec, ...] = ()
    #: When the call starts, as its templates' clock sees it (``at:``); None: the
    #: machine's clock.
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ScenarioFile:
    """A loaded scenario file: its flow and its scenarios."""

    file: str
    flow: FlowVersion
    scenarios: tuple[Scenario, ...] = field(default_factory=tuple)


@functools.cache
def scenario_schema() -> dict[str, Any]:
    """The scenario files' JSON Schema, parsed once."""
    text = resources.files("flowengine").joinpath("schemas", SCHEMA_FILE).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def scenario_files(paths: list[str]) -> tuple[list[str], list[Diagnostic]]:
    """The scenario files named by ``paths``: files as given, and every ``*.test.yaml``
    under each directory (recursively, dot-directories skipped), in sorted order."""
    files: list[str] = []
    problems: list[Diagnostic] = []
    for name in paths:
        if os.path.isdir(name):
            found: list[str] = []
            for root, dirs, names in os.walk(name):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found.extend(os.path.join(root, n) for n in names
                             if n.endswith(SCENARIO_SUFFIX) and not n.startswith("."))
            if not found:
                problems.append(Diagnostic(
                    name, None, None, "error",
                    f"no scenario files (*{SCENARIO_SUFFIX}) under this directory"))
            files.extend(sorted(found))
        elif os.path.exists(name):
            files.append(name)
        else:
            problems.append(Diagnostic(name, None, None, "error", "no such file or directory"))
    return files, problems


def load_scenarios(path: str | os.PathLike[str]) -> ScenarioFile:
    """Read and check one scenario file (and load its flow).

    Raises:
        ScenarioFileError: with every finding when the file, or its flow, has problems.
    """
    file = os.fspath(path)
    try:
        text = FsPath(file).read_text("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not valid UTF-8 text"
        raise ScenarioFileError([Diagnostic(file, None, None, "error",
                                            f"cannot read the file: {reason or exc}")]) from None
    try:
        doc = load_yaml(text, file)
    except FlowError as exc:
        raise ScenarioFileError(list(exc.diagnostics)) from None
    if not isinstance(doc.data, dict):
        raise ScenarioFileError([doc.diagnostic((), "a scenario file is a mapping with flow and "
                                                "scenarios")])
    if "steps" in doc.data and "scenarios" not in doc.data:
        raise ScenarioFileError([doc.diagnostic((), "this is a flow, not a scenario file",
                                                hint=f"scenario files end in {SCENARIO_SUFFIX} "
                                                "and name their flow with flow: (see "
                                                "docs/testing.md)")])
    problems = [d for error in _validator().iter_errors(doc.data) for d in _translate(error, doc)]
    if problems:
        raise ScenarioFileError(_unique(problems))
    return _Checker(doc).build()


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    schema = scenario_schema()
    return jsonschema.validators.validator_for(schema)(schema)


def _unique(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    seen: dict[tuple[Any, ...], Diagnostic] = {}
    for d in diagnostics:
        seen.setdefault((d.line, d.col, d.message), d)
    return list(seen.values())


def describe(path: Path) -> str:
    """What the node at ``path`` of a scenario file is, for a message."""
    if not path:
        return "the scenario file"
    if path[0] == "scenarios" and len(path) >= 2:
        where = f"scenario {int(path[1]) + 1}"
        rest = path[2:]
        if not rest:
            return where
        if rest[0] == "faults" and len(rest) >= 2:
            inner = f"fault {int(rest[1]) + 1} of {where}"
            return inner if len(rest) == 2 else f"{'.'.join(map(str, rest[2:]))} in {inner}"
        shown = ".".join(str(p) if not isinstance(p, int) else str(p + 1) for p in rest)
        return f"{shown} in {where}"
    return ".".join(str(p) for p in path)


def _translate(error: ValidationError, doc: Document) -> Iterator[Diagnostic]:
    """One schema error as a short, positioned message."""
    path: Path = tuple(error.absolute_path)
    value: Any = error.instance
    kind = error.validator
    rule: Any = error.validator_value
    schema = error.schema if isinstance(error.schema, dict) else {}
    where = describe(path)
    if kind == "anyOf":
        # A matcher or a recording: report what is wrong inside the branch of the same type
        # (a mapping's wrong keys), else say the value is not one of the kinds allowed.
        fitting = [sub for sub in error.context or ()
                   if _accepts(rule[sub.relative_schema_path[0]], value)]
        if fitting:
            for sub in fitting:
                yield from _translate(sub, doc)
        else:
            yield doc.diagnostic(
                path, f"{where} cannot be {_show(value)}",
                hint=f"see {schema.get('title') or 'the schema'} in docs/testing.md")
    elif "propertyNames" in error.absolute_schema_path:
        yield doc.diagnostic((*path, value), f"invalid step id '{value}' in {where}", key=True)
    else:
        yield from translate_error(error, doc, where)


_JSON_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _accepts(branch: Any, value: Any) -> bool:
    """Whether an ``anyOf`` branch is meant for values of ``value``'s type."""
    types = branch.get("type") if isinstance(branch, dict) else None
    if types is None:
        return False
    for name in [types] if isinstance(types, str) else types:
        if name == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if name in _JSON_TYPES and isinstance(value, _JSON_TYPES[name]) and not (
                name != "boolean" and isinstance(value, bool)):
            return True
    return False


class _Checker:
    """Checks a schema-valid scenario file against its flow and builds the model."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.data: dict[str, Any] = doc.data
        self.problems: list[Diagnostic] = []
        #: The other flows the calls of scenarios run, by path (None: it did not load).
        self._flows: dict[str, FlowVersion | None] = {}

    def error(self, path: Path, message: str, *, key: bool = False,
              hint: str | None = None) -> None:
        self.problems.append(self.doc.diagnostic(path, message, key=key, hint=hint))

    def build(self) -> ScenarioFile:
        flow_ref = self.data["flow"]
        flow_path = os.path.normpath(os.path.join(os.path.dirname(self.doc.file), flow_ref))
        try:
            flow = load_flow(flow_path)
        except FlowError as exc:
            self.error(("flow",), f"the flow {flow_path} does not load "
                       f"({len(exc.errors)} error{'s' if len(exc.errors) != 1 else ''})",
                       hint=f"run `flowengine check {flow_path}`")
            raise ScenarioFileError([*self.problems, *exc.errors]) from None
        defaults_call = self.data.get("call") or {}
        default_caller = self.data.get("caller", DEFAULT_CALLER)
        default_scale = self.data.get("time_scale", DEFAULT_TIME_SCALE)
        if "caller" in self.data:
            self.check_caller(default_caller, ("caller",))
        if "call" in self.data:
            self.check_context(flow, defaults_call, ("call",))
        default_vars = self.data.get("vars") or {}
        self.check_vars(flow, default_vars, ("vars",))
        default_receiver = self.data.get("receiver")
        outbound = flow.outbound is not None
        default_callee = self.data.get("callee", DEFAULT_CALLEE)
        if "callee" in self.data:
            self.check_callee(flow, default_callee, ("callee",))
        if "caller" in self.data and outbound:
            self.error(("caller",), f"flow {flow.name} places its calls (outbound:): say what "
                       "the number dialled does with callee:", key=True)
        default_inputs = self.data.get("inputs") or {}
        if "inputs" in self.data:
            if outbound:
                self.check_inputs(flow, default_inputs, (), own=set(default_inputs),
                                  complete=False)
            else:
                self.error(("inputs",), f"flow {flow.name} has no outbound: section, so its "
                           "scenarios place no call to give inputs to", key=True)
        default_tz = self.data.get("tz")
        # A wrong zone is reported once, where it is written; the at:s in it are not read.
        tz_ok = default_tz is None or self.zone_ok(default_tz, ("tz",))
        default_at = self.at(self.data.get("at"), default_tz, ("at",)) if tz_ok else None
        scenarios = []
        names: dict[str, int] = {}
        for index, raw in enumerate(self.data["scenarios"]):
            base: Path = ("scenarios", index)
            name = raw["name"]
            line, _ = self.doc.position((*base, "name"))
            if name in names:
                self.error((*base, "name"), f"two scenarios are named '{name}' (the other at "
                           f"line {names[name]})", hint="scenario names must be unique in a file")
            names.setdefault(name, line)
            if "calls" in raw:
                multi = self.multi(flow, raw, base, name, line, defaults_call,
                                   default_caller, default_scale)
                scenarios.append(dataclasses.replace(multi, at=self.scenario_at(
                    raw, base, default_at, default_tz, tz_ok)))
                continue
            if "expect" not in raw:
                self.error(base, f"scenario '{name}' has no expect: (or calls:, for several "
                           "calls)", hint="say what must happen under expect:")
                continue
            call = {**defaults_call, **(raw.get("call") or {})}
            if "call" in raw:
                self.check_context(flow, raw["call"], (*base, "call"))
            caller = raw.get("caller", default_caller)
            if "caller" in raw:
                self.check_caller(caller, (*base, "caller"))
                if outbound:
                    self.error((*base, "caller"), f"flow {flow.name} places its calls "
                               "(outbound:): say what the number dialled does with callee:",
                               key=True)
            callee = raw.get("callee", default_callee)
            if "callee" in raw:
                self.check_callee(flow, callee, (*base, "callee"))
            inputs = {**default_inputs, **(raw.get("inputs") or {})}
            if outbound:
                self.check_inputs(flow, inputs, base, own=set(raw.get("inputs") or {}))
            elif "inputs" in raw:
                self.error((*base, "inputs"), f"flow {flow.name} has no outbound: section, "
                           "so its scenarios place no call to give inputs to", key=True)
            faults = tuple(self.fault(flow, f, (*base, "faults", i))
                           for i, f in enumerate(raw.get("faults") or ()))
            self.check_expect(flow, raw["expect"], (*base, "expect"))
            self.check_vars(flow, raw.get("vars") or {}, (*base, "vars"))
            variables = {**default_vars, **(raw.get("vars") or {})}
            at = self.scenario_at(raw, base, default_at, default_tz, tz_ok)
            receiver = raw.get("receiver", default_receiver)
            if receiver is None and (_mentions_receiver(variables) or _mentions_receiver(
                    {**default_inputs, **(raw.get("inputs") or {})})
                                     or "received" in raw["expect"]):
                receiver = {}
            if outbound:
                from_number = call.get("from", "")
                to_number = call.get("to", DEFAULT_DIALLED)
            else:
                from_number = call.get("from", _exact(flow, "from", DEFAULT_FROM))
                to_number = call.get("to", _exact(flow, "to", DEFAULT_TO))
            scenarios.append(Scenario(
                name=name, line=line, from_number=from_number, to_number=to_number,
                context=call.get("context", flow.contexts[0]),
                caller=caller, time_scale=raw.get("time_scale", default_scale),
                faults=faults, expect=raw["expect"], description=raw.get("description"),
                vars=variables, receiver=_receiver(receiver),
                callee=callee if outbound else None, inputs=inputs, at=at))
        if self.problems:
            raise ScenarioFileError(self.problems)
        return ScenarioFile(self.doc.file, flow, tuple(scenarios))

    def scenario_at(self, raw: Mapping[str, Any], base: Path, default_at: datetime | None,
                    default_tz: str | None, tz_ok: bool) -> datetime | None:
        """The scenario's clock (``at:``, ``tz:``), else the file's."""
        at: datetime | None
        if "at" in raw:
            if "tz" in raw:
                at = self.at(raw["at"], raw["tz"], (*base, "at")) \
                    if self.zone_ok(raw["tz"], (*base, "tz")) else None
            elif has_offset(raw["at"]):
                at = self.at(raw["at"], None, (*base, "at"))  # its offset beats the file's tz
            else:
                at = self.at(raw["at"], default_tz, (*base, "at")) if tz_ok else None
        elif "tz" in raw:
            # A zone for the file's at (written in UTC or its own zone) would be a
            # second reading of the same text: refuse it rather than guess.
            self.error((*base, "tz"), "tz says which zone at: is written in, and this "
                       "scenario has no at:", key=True,
                       hint="give the scenario its own at:, or move tz: next to the "
                       "file's at:")
            at = default_at
        else:
            at = default_at
        return at

    def multi(self, flow: FlowVersion, raw: Mapping[str, Any], base: Path, name: str,
              line: int, defaults_call: Mapping[str, Any], default_caller: str,
              default_scale: float) -> Scenario:
        """A scenario with ``calls:``: each call checked against its own flow."""
        for key in ("expect", "call", "caller", "faults", "vars", "receiver"):
            if key in raw:
                self.error((*base, key), f"{key} does not go with calls: (each call has its "
                           "own call, caller and expect)", key=True,
                           hint="move it into the calls it belongs to, or drop calls:")
        calls: list[CallSpec] = []
        seen: set[str] = set()
        contexts: dict[str, str] = {}
        for i, item in enumerate(raw["calls"]):
            cpath: Path = (*base, "calls", i)
            if item["name"] in seen:
                self.error((*cpath, "name"), f"two calls are named '{item['name']}' in "
                           f"scenario '{name}'", hint="call names must be unique in a scenario")
            seen.add(item["name"])
            own = flow
            if "flow" in item:
                loaded = self.load_other(flow, item["flow"], (*cpath, "flow"))
                if loaded is None:
                    continue
                own = loaded
            call = {**(defaults_call if own is flow else {}), **(item.get("call") or {})}
            if "call" in item:
                self.check_context(own, item["call"], (*cpath, "call"))
            caller = item.get("caller", default_caller)
            if "caller" in item:
                self.check_caller(caller, (*cpath, "caller"))
            self.check_expect(own, item["expect"], (*cpath, "expect"))
            context = call.get("context", own.contexts[0])
            other = contexts.setdefault(context, own.file)
            if other != own.file and context in own.contexts:
                self.error((*cpath, "call"), f"calls of two flows come in on context "
                           f"'{context}': a call there would go to either", key=True,
                           hint="give each flow's calls a context of its own")
            calls.append(CallSpec(
                name=item["name"], flow=own, at=float(item.get("at", 0)),
                from_number=call.get("from", _exact(own, "from", DEFAULT_FROM)),
                to_number=call.get("to", _exact(own, "to", DEFAULT_TO)),
                context=context, caller=caller, expect=item["expect"]))
        return Scenario(name=name, line=line, from_number=DEFAULT_FROM, to_number=DEFAULT_TO,
                        context=flow.contexts[0], caller=default_caller,
                        time_scale=raw.get("time_scale", default_scale), faults=(),
                        expect={}, description=raw.get("description"), calls=tuple(calls))

    def load_other(self, main: FlowVersion, ref: str, path: Path) -> FlowVersion | None:
        """The flow a call runs (relative to the scenario file), loaded once."""
        file = os.path.normpath(os.path.join(os.path.dirname(self.doc.file), ref))
        if os.path.realpath(file) == os.path.realpath(main.file):
            return main
        cache = self._flows
        if file not in cache:
            try:
                cache[file] = load_flow(file)
            except FlowError as exc:
                self.error(path, f"the flow {file} does not load ({len(exc.errors)} error"
                           f"{'s' if len(exc.errors) != 1 else ''})",
                           hint=f"run `flowengine check {file}`")
                cache[file] = None
        return cache[file]

    # -- pieces ---------------------------------------------------------------------------

    def zone_ok(self, tz: str, path: Path) -> bool:
        """Whether ``tz`` names a time zone (else reported at ``path``)."""
        try:
            zone(tz)
        except ScheduleError as exc:
            self.error(path, str(exc), hint=zone_hint(tz))
            return False
        return True

    def at(self, text: str | None, tz: str | None, path: Path) -> datetime | None:
        """The moment ``at:`` (at ``path``) names in ``tz``; None when not given or wrong
        (reported)."""
        if text is None:
            return None
        try:
            return parse_at(text, tz)
        except ScheduleError as exc:
            self.error(path, str(exc))
            return None

    def check_caller(self, script: str, path: Path) -> None:
        from flowengine.sim.caller import CallerScript, CallerScriptError

        try:
            CallerScript.parse(script)
        except CallerScriptError as exc:
            self.error(path, f"invalid caller script: {exc}")

    def check_callee(self, flow: FlowVersion, script: str, path: Path) -> None:
        if flow.outbound is None:
            self.error(path, f"flow {flow.name} has no outbound: section, so its scenarios "
                       "take an inbound call: say what the caller does with caller:",
                       key=True)
            return
        self.check_caller(script, path)

    def check_inputs(self, flow: FlowVersion, inputs: Mapping[str, Any], path: Path, *,
                     own: set[str], complete: bool = True) -> None:
        """The inputs a call gets (``path``: where they are written, under ``inputs:``),
        checked as the call will check them. Only the problems of the names given here
        (``own``) are reported, and (``complete``) a required input nobody gave."""
        from flowengine.flow.inputs import InputError, validate_inputs

        try:
            validate_inputs(flow, {k: _with_placeholder(v) for k, v in inputs.items()})
        except InputError as exc:
            for name, message in exc.problems:
                if name in own:
                    self.error((*path, "inputs", name), message, key=name not in flow.inputs)
                elif complete and name not in inputs:
                    self.error(path, message, hint=f"give it under inputs: ({name}: …)")

    def check_vars(self, flow: FlowVersion, variables: Mapping[str, Any], path: Path) -> None:
        for name in variables:
            if name not in flow.vars:
                known = list(flow.vars)
                self.error((*path, name), f"flow {flow.name} has no variable '{name}' under "
                           "vars:", key=True, hint=did_you_mean(name, known) or (
                               f"its vars: {', '.join(known)}" if known else
                               "a scenario can only replace the flow's initial vars"))

    def check_context(self, flow: FlowVersion, call: Mapping[str, Any], path: Path) -> None:
        context = call.get("context")
        if context is not None and context not in flow.contexts:
            self.error((*path, "context"), f"flow {flow.name} does not take calls on context "
                       f"'{context}'; its contexts: {', '.join(flow.contexts)}",
                       hint=did_you_mean(context, flow.contexts))

    def step_ref(self, flow: FlowVersion, step: str, path: Path, *, key: bool = False) -> bool:
        if step in flow.steps:
            return True
        self.error(path, f"flow {flow.name} has no step '{step}'", key=key,
                   hint=did_you_mean(step, list(flow.steps)))
        return False

    def fault(self, flow: FlowVersion, raw: Mapping[str, Any], path: Path) -> Fault:
        step = raw["step"]
        method = ""
        if self.step_ref(flow, step, (*path, "step")):
            action = flow.steps[step].action
            spec = ACTIONS[action]
            method = spec.method if spec.method and spec.method != HTTP_METHOD else ""
            if not method:
                hint = ("make its server fail instead (receiver: in the scenario)"
                        if spec.method == HTTP_METHOD else "faults apply to steps that send a "
                        "RELAY request, such as answer, play, record and hangup")
                self.error((*path, "step"), f"step '{step}' ({action}) sends no RELAY request, so "
                           "it cannot be made to fail", hint=hint)
        return Fault(step, method, raw.get("code", "500"), raw.get("message", "Internal error"))

    def check_expect(self, flow: FlowVersion, expect: Mapping[str, Any], path: Path) -> None:
        if "dial" in expect:
            if flow.outbound is None:
                self.error((*path, "dial"), f"flow {flow.name} has no outbound: section, so "
                           "its scenarios place no call", key=True)
            elif expect["dial"] not in flow.outbound.outcomes():
                self.error((*path, "dial"), f"a dial of flow {flow.name} cannot come to "
                           f"'{expect['dial']}' (it has no detect_machine)",
                           hint="add detect_machine to outbound:")
        for key in ("path", "path_includes", "not_visited"):
            for i, step in enumerate(expect.get(key) or ()):
                self.step_ref(flow, step, (*path, key, i))
        for step, outcome in (expect.get("outcomes") or {}).items():
            opath: Path = (*path, "outcomes", step)
            if self.step_ref(flow, step, opath, key=True):
                possible = flow.steps[step].outcomes()
                if outcome not in possible:
                    self.error(opath, f"step '{step}' ({flow.steps[step].action}) cannot end with "
                               f"'{outcome}'; its outcomes are {', '.join(possible)}",
                               hint=did_you_mean(outcome, possible))
        for step, fields in (expect.get("steps") or {}).items():
            spath: Path = (*path, "steps", step)
            if self.step_ref(flow, step, spath, key=True):
                known = flow.steps[step].result_fields
                for name in fields:
                    if name not in known:
                        listed = ", ".join(known) if known else "none"
                        self.error((*spath, name), f"steps.{step} has no result '{name}'",
                                   key=True, hint=did_you_mean(name, known)
                                   or f"a {flow.steps[step].action} step's results: {listed}")
        recording = expect.get("recording")
        recorders = [s for s in flow.steps.values() if s.action in RECORDING_ACTIONS]
        if isinstance(recording, dict) and "step" in recording:
            rpath: Path = (*path, "recording", "step")
            step = recording["step"]
            if self.step_ref(flow, step, rpath) and \
                    flow.steps[step].action not in RECORDING_ACTIONS:
                self.error(rpath, f"step '{step}' is a {flow.steps[step].action} step, not record")
        elif isinstance(recording, dict) and len(recorders) != 1:
            self.error((*path, "recording"), f"flow {flow.name} has "
                       f"{'no' if not recorders else 'several'} record steps", key=True,
                       hint="say which with step: STEP_ID")


def _with_placeholder(value: Any) -> Any:
    """``value`` with ``${RECEIVER}`` replaced by a URL, to check it as the run will see it."""
    return value.replace(RECEIVER_TOKEN, "http://127.0.0.1:9") if isinstance(value, str) \
        else value


def _mentions_receiver(value: Any) -> bool:
    if isinstance(value, str):
        return RECEIVER_TOKEN in value
    if isinstance(value, Mapping):
        return any(_mentions_receiver(v) for v in value.values())
    if isinstance(value, list):
        return any(_mentions_receiver(v) for v in value)
    return False


def _receiver(raw: Mapping[str, Any] | None) -> ReceiverSpec | None:
    if raw is None:
        return None
    replies = tuple((int(r.get("status", 200)), r.get("json"), r.get("body"),
                     float(r.get("delay", 0))) for r in raw.get("replies") or ())
    return ReceiverSpec(down=bool(raw.get("down", False)), replies=replies)


def _exact(flow: FlowVersion, key: str, default: str) -> str:
    """The flow's ``match.<key>`` when it is an exact number (a glob cannot be dialled)."""
    value = flow.match.get(key) if flow.match else None
    if isinstance(value, str) and not any(c in value for c in "*?["):
        return value
    return default
