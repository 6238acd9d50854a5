"""Twilio Studio flow definitions → flowengine flows (``flowengine import studio``).

A Studio flow is a list of widgets ("states"), each with a type, properties and
transitions (``{"event": "keypress", "next": "route"}``); the ``trigger`` widget is where
a call comes in. Each widget becomes a step named after it, each transition an edge with
flowengine's outcome for that event, each Liquid template a Jinja one
(:mod:`.liquid`). What has no counterpart is reported as a :class:`~.base.Finding` at its
place in the JSON and, for whole widgets, left in the flow as a ``log`` step that says
what was there, so the paths around it still make sense.

See docs/migrating.md for the table of what becomes what.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote_plus

from flowengine.flow.loader import Document, Path, load_yaml, read_flow_file

from .base import Finding, ImportResult, SourceError
from .liquid import jinja_string, translate

__all__ = ["Condition", "convert"]

_ID = re.compile(r"[A-Za-z_]\w{0,63}")
_RESERVED = {"items", "keys", "values", "get", "pop", "update", "copy", "clear",
             "setdefault", "popitem", "fromkeys"}
_DTMF = set("0123456789*#ABCD")
_DEFAULT_TO = "{{contact.channel.address}}"
_DEFAULT_FROM = "{{flow.channel.address}}"

#: Properties that mean nothing outside the Studio canvas: dropped without a word.
_CANVAS = {"offset"}

#: trigger.call.X → flowengine's call field.
_CALL_FIELDS = {"From": "call.from", "Caller": "call.from", "To": "call.to",
                "Called": "call.to", "CallSid": "call.id", "Direction": "call.direction",
                "CallStatus": "call.state"}

#: widget type → Studio result field → flowengine result field.
_RESULT_FIELDS: dict[str, dict[str, str]] = {
    "gather-input-on-call": {"Digits": "digits", "SpeechResult": "text",
                             "Confidence": "confidence", "FinishedOnKey": "terminator"},
    "record-voicemail": {"RecordingUrl": "url", "RecordingDuration": "duration"},
    "make-http-request": {"parsed": "json", "body": "text", "status_code": "status"},
    "connect-call-to": {"DialCallStatus": "reason"},
    "send-message": {"sid": "message_id", "status": "state"},
}

#: For widgets left as a log step: the transition to keep, in this order of preference.
_FALLBACK_EVENTS = ("failed", "fail", "failedToEnqueue", "callFailure", "deliveryFailure",
                    "providerError", "timeout", "noMatch", "next", "completed", "success")


@dataclass
class Condition:
    """One ``match`` transition of a split, for the scenario writer.

    ``subject`` is the Jinja expression tested; ``test(text)`` tells whether a value
    (as text) would take it, or is ``None`` when that cannot be told (a regex that was not
    translated, a time condition).
    """

    subject: str
    label: str
    test: Callable[[str], bool] | None
    samples: list[str] = field(default_factory=list)


@dataclass
class _Widget:
    index: int
    name: str
    type: str
    props: dict[str, Any]
    transitions: list[dict[str, Any]]
    path: Path
    step_id: str


@dataclass
class _Meta:
    """What the scenario writer needs to know beyond the flow data."""

    #: branch step id → its conditions, in order (the last choice is the default).
    conditions: dict[str, list[Condition]] = field(default_factory=dict)
    #: request step id → the variable holding its server's base URL.
    request_vars: dict[str, str] = field(default_factory=dict)
    #: prompt step id → (max keys, terminators).
    prompts: dict[str, tuple[int, str]] = field(default_factory=dict)
    #: subflow steps (their callers' inputs cannot be told).
    calls: set[str] = field(default_factory=set)
    #: subflow steps whose subflow talks HTTP to a server no scenario can replace.
    unsafe_calls: set[str] = field(default_factory=set)


def convert(doc: Document) -> ImportResult:
    """Convert a Studio flow definition (a REST API v2 ``definition``, or a console export
    or Flow resource that wraps one in ``"definition"``) to flowengine flow data.

    Raises:
        SourceError: the document is not a Studio flow definition.
    """
    converter = _Converter(doc)
    result = converter.run()
    from .studio_scenarios import scenarios_for

    result.scenarios = scenarios_for(result.flow, converter.meta)
    return result


def _sanitize(name: str) -> str:
    text = re.sub(r"\W", "_", name.strip(), flags=re.ASCII) or "_"
    if not re.match(r"[A-Za-z_]", text):
        text = "w_" + text
    text = text[:64]
    if text in _RESERVED:
        text += "_"
    return text


class _Converter:
    def __init__(self, doc: Document, *, subflow: bool = False,
                 chain: tuple[str, ...] = ()) -> None:
        self.doc = doc
        self.subflow = subflow
        self.chain = chain
        self.findings: list[Finding] = []
        self.steps: dict[str, dict[str, Any]] = {}
        self.vars: dict[str, Any] = {}
        self.params: set[str] = set()
        self.widgets: dict[str, _Widget] = {}
        self.used_ids: set[str] = set()
        self.var_names: dict[str, str] = {}
        self.subflows: dict[str, dict[str, Any]] = {}
        self.meta = _Meta()
        self.base: Path = ()
        self.start: str | None = None

    # -- reporting ---------------------------------------------------------------------

    def warn(self, path: Path, message: str, offset: int = 0, *, key: bool = False) -> None:
        line, col = self.doc.position(path, key=key)
        if offset and path in self.doc.positions:
            col += 1 + offset  # past the string's opening quote
        self.findings.append(Finding(line, col, message))

    def fail(self, path: Path, message: str, *, key: bool = False) -> SourceError:
        line, col = self.doc.position(path, key=key)
        return SourceError(message, line, col)

    # -- the whole document ------------------------------------------------------------

    def run(self) -> ImportResult:
        data = self.doc.data
        if not isinstance(data, dict):
            raise self.fail((), "this is not a Twilio Studio flow definition: expected a JSON "
                                "object with \"states\" and \"initial_state\"")
        definition = data
        if "states" not in data and isinstance(data.get("definition"), dict):
            definition = data["definition"]
            self.base = ("definition",)
        elif "states" not in data and isinstance(data.get("definition"), str):
            raise self.fail(("definition",), "the definition is a JSON text inside the JSON; "
                                             "export the flow's definition as an object")
        if "states" not in definition:
            raise self.fail(self.base, "this is not a Twilio Studio flow definition: it has no "
                                       "\"states\" (the list of widgets)")
        states = definition["states"]
        if not isinstance(states, list) or not states:
            raise self.fail((*self.base, "states"), "\"states\" must be a non-empty list of "
                                                    "widgets")
        self._read_widgets(states)
        initial = definition.get("initial_state")
        if not isinstance(initial, str) or not initial:
            raise self.fail(self.base, "the flow has no \"initial_state\" (the name of its "
                                       "trigger widget)")
        if initial not in self.widgets:
            raise self.fail((*self.base, "initial_state"),
                            f"the initial_state '{initial}' is not the name of a widget")
        trigger = self.widgets[initial]
        if trigger.type != "trigger":
            raise self.fail((*trigger.path, "type"), f"the initial_state '{initial}' is a "
                                                     f"{trigger.type} widget, not the trigger")
        for widget in self.widgets.values():
            self._check_transitions(widget)
        self._flags(definition.get("flags"))
        self._trigger(trigger)
        for widget in self.widgets.values():
            if widget is not trigger:
                self._widget(widget)
        return self._result(data, definition)

    def _read_widgets(self, states: list[Any]) -> None:
        for index, state in enumerate(states):
            path: Path = (*self.base, "states", index)
            if not isinstance(state, dict):
                raise self.fail(path, "each widget in \"states\" must be a JSON object")
            name = state.get("name")
            kind = state.get("type")
            if not isinstance(name, str) or not name:
                raise self.fail(path, "a widget without a \"name\"")
            if not isinstance(kind, str) or not kind:
                raise self.fail(path, f"the widget '{name}' has no \"type\"")
            if name in self.widgets:
                first = self.doc.position((*self.widgets[name].path, "name"))[0]
                raise self.fail((*path, "name"), f"two widgets are named '{name}' (the first "
                                                 f"at line {first})")
            props = state.get("properties", {})
            if not isinstance(props, dict):
                raise self.fail((*path, "properties"), "\"properties\" must be a JSON object")
            transitions = state.get("transitions", [])
            if not isinstance(transitions, list) or not all(
                    isinstance(t, dict) for t in transitions):
                raise self.fail((*path, "transitions"), "\"transitions\" must be a list of "
                                                        "{\"event\", \"next\"} objects")
            step_id = self._step_id(name, (*path, "name"))
            self.widgets[name] = _Widget(index, name, kind, props, transitions, path, step_id)

    def _step_id(self, name: str, path: Path) -> str:
        wanted = _sanitize(name)
        step_id = wanted
        n = 2
        while step_id in self.used_ids:
            step_id = f"{wanted[:60]}_{n}"
            n += 1
        self.used_ids.add(step_id)
        if step_id != name:
            self.warn(path, f"the widget '{name}' is the step '{step_id}' (step ids are "
                            "letters, digits and _)")
        return step_id

    def _new_id(self, wanted: str) -> str:
        step_id = _sanitize(wanted)
        n = 2
        while step_id in self.used_ids:
            step_id = f"{_sanitize(wanted)[:60]}_{n}"
            n += 1
        self.used_ids.add(step_id)
        return step_id

    def _check_transitions(self, widget: _Widget) -> None:
        for i, transition in enumerate(widget.transitions):
            event = transition.get("event")
            if not isinstance(event, str) or not event:
                raise self.fail((*widget.path, "transitions", i),
                                f"a transition of '{widget.name}' has no \"event\"")
            target = transition.get("next")
            if target in (None, ""):
                continue
            if not isinstance(target, str) or target not in self.widgets:
                raise self.fail((*widget.path, "transitions", i, "next"),
                                f"the {transition.get('event', '?')} transition of '{widget.name}'"
                                f" goes to '{target}', which is not a widget of this flow")

    def _flags(self, flags: Any) -> None:
        if isinstance(flags, dict) and flags.get("allow_concurrent_calls") is False:
            self.warn((*self.base, "flags", "allow_concurrent_calls"),
                      "allow_concurrent_calls: false is not imported: flowengine runs every "
                      "call of a flow at once")

    def _result(self, data: dict[str, Any], definition: dict[str, Any]) -> ImportResult:
        name = data.get("friendly_name") if self.base else None
        if not isinstance(name, str) or not name:
            name = os.path.splitext(os.path.basename(self.doc.file))[0] or "studio_flow"
        flow: dict[str, Any] = {"name": re.sub(r"[^\w.-]", "_", name, flags=re.ASCII)[:64]}
        description = definition.get("description")
        if isinstance(description, str) and description.strip():
            flow["description"] = description
        if self.params:
            flow["params"] = {p: "" for p in sorted(self.params)}
        if self.vars:
            flow["vars"] = self.vars
        if self.start is not None:
            flow["start"] = self.start
        flow["steps"] = self.steps
        return ImportResult(flow, self.findings, None, self.subflows)

    # -- helpers -----------------------------------------------------------------------

    def target(self, widget: _Widget, event: str) -> str | None:
        """The step the ``event`` transition goes to (``None``: the call ends there)."""
        for transition in widget.transitions:
            if transition.get("event") == event:
                next_name = transition.get("next")
                if next_name in (None, ""):
                    return None
                return self.widgets[next_name].step_id
        return None

    def has_event(self, widget: _Widget, event: str) -> bool:
        return any(t.get("event") == event for t in widget.transitions)

    def unknown_events(self, widget: _Widget, known: set[str]) -> None:
        for i, transition in enumerate(widget.transitions):
            event = transition.get("event")
            if event not in known and transition.get("next") not in (None, ""):
                self.warn((*widget.path, "transitions", i, "event"),
                          f"the {event} transition of {widget.type} '{widget.name}' has no "
                          "counterpart in flowengine and is not imported")

    def extra_props(self, widget: _Widget, handled: set[str]) -> None:
        for key in widget.props:
            if key not in handled and key not in _CANVAS:
                self.warn((*widget.path, "properties", key),
                          f"'{key}' of {widget.type} '{widget.name}' is not imported", key=True)

    def add_step(self, step_id: str, action: str, params: Any,
                 routes: Mapping[str, str | None],
                 main: str, extra: dict[str, Any] | None = None) -> None:
        """A step with its edges: ``next`` is where ``main`` goes; ``on`` the outcomes that
        go elsewhere. Outcomes missing from ``routes`` follow ``next``."""
        step: dict[str, Any] = {action: params}
        if extra:
            step.update(extra)
        nxt = routes.get(main)
        # `hangup` and `error` without an edge of their own end the flow, not follow next.
        on = {o: t for o, t in routes.items()
              if o != main and (t != nxt or o in ("hangup", "error"))
              and not (o in ("hangup", "error") and t is None)}
        if on:
            step["on"] = on
        step["next"] = nxt
        self.steps[step_id] = step

    def text(self, widget: _Widget, key: str, value: Any = None, *,
             path: Path | None = None) -> str:
        """A property's Liquid text as a Jinja template, reporting what did not translate."""
        if value is None:
            value = widget.props.get(key, "")
        where = path if path is not None else (*widget.path, "properties", key)
        if not isinstance(value, str):
            return str(value)
        tr = translate(value, self.resolve)
        for issue in tr.issues:
            self.warn(where, issue.message, issue.offset)
        return tr.template

    def expression(self, value: str, path: Path) -> tuple[str | None, bool]:
        """A Liquid text as one Jinja expression: (expression, it was a literal)."""
        tr = translate(value, self.resolve)
        for issue in tr.issues:
            self.warn(path, issue.message, issue.offset)
        if tr.expression is not None:
            return tr.expression, False
        if "{{" not in value and "{%" not in value:
            return None, True
        return None, False

    def seconds(self, widget: _Widget, key: str, default: float, most: float) -> Any:
        """A number of seconds from a property (text or number), within (0, most]."""
        raw = widget.props.get(key)
        if raw in (None, ""):
            return default
        value = _number(raw, None)
        if value is None or not 0 < value <= most:
            self.warn((*widget.path, "properties", key), f"{key} {raw!r} is not a number of "
                      f"seconds from 0 to {most:g}; {default:g} is used")
            return default
        return value

    def var(self, key: str, path: Path | None = None) -> str:
        """The flowengine variable for the Studio variable ``key`` (declared as ``''``,
        which is what Studio prints for a variable not set yet)."""
        if key not in self.var_names:
            name = _sanitize(key)
            taken = set(self.var_names.values())
            base, n = name, 2
            while name in taken:
                name = f"{base[:60]}_{n}"
                n += 1
            self.var_names[key] = name
            if name != key and path is not None:
                self.warn(path, f"the variable '{key}' is vars.{name} (variable names are "
                                "letters, digits and _)")
            self.vars.setdefault(name, "")
        return self.var_names[key]

    # -- Liquid names ------------------------------------------------------------------

    def resolve(self, path: list[str | int]) -> tuple[str | None, str | None]:
        head = path[0]
        rest = path[1:]
        shown = ".".join(str(p) for p in path)
        if head == "trigger":
            if len(rest) >= 2 and rest[0] == "call" and rest[1] in _CALL_FIELDS:
                return _tail(_CALL_FIELDS[str(rest[1])], rest[2:]), None
            if rest and rest[0] == "parent" and self.subflow:
                return None, f"{shown}: the parent flow's data is not imported; pass it as a " \
                             "parameter (flow.data)"
            return None, f"{shown} has no counterpart in flowengine (it knows the call's " \
                         "From, To, CallSid, Direction and CallStatus); left out (empty text)"
        if head == "contact" and rest[:2] == ["channel", "address"]:
            return "call.from", None
        if head == "flow":
            if rest[:2] == ["channel", "address"]:
                return "call.to", None
            if rest and rest[0] == "variables" and len(rest) >= 2:
                return _tail(f"vars.{self.var(str(rest[1]))}", rest[2:]), None
            if rest and rest[0] == "data" and len(rest) >= 2 and self.subflow:
                name = _sanitize(str(rest[1]))
                self.params.add(name)
                return _tail(f"params.{name}", rest[2:]), None
            if rest and rest[0] in ("sid", "flow_sid"):
                return "flow.name", f"{shown} is imported as flow.name"
            return None, f"{shown} has no counterpart in flowengine; left out (empty text)"
        if head == "widgets" and len(rest) >= 2:
            widget = self.widgets.get(str(rest[0]))
            if widget is None:
                return None, f"{shown}: there is no widget '{rest[0]}'; left out (empty text)"
            attr = str(rest[1])
            if attr in _CALL_FIELDS:
                return _tail(_CALL_FIELDS[attr], rest[2:]), None
            fields = _RESULT_FIELDS.get(widget.type, {})
            if widget.step_id in self.steps and "log" in self.steps[widget.step_id]:
                fields = {}
            if attr in fields:
                warning = None
                if widget.type == "connect-call-to":
                    warning = (f"{shown} is imported as steps.{widget.step_id}.reason: RELAY's "
                               "reason (busy, noAnswer, …; empty after a call that was "
                               "answered), not Twilio's DialCallStatus")
                expr = _tail(f"steps.{widget.step_id}.{fields[attr]}", rest[2:])
                if fields[attr] == "json" and rest[2:]:
                    # A field the webhook's JSON may lack: Liquid prints nothing for it,
                    # where a Jinja name that is not there would fail the step.
                    expr = f"({expr} | default(''))"
                return expr, warning
            return None, f"{shown}: {widget.type} '{widget.name}' has no result " \
                         f"'{attr}' in flowengine; left out (empty text)"
        return None, None

    # -- widgets -----------------------------------------------------------------------

    def _trigger(self, widget: _Widget) -> None:
        starts = ("incomingParent",) if self.subflow else ("incomingCall", "incomingRequest")
        start: str | None = None
        chosen: str = ""
        for event in starts:
            if self.target(widget, event) is not None:
                start, chosen = self.target(widget, event), event
                break
        if start is None:
            wanted = "incomingParent" if self.subflow else "incomingCall"
            raise self.fail((*widget.path, "transitions"),
                            f"the trigger '{widget.name}' has no {wanted} transition to a "
                            "widget: this flow does not take calls")
        for i, transition in enumerate(widget.transitions):
            other = transition.get("event")
            if other == chosen or transition.get("next") in (None, ""):
                continue
            self.warn((*widget.path, "transitions", i, "event"),
                      f"the trigger's {other} transition is not imported: a flowengine flow "
                      "starts with an inbound call")
        if chosen == "incomingRequest":
            self.warn((*widget.path, "transitions"), "the flow is started by the REST API "
                      "(incomingRequest); it is imported as a flow for inbound calls")
        self.extra_props(widget, set())
        routes = {"answered": start}
        if self.subflow:
            # The parent answered already: a subflow starts at its trigger's target.
            self.start = start
            return
        self.add_step(widget.step_id, "answer", {}, routes, "answered")

    def _widget(self, widget: _Widget) -> None:
        handler = {
            "say-play": self._say_play,
            "gather-input-on-call": self._gather,
            "record-voicemail": self._record_voicemail,
            "split-based-on": self._split,
            "set-variables": self._set_variables,
            "make-http-request": self._http,
            "connect-call-to": self._connect,
            "send-message": self._send_message,
            "run-subflow": self._subflow,
            "record-call": self._record_call,
        }.get(widget.type)
        if handler is None:
            self._unsupported(widget)
        else:
            handler(widget)

    def _unsupported(self, widget: _Widget, reason: str = "", path: Path | None = None) -> None:
        event = next((e for e in _FALLBACK_EVENTS if self.has_event(widget, e)), None)
        if event is None and widget.transitions:
            event = str(widget.transitions[0].get("event"))
        goes = self.target(widget, event) if event else None
        where = f"'{goes}' (its {event} transition)" if goes else "the end of the call"
        why = reason or (f"{widget.type} has no counterpart in flowengine"
                         if widget.type in _KNOWN_TYPES else
                         f"'{widget.type}' is not a Studio widget type flowengine knows")
        self.warn(path or (*widget.path, "type"), f"{why}: '{widget.name}' is left as a log step "
                                                  f"that goes on to {where}")
        shown = ", ".join(f"{k}: {v}" for k, v in widget.props.items()
                          if k not in _CANVAS and isinstance(v, (str, int, float))
                          and not isinstance(v, bool) and str(v).strip())
        line = f"Studio {widget.type} widget '{widget.name}' was not imported"
        if shown:
            line += f" ({shown[:200]})"
        self.add_step(widget.step_id, "log", _plain(line), {"next": goes}, "next")

    def media(self, widget: _Widget, voice_key: str = "voice") -> list[dict[str, Any]]:
        """The say/play of a say-play or gather widget as media items (loop times)."""
        props = widget.props
        items: list[dict[str, Any]] = []
        say = props.get("say")
        play = props.get("play")
        if isinstance(say, str) and say.strip():
            item: dict[str, Any] = {"say": self.text(widget, "say")}
            voice = props.get(voice_key)
            voice = self.text(widget, voice_key) if isinstance(voice, str) else voice
            if isinstance(voice, str) and voice and voice != "default":
                if voice == "man":
                    item["gender"] = "male"
                elif voice == "woman":
                    item["gender"] = "female"
                elif voice == "alice":
                    self.warn((*widget.path, "properties", voice_key),
                              "the voice 'alice' has no counterpart in RELAY; the default "
                              "voice speaks")
                else:
                    item["voice"] = voice
            language = props.get("language")
            if isinstance(language, str) and language:
                item["language"] = self.text(widget, "language")
            items.append(item)
        elif isinstance(play, str) and play.strip():
            items.append({"audio": self.text(widget, "play")})
        loop = props.get("loop", 1)
        try:
            times = int(loop)
        except (TypeError, ValueError):
            times = 1
        if times <= 0:
            self.warn((*widget.path, "properties", "loop"),
                      f"loop {loop} (repeat until the caller hangs up) is imported as once")
            times = 1
        if items and times * len(items) > 100:
            self.warn((*widget.path, "properties", "loop"),
                      f"loop {loop} is imported as 100 (the most a play list holds)")
            times = 100
        return [copy.deepcopy(item) for _ in range(times) for item in items]

    def _say_play(self, widget: _Widget) -> None:
        props = widget.props
        self.extra_props(widget, {"say", "play", "voice", "language", "loop", "digits"})
        self.unknown_events(widget, {"audioComplete"})
        routes = {"finished": self.target(widget, "audioComplete")}
        items = self.media(widget)
        digits = props.get("digits")
        if not items and isinstance(digits, str) and digits.strip():
            if "{" not in digits and any(ch not in _DTMF | set("wW") for ch in digits.strip()):
                self._unsupported(widget, f"the digits {digits!r} are not keys to send",
                                  (*widget.path, "properties", "digits"))
                return
            self.add_step(widget.step_id, "send_digits", self.text(widget, "digits",
                                                                   digits.strip()), routes,
                          "finished")
            return
        if not items:
            self.warn((*widget.path, "properties"), f"say-play '{widget.name}' has nothing to "
                                                    "say or play; a short silence is played")
            items = [{"silence": 0.1}]
        self.add_step(widget.step_id, "play", items, routes, "finished")

    def _gather(self, widget: _Widget) -> None:
        props = widget.props
        self.extra_props(widget, {"say", "play", "voice", "language", "loop", "timeout",
                                  "finish_on_key", "number_of_digits", "stop_gather",
                                  "speech_timeout", "gather_language", "hints",
                                  "profanity_filter", "speech_model", "enhanced"})
        self.unknown_events(widget, {"keypress", "speech", "timeout"})
        items = self.media(widget)
        if not items:
            items = [{"silence": 0.1}]
        timeout = self.seconds(widget, "timeout", 5, 600)
        finish = props.get("finish_on_key", "#")
        finish = finish if isinstance(finish, str) else "#"
        if any(ch not in _DTMF for ch in finish):
            self.warn((*widget.path, "properties", "finish_on_key"),
                      f"finish_on_key {finish!r} is not a set of keys; '#' is used")
            finish = "#"
        max_digits = 64
        if props.get("number_of_digits") not in (None, ""):
            wanted = _number(props["number_of_digits"], None)
            if isinstance(wanted, int) and 1 <= wanted <= 64:
                max_digits = wanted
            else:
                self.warn((*widget.path, "properties", "number_of_digits"),
                          f"number_of_digits {props['number_of_digits']!r} is not a whole "
                          "number from 1 to 64; up to 64 keys are taken")
        digits: dict[str, Any] = {"max": max_digits}
        if finish:
            digits["terminators"] = finish
        digits["digit_timeout"] = timeout
        speech: dict[str, Any] = {}
        language = props.get("gather_language")
        if isinstance(language, str) and language:
            speech["language"] = language
        hints = props.get("hints")
        if isinstance(hints, str) and hints.strip():
            speech["hints"] = [h.strip() for h in hints.split(",") if h.strip()]
        speech_timeout = props.get("speech_timeout", "auto")
        if speech_timeout not in (None, "", "auto"):
            seconds = _number(speech_timeout, 0)
            if seconds > 0:
                speech["end_silence_timeout"] = seconds
        if props.get("stop_gather") is False or props.get("stop_gather") == "false":
            self.warn((*widget.path, "properties", "stop_gather"),
                      "stop_gather: false is not imported: the prompt stops as soon as the "
                      "caller answers")
        if str(props.get("profanity_filter", "true")).lower() == "false":
            self.warn((*widget.path, "properties", "profanity_filter"),
                      "profanity_filter: false is not imported (RELAY does not filter)")
        model = props.get("speech_model")
        if isinstance(model, str) and model not in ("", "default"):
            self.warn((*widget.path, "properties", "speech_model"),
                      f"speech_model '{model}' is not imported: RELAY picks its model")
        if props.get("enhanced") in (True, "true"):
            self.warn((*widget.path, "properties", "enhanced"),
                      "enhanced speech recognition is not imported")
        prompt = {"play": items, "digits": digits, "speech": speech, "initial_timeout": timeout}
        timed_out = self.target(widget, "timeout")
        routes = {"digit": self.target(widget, "keypress"),
                  "speech": self.target(widget, "speech"),
                  "no_input": timed_out, "no_match": timed_out}
        self.meta.prompts[widget.step_id] = (max_digits, finish)
        self.add_step(widget.step_id, "prompt", prompt, routes, "digit")

    def _record_voicemail(self, widget: _Widget) -> None:
        props = widget.props
        self.extra_props(widget, {"timeout", "max_length", "finish_on_key", "play_beep",
                                  "trim", "transcribe", "transcription_callback_url",
                                  "recording_status_callback_url"})
        self.unknown_events(widget, {"recordingComplete", "noAudio", "hangup"})
        silence = self.seconds(widget, "timeout", 5, 3600)
        finish = props.get("finish_on_key", "#")
        finish = finish if isinstance(finish, str) else "#"
        if any(ch not in _DTMF for ch in finish):
            self.warn((*widget.path, "properties", "finish_on_key"),
                      f"finish_on_key {finish!r} is not a set of keys; '#' is used")
            finish = "#"
        record: dict[str, Any] = {
            "beep": str(props.get("play_beep", "true")).lower() != "false",
            "initial_timeout": silence, "end_silence_timeout": silence,
        }
        if finish:
            record["terminators"] = finish
        else:
            record["terminators"] = ""
        for key, why in (("trim", "RELAY does not trim the recording's silence"),
                         ("transcribe", "RELAY does not transcribe recordings"),
                         ("transcription_callback_url", "RELAY does not transcribe recordings"),
                         ("recording_status_callback_url",
                          "there is no recording callback; send steps."
                          f"{widget.step_id}.url on with a request step")):
            value = props.get(key)
            if value not in (None, "", False, "false", "do-not-trim"):
                self.warn((*widget.path, "properties", key), f"'{key}' is not imported: {why}",
                          key=True)
        complete = self.target(widget, "recordingComplete")
        routes = {"finished": complete, "timeout": complete,
                  "no_input": self.target(widget, "noAudio"),
                  "hangup": self.target(widget, "hangup")}
        max_length = self.seconds(widget, "max_length", 3600, 86400)
        self.add_step(widget.step_id, "record", record, routes, "finished",
                      {"timeout": max(1, min(86400, max_length))})

    def _set_variables(self, widget: _Widget) -> None:
        self.extra_props(widget, {"variables"})
        self.unknown_events(widget, {"next"})
        values: dict[str, Any] = {}
        variables = widget.props.get("variables", [])
        if not isinstance(variables, list):
            variables = []
        for i, entry in enumerate(variables):
            path: Path = (*widget.path, "properties", "variables", i)
            if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
                self.warn(path, "a variable without a key is not imported")
                continue
            name = self.var(entry["key"], (*path, "key"))
            value = entry.get("value", "")
            if isinstance(value, str):
                value = self.text(widget, "value", value, path=(*path, "value"))
                kind = entry.get("type")
                if kind == "number" and "{" not in value:
                    value = _number(value, value)
            values[name] = value
        if not values:
            self.warn((*widget.path, "properties"), f"set-variables '{widget.name}' sets nothing")
            self.add_step(widget.step_id, "log", f"set-variables {widget.name}",
                          {"next": self.target(widget, "next")}, "next")
            return
        self.add_step(widget.step_id, "set", values, {"next": self.target(widget, "next")},
                      "next")

    # split-based-on ---------------------------------------------------------------

    def _split(self, widget: _Widget) -> None:
        self.extra_props(widget, {"input"})
        self.unknown_events(widget, {"match", "noMatch"})
        choices: list[dict[str, Any]] = []
        conditions: list[Condition] = []
        staged: str | None = None
        staged_value = ""
        for i, transition in enumerate(widget.transitions):
            if transition.get("event") != "match":
                continue
            tpath: Path = (*widget.path, "transitions", i)
            target = None if transition.get("next") in (None, "") else \
                self.widgets[transition["next"]].step_id
            conds = transition.get("conditions") or []
            parts: list[str] = []
            tests: list[Callable[[str], bool] | None] = []
            samples: list[str] = []
            subject_shown = ""
            label = ""
            for j, cond in enumerate(conds if isinstance(conds, list) else []):
                cpath: Path = (*tpath, "conditions", j)
                if not isinstance(cond, dict):
                    continue
                label = label or str(cond.get("friendly_name") or cond.get("value") or "")
                args = cond.get("arguments") or [widget.props.get("input", "")]
                raw = args[0] if isinstance(args, list) and args else ""
                raw = raw if isinstance(raw, str) else str(raw)
                subject, literal = self.expression(raw, (*cpath, "arguments", 0))
                if subject is None:
                    if literal:
                        subject = jinja_string(raw)
                    else:
                        # Text around the value, or tags: rendered by a set step first.
                        if staged is None:
                            staged = self.var(f"{widget.step_id}_input")
                            staged_value = self.text(widget, "input", raw,
                                                     path=(*cpath, "arguments", 0))
                        subject = f"vars.{staged}"
                subject_shown = subject
                expr, test, sample = self._condition(subject, cond, cpath)
                parts.append(expr)
                tests.append(test)
                samples.extend(sample)
            when = " and ".join(f"({p})" if len(parts) > 1 else p for p in parts) or "false"
            if not parts:
                self.warn(tpath, "a match transition without conditions never matches")
            choices.append({"when": when, "goto": target})
            combined: Callable[[str], bool] | None
            if any(t is None for t in tests) or not tests:
                combined = None
            else:
                combined = _all_of([t for t in tests if t is not None])
            conditions.append(Condition(subject_shown, label, combined, samples))
        choices.append({"goto": self.target(widget, "noMatch")})
        branch_id = widget.step_id
        if staged is not None:
            # The set step keeps the widget's name, so that every edge to the split
            # reaches it first.
            branch_id = self._new_id(f"{widget.step_id}_branch")
            self.steps[widget.step_id] = {"set": {staged: staged_value}, "next": branch_id}
        self.meta.conditions[branch_id] = conditions
        self.steps[branch_id] = {"branch": choices}

    def _condition(self, subject: str, cond: dict[str, Any], path: Path
                   ) -> tuple[str, Callable[[str], bool] | None, list[str]]:
        kind = str(cond.get("type", ""))
        raw_value = cond.get("value", "")
        value_text = raw_value if isinstance(raw_value, str) else json.dumps(raw_value)
        value_expr = self.expression_value(value_text, (*path, "value"))
        plain = subject.endswith(".digits")
        norm = subject if plain else f"(({subject} ~ '') | trim | lower)"
        if value_expr is not None:
            value = f"(({value_expr} ~ '') | trim | lower)"
            lowered: str | None = None
        else:
            lowered = value_text.strip().lower()
            value = jinja_string(lowered)
        listed = [v.strip().lower() for v in value_text.split(",") if v.strip()]

        def num(text: str) -> float | None:
            try:
                return float(text)
            except ValueError:
                return None

        if kind == "equal_to":
            return (f"{norm} == {value}", None if lowered is None else
                    (lambda s: s.strip().lower() == lowered), [value_text.strip()])
        if kind == "not_equal_to":
            return (f"{norm} != {value}", None if lowered is None else
                    (lambda s: s.strip().lower() != lowered), [])
        if kind in ("matches_any_of", "does_not_match_any_of"):
            options = "[" + ", ".join(jinja_string(v) for v in listed) + "]"
            op = "in" if kind == "matches_any_of" else "not in"
            test = ((lambda s: s.strip().lower() in listed) if kind == "matches_any_of"
                    else (lambda s: s.strip().lower() not in listed))
            samples = [v.strip() for v in value_text.split(",") if v.strip()]
            return f"{norm} {op} {options}", test, samples if op == "in" else []
        if kind in ("contains", "does_not_contain"):
            full = f"(({subject} ~ '') | trim | lower)"
            op = "in" if kind == "contains" else "not in"
            return (f"{value} {op} {full}", None if lowered is None else
                    ((lambda s: lowered in s.strip().lower()) if op == "in"
                     else (lambda s: lowered not in s.strip().lower())),
                    [value_text.strip()] if op == "in" else [])
        if kind in ("starts_with", "does_not_start_with"):
            full = f"(({subject} ~ '') | trim | lower)"
            expr = f"{full}.startswith({value})"
            if kind == "starts_with":
                return expr, None if lowered is None else \
                    (lambda s: s.strip().lower().startswith(lowered)), [value_text.strip()]
            return f"not {expr}", None if lowered is None else \
                (lambda s: not s.strip().lower().startswith(lowered)), []
        if kind in ("less_than", "greater_than"):
            op = "<" if kind == "less_than" else ">"
            bound = num(value_text.strip()) if lowered is not None else None
            rhs = value_text.strip() if bound is not None else f"({value} | float)"
            expr = f"({subject} | float) {op} {rhs}"
            if bound is None:
                return expr, None, []
            sample = bound - 1 if op == "<" else bound + 1
            shown = str(int(sample)) if sample == int(sample) else str(sample)

            def compare(s: str, bound: float = bound, op: str = op) -> bool:
                n = num(s.strip()) or 0.0
                return n < bound if op == "<" else n > bound
            return expr, compare, [shown]
        if kind == "is_blank":
            return f"({subject} ~ '') | trim == ''", lambda s: s.strip() == "", [""]
        if kind == "is_not_blank":
            return f"({subject} ~ '') | trim != ''", lambda s: s.strip() != "", []
        if kind == "regex":
            translated = _regex(value_text)
            if translated is not None:
                make, test, samples = translated
                return make(f"(({subject} ~ '') | trim)"), test, samples
            self.warn((*path, "value"), f"the regex {value_text!r} has no counterpart in "
                      "flowengine templates (only anchored literals, alternatives and digit "
                      "counts are translated); this condition never matches")
            return "false", None, []
        self.warn((*path, "type"), f"the condition '{kind}' has no counterpart in flowengine; "
                  "this condition never matches")
        return "false", None, []

    def expression_value(self, text: str, path: Path) -> str | None:
        """A condition's value as an expression when it has Liquid in it, else ``None``."""
        if "{{" in text or "{%" in text:
            expr, _ = self.expression(text, path)
            if expr is None:
                self.warn(path, "a condition value with Liquid tags is not imported; "
                          "it is compared as written")
            return expr
        return None

    # make-http-request --------------------------------------------------------------

    def _http(self, widget: _Widget) -> None:
        props = widget.props
        self.extra_props(widget, {"method", "url", "content_type", "body", "parameters",
                                  "add_twilio_auth"})
        self.unknown_events(widget, {"success", "failed"})
        method = str(props.get("method", "GET")).upper()
        if method not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            self.warn((*widget.path, "properties", "method"),
                      f"the method {method} is not supported; GET is used")
            method = "GET"
        url_raw = props.get("url", "")
        if not isinstance(url_raw, str) or not url_raw.strip():
            self._unsupported(widget, f"make-http-request '{widget.name}' has no url",
                              (*widget.path, "properties", "url"))
            return
        match = re.match(r"https?://[^/{?#]+", url_raw)
        if match:
            # The server's address in a variable, as flowengine flows keep it, so that a
            # scenario can point it at a local receiver.
            name = self.var(f"{widget.step_id}_url")
            self.vars[name] = match.group(0)
            self.meta.request_vars[widget.step_id] = name
            url = "{{ vars." + name + " }}" + self.text(widget, "url", url_raw[match.end():])
        else:
            url = self.text(widget, "url")
        request: dict[str, Any] = {"method": method, "url": url}
        content_type = str(props.get("content_type", "application/x-www-form-urlencoded"))
        params = props.get("parameters") if isinstance(props.get("parameters"), list) else []
        pairs: dict[str, str] = {}
        for i, entry in enumerate(params or []):
            if isinstance(entry, dict) and isinstance(entry.get("key"), str):
                pairs[entry["key"]] = self.text(
                    widget, "value", str(entry.get("value", "")),
                    path=(*widget.path, "properties", "parameters", i, "value"))
        body = props.get("body")
        is_json = "json" in content_type.lower()
        if method == "GET":
            if pairs:
                query = "&".join(f"{quote(k, safe='')}={{{{ {_as_expr(v)} | urlencode }}}}"
                                 for k, v in pairs.items())
                request["url"] = url + ("&" if "?" in url_raw else "?") + query
            if isinstance(body, str) and body.strip():
                self.warn((*widget.path, "properties", "body"), "the body of a GET request is "
                          "not sent", key=True)
        elif is_json and isinstance(body, str) and body.strip():
            request["json"] = self._json_body(widget, body)
        elif pairs:
            request["json"] = pairs
            if not is_json:
                self.warn((*widget.path, "properties", "content_type"),
                          "the form parameters are sent as a JSON object (flowengine's "
                          "request sends JSON); make the endpoint accept application/json")
        elif isinstance(body, str) and body.strip():
            request["json"] = self._text_body(widget, body, content_type)
        if props.get("add_twilio_auth") in (True, "true"):
            self.warn((*widget.path, "properties", "add_twilio_auth"),
                      "add_twilio_auth is not imported: add an Authorization header yourself",
                      key=True)
        failed = self.target(widget, "failed")
        routes = {"ok": self.target(widget, "success"), "http_error": failed,
                  "timeout": failed, "error": failed}
        self.add_step(widget.step_id, "request", request, routes, "ok")

    def _text_body(self, widget: _Widget, body: str, content_type: str) -> Any:
        """A body written as text under a form content type: JSON text, ``a=1&b=2``, or
        anything else (sent as one JSON string) — each reported, since JSON is sent."""
        path: Path = (*widget.path, "properties", "body")
        stripped = body.strip()
        if stripped.startswith(("{", "[")):
            self.warn(path, f"the body is JSON text under content_type {content_type!r}; it "
                      "is sent as JSON", key=True)
            return self._json_body(widget, body)
        pairs = [p for p in stripped.split("&") if p]
        if pairs and all("=" in p for p in pairs):
            self.warn(path, "the form body is sent as a JSON object (flowengine's request "
                      "sends JSON); make the endpoint accept application/json", key=True)
            fields: dict[str, str] = {}
            for pair in pairs:
                key, _, value = pair.partition("=")
                fields[unquote_plus(key)] = self.text(widget, "body", unquote_plus(value),
                                                      path=path)
            return fields
        self.warn(path, "a body that is not JSON is sent as a JSON string", key=True)
        return self.text(widget, "body")

    def _json_body(self, widget: _Widget, body: str) -> Any:
        """A JSON body with Liquid in it → JSON data whose strings are templates."""
        pieces: list[str] = []

        def hold(match: re.Match[str]) -> str:
            pieces.append(match.group(0))
            return f"\ue000{len(pieces) - 1}\ue001"

        held = re.sub(r"\{\{.*?\}\}|\{%.*?%\}", hold, body, flags=re.DOTALL)
        # A Liquid output written where a JSON value goes (unquoted) becomes a string.
        quoted = re.sub('(?<!")\ue000(\\d+)\ue001(?!")',
                        lambda m: '"\ue000' + m.group(1) + '\ue001"', held)
        path: Path = (*widget.path, "properties", "body")
        try:
            data = json.loads(quoted)
        except json.JSONDecodeError as exc:
            self.warn(path, f"the JSON body does not parse ({exc.msg}); it is sent as a JSON "
                      "string", key=True)
            return self.text(widget, "body")

        def back(value: Any) -> Any:
            if isinstance(value, str):
                text = re.sub("\ue000(\\d+)\ue001", lambda m: pieces[int(m.group(1))], value)
                return self.text(widget, "body", text, path=path)
            if isinstance(value, list):
                return [back(v) for v in value]
            if isinstance(value, dict):
                return {k: back(v) for k, v in value.items()}
            return value
        return back(data)

    # connect-call-to ------------------------------------------------------------------

    def _connect(self, widget: _Widget) -> None:
        props = widget.props
        self.extra_props(widget, {"noun", "to", "caller_id", "timeout", "record",
                                  "sip_endpoint", "sip_username", "sip_password"})
        self.unknown_events(widget, {"callCompleted", "hangup", "busy", "noAnswer", "failed"})
        noun = str(props.get("noun", "number"))
        connect: dict[str, Any] = {}
        to = props.get("to")
        to = to.strip() if isinstance(to, str) else ""
        endpoint = props.get("sip_endpoint") or to
        if (noun in ("number", "number-multi") and not to) or (noun == "sip" and not (
                isinstance(endpoint, str) and endpoint.strip())):
            self._unsupported(widget, f"connect-call-to '{widget.name}' has nothing to dial",
                              (*widget.path, "properties", "to"))
            return
        if noun == "number":
            connect["to"] = self._number_to(widget, to, ("to",))
        elif noun == "number-multi":
            numbers = [n.strip() for n in to.split(",") if n.strip()]
            connect["devices"] = [[self._number_to(widget, n, ("to",)) for n in numbers]]
        elif noun == "sip":
            connect["to"] = self.text(widget, "sip_endpoint", str(endpoint).strip())
            if props.get("sip_username") or props.get("sip_password"):
                self.warn((*widget.path, "properties", "sip_username"),
                          "SIP credentials are not imported: RELAY dials the address as it is",
                          key=True)
        else:
            self._unsupported(widget, f"connect-call-to a {noun} has no counterpart in "
                                      "flowengine", (*widget.path, "properties", "noun"))
            return
        caller_id = props.get("caller_id")
        if isinstance(caller_id, str) and caller_id.strip():
            connect["from"] = self.text(widget, "caller_id")
        connect["ring_timeout"] = self.seconds(widget, "timeout", 30, 600)
        if props.get("record") in (True, "true"):
            self.warn((*widget.path, "properties", "record"), "record: true is not imported: "
                      "put a record_call step before the connect", key=True)
        completed = self.target(widget, "callCompleted")
        failures = {e: self.target(widget, e) for e in ("busy", "noAnswer", "failed")
                    if self.has_event(widget, e)}
        routes: dict[str, str | None] = {"disconnected": completed,
                                         "hangup": self.target(widget, "hangup")}
        if len(set(failures.values())) > 1:
            branch_id = self._new_id(f"{widget.step_id}_failed")
            choices: list[dict[str, Any]] = []
            for event, target in failures.items():
                if event != "failed":
                    choices.append({"when": f"steps.{widget.step_id}.reason == "
                                            f"{jinja_string(event)}", "goto": target})
            choices.append({"goto": failures.get("failed", completed)})
            self.steps[branch_id] = {"branch": choices}
            routes["failed"] = branch_id
        else:
            routes["failed"] = next(iter(failures.values())) if failures else completed
        self.add_step(widget.step_id, "connect", connect, routes, "disconnected")
        if isinstance(routes["failed"], str) and routes["failed"] not in self.widget_ids():
            # Keep the helper branch right after its connect step, for reading.
            self._move_after(widget.step_id, routes["failed"])

    def widget_ids(self) -> set[str]:
        return {w.step_id for w in self.widgets.values()}

    def _move_after(self, anchor: str, moved: str) -> None:
        if moved not in self.steps:
            return
        step = self.steps.pop(moved)
        items = list(self.steps.items())
        at = next(i for i, (k, _) in enumerate(items) if k == anchor) + 1
        items.insert(at, (moved, step))
        self.steps = dict(items)

    def _number_to(self, widget: _Widget, number: str, key: Path) -> str:
        text = self.text(widget, str(key[0]), number)
        if re.fullmatch(r"\d{10,15}", text):
            self.warn((*widget.path, "properties", *key), f"the number {text} is dialled as "
                      f"+{text} (E.164)")
            return "+" + text
        return text

    # send-message ---------------------------------------------------------------------

    def _send_message(self, widget: _Widget) -> None:
        props = widget.props
        self.extra_props(widget, {"from", "to", "body", "media_url", "service", "channel",
                                  "attributes"})
        self.unknown_events(widget, {"sent", "failed"})
        sms: dict[str, Any] = {}
        to = props.get("to", _DEFAULT_TO)
        if isinstance(to, str) and to.replace(" ", "") != _DEFAULT_TO:
            sms["to"] = self.text(widget, "to")
        sender = props.get("from", _DEFAULT_FROM)
        if isinstance(sender, str) and sender.replace(" ", "") != _DEFAULT_FROM:
            sms["from"] = self.text(widget, "from")
        body = props.get("body")
        if isinstance(body, str) and body:
            sms["body"] = self.text(widget, "body")
        media = props.get("media_url")
        if isinstance(media, str) and media.strip():
            sms["media"] = [self.text(widget, "media_url")]
        if not sms.get("body") and not sms.get("media"):
            sms["body"] = " "
            self.warn((*widget.path, "properties"), f"send-message '{widget.name}' has no body")
        defaults = {"service": "{{trigger.message.InstanceSid}}",
                    "channel": "{{trigger.message.ChannelSid}}"}
        for key in ("service", "channel", "attributes"):
            value = props.get(key)
            if value not in (None, "") and str(value).replace(" ", "") != defaults.get(key):
                self.warn((*widget.path, "properties", key), f"'{key}' is not imported: RELAY "
                          "sends from your number in the call's context", key=True)
        sent = self.target(widget, "sent")
        failed = self.target(widget, "failed")
        routes = {"delivered": sent, "undelivered": sent, "timeout": sent, "failed": failed,
                  "error": failed}
        # Studio's "sent" means Twilio took the message; some carriers never confirm the
        # delivery flowengine waits for, so the wait is bounded.
        self.add_step(widget.step_id, "send_sms", sms, routes, "delivered", {"timeout": 30})

    # run-subflow ----------------------------------------------------------------------

    def _subflow(self, widget: _Widget) -> None:
        props = widget.props
        self.extra_props(widget, {"flow_sid", "flow_revision", "parameters"})
        self.unknown_events(widget, {"completed", "failed"})
        sid = props.get("flow_sid")
        sid_path: Path = (*widget.path, "properties", "flow_sid")
        source = self._subflow_source(sid) if isinstance(sid, str) and sid else None
        if source is None:
            self._unsupported(widget, f"the subflow {sid or '(no flow_sid)'} is not given "
                              f"(export it as {sid or 'FW….'}.json next to this file to import "
                              "it)", sid_path)
            return
        assert isinstance(sid, str)
        if sid in self.chain:
            cycle = " → ".join((*self.chain, sid))
            raise self.fail(sid_path, f"a cycle of subflows: {cycle}")
        try:
            text = read_flow_file(source).decode("utf-8")
            sub_doc = load_yaml(text, source)
        except Exception as exc:  # any unreadable subflow is one finding, never a traceback
            self._unsupported(widget, f"the subflow {source} cannot be read ({exc})", sid_path)
            return
        inner = _Converter(sub_doc, subflow=True, chain=(*self.chain, sid))
        try:
            sub = inner.run()
        except SourceError as exc:
            if exc.message.startswith("a cycle of subflows"):
                raise self.fail(sid_path, exc.message) from None
            self._unsupported(widget, f"the subflow {source} is not a Studio flow "
                              f"({exc.message})", sid_path)
            return
        for finding in sub.findings:
            self.findings.append(Finding(finding.line, finding.col,
                                         f"in subflow {os.path.basename(source)}: "
                                         f"{finding.message}", finding.severity))
        file_name = f"lib/{_sanitize(sid)}.yaml"
        sub.flow["name"] = _sanitize(sid)
        self.subflows[file_name] = sub.flow
        for name, flow in sub.subflows.items():
            # A subflow's own subflows sit next to it in lib/.
            self.subflows[name] = flow
            for step in sub.flow["steps"].values():
                if isinstance(step.get("call"), dict) and step["call"].get("flow") == name:
                    step["call"]["flow"] = name[len("lib/"):]
        declared = set(sub.flow.get("params", {}))
        call: dict[str, Any] = {"flow": file_name}
        values: dict[str, Any] = {}
        parameters = props.get("parameters") if isinstance(props.get("parameters"), list) else []
        for i, entry in enumerate(parameters or []):
            if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
                continue
            key = _sanitize(entry["key"])
            path: Path = (*widget.path, "properties", "parameters", i)
            if key not in declared:
                self.warn(path, f"the parameter '{entry['key']}' is not used by the subflow "
                          "(it reads no flow.data." + entry["key"] + "); not passed")
                continue
            values[key] = self.text(widget, "value", str(entry.get("value", "")),
                                    path=(*path, "value"))
        if values:
            call["params"] = values
        self.meta.calls.add(widget.step_id)
        if inner.meta.request_vars or inner.meta.unsafe_calls or any(
                "request" in step for step in sub.flow["steps"].values()):
            self.meta.unsafe_calls.add(widget.step_id)
        routes = {"returned": self.target(widget, "completed"),
                  "error": self.target(widget, "failed")}
        self.add_step(widget.step_id, "call", call, routes, "returned")

    def _subflow_source(self, sid: str) -> str | None:
        folder = os.path.dirname(self.doc.file) or "."
        for candidate in (f"{sid}.json", f"{_sanitize(sid)}.json"):
            path = os.path.join(folder, candidate)
            if os.path.isfile(path):
                return path
        return None

    # record-call ----------------------------------------------------------------------

    def _record_call(self, widget: _Widget) -> None:
        props = widget.props
        self.extra_props(widget, {"record_call", "recording_channels", "trim",
                                  "recording_status_callback",
                                  "recording_status_callback_method",
                                  "recording_status_callback_events"})
        self.unknown_events(widget, {"success", "failed"})
        for key in ("trim", "recording_status_callback"):
            if props.get(key) not in (None, "", "do-not-trim"):
                self.warn((*widget.path, "properties", key), f"'{key}' is not imported: the "
                          "recording's url is in steps.<record_call step>.url", key=True)
        routes_ok = self.target(widget, "success")
        failed = self.target(widget, "failed")
        if props.get("record_call") in (True, "true"):
            params: dict[str, Any] = {}
            if props.get("recording_channels", "dual") == "dual":
                params["stereo"] = True
            self.add_step(widget.step_id, "record_call", params,
                          {"started": routes_ok, "error": failed}, "started")
        else:
            self.add_step(widget.step_id, "stop_record_call", {},
                          {"finished": routes_ok, "error": failed}, "finished")


_KNOWN_TYPES = {
    "add-member-to-chat-channel", "add-twiml-redirect", "capture-payments", "connect-call-to",
    "create-chat-channel", "create-task", "enqueue-call", "fork-stream",
    "gather-input-on-call", "make-http-request", "make-outgoing-call-v1",
    "make-outgoing-call-v2", "record-call", "record-voicemail", "run-function",
    "run-function-v2", "say-play", "send-and-wait-for-reply", "send-message", "send-to-flex",
    "set-variables", "split-based-on", "run-subflow", "trigger", "understand",
    "update-sync-object", "connect-virtual-agent", "connect-virtual-agent-v2",
}



def _all_of(tests: list[Callable[[str], bool]]) -> Callable[[str], bool]:
    def test(value: str) -> bool:
        return all(t(value) for t in tests)
    return test


def _plain(text: str) -> str:
    """Text a template prints as it is (Studio's Liquid in it is not run)."""
    if "{{" in text or "{%" in text or "{#" in text:
        return "{% raw %}" + text.replace("{% endraw %}", "") + "{% endraw %}"
    return text


def _tail(base: str, rest: list[str | int]) -> str:
    text = base
    for part in rest:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _ID.fullmatch(part) and not part.startswith("_") and part not in _RESERVED:
            text += f".{part}"
        else:
            text += f"[{jinja_string(part)}]"
    return text


def _number(value: Any, default: Any) -> Any:
    if isinstance(value, bool):
        return default
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return default
        return int(number) if number == int(number) else number
    return default


def _as_expr(template: str) -> str:
    """A template as an expression: ``{{ x }}`` → ``x``; plain text → its literal."""
    match = re.fullmatch(r"\{\{ (.*) \}\}", template, flags=re.DOTALL)
    if match and "{{" not in match.group(1):
        return match.group(1)
    return jinja_string(template)


def _regex(pattern: str) -> tuple[Callable[[str], str], Callable[[str], bool], list[str]] | None:
    """The common shapes of a condition regex as Jinja, else ``None``."""
    meta = set(".^$*+?()[]{}|\\")
    body = pattern
    start = body.startswith("^")
    end = body.endswith("$") and not body.endswith("\\$")
    core = body[1 if start else 0:len(body) - (1 if end else 0)]
    if core and not (set(core) & meta):
        lit = core.lower()
        if start and end:
            return (lambda s: f"{s} | lower == {jinja_string(lit)}",
                    lambda v: v.strip().lower() == lit, [core])
        if start:
            return (lambda s: f"({s} | lower).startswith({jinja_string(lit)})",
                    lambda v: v.strip().lower().startswith(lit), [core])
        if end:
            return (lambda s: f"({s} | lower).endswith({jinja_string(lit)})",
                    lambda v: v.strip().lower().endswith(lit), [core])
        return (lambda s: f"{jinja_string(lit)} in ({s} | lower)",
                lambda v: lit in v.strip().lower(), [core])
    alt = re.fullmatch(r"\((?:\?:)?([^()\[\]{}*+?.^$\\]+)\)", core)
    if start and end and alt:
        options = [o.lower() for o in alt.group(1).split("|")]
        listed = "[" + ", ".join(jinja_string(o) for o in options) + "]"
        return (lambda s: f"({s} | lower) in {listed}",
                lambda v: v.strip().lower() in options, [o for o in alt.group(1).split("|")])
    digits = re.fullmatch(r"(?:\\d|\[0-9\])(\+|\{(\d+)\})", core)
    if start and end and digits:
        if digits.group(1) == "+":
            return (lambda s: f"({s}).isdigit()", lambda v: v.strip().isdigit(), ["1"])
        n = int(digits.group(2))
        return (lambda s: f"(({s}).isdigit() and ({s}) | length == {n})",
                lambda v: v.strip().isdigit() and len(v.strip()) == n, ["1" * n])
    return None
