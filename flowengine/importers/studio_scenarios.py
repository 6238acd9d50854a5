"""Scenarios for an imported Studio flow: one simulated call per path the import can tell.

The paths are walked over the converted flow's own edges. At each step with several ways
on — a prompt answered with keys, with words or not at all; a split's conditions; a
recording made or not; a transfer answered or busy; a webhook that answers 200 or 500 —
each way is tried, and the caller script, the HTTP receiver's replies and the SMS fate
that take it are written down. A split on what the caller pressed or said (or on a
webhook's JSON) picks the keys, words or JSON that take each of its conditions (and none
of the ones before it, since the first match wins). A path that comes back to a step it
ran already ends with the caller hanging up there, so every scenario ends. Where the
import cannot tell what would happen (a split on something else, a subflow), the scenario
stops expecting at that step (``path_includes``).
"""

from __future__ import annotations

import copy
import functools
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .studio import Condition, _Meta

__all__ = ["scenarios_for"]

#: At most this many scenarios per flow, and steps per scenario.
MAX_SCENARIOS = 40
MAX_PATH = 80
#: Steps walked in all, so that a flow of many splits that loop back stays quick to import.
MAX_VISITS = 20_000

_CALLER = "+15551230000"
_NEEDS_CALL = {"answer", "play", "record", "prompt", "connect", "send_digits", "sleep", "hold",
               "unhold", "detect", "record_call", "stop_record_call", "hangup"}
_NO_MATCH_SAMPLES = ["9", "0", "8", "7", "*", "42", "zzz", "nothing"]
_JSON_REF = re.compile(r"steps\.(\w+)\.json((?:\.\w+|\['[^']*'\])+)")


@dataclass
class _Input:
    """One prompt run's answer: keys or words (or neither)."""

    step: str
    keys: str = "-"
    words: str = "-"
    fixed: bool = False


@dataclass
class _State:
    path: list[tuple[str, str]] = field(default_factory=list)
    inputs: list[_Input] = field(default_factory=list)
    records: list[str] = field(default_factory=list)        # finished | no_input | hangup
    peers: list[str] = field(default_factory=list)
    replies: list[dict[str, Any]] = field(default_factory=list)
    sms: str = "delivered"
    plays: int = 0
    decisions: list[str] = field(default_factory=list)
    hangup: str | None = None
    gone: bool = False
    truncated: bool = False
    reply_of: dict[str, int] = field(default_factory=dict)  # request step → reply index


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return " ".join(_text_of(v) for v in value.values())
    if isinstance(value, list):
        return " ".join(_text_of(v) for v in value)
    return ""


def scenarios_for(flow: dict[str, Any], meta: _Meta) -> dict[str, Any] | None:
    """A scenario file's content (without its ``flow:`` key) for ``flow``."""
    walker = _Walker(flow, meta)
    walker.walk()
    if not walker.found:
        return None
    data: dict[str, Any] = {
        "description": "Written by flowengine import: one call per path the import could "
                       "tell, with the caller's keys, words and recordings that take it.",
    }
    if meta.request_vars:
        data["vars"] = {name: "${RECEIVER}" for name in meta.request_vars.values()}
    data["scenarios"] = walker.found
    return data


class _Walker:
    def __init__(self, flow: dict[str, Any], meta: _Meta) -> None:
        self.flow = flow
        self.steps: dict[str, dict[str, Any]] = flow["steps"]
        self.meta = meta
        self.found: list[dict[str, Any]] = []
        self.seen: set[str] = set()
        self.names: set[str] = set()
        #: (step, outcome) edges some scenario takes: an alternative way is walked only
        #: where it takes an edge no scenario took yet, so the count stays near the edges'.
        self.covered: set[tuple[str, str]] = set()
        self.visits = 0
        order = list(self.steps)
        self.json_refs: dict[str, dict[str, Any]] = {}
        for match in _JSON_REF.finditer(_text_of(self.steps)):
            parts = re.findall(r"\.(\w+)|\['([^']*)'\]", match.group(2))
            keys = [a or b for a, b in parts]
            _put(self.json_refs.setdefault(match.group(1), {}), keys, "1")
        self.start = flow.get("start", order[0])

    def walk(self) -> None:
        self.visit(self.start, _State())

    # -- the walk ----------------------------------------------------------------------

    def go(self, state: _State, step_id: str, outcome: str, target: str | None,
           decision: str | None = None, *, alternative: bool = False) -> None:
        if len(self.found) >= MAX_SCENARIOS:
            return
        if alternative and (step_id, outcome) in self.covered:
            return
        nxt = copy.deepcopy(state)
        nxt.path.append((step_id, outcome))
        if decision:
            nxt.decisions.append(decision)
        if target is None or len(nxt.path) >= MAX_PATH:
            self.emit(nxt)
            return
        self.visit(target, nxt)

    def target(self, step: dict[str, Any], outcome: str) -> str | None:
        on = step.get("on", {})
        if outcome in on:
            return on[outcome]  # type: ignore[no-any-return]
        return step.get("next")

    def visit(self, step_id: str, state: _State) -> None:
        self.visits += 1
        if self.visits > MAX_VISITS:
            return
        step = self.steps[step_id]
        if any(s == step_id for s, _ in state.path):
            self.revisit(step_id, step, state)
            return
        action = next(k for k in step if k not in ("next", "on", "timeout", "description"))
        params = step[action]
        t = functools.partial(self.target, step)
        if state.gone and action in _NEEDS_CALL:
            # The caller hung up: a step that needs the call ends at once with hangup.
            self.go(state, step_id, "hangup", step.get("on", {}).get("hangup"))
            return
        if action == "answer":
            self.go(state, step_id, "answered", t("answered"))
        elif action in ("play", "send_digits"):
            if action == "play":
                state.plays += 1
            self.go(state, step_id, "finished", t("finished"))
        elif action in ("set", "log"):
            self.go(state, step_id, "next", step.get("next"))
        elif action == "record_call":
            self.go(state, step_id, "started", t("started"))
        elif action == "stop_record_call":
            self.go(state, step_id, "finished", t("finished"))
        elif action == "prompt":
            self.prompt(step_id, step, state)
        elif action == "record":
            self.record(step_id, step, state)
        elif action == "branch":
            self.branch(step_id, params, state)
        elif action == "request":
            self.request(step_id, step, state)
        elif action == "connect":
            self.connect(step_id, step, params, state)
        elif action == "send_sms":
            for outcome, decision in (("delivered", None), ("failed", f"{step_id}: the text "
                                                                      "message fails")):
                if outcome == "failed" and t("failed") == t("delivered"):
                    continue
                nxt = copy.deepcopy(state)
                nxt.sms = outcome
                self.go(nxt, step_id, outcome, t(outcome), decision,
                        alternative=outcome == "failed")
        elif action == "call":
            if step_id in self.meta.unsafe_calls:
                return  # the subflow would send requests to its real server
            nxt = copy.deepcopy(state)
            nxt.path.append((step_id, "returned"))
            nxt.truncated = True
            self.emit(nxt)
        elif action == "hangup":
            self.go(state, step_id, "next", step.get("next"))
        else:
            nxt = copy.deepcopy(state)
            nxt.truncated = True
            self.emit(nxt)

    def revisit(self, step_id: str, step: dict[str, Any], state: _State) -> None:
        """Back at a step the call ran already: the caller hangs up there."""
        nxt = copy.deepcopy(state)
        if "prompt" in step:
            n = sum(1 for i in state.inputs) + 1
            nxt.hangup = f"hangup@collect{n}:1"
            nxt.inputs.append(_Input(step_id))
        elif "play" in step:
            nxt.hangup = f"hangup@play{state.plays + len(state.inputs) + 1}"
        else:
            return
        nxt.path.append((step_id, "hangup"))
        nxt.decisions.append(f"back at {step_id}, the caller hangs up")
        self.emit(nxt)

    def prompt(self, step_id: str, step: dict[str, Any], state: _State) -> None:
        t = functools.partial(self.target, step)
        options = [("digit", _Input(step_id, keys="1"), f"{step_id}: presses keys"),
                   ("speech", _Input(step_id, words="hello"), f"{step_id}: speaks"),
                   ("no_input", _Input(step_id), f"{step_id}: says nothing")]
        taken: set[str | None] = set()
        for n, (outcome, answer, decision) in enumerate(options):
            target = t(outcome)
            # Keys go on to where the split decides; words and silence only where they
            # lead somewhere of their own.
            if outcome != "digit" and target in taken and not self._tests_prompt(step_id):
                continue
            taken.add(target)
            nxt = copy.deepcopy(state)
            max_keys, terminators = self.meta.prompts.get(step_id, (1, ""))
            if outcome == "digit" and len(answer.keys) < max_keys and terminators:
                answer.keys += terminators[0]
            nxt.inputs.append(answer)
            self.go(nxt, step_id, outcome, target, decision, alternative=n > 0)

    def _tests_prompt(self, step_id: str) -> bool:
        return any(c.subject.startswith(f"steps.{step_id}.")
                   for conds in self.meta.conditions.values() for c in conds)

    def record(self, step_id: str, step: dict[str, Any], state: _State) -> None:
        t = functools.partial(self.target, step)
        for n, (outcome, decision) in enumerate((
                ("finished", f"{step_id}: leaves a message"),
                ("no_input", f"{step_id}: says nothing"),
                ("hangup", f"{step_id}: hangs up while recording"))):
            if outcome == "hangup" and "hangup" not in step.get("on", {}):
                continue
            if outcome == "no_input" and t("no_input") == t("finished"):
                continue
            nxt = copy.deepcopy(state)
            nxt.records.append(outcome)
            nxt.gone = nxt.gone or outcome == "hangup"
            self.go(nxt, step_id, outcome, t(outcome), decision, alternative=n > 0)

    def request(self, step_id: str, step: dict[str, Any], state: _State) -> None:
        if step_id not in self.meta.request_vars:
            return  # its server cannot be pointed at a receiver: no scenario goes there
        t = functools.partial(self.target, step)
        for outcome, status, decision in (("ok", 200, None),
                                          ("http_error", 500, f"{step_id}: the server "
                                                              "answers 500")):
            if outcome == "http_error" and t("http_error") == t("ok"):
                continue
            nxt = copy.deepcopy(state)
            reply: dict[str, Any] = {"status": status}
            if status == 200:
                reply["json"] = copy.deepcopy(self.json_refs.get(step_id, {}))
            nxt.reply_of[step_id] = len(nxt.replies)
            nxt.replies.append(reply)
            self.go(nxt, step_id, outcome, t(outcome), decision, alternative=status != 200)

    def connect(self, step_id: str, step: dict[str, Any], params: dict[str, Any],
                state: _State) -> None:
        t = functools.partial(self.target, step)
        devices = params.get("devices")
        count = len(devices[0]) if isinstance(devices, list) and devices and \
            isinstance(devices[0], list) else 1
        for n, (outcome, peers, decision) in enumerate((
                ("disconnected", ["answer:5"] + ["busy"] * (count - 1),
                 f"{step_id}: answered"),
                ("failed", ["busy"] * count, f"{step_id}: busy"),
                ("hangup", ["answer:20"] + ["busy"] * (count - 1),
                 f"{step_id}: the caller hangs up while they talk"))):
            if outcome == "hangup" and "hangup" not in step.get("on", {}):
                continue
            nxt = copy.deepcopy(state)
            nxt.peers.extend(peers)
            if outcome == "hangup":
                if (step_id, "hangup") in self.covered:
                    continue
                nxt.hangup = "hangup@connect:1"
                nxt.path.append((step_id, "hangup"))
                nxt.decisions.append(decision)
                self.emit(nxt)
                continue
            self.go(nxt, step_id, outcome, t(outcome), decision, alternative=n > 0)

    def branch(self, step_id: str, choices: list[dict[str, Any]], state: _State) -> None:
        conditions = self.meta.conditions.get(step_id)
        if conditions is None:
            # A helper branch (on a connect's failure reason): the first choice is busy.
            self.go(state, step_id, "branch0", choices[0].get("goto"))
            return
        subject = conditions[0].subject if conditions else ""
        same = all(c.subject == subject for c in conditions)
        steer = self._steer(subject, state) if same else None
        if steer is None:
            value = self._known(subject, state) if same else None
            if value is None or any(c.test is None for c in conditions):
                nxt = copy.deepcopy(state)
                nxt.path.append((step_id, "branch?"))
                nxt.truncated = True
                self.emit(nxt)
                return
            k = next((i for i, c in enumerate(conditions) if c.test and c.test(value)),
                     len(conditions))
            self.go(state, step_id, f"branch{k}", choices[k].get("goto"))
            return
        kind, where = steer
        for k in range(len(choices)):
            sample = self._sample(conditions, k, kind)
            if sample is None:
                continue
            nxt = copy.deepcopy(state)
            label = conditions[k].label if k < len(conditions) else "no match"
            if not self._apply(nxt, kind, where, sample):
                continue
            self.go(nxt, step_id, f"branch{k}", choices[k].get("goto"),
                    f"{step_id}: {label!r} ({sample or 'nothing'})", alternative=k > 0)

    def _steer(self, subject: str, state: _State) -> tuple[str, Any] | None:
        """What the scenario can choose to make ``subject`` any value."""
        match = re.fullmatch(r"steps\.(\w+)\.(digits|text)", subject)
        if match:
            step, fieldname = match.groups()
            runs = [i for i, inp in enumerate(state.inputs) if inp.step == step]
            if not runs:
                return None
            last = state.inputs[runs[-1]]
            outcome = next((o for s, o in reversed(state.path) if s == step), "")
            wanted = "digit" if fieldname == "digits" else "speech"
            if outcome != wanted or last.fixed:
                return None
            return ("keys" if fieldname == "digits" else "words"), runs[-1]
        match = re.fullmatch(r"\(?steps\.(\w+)\.json((?:\.\w+|\['[^']*'\])+)"
                             r"(?: \| default\(''\)\))?", subject)
        if match and match.group(1) in state.reply_of:
            parts = re.findall(r"\.(\w+)|\['([^']*)'\]", match.group(2))
            reply = state.replies[state.reply_of[match.group(1)]]
            if reply.get("status") != 200:
                return None
            return "json", (state.reply_of[match.group(1)], [a or b for a, b in parts])
        return None

    def _known(self, subject: str, state: _State) -> str | None:
        if subject in ("call.from",):
            return _CALLER
        if subject in ("call.to",):
            return "+15559870000"
        match = re.fullmatch(r"steps\.(\w+)\.(digits|text)", subject)
        if match:
            step, fieldname = match.groups()
            runs = [inp for inp in state.inputs if inp.step == step]
            if runs:
                value = runs[-1].keys if fieldname == "digits" else runs[-1].words
                value = "" if value == "-" else value
                terminators = self.meta.prompts.get(step, (1, ""))[1]
                return value.rstrip(terminators) if terminators else value
        return None

    def _sample(self, conditions: list[Condition], k: int, kind: str) -> str | None:
        if any(c.test is None for c in conditions[:k + 1 if k < len(conditions) else k]):
            return None
        candidates = list(conditions[k].samples) if k < len(conditions) else []
        candidates += _NO_MATCH_SAMPLES + [s for c in conditions for s in c.samples]
        for candidate in candidates:
            if kind == "keys" and (not candidate or any(ch not in "0123456789*"
                                                        for ch in candidate)):
                continue
            if kind == "words" and not re.fullmatch(r"[A-Za-z][A-Za-z .'-]*", candidate):
                continue
            earlier = any(c.test is not None and c.test(candidate) for c in conditions[:k])
            if earlier:
                continue
            own = conditions[k].test if k < len(conditions) else None
            if own is not None and not own(candidate):
                continue
            if k == len(conditions) and any(c.test is not None and c.test(candidate)
                                            for c in conditions):
                continue
            return candidate
        return None

    def _apply(self, state: _State, kind: str, where: Any, sample: str) -> bool:
        if kind == "json":
            index, keys = where
            _put(state.replies[index].setdefault("json", {}), keys, sample)
            return True
        answer = state.inputs[where]
        if kind == "keys":
            max_keys, terminators = self.meta.prompts.get(answer.step, (1, ""))
            if len(sample) > max_keys or any(ch in terminators for ch in sample):
                return False
            answer.keys = sample + (terminators[0] if len(sample) < max_keys and terminators
                                    else "")
        else:
            answer.words = sample
        answer.fixed = True
        return True

    # -- writing a scenario ------------------------------------------------------------

    def emit(self, state: _State) -> None:
        clauses: list[str] = []
        records = set(state.records)
        if records - {"hangup"} == {"finished", "no_input"}:
            return  # one caller cannot both speak and stay silent in recordings
        if "no_input" in records:
            clauses.append("silent")
        elif "finished" in records:
            clauses.append("speak:3")
        if "hangup" in records:
            n = state.records.index("hangup") + 1
            clauses.append(f"hangup@record{n}:2")
        keys = [inp.keys for inp in state.inputs]
        words = [inp.words for inp in state.inputs]
        if any(k != "-" for k in keys):
            clauses.append("digits:" + "/".join(keys).rstrip("/-").rstrip("/"))
        if any(w != "-" for w in words):
            clauses.append("say:" + "/".join(words))
        if state.peers:
            clauses.append("peer:" + "/".join(state.peers))
        if state.sms != "delivered":
            clauses.append(f"sms:{state.sms}")
        if state.hangup:
            clauses.append(state.hangup)
        caller = ",".join(clauses) or "speak:3"
        key = caller + repr(state.replies)
        if key in self.seen:
            return
        self.seen.add(key)
        self.covered.update(state.path)
        steps = [s for s, _ in state.path if not _.endswith("?")]
        expect: dict[str, Any] = {}
        if state.truncated:
            expect["path_includes"] = steps
        else:
            expect["path"] = steps
            outcomes = {s: o for s, o in state.path if o not in ("next", "answered")}
            if outcomes:
                expect["outcomes"] = outcomes
            if state.hangup:
                expect["caller_hung_up"] = True
            else:
                expect["status"] = "completed"
        name = "; ".join(state.decisions) or "the main path"
        base, n = name, 2
        while name in self.names:
            name = f"{base} ({n})"
            n += 1
        self.names.add(name)
        scenario: dict[str, Any] = {"name": name, "caller": caller}
        if state.replies:
            scenario["receiver"] = {"replies": state.replies}
        scenario["expect"] = expect
        self.found.append(scenario)


def _put(target: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        nested = target.get(key)
        if not isinstance(nested, dict):
            nested = target[key] = {}
        target = nested
    if keys:
        target[keys[-1]] = value
