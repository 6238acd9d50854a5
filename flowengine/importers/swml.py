"""A SWML script (``version: 1.0.0``, ``sections: {main: [...], …}``) as a flowengine flow.

How the script's structure maps (docs/migrating.md, *From SWML*, has the whole table):

* ``main`` becomes the flow's steps, one (sometimes two) per method, in order.
* A section run with ``execute`` becomes a **subflow file**, ``lib/<script>_<section>.yaml``,
  and the ``execute`` a ``call:`` step: SWML gives the executed section its own variables,
  ``params`` and a ``return`` value, which is exactly what a flowengine subflow is.
* A section reached with ``transfer`` is **inlined** into the flow that transfers (its steps
  prefixed with the section's name) and the transfer is a jump: control never comes back,
  and the variables are shared, as in SWML.
* ``switch``/``cond`` become ``branch`` steps whose choices jump to the steps of each case;
  each case's last step goes on after the ``switch``. ``label`` names the step after it;
  ``goto`` becomes a flowengine ``goto`` (``max`` → ``max_visits``), behind a ``branch`` when
  it has a ``when``.

SWML's variables are read by later methods; flowengine steps have results. A forward
data-flow pass over the finished step graph tells, for each step, which step last set each
variable on every path that reaches it, so ``${prompt_value}`` becomes
``{{ steps.menu.digits }}`` — and is reported when several steps may have set it.

What does not translate is a :class:`~.base.Finding` at its source line and a ``log`` step
(or a comment in a ``description``) in the output; what is not a SWML script at all is a
:class:`~.base.SourceError`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from flowengine.flow.actions import ACTIONS
from flowengine.flow.loader import Document, Path, WrittenFloat, WrittenInt

from . import jsexpr
from .base import Finding, ImportResult, SourceError
from .jsexpr import Jinja, JsError

__all__ = ["convert"]

#: Step-id names a template cannot tell from a mapping's methods.
_RESERVED = {"items", "keys", "values", "get", "pop", "update", "copy", "clear", "setdefault",
             "popitem", "fromkeys"}
#: SWML's record defaults, written out: RELAY's (mp3, ``#*``, 5 s, 1 s) differ, and 1 s of
#: silence would end an imported voicemail at the caller's first pause.
RECORD_DEFAULTS: dict[str, Any] = {"format": "wav", "terminators": "#", "initial_timeout": 4,
                                   "end_silence_timeout": 5}
#: SWML's connect waits 60 s for an answer (flowengine's connect 30 s).
CONNECT_TIMEOUT = 60
#: SWML's request waits 5 s for the answer (flowengine's 10 s).
REQUEST_TIMEOUT = 5.0
#: SWML's goto jumps at most 100 times unless it says otherwise.
GOTO_MAX = 100
#: Methods that need the call answered; SWML answers by itself before the first of them.
_MEDIA = {"play", "prompt", "record", "record_call", "detect_machine", "send_digits", "sleep",
          "connect"}

#: SWML methods whose flowengine action may not exist yet: imported only where it does.
_OPTIONAL = {"enter_queue": "enqueue", "join_conference": "conference", "sip_refer": "refer"}

_CALL_FIELDS = {"from": "from", "to": "to", "from_number": "from", "to_number": "to",
                "call_id": "id", "direction": "direction", "call_state": "state"}


def _ringtones() -> frozenset[str]:
    for choice in ACTIONS["play"].definitions["media"]["oneOf"]:
        if choice.get("title") == "ringtone":
            return frozenset(choice["properties"]["ringtone"]["enum"])
    return frozenset()  # pragma: no cover


_RINGTONES = _ringtones()


# --- the intermediate form -------------------------------------------------------------

@dataclass(frozen=True)
class Label:
    """A jump target not known yet when a backward ``goto`` is compiled."""

    name: str
    path: Path


Target = str | None | Label


@dataclass
class Deferred:
    """A part of a step's parameters rendered once the data flow is known."""

    render: Callable[[Ctx], Any]


@dataclass(frozen=True)
class Def:
    """One step's setting of a SWML variable: ``kind`` says which step it was."""

    step: str
    kind: str
    info: Any = None

    def key(self) -> tuple[str, str]:
        return (self.step, self.kind)


UNSET = Def("", "unset-marker")


@dataclass
class IRStep:
    """One flowengine step before its templates are rendered."""

    id: str
    action: str
    params: Any
    path: Path
    order: tuple[int, int, int]
    next: Target = None
    on: dict[str, Target] = field(default_factory=dict)
    description: str | None = None
    timeout: float | None = None
    defines: dict[str, Def] = field(default_factory=dict)
    #: for scenarios: per branch choice, (prompt step id, answer) or None.
    choices: list[tuple[str, str] | None] | None = None
    goto: tuple[Target, int | None] | None = None
    branch_targets: list[Target] = field(default_factory=list)
    #: the SWML section the step comes from.
    section: str = ""


@dataclass
class FileUnit:
    """One flow file being built: the main flow, or one subflow."""

    root: str
    name: str
    file: str
    sections: list[str]
    steps: dict[str, IRStep] = field(default_factory=dict)
    used_ids: set[str] = field(default_factory=set)
    labels: dict[tuple[str, str], Target] = field(default_factory=dict)
    params: dict[str, None] = field(default_factory=dict)
    start: Target = None
    entry: dict[str, Target] = field(default_factory=dict)
    returns_value: bool = False
    rendered: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: branch step → per choice: (prompt step, the answer that takes it), "default", or None.
    decisions: dict[str, list[tuple[str, str] | None]] = field(default_factory=dict)


class Ctx:
    """What a deferred part renders with: the variables reaching its step, and reporting."""

    def __init__(self, conv: _Converter, unit: FileUnit, step: IRStep,
                 env: dict[str, frozenset[Def]]) -> None:
        self.conv = conv
        self.unit = unit
        self.step = step
        self.env = env


# --- helpers ------------------------------------------------------------------------------

def _ident(text: str, fallback: str = "step") -> str:
    ident = re.sub(r"[^A-Za-z0-9_]", "_", text).strip("_") or fallback
    if ident[0].isdigit():
        ident = f"{fallback}_{ident}"
    if ident in _RESERVED:
        ident += "_"
    return ident[:60]


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, WrittenInt):
        return int(value)
    if isinstance(value, WrittenFloat):
        return float(value)
    return value


def _text(value: Any) -> str | None:
    """Text as written: an unquoted ``+15551234567`` is a number to YAML, with its ``+``."""
    if isinstance(value, str):
        return value
    if isinstance(value, (WrittenInt, WrittenFloat)):
        return value.written
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _whole(value: float | int) -> float | int:
    """``20.0`` as ``20``: the output reads as the source was written."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _short(value: Any, limit: int = 70) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):  # pragma: no cover - loaded YAML is JSON data
        text = str(value)
    return text if len(text) <= limit else text[:limit] + "…"


class _Converter:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.findings: list[Finding] = []
        self._seen: set[tuple[int, int, str]] = set()
        data = doc.data
        if not isinstance(data, dict):
            raise SourceError("this is not a SWML script: it should be a mapping with "
                              "'version' and 'sections'")
        sections = data.get("sections")
        if not isinstance(sections, dict) or "main" not in sections:
            where = doc.position(("sections",), key=True) if "sections" in data else (1, 1)
            raise SourceError("this is not a SWML script: it has no 'sections' with a "
                              "'main' section", *where)
        for name, body in sections.items():
            if not isinstance(body, list):
                raise SourceError(f"section '{name}' must be a list of methods, not "
                                  f"{type(body).__name__}", *doc.position(("sections", name)))
        self.sections: dict[str, list[Any]] = sections
        version = data.get("version")
        if version is not None and str(version) != "1.0.0":
            self.report(("version",), f"SWML version {version!r}: only 1.0.0 is known; "
                                      "imported as 1.0.0")
        for key in data:
            if key not in ("version", "sections"):
                self.report((key,), f"top-level key '{key}' is not part of SWML; ignored")
        stem = os.path.splitext(os.path.basename(doc.file))[0] or "swml"
        self.stem = _ident(stem.replace(".", "_"), "swml")
        self.name = re.sub(r"[^A-Za-z0-9_.-]", "_", stem) or "swml"

    # -- reporting ------------------------------------------------------------------------

    def report(self, path: Path, message: str) -> None:
        # At the key that names it (``ai:``, ``headers:``), else at the value.
        line, col = self.doc.position(path, key=True)
        if (line, col, message) not in self._seen:
            self._seen.add((line, col, message))
            self.findings.append(Finding(line, col, message))

    def where(self, path: Path) -> str:
        return f"line {self.doc.position(path, key=True)[0]}"

    # -- the structure of the script --------------------------------------------------------

    def methods(self, body: Any, path: Path) -> Iterable[tuple[str, Any, Path]]:
        """(method, params, path) of each method of a block, and of the blocks inside it."""
        if not isinstance(body, list):
            return
        for i, item in enumerate(body):
            p = (*path, i)
            if isinstance(item, dict) and len(item) == 1:
                (name, params), = item.items()
                yield name, params, (*p, name)
                yield from self.nested(name, params, (*p, name))

    def nested(self, name: str, params: Any, path: Path) -> Iterable[tuple[str, Any, Path]]:
        if name == "switch" and isinstance(params, dict):
            cases = params.get("case")
            for key, block in (cases.items() if isinstance(cases, dict) else ()):
                yield from self.methods(block, (*path, "case", key))
            yield from self.methods(params.get("default"), (*path, "default"))
        elif name == "cond" and isinstance(params, list):
            for i, choice in enumerate(params):
                if isinstance(choice, dict):
                    for key in ("then", "else"):
                        yield from self.methods(choice.get(key), (*path, i, key))
        elif name in ("execute", "connect", "join_conference") and isinstance(params, dict):
            yield from self.methods(params.get("on_return"), (*path, "on_return"))
            result = params.get("result")
            if isinstance(result, dict):
                yield from self.nested("switch", result, (*path, "result"))
            elif isinstance(result, list):
                yield from self.nested("cond", result, (*path, "result"))

    def dest_section(self, params: Any) -> str | None:
        dest = params.get("dest") if isinstance(params, dict) else params
        if isinstance(dest, str) and dest in self.sections:
            return dest
        return None

    def plan(self) -> list[FileUnit]:
        """The flow files: main's, and one per executed section; cycles are errors."""
        transfers: dict[str, set[str]] = {}
        executes: dict[str, list[tuple[str, Path]]] = {}
        for section, body in self.sections.items():
            transfers[section] = set()
            executes[section] = []
            for name, params, path in self.methods(body, ("sections", section)):
                if name not in ("execute", "transfer"):
                    continue
                dest = params.get("dest") if isinstance(params, dict) else params
                if not isinstance(dest, str):
                    raise SourceError(f"{name} needs 'dest' (a section or a URL)",
                                      *self.doc.position(path))
                if dest in self.sections:
                    (transfers[section].add(dest) if name == "transfer"
                     else executes[section].append((dest, path)))
                elif "://" not in dest and not dest.startswith("relay:"):
                    known = ", ".join(sorted(self.sections))
                    raise SourceError(f"{name} to '{dest}': there is no such section "
                                      f"(sections: {known})",
                                      *self.doc.position((*path, "dest")
                                                         if isinstance(params, dict) else path))

        def closure(root: str) -> list[str]:
            order = [root]
            for section in order:
                for dest in sorted(transfers[section]):
                    if dest not in order:
                        order.append(dest)
            return order

        units: dict[str, FileUnit] = {}
        roots = ["main"]
        for root in roots:
            sections = closure(root)
            if root == "main":
                unit = FileUnit(root, self.name, "", sections)
            else:
                unit = FileUnit(root, f"{self.name}.{root}", f"lib/{self.stem}_{_ident(root)}.yaml",
                                sections)
            units[root] = unit
            for section in sections:
                for dest, _ in executes[section]:
                    if dest not in roots:
                        roots.append(dest)
        # An execute cycle: a section that executes itself, directly or through others.
        state: dict[str, int] = {}

        def visit(root: str, trail: list[str]) -> None:
            state[root] = 1
            for section in units[root].sections:
                for dest, path in executes[section]:
                    if state.get(dest) == 1:
                        cycle = " → ".join([*trail[trail.index(dest):], dest]) \
                            if dest in trail else f"{root} → {dest}"
                        raise SourceError(f"execute cycle: {cycle} (a section may not "
                                          "execute itself, directly or through others)",
                                          *self.doc.position(path))
                    if state.get(dest) is None:
                        visit(dest, [*trail, dest])
            state[root] = 2

        visit("main", ["main"])
        reached = {section for unit in units.values() for section in unit.sections}
        for section in self.sections:
            if section not in reached:
                self.report(("sections", section), f"section '{section}' is never executed or "
                                                   "transferred to; not imported")
        return list(units.values())

    # -- compiling -----------------------------------------------------------------------------

    def convert(self) -> ImportResult:
        units = self.plan()
        self.units = {u.root: u for u in units}
        for unit in units:
            self.compile_unit(unit)
        outputs: dict[str, dict[str, Any]] = {}
        main_flow: dict[str, Any] = {}
        for unit in units:
            flow = self.render_unit(unit)
            if unit.root == "main":
                main_flow = flow
            else:
                outputs[unit.file] = flow
        result = ImportResult(main_flow, self.findings, None, outputs)
        result.scenarios = _scenarios(self, self.units["main"])
        result.findings.sort(key=lambda f: (f.line, f.col))
        return result

    def compile_unit(self, unit: FileUnit) -> None:
        self.unit = unit
        self.ids: dict[Path, str] = {}
        self.label_lines: dict[tuple[str, str], int] = {}
        for index, section in enumerate(unit.sections):
            prefix = "" if index == 0 else _ident(section) + "_"
            self.name_block(self.sections[section], ("sections", section), prefix,
                            first_name=None if index == 0 else _ident(section), section=section)
        for section in reversed(unit.sections):
            self.section = section
            entry = self.block(self.sections[section], ("sections", section), None, section)
            unit.entry[section] = entry
            unit.labels[(section, "\0entry")] = entry
        unit.start = unit.entry[unit.sections[0]]
        self.resolve_labels(unit)
        if unit.root == "main":
            self.auto_answer(unit)

    # Each method gets its step id before anything is compiled, in source order, so that
    # ids read in order (play, play_2, …) and a label names the step after it.
    def name_block(self, body: list[Any], path: Path, prefix: str, *, first_name: str | None,
                   section: str) -> None:
        pending: str | None = first_name
        for i, item in enumerate(body):
            p = (*path, i)
            method = self.method_of(item, p, report=False)
            if method is None:
                self.ids[p] = self.new_id(pending or f"{prefix}unknown")
                pending = None
                continue
            name, params = method
            if name == "label":
                label = params if isinstance(params, str) else None
                if label is not None:
                    pending = pending or _ident(prefix + label)
                continue
            self.ids[p] = self.new_id(pending or _ident(prefix + name))
            pending = None
            self.name_nested(name, params, (*p, name), prefix, section)

    def name_nested(self, name: str, params: Any, path: Path, prefix: str, section: str) -> None:
        if name == "switch" and isinstance(params, dict):
            case = params.get("case")
            if isinstance(case, dict):
                for key, block in case.items():
                    if isinstance(block, list):
                        self.name_block(block, (*path, "case", key), prefix, first_name=None,
                                        section=section)
            if isinstance(params.get("default"), list):
                self.name_block(params["default"], (*path, "default"), prefix, first_name=None,
                                section=section)
        elif name == "cond" and isinstance(params, list):
            for i, choice in enumerate(params):
                if isinstance(choice, dict):
                    for key in ("then", "else"):
                        if isinstance(choice.get(key), list):
                            self.name_block(choice[key], (*path, i, key), prefix,
                                            first_name=None, section=section)
        elif name in ("execute", "connect", "join_conference") and isinstance(params, dict):
            if isinstance(params.get("on_return"), list):
                self.name_block(params["on_return"], (*path, "on_return"), prefix,
                                first_name=None, section=section)
            result = params.get("result")
            if isinstance(result, dict):
                self.name_nested("switch", result, (*path, "result"), prefix, section)
            elif isinstance(result, list):
                self.name_nested("cond", result, (*path, "result"), prefix, section)

    def new_id(self, base: str) -> str:
        base = _ident(base)
        ident, n = base, 2
        while ident in self.unit.used_ids:
            ident = f"{base}_{n}"
            n += 1
        self.unit.used_ids.add(ident)
        return ident

    def method_of(self, item: Any, path: Path, *, report: bool = True) -> tuple[str, Any] | None:
        if isinstance(item, str) and item in ("answer", "hangup", "stop_record_call"):
            return item, {}
        if isinstance(item, dict) and len(item) == 1:
            (name, params), = item.items()
            return str(name), params
        if report:
            what = (f"a mapping with {len(item)} keys ({', '.join(map(str, item))})"
                    if isinstance(item, dict) else _short(item, 40))
            self.report(path, f"a SWML method is a mapping with one key (the method's name), "
                              f"not {what}")
        return None

    def add(self, step: IRStep) -> IRStep:
        step.section = self.section
        self.unit.steps[step.id] = step
        return step

    def order_of(self, path: Path, sub: int = 0) -> tuple[int, int, int]:
        line, col = self.doc.position(path)
        return (line, col, sub)

    def block(self, body: list[Any], path: Path, cont: Target, section: str) -> Target:
        """Compile a list of methods whose end goes on to ``cont``; return its entry."""
        labels_after: list[tuple[str, Path]] = []
        for i in reversed(range(len(body))):
            p = (*path, i)
            method = self.method_of(body[i], p)
            if method is None:
                cont = self.log_step(p, self.ids[p], "an item that is not a SWML method: "
                                     + _short(body[i]), cont)
                continue
            name, params = method
            if name == "label":
                if not isinstance(params, str) or not params:
                    self.report((*p, "label"), "label needs a name (text)")
                    continue
                key = (section, params)
                if key in self.unit.labels:
                    # Compiled from the end: the one seen first is the later one.
                    later = self.label_lines[key]
                    raise SourceError(f"label '{params}' is defined twice in section "
                                      f"'{section}' (again at line {later})",
                                      *self.doc.position((*p, "label"), key=True))
                self.unit.labels[key] = cont
                self.label_lines[key] = self.doc.position((*p, "label"), key=True)[0]
                labels_after.append((params, p))
                continue
            cont = self.method(name, params, (*p, name), self.ids[p], cont, section)
        return cont

    def fix(self, unit: FileUnit, target: Target) -> Target:
        """``target`` with labels (and transferred-to sections) replaced by step ids."""
        while isinstance(target, Label):
            section, name = target.name.split("\0", 1)
            if (section, name) not in unit.labels:
                known = sorted(n for s, n in unit.labels if s == section and "\0" not in n)
                raise SourceError(f"goto '{name}': there is no label '{name}' in section "
                                  f"'{section}'" + (f" (labels: {', '.join(known)})"
                                                    if known else " (it has no labels)"),
                                  *self.doc.position(target.path))
            target = unit.labels[(section, name)]
        return target

    def resolve_labels(self, unit: FileUnit) -> None:
        for step in unit.steps.values():
            step.next = self.fix(unit, step.next)
            step.on = {k: self.fix(unit, v) for k, v in step.on.items()}
            step.branch_targets = [self.fix(unit, t) for t in step.branch_targets]
            if step.goto is not None:
                step.goto = (self.fix(unit, step.goto[0]), step.goto[1])
        unit.start = self.fix(unit, unit.start)

    def auto_answer(self, unit: FileUnit) -> None:
        """SWML answers the call by itself when a method needs it; flowengine needs an
        ``answer`` step."""
        body = self.sections["main"]
        for i, item in enumerate(body):
            method = self.method_of(item, ("sections", "main", i), report=False)
            if method is None:
                continue
            name = method[0]
            if name == "answer":
                return
            inner = {n for n, _, _ in self.nested(name, method[1], ())}
            if name in _MEDIA or inner & (_MEDIA | {"answer"}) or \
                    (name in ("execute", "transfer") and self.dest_section(method[1])):
                break
        else:
            return
        ident = self.new_id("answer")
        step = IRStep(ident, "answer", {}, ("sections", "main"), (0, 0, 0), next=unit.start,
                      section="main",
                      description="SWML answers the call by itself before its first play, "
                                  "prompt or record; flowengine needs this step")
        unit.steps[ident] = step
        unit.start = ident

    def log_step(self, path: Path, ident: str, what: str, cont: Target,
                 message: str | None = None) -> Target:
        """What did not translate: a finding, and a log step saying what was there."""
        self.report(path, message or f"{what}: not imported")
        text = f"not imported from SWML ({self.where(path)}): {what}"
        self.add(IRStep(ident, "log", jsexpr.jinja_text(text), path, self.order_of(path),
                        next=cont))
        return ident

    # -- methods -------------------------------------------------------------------------

    def method(self, name: str, params: Any, path: Path, ident: str, cont: Target,
               section: str) -> Target:
        handler = getattr(self, f"m_{name}", None)
        if name in _OPTIONAL:
            action = _OPTIONAL[name]
            if action not in ACTIONS:
                return self.log_step(path, ident, f"{name} {_short(params)}", cont,
                                     f"SWML '{name}' is not imported: flowengine has no "
                                     f"{action} action")
        if handler is None:
            return self.log_step(path, ident, f"{name} {_short(params)}", cont,
                                 f"SWML method '{name}' has no flowengine equivalent; left "
                                 "as a log step")
        target: Target = handler(params, path, ident, cont, section)
        return target

    def params_of(self, params: Any, path: Path, method: str, known: Iterable[str],
                  dropped: dict[str, str] | None = None) -> dict[str, Any]:
        """``params`` as a mapping; keys not in ``known`` are reported."""
        if params is None:
            return {}
        if not isinstance(params, dict):
            self.report(path, f"{method} takes a mapping of parameters, not {_short(params, 30)}")
            return {}
        known = set(known)
        for key in params:
            if key not in known:
                why = (dropped or {}).get(key, "flowengine has no equivalent")
                self.report((*path, key), f"{method}: '{key}' is not imported ({why})")
        return params

    def positive(self, p: dict[str, Any], key: str, path: Path, high: float) -> Any:
        """``p[key]`` as a number of seconds in (0, high], else None (reported)."""
        if key not in p:
            return None
        value = _number(p[key])
        if value is None or value <= 0:
            self.report((*path, key), f"{key} must be a positive number, not "
                                      f"{_short(p[key], 30)}; the default is used")
            return None
        return _whole(min(value, high))

    def keys(self, value: Any, path: Path, what: str) -> str | None:
        """DTMF keys (terminators), else None (reported)."""
        text = _text(value) if not isinstance(value, bool) else None
        if text and all(c in "0123456789*#ABCD" for c in text):
            return text
        self.report(path, f"{what} {_short(value, 30)} are not DTMF keys (0-9, *, #, A-D); "
                          "the default is used")
        return None

    def simple(self, action: str, params: Any, path: Path, ident: str, cont: Target,
               defines: Iterable[str] = (), kind: str | None = None, info: Any = None,
               **kw: Any) -> IRStep:
        step = IRStep(ident, action, params, path, self.order_of(path), next=cont, **kw)
        for var in defines:
            step.defines[var] = Def(ident, kind or action, info)
        return self.add(step)

    def m_answer(self, params: Any, path: Path, ident: str, cont: Target, section: str) -> Target:
        p = self.params_of(params, path, "answer", ["max_duration"],
                           {"sip_auth_username": "SIP authentication is not part of a flow",
                            "sip_auth_password": "SIP authentication is not part of a flow"})
        out: dict[str, Any] = {}
        seconds = _number(p.get("max_duration"))
        if seconds is not None and seconds != 14400:
            out["max_duration"] = max(1, int(seconds))
        self.simple("answer", out, path, ident, cont, ["answer_result"])
        return ident

    def m_hangup(self, params: Any, path: Path, ident: str, cont: Target, section: str) -> Target:
        p = self.params_of(params, path, "hangup", ["reason"])
        out: dict[str, Any] = {}
        reason = p.get("reason")
        if reason in ("hangup", "busy", "decline"):
            out["reason"] = reason
        elif reason is not None:
            self.report((*path, "reason"), f"hangup reason {_short(reason)} is not one of "
                                           "hangup, busy, decline; hangup used")
        self.simple("hangup", out, path, ident, None)
        return ident

    # media ---------------------------------------------------------------------------------

    def media_list(self, value: Any, path: Path, params: dict[str, Any]) -> Deferred:
        """SWML playable sounds (``say:``, ``silence:``, ``ring:``, URLs) as media items."""
        urls = value if isinstance(value, list) else [value]
        base = path

        def render(ctx: Ctx) -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = []
            for i, url in enumerate(urls):
                p = (*base, i) if isinstance(value, list) else base
                item = self.sound(url, p, params, ctx)
                if item is not None:
                    items.append(item)
            if not items:
                items.append({"silence": 0.1})
            return items

        return Deferred(render)

    def sound(self, url: Any, path: Path, params: dict[str, Any],
              ctx: Ctx) -> dict[str, Any] | None:
        if not isinstance(url, str):
            self.report(path, f"a playable sound is text, not {_short(url, 30)}; skipped")
            return None
        if url.startswith("say:"):
            item: dict[str, Any] = {"say": self.template(url[4:].lstrip(), path, ctx)}
            for key, out in (("say_voice", "voice"), ("say_language", "language")):
                if isinstance(params.get(key), str):
                    item[out] = self.template(params[key], path, ctx)
                elif self.definitely_set(ctx, key):
                    item[out] = f"{{{{ vars.{key} }}}}"
            gender = params.get("say_gender")
            if gender in ("male", "female"):
                item["gender"] = gender
            elif gender is not None:
                self.report(path, f"say_gender {_short(gender)} is not male or female; ignored")
            return item
        if url.startswith("silence:"):
            try:
                seconds = float(url[8:].strip())
            except ValueError:
                self.report(path, f"'{url}': the silence needs a number of seconds; skipped")
                return None
            if seconds <= 0:
                return None
            return {"silence": min(seconds, 3600.0)}
        if url.startswith("ring:"):
            parts = url[5:].split(":")
            country = parts[-1].strip().lower()
            if country not in _RINGTONES:
                self.report(path, f"'{url}': flowengine has no ringtone for '{country}'; "
                                  "us used")
                country = "us"
            ring: dict[str, Any] = {"ringtone": country}
            if len(parts) == 2:
                try:
                    ring["duration"] = min(max(float(parts[0]), 0.1), 3600.0)
                except ValueError:
                    self.report(path, f"'{url}': the ring duration is not a number; one ring")
            return ring
        if not re.match(r"(https?://|[$%]\{)", url):
            self.report(path, f"'{_short(url, 40)}' is not an http(s) URL, say:, silence: or "
                              "ring:; played as an audio URL")
        return {"audio": self.template(url, path, ctx)}

    def definitely_set(self, ctx: Ctx, var: str) -> bool:
        defs = ctx.env.get(var, frozenset())
        return bool(defs) and UNSET not in defs and all(d.kind == "set" for d in defs)

    def m_play(self, params: Any, path: Path, ident: str, cont: Target, section: str) -> Target:
        if isinstance(params, (str, list)):
            params = {"urls": params}
        p = self.params_of(params, path, "play",
                           ["url", "urls", "volume", "say_voice", "say_language", "say_gender",
                            "auto_answer"],
                           {"status_url": "flowengine does not post play events"})
        key = "urls" if "urls" in p else "url"
        if key not in p:
            return self.log_step(path, ident, f"play {_short(params)}", cont,
                                 "play needs url or urls; left as a log step")
        if p.get("auto_answer") is False:
            self.report((*path, "auto_answer"), "play: auto_answer false (early media) is not "
                                                "imported; the call is answered")
        media = self.media_list(p[key], (*path, key), p)
        volume = _number(p.get("volume"))
        body: Any = media
        if volume is not None and volume != 0:
            body = {"media": media, "volume": max(-40, min(40, volume))}
        self.simple("play", body, path, ident, cont)
        return ident

    def m_prompt(self, params: Any, path: Path, ident: str, cont: Target, section: str) -> Target:
        speech_keys = ("speech_timeout", "speech_end_timeout", "speech_language", "speech_hints")
        digit_keys = ("max_digits", "terminators", "digit_timeout", "initial_timeout")
        p = self.params_of(params, path, "prompt",
                           ["play", "volume", "say_voice", "say_language", "say_gender",
                            *speech_keys, *digit_keys],
                           {"status_url": "flowengine does not post prompt events"})
        if "play" not in p:
            return self.log_step(path, ident, f"prompt {_short(params)}", cont,
                                 "prompt needs play; left as a log step")
        speech = any(k in p for k in speech_keys)
        digits = not speech or any(k in p for k in digit_keys)
        out: dict[str, Any] = {"play": self.media_list(p["play"], (*path, "play"), p)}
        if digits:
            d: dict[str, Any] = {"max": 1}
            max_digits = _number(p.get("max_digits"))
            if max_digits is not None:
                d["max"] = max(1, min(64, int(max_digits)))
                if max_digits > 64:
                    self.report((*path, "max_digits"), "max_digits above 64: 64 used")
            if "terminators" in p and (keys := self.keys(p["terminators"], (*path, "terminators"),
                                                         "prompt terminators")):
                d["terminators"] = keys
            if (seconds := self.positive(p, "digit_timeout", path, 600)) is not None:
                d["digit_timeout"] = seconds
            out["digits"] = d
        if speech:
            s: dict[str, Any] = {}
            if isinstance(p.get("speech_language"), str):
                s["language"] = p["speech_language"]
            if isinstance(p.get("speech_hints"), list):
                s["hints"] = [str(h) for h in p["speech_hints"]]
            if (seconds := self.positive(p, "speech_end_timeout", path, 600)) is not None:
                s["end_silence_timeout"] = seconds
            if (seconds := self.positive(p, "speech_timeout", path, 600)) is not None:
                s["speech_timeout"] = seconds
            out["speech"] = s
        initial = self.positive(p, "initial_timeout", path, 600)
        if initial is not None:
            out["initial_timeout"] = initial
        volume = _number(p.get("volume"))
        if volume:
            out["volume"] = max(-40, min(40, volume))
        mode = "both" if digits and speech else "digits" if digits else "speech"
        self.simple("prompt", out, path, ident, cont,
                    ["prompt_value", "prompt_value_raw", "prompt_result",
                     "prompt_digit_terminator", "prompt_speech_confidence"], info=mode)
        return ident

    def m_record(self, params: Any, path: Path, ident: str, cont: Target, section: str) -> Target:
        keys = ["stereo", "format", "direction", "terminators", "beep", "input_sensitivity",
                "initial_timeout", "end_silence_timeout"]
        p = self.params_of(params, path, "record", keys,
                           {"status_url": "flowengine does not post record events"})
        out: dict[str, Any] = {}
        if isinstance(p.get("beep"), bool):
            out["beep"] = p["beep"]
        out["format"] = p.get("format") if p.get("format") in ("wav", "mp3") else "wav"
        if "format" in p and p["format"] not in ("wav", "mp3"):
            self.report((*path, "format"), f"record format {_short(p['format'])}: wav used")
        if isinstance(p.get("stereo"), bool):
            out["stereo"] = p["stereo"]
        if p.get("direction") in ("speak", "listen", "both"):
            out["direction"] = p["direction"]
        out["terminators"] = RECORD_DEFAULTS["terminators"]
        if "terminators" in p:
            if p["terminators"] == "":
                out["terminators"] = ""
            elif term := self.keys(p["terminators"], (*path, "terminators"),
                                   "record terminators"):
                out["terminators"] = term
        for key in ("initial_timeout", "end_silence_timeout"):
            value = _number(p.get(key))
            out[key] = _whole(value if value is not None and value >= 0 else RECORD_DEFAULTS[key])
        if _number(p.get("input_sensitivity")) is not None:
            out["input_sensitivity"] = max(0, min(100, _number(p["input_sensitivity"]) or 0))
        self.simple("record", out, path, ident, cont, ["record_url", "record_result"])
        return ident

    def m_record_call(self, params: Any, path: Path, ident: str, cont: Target,
                      section: str) -> Target:
        p = self.params_of(params, path, "record_call",
                           ["control_id", "stereo", "format", "direction", "beep",
                            "initial_timeout", "end_silence_timeout"],
                           {"terminators": "a background recording has no terminators in "
                                           "flowengine",
                            "input_sensitivity": "not a record_call parameter in flowengine",
                            "status_url": "flowengine does not post record events"})
        out: dict[str, Any] = {"format": "wav"}
        if p.get("format") in ("wav", "mp3"):
            out["format"] = p["format"]
        elif "format" in p:
            self.report((*path, "format"), f"record_call format {_short(p['format'])}: wav used")
        if p.get("direction") in ("speak", "listen", "both"):
            out["direction"] = p["direction"]
        for key in ("stereo", "beep"):
            if isinstance(p.get(key), bool):
                out[key] = p[key]
        for key in ("initial_timeout", "end_silence_timeout"):
            if _number(p.get(key)):
                self.report((*path, key), f"record_call: {key} is not imported (a background "
                                          "recording runs until stopped or the call ends)")
        control = p.get("control_id")
        self.simple("record_call", out, path, ident, cont,
                    ["record_call_url", "record_call_result", "record_control_id",
                     "record_call:last"], info=control if isinstance(control, str) else ident)
        return ident

    def m_stop_record_call(self, params: Any, path: Path, ident: str, cont: Target,
                           section: str) -> Target:
        p = self.params_of(params, path, "stop_record_call", ["control_id"])
        control = p.get("control_id")

        def render(ctx: Ctx) -> Any:
            if isinstance(control, str):
                for step in ctx.unit.steps.values():
                    if step.action == "record_call" and \
                            step.defines["record_call_url"].info == control:
                        return step.id
                self.report((*path, "control_id"), f"stop_record_call: no record_call has "
                                                   f"control_id '{control}'; every recording "
                                                   "is stopped")
                return {}
            defs = ctx.env.get("record_call:last", frozenset())
            real = [d for d in defs if d is not UNSET]
            if len(real) == 1:
                return real[0].step
            return {}

        self.simple("stop_record_call", Deferred(render), path, ident, cont,
                    ["stop_record_call_result"])
        return ident

    def m_connect(self, params: Any, path: Path, ident: str, cont: Target,
                  section: str) -> Target:
        p = self.params_of(params, path, "connect",
                           ["to", "from", "serial", "parallel", "serial_parallel", "timeout",
                            "ringback", "result", "headers"],
                           {"headers": "flowengine's connect sends no SIP headers",
                            "answer_on_bridge": "the caller is answered before the connect",
                            "call_state_url": "flowengine does not post call state events",
                            "call_state_events": "flowengine does not post call state events",
                            "confirm": "no confirm SWML for the peer",
                            "max_duration": "no limit on the bridged call",
                            "codecs": "flowengine's connect chooses no codecs",
                            "username": "no SIP authentication", "password": "no SIP "
                            "authentication"})
        if "headers" in p:
            self.report((*path, "headers"), "connect: headers are not imported (flowengine's "
                                            "connect sends no SIP headers)")
        out: dict[str, Any] = {}
        froms: list[tuple[Any, Path]] = []
        timeouts: list[float] = []

        def dest(entry: Any, p2: Path) -> Any:
            if isinstance(entry, dict):
                extra = set(entry) - {"to", "from", "timeout"}
                for key in sorted(extra):
                    self.report((*p2, key), f"connect: '{key}' of a destination is not imported")
                if "from" in entry:
                    froms.append((entry["from"], (*p2, "from")))
                if _number(entry.get("timeout")):
                    timeouts.append(float(_number(entry["timeout"]) or 0))
                entry = entry.get("to")
            entry = _text(entry)
            if entry is None:
                self.report(p2, "connect: a destination needs 'to' (text)")
                return None
            return self.tmpl(entry, p2 if not isinstance(entry, dict) else (*p2, "to"))

        if _text(p.get("to")) is not None:
            out["to"] = self.tmpl(_text(p["to"]) or "", (*path, "to"))
        elif isinstance(p.get("serial"), list):
            out["devices"] = [d for i, e in enumerate(p["serial"])
                              if (d := dest(e, (*path, "serial", i))) is not None]
        elif isinstance(p.get("parallel"), list):
            group = [d for i, e in enumerate(p["parallel"])
                     if (d := dest(e, (*path, "parallel", i))) is not None]
            out["devices"] = [group] if group else []
        elif isinstance(p.get("serial_parallel"), list):
            devices: list[Any] = []
            for i, grp in enumerate(p["serial_parallel"]):
                entries = grp if isinstance(grp, list) else [grp]
                group = [d for j, e in enumerate(entries)
                         if (d := dest(e, (*path, "serial_parallel", i, j))) is not None]
                if group:
                    devices.append(group[0] if len(group) == 1 else group)
            out["devices"] = devices
        if not out.get("to") and not out.get("devices"):
            return self.log_step(path, ident, f"connect {_short(params)}", cont,
                                 "connect needs to, serial, parallel or serial_parallel; "
                                 "left as a log step")
        if "from" in p:
            out["from"] = self.tmpl(_text(p["from"]) or "", (*path, "from"))
        elif froms:
            out["from"] = self.tmpl(_text(froms[0][0]) or "", froms[0][1])
            if len({str(f) for f, _ in froms}) > 1:
                self.report(froms[1][1], "connect: flowengine uses one caller ID for every "
                                         "device; the first destination's from is used")
        timeout = self.positive(p, "timeout", path, 600)
        ring = float(timeout) if timeout else max(timeouts) if timeouts else CONNECT_TIMEOUT
        if timeouts and len(set(timeouts)) > 1:
            self.report(path, "connect: destinations with different timeouts; the longest "
                              "is used for every device")
        out["ring_timeout"] = _whole(min(max(ring, 1), 600))
        if isinstance(p.get("ringback"), list):
            out["ringback"] = self.media_list(p["ringback"], (*path, "ringback"), {})
        after = self.after_blocks(p, path, cont, section, "connect_result")
        self.simple("connect", out, path, ident, after,
                    ["connect_result", "connect_failed_reason", "return_value"])
        return ident

    def after_blocks(self, p: dict[str, Any], path: Path, cont: Target, section: str,
                     var: str) -> Target:
        """``result`` (a switch or cond on the result) and ``on_return`` after a step."""
        result = p.get("result")
        if isinstance(result, dict):
            spec = dict(result)
            spec.setdefault("variable", var)
            cont = self.m_switch(spec, (*path, "result"), self.new_id("result"), cont, section)
        elif isinstance(result, list):
            cont = self.m_cond(result, (*path, "result"), self.new_id("result"), cont, section)
        if isinstance(p.get("on_return"), list):
            cont = self.block(p["on_return"], (*path, "on_return"), cont, section)
        return cont

    def m_send_sms(self, params: Any, path: Path, ident: str, cont: Target,
                   section: str) -> Target:
        p = self.params_of(params, path, "send_sms", ["to_number", "from_number", "body",
                                                      "media"],
                           {"region": "RELAY picks the region", "tags": "not passed on"})
        out: dict[str, Any] = {}
        for key, name in (("to_number", "to"), ("from_number", "from"), ("body", "body")):
            if p.get(key) is not None:
                out[name] = self.tmpl(_text(p[key]) or str(p[key]), (*path, key))
        if isinstance(p.get("media"), list) and p["media"]:
            out["media"] = [self.tmpl(str(m), (*path, "media", i))
                            for i, m in enumerate(p["media"])]
        if "body" not in out and "media" not in out:
            return self.log_step(path, ident, f"send_sms {_short(params)}", cont,
                                 "send_sms needs body or media; left as a log step")
        self.simple("send_sms", out, path, ident, cont, ["send_sms_result"])
        return ident

    def m_send_digits(self, params: Any, path: Path, ident: str, cont: Target,
                      section: str) -> Target:
        if isinstance(params, (str, int)) and not isinstance(params, bool):
            params = {"digits": params}
        p = self.params_of(params, path, "send_digits", ["digits"])
        if p.get("digits") is None:
            return self.log_step(path, ident, f"send_digits {_short(params)}", cont,
                                 "send_digits needs digits; left as a log step")
        digits = _text(p["digits"]) if not isinstance(p["digits"], bool) else None
        if digits is None or (
                "${" not in str(digits) and "%{" not in str(digits) and
                not re.fullmatch(r"[0-9*#A-DwW]+", str(digits))):
            return self.log_step(path, ident, f"send_digits {_short(params)}", cont,
                                 f"send_digits: {_short(digits, 30)} is not DTMF (0-9, *, #, "
                                 "A-D, w, W); left as a log step")
        self.simple("send_digits", self.tmpl(str(digits), (*path, "digits")), path,
                    ident, cont, ["send_digits_result"])
        return ident

    def m_sleep(self, params: Any, path: Path, ident: str, cont: Target, section: str) -> Target:
        value = params.get("duration") if isinstance(params, dict) else params
        ms = _number(value)
        if ms is None:
            return self.log_step(path, ident, f"sleep {_short(params)}", cont,
                                 "sleep needs a duration in milliseconds; left as a log step")
        if ms < 0:
            self.report(path, "sleep -1 (forever) is not imported as such: flowengine sleeps "
                              "at most an hour")
            seconds: float = 3600
        elif ms == 0:
            return self.log_step(path, ident, "sleep 0 ms", cont,
                                 "sleep of 0 ms does nothing; left as a log step")
        else:
            seconds = min(ms / 1000, 3600)
        self.simple("sleep", seconds, path, ident, cont)
        return ident

    def m_detect_machine(self, params: Any, path: Path, ident: str, cont: Target,
                         section: str) -> Target:
        p = self.params_of(params, path, "detect_machine",
                           ["detect_message_end", "detectors", "end_silence_timeout",
                            "initial_timeout", "machine_voice_threshold",
                            "machine_words_threshold", "timeout", "tone", "wait"],
                           {"status_url": "flowengine does not post detector events",
                            "machine_ready_timeout": "RELAY's default is used"})
        detectors = str(p.get("detectors", "amd,fax")).replace(" ", "").split(",")
        out: dict[str, Any] = {}
        if detectors == ["fax"]:
            out["type"] = "fax"
            if p.get("tone") in ("CED", "CNG"):
                out["tone"] = p["tone"]
        else:
            out["type"] = "machine"
            if "fax" in detectors:
                self.report((*path, "detectors") if "detectors" in p else path,
                            "detect_machine: amd and fax detection together are one "
                            "detector in SWML; imported as machine detection only (a fax "
                            "is 'unknown')")
            if p.get("detect_message_end") is True:
                out["wait_for_beep"] = True
            for key in ("initial_timeout", "end_silence_timeout", "machine_voice_threshold"):
                if (seconds := self.positive(p, key, path, 60 if "voice" in key else 600)) \
                        is not None:
                    out[key] = seconds
            if (words := self.positive(p, "machine_words_threshold", path, 100)) is not None:
                out["machine_words_threshold"] = max(1, int(words))
        if (seconds := self.positive(p, "timeout", path, 600)) is not None:
            out["duration"] = seconds
        if p.get("wait") is False:
            self.report((*path, "wait"), "detect_machine: wait false is not imported; the "
                                         "flow waits for the result")
        self.simple("detect", out, path, ident, cont,
                    ["detect_result", "detect_machine_beep"])
        return ident

    def m_request(self, params: Any, path: Path, ident: str, cont: Target,
                  section: str) -> Target:
        p = self.params_of(params, path, "request",
                           ["url", "method", "headers", "body", "connect_timeout", "timeout",
                            "save_variables"])
        if not isinstance(p.get("url"), str):
            return self.log_step(path, ident, f"request {_short(params)}", cont,
                                 "request needs url; left as a log step")
        out: dict[str, Any] = {"url": self.tmpl(p["url"], (*path, "url"))}
        method = str(p.get("method", "GET")).upper()
        if method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
            out["method"] = method
        else:
            self.report((*path, "method"), f"request method {_short(p.get('method'))}: GET used")
            out["method"] = "GET"
        if isinstance(p.get("headers"), dict):
            out["headers"] = {str(k): self.tmpl(str(v), (*path, "headers", k))
                              for k, v in p["headers"].items()}
        body = p.get("body")
        if isinstance(body, str):
            try:
                body = json.loads(body)
            except ValueError:
                self.report((*path, "body"), "request: a body that is not JSON is not "
                                             "imported (flowengine's request sends JSON)")
                body = None
        if body is not None:
            out["json"] = self.value(body, (*path, "body"))
        if (seconds := self.positive(p, "connect_timeout", path, 300)) is not None:
            out["connect_timeout"] = seconds
        read = self.positive(p, "timeout", path, 3600)
        out["read_timeout"] = read if read is not None else _whole(REQUEST_TIMEOUT)
        # SWML goes on after a failed request (request_result: failed); so does the flow.
        self.simple("request", out, path, ident, cont,
                    ["request_result", "request_response_code", "request_response_body",
                     "request_response", "return_value"], on={"error": cont})
        return ident

    # queues, conferences, SIP REFER: only where flowengine has the action ----------------

    def optional(self, action: str, out: dict[str, Any], path: Path, method: str) -> dict[str, Any]:
        """``out`` without the keys the action's spec does not declare (reported)."""
        known = ACTIONS[action].schema.get("properties", {})
        for key in [k for k in out if k not in known]:
            self.report(path, f"{method}: '{key}' has no place in flowengine's {action}; not "
                              "imported")
            del out[key]
        return out

    def m_enter_queue(self, params: Any, path: Path, ident: str, cont: Target,
                      section: str) -> Target:
        p = self.params_of(params, path, "enter_queue", ["queue_name", "wait_url", "wait_time"],
                           {"transfer_after_bridge": "the flow goes on after the bridge "
                                                     "instead",
                            "status_url": "flowengine does not post queue events"})
        if not isinstance(p.get("queue_name"), str):
            return self.log_step(path, ident, f"enter_queue {_short(params)}", cont,
                                 "enter_queue needs queue_name; left as a log step")
        out: dict[str, Any] = {"queue": self.tmpl(p["queue_name"], (*path, "queue_name"))}
        if isinstance(p.get("wait_url"), str):
            out["music"] = [{"audio": self.tmpl(p["wait_url"], (*path, "wait_url"))}]
        wait = self.positive(p, "wait_time", path, 86400)
        out["max_wait"] = wait if wait is not None else 3600  # SWML's default, written out
        self.simple("enqueue", self.optional("enqueue", out, path, "enter_queue"), path, ident,
                    cont, ["queue_result", "wait_time", "entry_position"], kind="enqueue")
        return ident

    def m_join_conference(self, params: Any, path: Path, ident: str, cont: Target,
                          section: str) -> Target:
        p = self.params_of(params, path, "join_conference",
                           ["name", "muted", "beep", "start_on_enter", "end_on_exit", "wait_url",
                            "max_participants", "record", "coach", "result"],
                           {"region": "RELAY picks the region", "trim": "not a choice in "
                            "flowengine", "status_callback": "no status callbacks",
                            "status_callback_event": "no status callbacks",
                            "status_callback_method": "no status callbacks",
                            "recording_status_callback": "no status callbacks",
                            "recording_status_callback_event": "no status callbacks",
                            "recording_status_callback_method": "no status callbacks"})
        if not isinstance(p.get("name"), str):
            return self.log_step(path, ident, f"join_conference {_short(params)}", cont,
                                 "join_conference needs name; left as a log step")
        out: dict[str, Any] = {"name": self.tmpl(p["name"], (*path, "name"))}
        for key in ("muted", "start_on_enter", "end_on_exit"):
            if isinstance(p.get(key), bool):
                out[key] = p[key]
        beep = {True: True, False: False, "true": True, "false": False, "onEnter": "on_enter",
                "onExit": "on_exit"}
        if p.get("beep") in beep:
            out["beep"] = beep[p["beep"]]
        if isinstance(p.get("wait_url"), str):
            out["wait_url"] = self.tmpl(p["wait_url"], (*path, "wait_url"))
        count = _number(p.get("max_participants"))
        out["max_participants"] = max(2, int(count)) if count else 250  # SWML's default
        if p.get("record") in ("record-from-start", "do-not-record"):
            out["record"] = p["record"] == "record-from-start"
        if isinstance(p.get("coach"), str):
            out["coach"] = self.tmpl(p["coach"], (*path, "coach"))
        after = self.after_blocks(p, path, cont, section, "join_conference_result")
        self.simple("conference", self.optional("conference", out, path, "join_conference"),
                    path, ident, after, ["join_conference_result", "return_value"],
                    kind="conference")
        return ident

    def m_sip_refer(self, params: Any, path: Path, ident: str, cont: Target,
                    section: str) -> Target:
        p = self.params_of(params, path, "sip_refer", ["to_uri"],
                           {"status_url": "no status callbacks",
                            "username": "no SIP authentication",
                            "password": "no SIP authentication"})
        if not isinstance(p.get("to_uri"), str):
            return self.log_step(path, ident, f"sip_refer {_short(params)}", cont,
                                 "sip_refer needs to_uri; left as a log step")
        out = {"to": self.tmpl(p["to_uri"], (*path, "to_uri"))}
        self.simple("refer", self.optional("refer", out, path, "sip_refer"), path, ident, cont,
                    ["sip_refer_result", "sip_refer_to", "sip_refer_response_code",
                     "sip_refer_to_response_code", "return_value"], kind="refer")
        return ident

    # logic ---------------------------------------------------------------------------------

    def m_set(self, params: Any, path: Path, ident: str, cont: Target, section: str) -> Target:
        if not isinstance(params, dict) or not params:
            return self.log_step(path, ident, f"set {_short(params)}", cont,
                                 "set takes a mapping of variables; left as a log step")
        values: dict[str, Any] = {}
        step = self.simple("set", values, path, ident, cont)
        for key, value in params.items():
            name = self.var_name(str(key), (*path, key))
            values[name] = self.value(value, (*path, key))
            step.defines[name] = Def(ident, "set", _static_type(value))
        return ident

    def var_name(self, key: str, path: Path) -> str:
        name = _ident(key, "var")
        if name != key:
            self.report(path, f"variable '{key}' is vars.{name} in flowengine")
        return name

    def m_unset(self, params: Any, path: Path, ident: str, cont: Target,
                section: str) -> Target:
        names = params.get("vars") if isinstance(params, dict) else params
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list) or not names:
            return self.log_step(path, ident, f"unset {_short(params)}", cont,
                                 "unset needs vars; left as a log step")
        values: dict[str, Any] = {}
        step = self.simple("set", values, path, ident, cont,
                           description="SWML unset: the variables become null")
        for name in names:
            var = self.var_name(str(name), path)
            values[var] = None
            step.defines[var] = Def(ident, "set", "none")
        return ident

    def m_goto(self, params: Any, path: Path, ident: str, cont: Target, section: str) -> Target:
        if isinstance(params, str):
            params = {"label": params}
        p = self.params_of(params, path, "goto", ["label", "when", "max"])
        label = p.get("label")
        if not isinstance(label, str):
            raise SourceError("goto needs 'label'", *self.doc.position(path))
        target = Label(f"{section}\0{label}", (*path, "label") if isinstance(params, dict)
                       else path)
        count = _number(p.get("max"))
        jumps = int(count) if count is not None else GOTO_MAX
        jumps = max(1, min(999, jumps))
        when = p.get("when")
        jump_id = ident if when is None else self.new_id(f"{ident}_jump")
        self.add(IRStep(jump_id, "goto", None, path, self.order_of(path, 1), next=cont,
                        goto=(target, jumps + 1),
                        description=None if count is not None else
                        "SWML's goto jumps at most 100 times"))
        if when is None:
            return ident
        cond = self.condition(when, (*path, "when"))
        self.add(IRStep(ident, "branch", Deferred(lambda ctx: [{"when": cond.render(ctx),
                                                                "goto": jump_id}]),
                        path, self.order_of(path), next=cont, branch_targets=[jump_id],
                        choices=[None]))
        return ident

    def m_switch(self, params: Any, path: Path, ident: str, cont: Target,
                 section: str) -> Target:
        p = self.params_of(params, path, "switch", ["variable", "case", "default"])
        variable = p.get("variable")
        if not isinstance(variable, str):
            return self.log_step(path, ident, f"switch {_short(params)}", cont,
                                 "switch needs variable; left as a log step")
        cases: dict[str, Any] = p["case"] if isinstance(p.get("case"), dict) else {}
        entries: list[tuple[str, Target]] = []
        for key, block in cases.items():
            body = block if isinstance(block, list) else []
            entries.append((str(key), self.block(body, (*path, "case", key), cont, section)))
        default: Target = cont
        has_default = isinstance(p.get("default"), list)
        if has_default:
            default = self.block(p["default"], (*path, "default"), cont, section)
        var_path = (*path, "variable")
        expr = self.expression(variable, var_path)

        def render(ctx: Ctx) -> list[dict[str, Any]]:
            value = expr(ctx)
            out: list[dict[str, Any]] = []
            for key, target in entries:
                if value is None:
                    when: Any = False
                else:
                    key_lit = jsexpr.literal(key)
                    left = value if value.type == "str" else \
                        jsexpr.apply_filter(value, "string", "str")
                    when = f"{left.at(jsexpr.ADD)} == {key_lit.text}"
                out.append({"when": when, "goto": target})
            if has_default:
                out.append({"goto": default})
            return out

        targets = [t for _, t in entries] + ([default] if has_default else [])
        step = self.add(IRStep(ident, "branch", Deferred(render), path, self.order_of(path),
                               next=cont, branch_targets=targets))
        step.choices = self.switch_choices(variable, [k for k, _ in entries], has_default)
        if not entries and not has_default:
            del self.unit.steps[ident]
            return self.log_step(path, ident, f"switch {_short(params)}", cont,
                                 "switch without case or default does nothing; left as a log "
                                 "step")
        return ident

    def switch_choices(self, variable: str, keys: list[str],
                       has_default: bool) -> list[tuple[str, str] | None]:
        # Filled in when the data flow is known (the prompt that set the variable).
        choices: list[tuple[str, str] | None] = []
        choices += [("?" + variable, k) for k in keys]
        choices += [("?" + variable, "\0default")] if has_default else []
        return choices

    def m_cond(self, params: Any, path: Path, ident: str, cont: Target, section: str) -> Target:
        if not isinstance(params, list):
            return self.log_step(path, ident, f"cond {_short(params)}", cont,
                                 "cond takes a list of when/then and else; left as a log step")
        choices: list[tuple[Any, Target, Path]] = []
        meta: list[tuple[str, str] | None] = []
        for i, choice in enumerate(params):
            cp = (*path, i)
            if not isinstance(choice, dict):
                self.report(cp, "a cond entry is a mapping with when and then, or else")
                continue
            body: list[Any]
            if "else" in choice:
                body = choice["else"] if isinstance(choice["else"], list) else []
                choices.append((None, self.block(body, (*cp, "else"), cont, section), cp))
                meta.append(None)
                if i != len(params) - 1:
                    self.report(cp, "cond: else is not the last entry; the entries after it "
                                    "never run")
                break
            if "when" not in choice:
                self.report(cp, "cond entry without when; skipped")
                continue
            body = choice["then"] if isinstance(choice.get("then"), list) else []
            choices.append((self.condition(choice["when"], (*cp, "when")),
                            self.block(body, (*cp, "then"), cont, section), cp))
            meta.append(self.cond_meta(choice["when"]))

        def render(ctx: Ctx) -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            for cond, target, _ in choices:
                if cond is None:
                    out.append({"goto": target})
                else:
                    out.append({"when": cond.render(ctx), "goto": target})
            return out

        if not choices:
            return self.log_step(path, ident, f"cond {_short(params)}", cont,
                                 "cond without entries; left as a log step")
        self.add(IRStep(ident, "branch", Deferred(render), path, self.order_of(path),
                        next=cont, branch_targets=[t for _, t, _ in choices], choices=meta))
        return ident

    def cond_meta(self, when: Any) -> tuple[str, str] | None:
        """``(?variable, key)`` when ``when`` compares a variable with a literal."""
        if not isinstance(when, str):
            return None
        try:
            node = jsexpr.parse(when)
        except JsError:
            return None
        if isinstance(node, jsexpr.Binary) and node.op in ("==", "==="):
            for a, b in ((node.left, node.right), (node.right, node.left)):
                chain = jsexpr.static_chain(a)
                if chain and isinstance(b, jsexpr.Literal_) and \
                        isinstance(b.value, (str, int)) and not isinstance(b.value, bool):
                    root, members, _ = chain
                    name = ".".join([root, *map(str, members)])
                    return ("?" + name, str(b.value))
        return None

    def m_execute(self, params: Any, path: Path, ident: str, cont: Target,
                  section: str) -> Target:
        if isinstance(params, str):
            params = {"dest": params}
        p = self.params_of(params, path, "execute", ["dest", "params", "on_return", "result"])
        dest = p.get("dest")
        after = self.after_blocks(p, path, cont, section, "return_value")
        if not isinstance(dest, str) or dest not in self.sections:
            return self.log_step(path, ident, f"execute {_short(params)}", after,
                                 f"execute of '{dest}' (SWML fetched from a URL) is not "
                                 "imported; flowengine runs only local subflows")
        target = self.units[dest]
        here = os.path.dirname(self.unit.file)
        call: dict[str, Any] = {"flow": os.path.relpath(target.file, here or ".")}
        if isinstance(p.get("params"), dict) and p["params"]:
            call["params"] = {self.var_name(str(k), (*path, "params", k)):
                              self.value(v, (*path, "params", k))
                              for k, v in p["params"].items()}
            for key in call["params"]:
                target.params.setdefault(key, None)
        self.simple("call", call, path, ident, after, ["return_value"], kind="execute",
                    info=dest)
        return ident

    def m_return(self, params: Any, path: Path, ident: str, cont: Target,
                 section: str) -> Target:
        if params is None or params == {}:
            self.simple("return", {}, path, ident, None)
            return ident
        self.unit.returns_value = True
        self.simple("return", {"return_value": self.value(params, path)}, path, ident, None)
        return ident

    def m_transfer(self, params: Any, path: Path, ident: str, cont: Target,
                   section: str) -> Target:
        if isinstance(params, str):
            params = {"dest": params}
        p = self.params_of(params, path, "transfer", ["dest", "params"])
        dest = p.get("dest")
        if isinstance(dest, str) and dest in self.sections:
            entry = Label(f"{dest}\0\0entry", path)
            values = p.get("params")
            if not values:
                return entry
            if dest == self.unit.root or not isinstance(values, dict):
                self.report((*path, "params"), "transfer: these params are not imported (a "
                                               "transfer to the flow's own first section "
                                               "cannot pass params)")
                return entry
            # The section is inlined: its params.x are the variables params_x, set here.
            out: dict[str, Any] = {}
            step = self.simple("set", out, path, ident, entry,
                               description=f"the params of the transfer to '{dest}'")
            for key, value in values.items():
                name = _ident(f"params_{key}", "params")
                out[name] = self.value(value, (*path, "params", key))
                step.defines[name] = Def(ident, "set", _static_type(value))
            return ident
        return self.log_step(path, ident, f"transfer to {_short(dest)}", None,
                             f"transfer to '{dest}' is not imported: flowengine does not "
                             "fetch SWML or hand calls to RELAY applications; the flow ends "
                             "here")

    # -- expressions -------------------------------------------------------------------------

    def tmpl(self, text: str, path: Path) -> Deferred:
        return Deferred(lambda ctx: self.template(text, path, ctx))

    def template(self, text: str, path: Path, ctx: Ctx) -> str:
        result = jsexpr.translate_template(text, self.resolver(ctx, path))
        for error in result.errors:
            self.report(path, f"in {_short(text, 50)}: {error.message} (at character "
                              f"{error.offset + 1}); kept as written")
        return result.text

    def value(self, value: Any, path: Path) -> Deferred:
        def render(ctx: Ctx) -> Any:
            return self.render_value(value, path, ctx)
        return Deferred(render)

    def render_value(self, value: Any, path: Path, ctx: Ctx) -> Any:
        if isinstance(value, str):
            return self.template(value, path, ctx)
        if isinstance(value, dict):
            return {str(k): self.render_value(v, (*path, k), ctx) for k, v in value.items()}
        if isinstance(value, list):
            return [self.render_value(v, (*path, i), ctx) for i, v in enumerate(value)]
        if isinstance(value, WrittenInt):
            return int(value)
        if isinstance(value, WrittenFloat):
            return float(value)
        return value

    def condition(self, when: Any, path: Path) -> Deferred:
        def render(ctx: Ctx) -> Any:
            if isinstance(when, bool):
                return when
            if not isinstance(when, str):
                self.report(path, f"a condition is JavaScript text, not {_short(when, 30)}; "
                                  "false used")
                return False
            try:
                return jsexpr.translate_expression(when, self.resolver(ctx, path)).text
            except JsError as exc:
                self.report(path, f"condition {_short(when, 50)}: {exc.message} (at character "
                                  f"{exc.offset + 1}); false used")
                return False
        return Deferred(render)

    def expression(self, text: str, path: Path) -> Callable[[Ctx], Jinja | None]:
        def render(ctx: Ctx) -> Jinja | None:
            source = text
            match = re.fullmatch(r"\s*[$%]\{(.*)\}\s*", text, re.S)
            if match:
                source = match.group(1)
            try:
                return jsexpr.translate_expression(source, self.resolver(ctx, path))
            except JsError as exc:
                self.report(path, f"{_short(text, 50)}: {exc.message}; no case matches")
                return None
        return render

    def resolver(self, ctx: Ctx, path: Path) -> jsexpr.Resolver:
        def resolve(root: str, chain: tuple[str | int, ...], pos: int) -> tuple[Jinja, int]:
            return self.resolve(ctx, path, root, chain)
        return resolve

    def resolve(self, ctx: Ctx, path: Path, root: str,
                chain: tuple[str | int, ...]) -> tuple[Jinja, int]:
        if root == "call":
            if not chain:
                raise JsError("the whole call object has no flowengine equivalent; use "
                              "call.from, call.to, …")
            member = str(chain[0])
            if member in _CALL_FIELDS:
                return Jinja(f"call.{_CALL_FIELDS[member]}", jsexpr.ATOM, "str"), 1
            if member == "type":
                self.report(path, "call.type is not known to flowengine: imported as 'sip' "
                                  "for sip: callers, else 'phone'")
                return Jinja("'sip' if call.from.startswith('sip:') else 'phone'", jsexpr.COND,
                             "str"), 1
            raise JsError(f"call.{member} has no flowengine equivalent")
        if root == "params":
            if not chain:
                raise JsError("the whole params object has no flowengine equivalent")
            if ctx.step.section != ctx.unit.root:
                # An inlined section reached by transfer: its params are variables.
                base, used = self.resolve_var(ctx, path, f"params_{chain[0]}")
                return base, used + 1
            name = _ident(str(chain[0]), "param")
            ctx.unit.params.setdefault(name, None)
            return Jinja(f"params.{name}", jsexpr.ATOM, "any"), 1
        if root == "vars":
            if not chain:
                raise JsError("the whole vars object has no flowengine equivalent")
            base, used = self.resolve_var(ctx, path, str(chain[0]))
            return base, used + 1
        if root in ("Math", "JSON", "Date", "Object", "Array", "window", "this"):
            raise JsError(f"'{root}' is not supported here")
        return self.resolve_var(ctx, path, root)

    def resolve_var(self, ctx: Ctx, path: Path, name: str) -> tuple[Jinja, int]:
        if name == "request_response_headers":
            raise JsError("request_response_headers has no flowengine equivalent")
        # A SWML variable named like a mapping method (items, keys…) is vars.items_ here.
        name = _ident(name, "var")
        defs = ctx.env.get(name, frozenset())
        real = sorted((d for d in defs if d is not UNSET),
                      key=lambda d: ctx.unit.steps[d.step].order)
        if not real:
            self.report(path, f"'{name}' is not set on any path to here; null used")
            return Jinja("none", jsexpr.ATOM, "none"), 0
        chosen = real[-1]
        if len({d.key() for d in real}) > 1:
            before = [d for d in real if ctx.unit.steps[d.step].order < ctx.step.order]
            chosen = before[-1] if before else real[-1]
            others = ", ".join(sorted({d.step for d in real}))
            self.report(path, f"'{name}' may have been set by steps {others} on different "
                              f"paths; steps.{chosen.step} used")
        jinja = self.field(ctx, path, name, chosen)
        if UNSET in defs and jinja.text.startswith(("steps.", "vars.")):
            jinja = Jinja(f"{jinja.at(jsexpr.FILTER)} | default(none)", jsexpr.FILTER, jinja.type)
        return jinja, 0

    def field(self, ctx: Ctx, path: Path, name: str, d: Def) -> Jinja:
        s = f"steps.{d.step}"
        atom, cond = jsexpr.ATOM, jsexpr.COND
        if d.kind == "set":
            known: dict[str, jsexpr.Type] = {"str": "str", "num": "num", "bool": "bool",
                                             "none": "none", "list": "list"}
            return Jinja(f"vars.{name}", atom, known.get(str(d.info), "any"))
        if d.kind == "prompt":
            value = {"digits": Jinja(f"{s}.digits", atom, "str"),
                     "speech": Jinja(f"{s}.text", atom, "str"),
                     "both": Jinja(f"{s}.digits or {s}.text", jsexpr.OR, "str")}[d.info]
            table = {"prompt_value": value, "prompt_value_raw": value,
                     "prompt_digit_terminator": Jinja(f"{s}.terminator", atom, "str"),
                     "prompt_speech_confidence": Jinja(f"{s}.confidence", atom, "num"),
                     "prompt_result": Jinja(f"'match_digits' if {s}.digits else 'match_speech' "
                                            f"if {s}.text else 'no_input'", cond, "str")}
            return table[name]
        if d.kind == "record":
            return {"record_url": Jinja(f"{s}.url", atom, "str"),
                    "record_result": Jinja(f"'success' if {s}.url else 'failed'", cond,
                                           "str")}[name]
        if d.kind == "record_call":
            return {"record_call_url": Jinja(f"{s}.url", atom, "str"),
                    "record_call_result": Jinja(f"'success' if {s}.url else 'failed'", cond,
                                                "str"),
                    "record_control_id": jsexpr.literal(str(d.info))}[name]
        connected = Jinja(f"'connected' if {s}.peer else 'failed'", cond, "str")
        ok = Jinja(f"'success' if {s}.status in range(200, 300) else 'failed'", cond, "str")
        table2: dict[tuple[str, str], Jinja] = {
            ("connect", "connect_result"): connected,
            ("connect", "return_value"): connected,
            ("connect", "connect_failed_reason"): Jinja(f"{s}.reason", atom, "str"),
            ("detect", "detect_result"): Jinja(
                f"'human' if {s}.event == 'HUMAN' else 'machine' if {s}.event == 'MACHINE' "
                f"else 'fax' if {s}.event in ['CED', 'CNG'] else 'unknown'", cond, "str"),
            ("detect", "detect_machine_beep"): Jinja(f"{s}.beep", atom, "bool"),
            ("request", "request_result"): ok,
            ("request", "return_value"): ok,
            ("request", "request_response_code"): Jinja(f"{s}.status", atom, "num"),
            ("request", "request_response_body"): Jinja(f"{s}.text", atom, "str"),
            ("request", "request_response"): Jinja(f"{s}.json", atom, "any"),
            ("send_sms", "send_sms_result"): Jinja(f"'success' if {s}.message_id else "
                                                   "'failed'", cond, "str"),
            ("send_digits", "send_digits_result"): jsexpr.literal("success"),
            ("answer", "answer_result"): jsexpr.literal("success"),
            ("stop_record_call", "stop_record_call_result"): jsexpr.literal("success"),
            ("enqueue", "queue_result"): Jinja(f"'connected' if {s}.agent else 'timeout'",
                                               cond, "str"),
            ("enqueue", "wait_time"): Jinja(f"{s}.wait_time", atom, "num"),
            ("enqueue", "entry_position"): Jinja(f"{s}.position_at_entry", atom, "num"),
            ("conference", "join_conference_result"): Jinja(
                f"'completed' if {s}.conference_id else 'failed'", cond, "str"),
            ("conference", "return_value"): Jinja(
                f"'completed' if {s}.conference_id else 'failed'", cond, "str"),
            ("refer", "sip_refer_result"): Jinja(f"{s}.state", atom, "str"),
            ("refer", "return_value"): Jinja(f"{s}.state", atom, "str"),
            ("refer", "sip_refer_to"): Jinja(f"{s}.to", atom, "str"),
            ("refer", "sip_refer_response_code"): Jinja(f"{s}.code", atom, "num"),
            ("refer", "sip_refer_to_response_code"): Jinja(f"{s}.notify_code", atom, "num"),
        }
        if (d.kind, name) in table2:
            return table2[(d.kind, name)]
        if d.kind == "execute":
            if not self.units[d.info].returns_value:
                self.report(path, f"return_value: section '{d.info}' never returns a value; "
                                  "null used")
                return Jinja("none", atom, "none")
            return Jinja(f"{s}.return_value", atom, "any")
        raise AssertionError(f"no field for {name} of {d.kind}")  # pragma: no cover

    # -- rendering -----------------------------------------------------------------------------

    def decision(self, ctx: Ctx, choice: tuple[str, str] | None) -> tuple[str, str] | None:
        """A branch choice as (prompt step, answer) when it tests what a prompt heard."""
        if choice is None:
            return None
        variable, key = choice
        parts = variable[1:].split(".")
        if parts[0] == "vars":
            parts = parts[1:]
        if len(parts) != 1 or parts[0] not in ("prompt_value", "prompt_value_raw"):
            return None
        defs = [d for d in ctx.env.get(parts[0], frozenset()) if d is not UNSET]
        if len(defs) != 1 or defs[0].kind != "prompt":
            return None
        return (defs[0].step, key)

    def successors(self, step: IRStep) -> list[str]:
        out: list[Target] = [step.next, *step.on.values(), *step.branch_targets]
        if step.goto is not None:
            out.append(step.goto[0])
        return [t for t in out if isinstance(t, str)]

    def dataflow(self, unit: FileUnit) -> dict[str, dict[str, frozenset[Def]]]:
        ins: dict[str, dict[str, frozenset[Def]]] = {}
        outs: dict[str, dict[str, frozenset[Def]]] = {}
        preds: dict[str, list[str]] = {s: [] for s in unit.steps}
        for step in unit.steps.values():
            for succ in self.successors(step):
                preds[succ].append(step.id)
        work = [unit.start] if isinstance(unit.start, str) else []
        ins_start: dict[str, frozenset[Def]] = {}
        while work:
            ident = work.pop()
            known = [outs[p] for p in preds[ident] if p in outs]
            if ident == unit.start:
                known.append(ins_start)
            merged: dict[str, frozenset[Def]] = {}
            for var in {v for env in known for v in env}:
                union: set[Def] = set()
                for env in known:
                    union |= env.get(var, frozenset({UNSET}))
                merged[var] = frozenset(union)
            step = unit.steps[ident]
            out = dict(merged)
            for var, d in step.defines.items():
                out[var] = frozenset({d})
            ins[ident] = merged
            if outs.get(ident) != out:
                outs[ident] = out
                work.extend(self.successors(step))
        return ins

    def render_unit(self, unit: FileUnit) -> dict[str, Any]:
        self.unit = unit
        envs = self.dataflow(unit)
        ordered = sorted(unit.steps.values(), key=lambda s: s.order)
        steps: dict[str, Any] = {}
        for index, step in enumerate(ordered):
            ctx = Ctx(self, unit, step, envs.get(step.id, {}))
            body: dict[str, Any] = {}
            if step.action == "goto" and step.goto is not None and step.goto[0] is None:
                # A label at the end of its section: the jump ends the section.
                body["log"] = "goto: the label is at the end of the section, which ends here"
                body["next"] = None
            elif step.action == "goto":
                target, visits = step.goto  # type: ignore[misc]
                body["goto"] = {"step": target, "max_visits": visits}
            else:
                body[step.action] = _render(step.params, ctx)
            unit.rendered[step.id] = body
            if step.choices is not None:
                unit.decisions[step.id] = [self.decision(ctx, c) for c in step.choices]
            following = ordered[index + 1].id if index + 1 < len(ordered) else None
            natural = None if step.action in ("hangup", "return") else following
            always = step.action == "branch" and body["branch"] and \
                "when" not in body["branch"][-1]
            if step.action not in ("goto", "return") and step.next != natural and not always:
                body["next"] = step.next
            if step.action == "hangup" and step.next is None:
                body.pop("next", None)
            if step.on:
                body["on"] = dict(step.on)
            if "goto" in body and step.next != following:
                body["on"] = {"exhausted": step.next}
            if step.description and not (step.action == "goto" and "log" in body):
                body["description"] = step.description
            steps[step.id] = body
        flow: dict[str, Any] = {"name": unit.name}
        if unit.root == "main":
            source = os.path.basename(self.doc.file)
            flow["description"] = f"Imported from the SWML script {source}."
        else:
            flow["description"] = f"SWML section '{unit.root}', run with execute."
        if unit.params:
            flow["params"] = dict(unit.params)
        if isinstance(unit.start, str) and ordered and unit.start != ordered[0].id:
            flow["start"] = unit.start
        if not steps:
            steps["end"] = {"return": {}}
        flow["steps"] = steps
        return flow


def _render(value: Any, ctx: Ctx) -> Any:
    if isinstance(value, Label):
        return ctx.conv.fix(ctx.unit, value)
    if isinstance(value, Deferred):
        return _render(value.render(ctx), ctx)
    if isinstance(value, dict):
        return {k: _render(v, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, ctx) for v in value]
    return value


def _static_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "num"
    if value is None:
        return "none"
    if isinstance(value, list):
        return "list"
    if isinstance(value, str) and "${" not in value and "%{" not in value:
        return "str"
    return "any"


#: Steps whose outcome a scenario's caller (``speak:3`` plus keys) makes predictable.
_PREDICTABLE = {"answer": "answered", "play": "finished", "record": "finished",
                "connect": "disconnected", "detect": "human", "sleep": "finished",
                "send_digits": "finished", "send_sms": "delivered", "record_call": "started",
                "stop_record_call": "finished", "set": "next", "log": "next"}
#: Scenarios written at most, so that a script with many nested menus stays readable.
MAX_SCENARIOS = 30
#: Steps one walk takes at most (a loop that only ends after many rounds).
MAX_WALK = 200


@dataclass
class _Walk:
    path: list[str] = field(default_factory=list)
    visits: dict[str, int] = field(default_factory=dict)
    occurrences: dict[str, int] = field(default_factory=dict)
    collects: list[tuple[str, int]] = field(default_factory=list)
    answers: dict[tuple[str, int], str] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)
    said: list[str] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)
    complete: bool = False

    def copy(self) -> _Walk:
        return _Walk(list(self.path), dict(self.visits), dict(self.occurrences),
                     list(self.collects), dict(self.answers), dict(self.outcomes),
                     list(self.said), list(self.decisions), self.complete)


def _calm_subflow(conv: _Converter, root: str, seen: frozenset[str] = frozenset()) -> bool:
    """Whether a subflow only plays, sets and returns (a scenario can walk past its call)."""
    unit = conv.units[root]
    for step in unit.steps.values():
        if step.action == "call":
            dest = step.defines["return_value"].info
            if dest in seen or not _calm_subflow(conv, dest, seen | {root}):
                return False
        elif step.action not in ("play", "set", "log", "return", "answer", "sleep", "branch",
                                 "goto"):
            return False
    return True


def _scenarios(conv: _Converter, unit: FileUnit) -> dict[str, Any] | None:
    """Scenarios walking each path the import can predict: one per case of each menu."""
    walks: list[_Walk] = []

    def say_texts(body: Any) -> list[str]:
        media = body.get("media") if isinstance(body, dict) else body
        return [m["say"] for m in media or [] if isinstance(m, dict) and
                isinstance(m.get("say"), str) and "{" not in m["say"] and m["say"].strip()]

    def unused(keys: Iterable[str], step: str) -> str:
        digits = conv_digits(step)
        for key in "0123456789":
            if key not in keys and key not in digits.get("terminators", ""):
                return key
        return "-"

    def conv_digits(step: str) -> dict[str, Any]:
        d = unit.rendered[step]["prompt"].get("digits")
        return d if isinstance(d, dict) else {}

    def walk(w: _Walk, at: Target) -> None:
        while True:
            if len(walks) >= MAX_SCENARIOS:
                return
            if at is None:
                w.complete = True
                walks.append(w)
                return
            if len(w.path) >= MAX_WALK or not isinstance(at, str):
                walks.append(w)
                return
            step = unit.steps[at]
            w.path.append(at)
            w.visits[at] = w.visits.get(at, 0) + 1
            body = unit.rendered[at]
            action = step.action
            if action == "prompt":
                w.occurrences[at] = w.occurrences.get(at, 0) + 1
                w.collects.append((at, w.occurrences[at]))
                w.said += say_texts(body["prompt"]["play"])
                at = step.next
                continue
            if action == "play":
                w.said += say_texts(body["play"])
            if action in _PREDICTABLE:
                if action == "record":
                    w.outcomes[at] = "finished"
                at = step.next
                continue
            if action in ("hangup", "return"):
                w.complete = True
                walks.append(w)
                return
            if action == "goto":
                target, most = step.goto  # type: ignore[misc]
                if isinstance(target, str) and w.visits.get(target, 0) < (most or 10**6):
                    at = target
                else:
                    w.outcomes[at] = "exhausted"
                    at = step.next
                continue
            if action == "call" and _calm_subflow(conv, step.defines["return_value"].info):
                at = step.next
                continue
            if action == "branch":
                choices = unit.decisions.get(at) or []
                pairs = [c for c in choices if c is not None]
                prompts = {c[0] for c in pairs}
                if not choices or len(pairs) != len(choices) or len(prompts) != 1:
                    walks.append(w)
                    return
                prompt = prompts.pop()
                occurrence = w.occurrences.get(prompt, 0)
                if occurrence == 0:
                    walks.append(w)
                    return
                keys = [k for _, k in pairs if k != "\0default"]
                options: list[tuple[int | None, str]] = []
                asked = unit.rendered[prompt]["prompt"]
                for i, (_, key) in enumerate(pairs):
                    if key == "\0default":
                        options.append((i, unused(keys, prompt)))
                    elif "speech" in asked or re.fullmatch(r"[0-9*#A-D]{1,64}", key):
                        options.append((i, key))
                if "\0default" not in [k for _, k in pairs]:
                    options.append((None, unused(keys, prompt)))
                known = w.answers.get((prompt, occurrence))
                if known is not None:
                    match = [o for o in options if o[1] == known] or \
                        [o for o in options if o[0] is None or pairs[o[0]][1] == "\0default"]
                    options = match[:1]
                elif w.visits[at] > 1:
                    options = options[:1]
                for n, (index, key) in enumerate(options):
                    fork = w if n == len(options) - 1 else w.copy()
                    fork.answers[(prompt, occurrence)] = key
                    fork.outcomes[step.id] = f"branch{index}" if index is not None else "next"
                    if known is None:
                        verb = "presses" if re.fullmatch(r"[0-9*#A-D]+", key) else "says"
                        fork.decisions.append(f"{verb} {key} at {prompt}" if key != "-"
                                              else f"answers nothing at {prompt}")
                    target = step.branch_targets[index] if index is not None else step.next
                    if fork is w:
                        at = target
                    else:
                        walk(fork, target)
                continue
            walks.append(w)
            return

    walk(_Walk(), unit.start)
    scenarios: list[dict[str, Any]] = []
    names: set[str] = set()
    for w in walks:
        digit_groups: list[str] = []
        say_groups: list[str] = []
        for prompt, occurrence in w.collects:
            answer = w.answers.get((prompt, occurrence), "-")
            asked = unit.rendered[prompt]["prompt"]
            # Keys go to the collect's digits, words to its speech; a collect that takes
            # both gets "-" (nothing) for the other.
            pressed = answer == "-" or bool(re.fullmatch(r"[0-9*#A-D]+", answer))
            if "digits" in asked:
                keys = answer if pressed else "-"
                d = conv_digits(prompt)
                terminators = str(d.get("terminators") or "")
                if keys != "-" and terminators and len(keys) < int(d.get("max", 1)):
                    keys += terminators[0]
                digit_groups.append(keys)
            if "speech" in asked:
                say_groups.append("-" if pressed and "digits" in asked else answer)
        clauses = []
        for kind, groups in (("digits", digit_groups), ("say", say_groups)):
            while groups and groups[-1] == "-":
                groups.pop()
            if groups:
                clauses.append(f"{kind}:{'/'.join(groups)}")
        clauses.append("speak:3")
        name = ("the caller " + ", then ".join(w.decisions)) if w.decisions \
            else "the main path"
        base, n = name, 2
        while name in names:
            name = f"{base} ({n})"
            n += 1
        names.add(name)
        expect: dict[str, Any] = {("path" if w.complete else "path_includes"): w.path}
        if w.outcomes:
            expect["outcomes"] = dict(w.outcomes)
        if w.said:
            expect["said"] = w.said
        if w.complete:
            expect["status"] = "completed"
        scenarios.append({"name": name, "caller": ",".join(clauses), "expect": expect})
    if not scenarios:
        return None
    return {"description": "Paths the SWML import could infer: one per case of each menu "
                           "(imported by flowengine).",
            "scenarios": scenarios}


def convert(doc: Document) -> ImportResult:
    """Convert a loaded SWML script into a flow (plus subflows and scenarios).

    Raises:
        SourceError: not a SWML script (no ``sections.main``), a ``goto`` to a label its
            section does not have, an ``execute`` cycle, an ``execute``/``transfer`` to a
            section that does not exist.
    """
    return _Converter(doc).convert()
