"""The actions a step can take, and what the rest of flowengine needs to know about them.

Each action family lives in its own module (``media.py``, ``call_control.py``, ``logic.py``
…) with an ``async def run_<action>(session, step, params) -> StepResult`` per action. This
registry is the light part — names, outcomes, result fields, how the parameters are read —
that the checker, the graph and the docs need without importing the RELAY stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

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


def _fields(**kinds: FieldKind) -> Mapping[str, FieldKind]:
    return MappingProxyType(kinds)


#: ``from`` is a Python keyword: the parameter is passed as ``**_FROM``.
_FROM: dict[str, FieldKind] = {"from": "text"}


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """What one action is, seen from outside its module."""

    name: str
    #: Outcome names the action can end with (the RELAY terminal states themselves where
    #: there are some).
    outcomes: tuple[str, ...]
    #: Keys of the result stored under ``steps.<id>``.
    result_fields: tuple[str, ...]
    #: False for actions that need no live call (they still run after a hangup).
    needs_call: bool
    #: True when nothing runs after the step by default (``hangup``, ``return``).
    ends_flow: bool
    #: ``module:function`` that runs it; imported only by the engine.
    runner: str
    summary: str
    #: What the step sends: a RELAY method (``calling.play``), ``HTTP`` for ``request``,
    #: None for steps that send nothing (their ``error`` comes only from a template).
    method: str | None = None
    #: True when the step waits for something (the call, a server, the clock): its
    #: ``timeout:`` applies and it can then end with ``timeout``.
    waits: bool = False
    #: True when the action applies ``timeout:`` itself (it stops its RELAY action and
    #: keeps the result); otherwise the engine cancels the step when the time is up.
    own_timeout: bool = False
    #: When the action's value may be written as one scalar (``sleep: 2``), the parameter
    #: that scalar stands for (``{"seconds": 2}``).
    shorthand: str | None = None
    #: How the compiler reads the parameters (see :data:`FieldKind`).
    fields: Mapping[str, FieldKind] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def can_fail(self) -> bool:
        """True when the step can end with ``error`` for a reason other than a template."""
        return self.method is not None or self.name == "call"


def _spec(name: str, outcomes: tuple[str, ...], result_fields: tuple[str, ...], runner: str,
          summary: str, *, needs_call: bool = True, ends_flow: bool = False,
          method: str | None = None, waits: bool | None = None, own_timeout: bool = False,
          shorthand: str | None = None,
          fields: Mapping[str, FieldKind] | None = None) -> ActionSpec:
    return ActionSpec(name, outcomes, result_fields, needs_call, ends_flow, runner, summary,
                      method=method, waits=needs_call if waits is None else waits,
                      own_timeout=own_timeout, shorthand=shorthand,
                      fields=fields if fields is not None else MappingProxyType({}))


ACTIONS: dict[str, ActionSpec] = {
    spec.name: spec
    for spec in (
        _spec("answer", ("answered", *CALL_OUTCOMES), ("state",),
              "flowengine.actions.call_control:run_answer", "Answer the call (calling.answer).",
              method="calling.answer"),
        _spec("play", ("finished", *CALL_OUTCOMES), ("state",),
              "flowengine.actions.media:run_play",
              "Play text-to-speech, audio, silence or a ringtone (calling.play).",
              method="calling.play", own_timeout=True),
        _spec("record", ("finished", "no_input", *CALL_OUTCOMES),
              ("state", "url", "duration", "size", "format"),
              "flowengine.actions.media:run_record",
              "Record the caller (calling.record) until a terminator, silence or hangup.",
              method="calling.record", own_timeout=True),
        _spec("branch", (), ("goto", "index"), "flowengine.actions.logic:run_branch",
              "Go to the first target whose `when` is true.", needs_call=False),
        _spec("set", (), (), "flowengine.actions.logic:run_set",
              "Set flow variables (under `vars`).", needs_call=False),
        _spec("log", (), ("text",), "flowengine.actions.logic:run_log",
              "Write a line to the call's log and trace.", needs_call=False),
        _spec("hangup", (), ("reason",), "flowengine.actions.call_control:run_hangup",
              "Hang up the call (calling.end).", ends_flow=True, method="calling.end"),
        _spec("prompt", ("digit", "speech", "no_input", "no_match", *CALL_OUTCOMES),
              ("digits", "terminator", "text", "confidence", "choice", "attempts"),
              "flowengine.actions.input:run_prompt",
              "Ask the caller and collect keys or speech (calling.play_and_collect), asking "
              "again up to max_attempts times.",
              method="calling.play_and_collect", own_timeout=True,
              fields=_fields(play="media", no_input_play="media", no_match_play="media",
                             choices="texts")),
        _spec("request", ("ok", "http_error", "timeout", "error"),
              ("status", "json", "text", "attempts"), "flowengine.actions.http:run_request",
              "Call your own system over HTTP (a webhook, a lookup), retrying as configured.",
              needs_call=False, waits=True, method="HTTP",
              fields=_fields(url="text", headers="text_map", json="value")),
        _spec("connect", ("connected", "disconnected", "failed", *CALL_OUTCOMES),
              ("peer", "reason"), "flowengine.actions.call_control:run_connect",
              "Dial one or more numbers and bridge the caller with the first to answer "
              "(calling.connect).", method="calling.connect", own_timeout=True,
              fields=_fields(to="text", devices="devices", ringback="media",
                             **_FROM)),
        _spec("goto", ("next", "exhausted"), ("target", "visits"),
              "flowengine.actions.logic:run_goto",
              "Go to a step; with max_visits, only while that step has run fewer times.",
              needs_call=False, shorthand="step"),
        _spec("call", ("returned", "error", "hangup"), (), "flowengine.actions.subflow:run_call",
              "Run another flow file (a subflow) with params; what it returns lands under "
              "steps.<id>.", needs_call=False, shorthand="flow", fields=_fields(params="value")),
        _spec("return", (), (), "flowengine.actions.subflow:run_return",
              "End the flow; in a subflow, give these values to the step that called it.",
              needs_call=False, ends_flow=True),
        _spec("send_digits", ("finished", *CALL_OUTCOMES), ("digits",),
              "flowengine.actions.call_control:run_send_digits",
              "Send DTMF keys on the call (calling.send_digits), e.g. to an IVR it connected to.",
              method="calling.send_digits", shorthand="digits", fields=_fields(digits="text")),
        _spec("sleep", ("finished", *CALL_OUTCOMES), (),
              "flowengine.actions.call_control:run_sleep",
              "Wait a number of seconds with the caller on the line.", shorthand="seconds"),
        _spec("detect", ("human", "machine", "unknown", "fax", "digit", *CALL_OUTCOMES),
              ("event", "beep"), "flowengine.actions.input:run_detect",
              "Tell who is on the line: a person or an answering machine, a fax, a key "
              "(calling.detect).", method="calling.detect", own_timeout=True),
        _spec("record_call", ("started", *CALL_OUTCOMES),
              ("state", "url", "duration", "size", "format"),
              "flowengine.actions.media:run_record_call",
              "Record the whole call in the background (calling.record) until "
              "stop_record_call or the end of the call.", method="calling.record", waits=False),
        _spec("stop_record_call", ("finished", *CALL_OUTCOMES), ("url", "duration", "size"),
              "flowengine.actions.media:run_stop_record_call",
              "Stop a background recording (calling.record.stop) and wait for its url.",
              method="calling.record.stop", shorthand="step"),
        _spec("send_sms", ("delivered", "undelivered", "failed", "error"),
              ("message_id", "state", "reason"), "flowengine.actions.messaging:run_send_sms",
              "Send a text message (messaging.send) and wait for its fate (messaging.state).",
              needs_call=False, waits=True, method="messaging.send",
              fields=_fields(to="text", body="text", media="texts", **_FROM)),
    )
}


def outcomes_of(action: str, *, has_timeout: bool = False) -> tuple[str, ...]:
    """Every outcome a step with this action can end with."""
    spec = ACTIONS[action]
    outcomes = spec.outcomes
    if has_timeout and spec.waits and TIMEOUT_OUTCOME not in outcomes:
        return (*outcomes, TIMEOUT_OUTCOME)
    return outcomes
