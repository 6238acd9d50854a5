"""Call control — the specs of answer, hangup, connect, send_digits, sleep, hold, unhold.

Their runners are in ``flowengine.actions.call_control``.
"""

from __future__ import annotations

import re
from typing import Any

from .spec import (
    CALL_OUTCOMES,
    ActionSpec,
    CheckContext,
    Conditional,
    FieldKind,
    Problem,
    devices_schema,
    fields,
    frozen,
)
from .transfer import SIP_HEADERS_SCHEMA

RUNNERS = "flowengine.actions.call_control"

#: ``from`` is a Python keyword: the parameter is passed as ``**_FROM``.
_FROM: dict[str, FieldKind] = {"from": "text"}

ANSWER = ActionSpec(
    name="answer",
    outcomes=("answered", *CALL_OUTCOMES),
    result_fields=("state",),
    runner=f"{RUNNERS}:run_answer",
    summary="Answer the call (calling.answer).",
    method="calling.answer",
    outcome_docs={"answered": "the call was answered."},
    schema=frozen({
        "title": "answer",
        "description": ("Answer the call (RELAY calling.answer). Outcomes: answered, error, "
                        "hangup. Result: steps.<id>.state."),
        "type": ["object", "null"],
        "properties": {
            "max_duration": {
                "title": "Maximum call duration (seconds)",
                "description": "Hang the call up after this many seconds.",
                "type": "integer",
                "minimum": 1,
                "examples": [3600],
            },
        },
        "additionalProperties": False,
        "default": {},
    }),
)

HANGUP = ActionSpec(
    name="hangup",
    outcomes=(),
    result_fields=("reason",),
    runner=f"{RUNNERS}:run_hangup",
    summary="Hang up the call (calling.end).",
    ends_flow=True,
    method="calling.end",
    defaults={"reason": "hangup"},
    schema=frozen({
        "title": "hangup",
        "description": ("Hang up the call (RELAY calling.end). Nothing after it runs unless the "
                        "step has an explicit `next`. Result: steps.<id>.reason."),
        "type": ["object", "null"],
        "properties": {
            "reason": {
                "title": "Reason",
                "type": "string",
                "enum": ["hangup", "cancel", "busy", "noAnswer", "decline", "error"],
                "default": "hangup",
            },
        },
        "additionalProperties": False,
        "default": {},
    }),
)

def _check_connect(step: str, value: Any, ctx: CheckContext) -> list[Problem]:
    given = [k for k in ("to", "devices", "queue") if k in value]
    if not given:
        return [Problem((), f"connect in step '{step}' dials nobody", key=True,
                        hint="add to: NUMBER, or devices: [NUMBER, …] for several, or "
                             "queue: NAME to take the next caller of a queue")]
    if len(given) == 2 and "queue" not in given:
        return [Problem(("devices",), "connect takes to: or devices:, not both", key=True,
                        hint="put the number of to: into devices:")]
    if len(given) >= 2:
        other = next(k for k in given if k != "queue")
        return [Problem((other,), f"connect takes queue: or {other}:, not both", key=True,
                        hint="an agent's connect to a queue dials nobody")]
    if "queue" in value:
        extra = [k for k in ("ringback", "ring_timeout", "from") if k in value]
        if extra:
            return [Problem((extra[0],), f"{extra[0]} does not apply to a connect to a queue "
                            "(the caller is already on the line)", key=True, warning=True)]
    return []

CONNECT = ActionSpec(
    name="connect",
    outcomes=("connected", "disconnected", "failed", "empty", *CALL_OUTCOMES),
    result_fields=("peer", "reason"),
    runner=f"{RUNNERS}:run_connect",
    summary=("Dial one or more numbers and bridge the caller with the first to answer "
             "(calling.connect)."),
    method="calling.connect",
    own_timeout=True,
    fields=fields(to="text", devices="devices", queue="text", ringback="media",
                  headers="text_map", **_FROM),
    outcome_docs={
        "connected": "with wait: false, the peer answered; the two talk while the flow goes on.",
        "disconnected": "the peer hung up after talking; the caller is still on the line.",
        "failed": "no device answered (busy, no answer, declined); steps.<id>.reason says why.",
        "empty": "with queue:, nobody was waiting in the queue.",
    },
    conditional={
        "connected": Conditional(lambda p: p.get("wait") is False,
                                 "a connect ends with connected only with wait: false"),
        "disconnected": Conditional(lambda p: p.get("wait", True) is not False,
                                    "with wait: false a connect ends when the peer answers "
                                    "(connected)"),
        "empty": Conditional(lambda p: "queue" in p,
                             "a connect ends with empty only with queue: NAME"),
        "failed": Conditional(lambda p: "queue" not in p,
                              "a connect to a queue dials nobody: it ends empty when nobody "
                              "waits"),
    },
    check=_check_connect,
    params_intro=("A mapping with `to`, `devices` or `queue` (`{}` dials nobody: `check` "
                  "refuses it):"),
    schema=frozen({
        "title": "connect",
        "description": ("Dial one or more numbers and bridge the caller with the first to "
                        "answer (RELAY calling.connect): a transfer to a person. By default the "
                        "step lasts as long as the two talk. Outcomes: disconnected (the peer "
                        "hung up; the caller is still on the line and the flow goes on), failed "
                        "(no device answered; steps.<id>.reason), hangup (the caller hung up), "
                        "error; with wait: false, connected (the peer answered; the flow goes "
                        "on while they talk); with queue:, empty (nobody waits in it). "
                        "Result: steps.<id>.peer, reason."),
        "type": "object",
        "properties": {
            "to": {
                "title": "Number to dial",
                "description": ("One phone number (E.164, e.g. +15551234567) or sip: address; a "
                                "template. Use `devices` for several."),
                "$ref": "#/definitions/text",
                "examples": ["+15550001111", "{{ vars.agent }}"],
            },
            "devices": devices_schema(
                "Devices",
                "Numbers or sip: addresses tried one after another; an entry that is a list "
                "rings all of its numbers at once (the first to answer wins). Each is a "
                "template.",
                [["+15550001111", ["+15550002222", "+15550003333"]]]),
            "queue": {
                "title": "Queue to take a caller from",
                "description": ("For an agent: bridge this call with the caller who has waited "
                                "longest in the queue of this name (an enqueue step put them "
                                "there); outcome empty when nobody waits. A template."),
                "$ref": "#/definitions/text",
                "examples": ["support"],
            },
            "from": {
                "title": "Caller ID",
                "description": ("The number the dialled person sees (one of your numbers); a "
                                "template. Default: the number the caller called (call.to)."),
                "$ref": "#/definitions/text",
                "examples": ["+15559870000"],
            },
            "ring_timeout": {
                "title": "Ring timeout (seconds)",
                "description": "How long each device rings before it counts as not answering.",
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 600,
                "default": 30,
            },
            "ringback": {
                "title": "Ringback",
                "description": ("What the caller hears while it rings (media items, as for "
                                "play). Default: RELAY's ringing."),
                "$ref": "#/definitions/media_list",
                "examples": [[{"ringtone": "us", "duration": 30}]],
            },
            "headers": {
                **SIP_HEADERS_SCHEMA,
                "description": ("Custom SIP headers sent to the sip: devices dialled (name → "
                                "value; values are templates; phone numbers get none). Use X- "
                                "names for your own data, e.g. X-Ticket."),
            },
            "wait": {
                "title": "Wait for the end",
                "description": ("true: the step lasts as long as the two talk. false: it ends "
                                "(connected) as soon as the peer answers, and the flow goes on "
                                "while they talk; when the flow ends, the call stays up until "
                                "the bridge ends."),
                "type": "boolean",
                "default": True,
            },
        },
        "additionalProperties": False,
        "examples": [
            {"to": "+15550001111", "ring_timeout": 20},
            {
                "devices": ["+15550001111", ["+15550002222", "+15550003333"]],
                "ringback": [{"audio": "https://example.com/hold.mp3"}],
            },
            {"queue": "support"},
        ],
    }),
)

#: What send_digits may send (a literal is checked here, a template when the step runs).
_DTMF_TO_SEND = re.compile(r"^[0-9*#A-DwW]+$")


def _check_send_digits(step: str, value: Any, ctx: CheckContext) -> list[Problem]:
    digits = value["digits"] if isinstance(value, dict) else value
    where: tuple[str, ...] = ("digits",) if isinstance(value, dict) else ()
    if "{" not in digits and not _DTMF_TO_SEND.match(digits):
        return [Problem(where, f"'{digits}' is not DTMF to send",
                        hint="use 0-9, *, #, A-D, w (wait 0.5 s) and W (wait 1 s)")]
    return []

SEND_DIGITS = ActionSpec(
    name="send_digits",
    outcomes=("finished", *CALL_OUTCOMES),
    result_fields=("digits",),
    runner=f"{RUNNERS}:run_send_digits",
    summary="Send DTMF keys on the call (calling.send_digits), e.g. to an IVR it connected to.",
    method="calling.send_digits",
    shorthand="digits",
    fields=fields(digits="text"),
    outcome_docs={"finished": "the keys were sent."},
    check=_check_send_digits,
    schema=frozen({
        "title": "send_digits",
        "description": ("Send DTMF keys on the call (RELAY calling.send_digits) — to a phone "
                        "menu the call is connected to, say — and wait until they are sent. The "
                        "keys, or {digits}: 0-9, *, #, A-D, w (wait half a second), W (wait a "
                        "second); a template, checked when the step runs. Outcomes: finished, "
                        "error, hangup. Result: steps.<id>.digits."),
        "type": ["string", "object"],
        "minLength": 1,
        "maxLength": 256,
        "properties": {
            "digits": {
                "title": "Keys",
                "description": "The keys to send; a template.",
                "type": "string",
                "minLength": 1,
                "maxLength": 256,
                "examples": ["1w2#"],
            },
        },
        "required": ["digits"],
        "additionalProperties": False,
        "examples": ["1w234#", {"digits": "{{ vars.extension }}#"}],
    }),
)

SLEEP = ActionSpec(
    name="sleep",
    outcomes=("finished", *CALL_OUTCOMES),
    result_fields=(),
    runner=f"{RUNNERS}:run_sleep",
    summary="Wait a number of seconds with the caller on the line.",
    shorthand="seconds",
    outcome_docs={"finished": "the time passed."},
    schema=frozen({
        "title": "sleep",
        "description": ("Wait a number of seconds with the caller on the line (nothing is "
                        "played). Written as the seconds, or {seconds}. Outcomes: finished, "
                        "hangup (the caller hung up meanwhile; the step ends at once), error."),
        "type": ["number", "object"],
        "exclusiveMinimum": 0,
        "maximum": 3600,
        "properties": {
            "seconds": {
                "title": "Seconds",
                "description": "How long to wait (at most an hour).",
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 3600,
                "examples": [2],
            },
        },
        "required": ["seconds"],
        "additionalProperties": False,
        "examples": [2, {"seconds": 0.5}],
    }),
)

HOLD = ActionSpec(
    name="hold",
    outcomes=("held", *CALL_OUTCOMES),
    result_fields=("state",),
    runner=f"{RUNNERS}:run_hold",
    summary="Put the caller on hold (calling.hold): they hear hold music until unhold.",
    method="calling.hold",
    outcome_docs={"held": "the caller is on hold (hearing hold music) until an unhold step."},
    schema=frozen({
        "title": "hold",
        "description": ("Put the caller on hold (RELAY calling.hold): they hear hold music while "
                        "the flow goes on (a request, a sleep…) until an unhold step, or the "
                        "end of the call. Outcomes: held, error, hangup. Result: "
                        "steps.<id>.state (`hold`)."),
        "type": ["object", "null"],
        "properties": {},
        "additionalProperties": False,
        "default": {},
        "examples": [{}],
    }),
)


def _check_unhold(step: str, value: Any, ctx: CheckContext) -> list[Problem]:
    # Legal (RELAY just answers), but almost always a missing or misspelt hold step; a
    # subflow may unhold what its caller held, hence a warning.
    if "hold" not in ctx.used:
        return [Problem((), f"unhold in step '{step}' takes the call off hold, but no step of "
                        "this flow puts it on hold", key=True, warning=True,
                        hint="add a hold step before it, or remove it")]
    return []


UNHOLD = ActionSpec(
    name="unhold",
    outcomes=("unheld", *CALL_OUTCOMES),
    result_fields=("state",),
    runner=f"{RUNNERS}:run_unhold",
    summary="Take the caller off hold (calling.unhold).",
    method="calling.unhold",
    outcome_docs={"unheld": "the caller is off hold: the flow talks to them again."},
    check=_check_unhold,
    schema=frozen({
        "title": "unhold",
        "description": ("Take the caller off hold (RELAY calling.unhold): the hold music stops. "
                        "Outcomes: unheld, error, hangup. Result: steps.<id>.state "
                        "(`unhold`)."),
        "type": ["object", "null"],
        "properties": {},
        "additionalProperties": False,
        "default": {},
        "examples": [{}],
    }),
)

#: This family's actions, in the order the schema and docs list them.
SPECS = (ANSWER, HANGUP, CONNECT, SEND_DIGITS, SLEEP, HOLD, UNHOLD)
