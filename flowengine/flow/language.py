"""The flow language's JSON Schema, put together from the frame below and each action's spec.

``schemas/flow.schema.json`` (shipped as ``flowengine/schemas/flow.schema.json``, which editors
and :mod:`.schema` read) is written from :func:`build_schema` by ``tools/gen_schema.py``; a test
fails when the committed file is not its output. What is here is what no action owns: the
flow's top-level keys, the common keys of a step, the shared definitions and the ``on:`` map.
Each action's parameters, and what its outcomes mean, live in its spec
(``flowengine.flow.actions``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from typing import Any

from .actions import ACTIONS, ActionSpec
from .actions.spec import devices_schema

#: ``inputs:``, what a call placed for the flow is given (``flowengine.flow.inputs``).
INPUTS_SCHEMA: dict[str, Any] = {
    "title": "Inputs",
    "description": ("What each call placed for this flow is given (`flowengine dial --var`, the "
                    "call API's `vars`, a campaign's columns): name → type, whether it is "
                    "required, a default. Each is `vars.<name>` in templates; the values are "
                    "checked before anything is dialled."),
    "type": "object",
    "propertyNames": {"$ref": "#/definitions/name"},
    "additionalProperties": {
        "title": "Input",
        "type": "object",
        "properties": {
            "type": {
                "title": "Type",
                "description": ("string, number, integer, boolean, or phone (an E.164 number, "
                                "+ and digits)."),
                "enum": ["string", "number", "integer", "boolean", "phone"],
            },
            "required": {
                "title": "Required",
                "description": "true: every call must be given it (it then has no default).",
                "type": "boolean",
                "default": False,
            },
            "default": {
                "title": "Default",
                "description": "The value when a call is not given one (of the input's type).",
                "type": ["string", "number", "boolean"],
                "maxLength": 4096,
            },
            "description": {
                "title": "Description",
                "description": "Free text about the input (shown in errors and the API).",
                "type": "string",
                "maxLength": 4096,
            },
        },
        "required": ["type"],
        "additionalProperties": False,
    },
    "examples": [{"patient": {"type": "string", "default": "there"},
                  "callback": {"type": "phone", "required": True}}],
}

#: ``outbound:``, how a call placed for the flow is dialled and where each dial outcome leads.
OUTBOUND_SCHEMA: dict[str, Any] = {
    "title": "Outbound calls",
    "description": ("How a call placed for this flow is dialled (RELAY calling.dial) and where "
                    "each dial outcome leads. `answered` starts at the flow's first step; "
                    "`machine` (with detect_machine) at on.machine, else as answered; busy, "
                    "no_answer and failed at their on: step, run without a call (only log, "
                    "set, request, send_sms, branch, goto, end), else nothing runs."),
    "type": "object",
    "properties": {
        "from": {
            "title": "Caller ID",
            "description": ("The number the callee sees (one of yours); a template over vars "
                            "and flow. A call's own from (`--from`, the API's `from`) wins."),
            "$ref": "#/definitions/text",
            "examples": ["+15559870000"],
        },
        "devices": devices_schema(
            "Devices",
            "What is rung, one entry after another; an entry that is a list rings all of its "
            "numbers at once (the first to answer wins). Each is a template over call "
            "(call.to: the number the call is placed to), vars and flow. Default: "
            "[\"{{ call.to }}\"].",
            [["{{ call.to }}", ["{{ vars.mobile }}", "{{ vars.office }}"]]]),
        "timeout": {
            "title": "Ring timeout (seconds)",
            "description": "How long each device rings before it counts as no answer.",
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 600,
            "default": 30,
        },
        "max_duration": {
            "title": "Maximum duration (seconds)",
            "description": ("The answered call is hung up after this many seconds (RELAY is "
                            "told in whole minutes, rounded up). Default: limits.max_duration, "
                            "else no limit."),
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 86400,
            "examples": [600],
        },
        "detect_machine": {
            "title": "Answering machine detection",
            "description": ("true, or the detector's settings: run a machine detector on the "
                            "answered call before the flow starts; a machine gives the outcome "
                            "machine. wait_for_beep: the outcome comes when the greeting has "
                            "ended (leave the message then)."),
            "type": ["boolean", "object"],
            "properties": {
                "wait_for_beep": {
                    "title": "Wait for the beep",
                    "description": "Come to machine only once the machine's greeting ended.",
                    "type": "boolean",
                    "default": False,
                },
                "initial_timeout": {
                    "title": "Initial timeout (seconds)",
                    "description": "How long to wait for the first sound.",
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": 600,
                },
                "end_silence_timeout": {
                    "title": "End silence timeout (seconds)",
                    "description": "The silence that ends what the detector hears.",
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": 600,
                },
                "machine_voice_threshold": {
                    "title": "Machine voice threshold (seconds)",
                    "description": "Speech longer than this counts as a machine.",
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": 600,
                },
                "machine_words_threshold": {
                    "title": "Machine words threshold",
                    "description": "More words than this count as a machine.",
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 1000,
                },
            },
            "additionalProperties": False,
            "examples": [True, {"wait_for_beep": True}],
        },
        "on": {
            "title": "Edges by dial outcome",
            "description": ("Dial outcome → step id (`null`: nothing runs). answered always "
                            "starts at the flow's first step (`start`)."),
            "type": "object",
            "properties": {
                "machine": {"description": ("An answering machine took the call "
                                            "(detect_machine): the call is live."),
                            "$ref": "#/definitions/target"},
                "busy": {"description": "The line was busy or the callee declined: no call.",
                         "$ref": "#/definitions/target"},
                "no_answer": {"description": "Nobody answered in time: no call.",
                              "$ref": "#/definitions/target"},
                "failed": {"description": "The call could not be placed: no call.",
                           "$ref": "#/definitions/target"},
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
    "examples": [{"from": "+15559870000", "timeout": 25, "detect_machine": {"wait_for_beep": True},
                  "on": {"machine": "voicemail", "busy": "note_busy"}}],
}

#: The flow document: everything but ``definitions`` (see :func:`build_schema`).
FRAME: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "$id": "https://flowengine.dev/schemas/flow-v1.json",
    "title": "flowengine flow (v1)",
    "description": ("A call flow for flowengine: the steps one phone call goes through, run "
                    "over the SignalWire RELAY call API. Reference: docs/flow-language.md."),
    "type": "object",
    "properties": {
        "name": {
            "title": "Flow name",
            "description": ("Required. Unique among the flows one daemon serves; used in logs, "
                            "traces and `flow.name` in templates."),
            "type": "string",
            "minLength": 1,
            "maxLength": 100,
            "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$",
            "patternErrorMessage": ("a flow name is letters, digits, '_', '.' and '-', starting "
                                    "with a letter or digit"),
            "examples": ["voicemail", "after-hours"],
        },
        "description": {
            "title": "Description",
            "description": "Free text about what the flow does.",
            "type": "string",
            "maxLength": 4096,
        },
        "context": {
            "title": "RELAY context(s)",
            "description": ("The RELAY context, or a list of them, whose inbound calls this "
                            "flow takes."),
            "type": ["string", "array"],
            "minLength": 1,
            "maxLength": 100,
            "minItems": 1,
            "items": {"type": "string", "minLength": 1, "maxLength": 100},
            "default": "default",
            "examples": ["office", ["office", "support"]],
        },
        "match": {
            "title": "Call matching",
            "description": ("Optional routing inside a context: the flow takes only calls whose "
                            "number matches. Each value is an exact number or a glob (`*`, `?`, "
                            "`[...]`)."),
            "type": "object",
            "properties": {
                "to": {
                    "title": "Called number",
                    "description": ("The number that was called, exact or a glob. Write it as a "
                                    "string."),
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 100,
                    "examples": ["+15559870000", "+1555987*"],
                },
                "from": {
                    "title": "Caller's number",
                    "description": "The caller's number, exact or a glob. Write it as a string.",
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 100,
                    "examples": ["+1555123*"],
                },
            },
            "additionalProperties": False,
        },
        "vars": {
            "title": "Variables",
            "description": ("Initial flow variables (`vars.<name>` in templates). String values "
                            "are templates over `call` and `flow`, rendered when a call starts."),
            "type": "object",
            "propertyNames": {"$ref": "#/definitions/name"},
            "additionalProperties": {"$ref": "#/definitions/value"},
            "examples": [{"mailbox": "sales", "greeting": "Hello {{ call.from }}"}],
        },
        "params": {
            "title": "Parameters",
            "description": ("A subflow's parameters, with their defaults: `params.<name>` in "
                            "templates. A calling step's `call: {params: …}` replaces them. "
                            "String defaults are templates over `call` and `flow`."),
            "type": "object",
            "propertyNames": {"$ref": "#/definitions/name"},
            "additionalProperties": {"$ref": "#/definitions/value"},
            "examples": [
                {"question": "Please enter your account number, then press pound.", "attempts": 3},
            ],
        },
        "inputs": INPUTS_SCHEMA,
        "outbound": OUTBOUND_SCHEMA,
        "start": {
            "title": "First step",
            "description": "The step a call starts with. Default: the first step written.",
            "type": "string",
            "maxLength": 64,
        },
        "steps": {
            "title": "Steps",
            "description": ("Step id → step, in order. After a step, the flow goes on to the "
                            "one written after it unless the step says otherwise (`next`, `on`, "
                            "`branch`)."),
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"$ref": "#/definitions/name"},
            "additionalProperties": {"$ref": "#/definitions/step"},
        },
        "on_hangup": {
            "title": "On caller hangup",
            "description": ("A step to run (once per call) when the caller hangs up during a "
                            "step that has no `on: {hangup: ...}` edge. From there on only "
                            "steps that need no live call (log, set, branch) do anything; a "
                            "step that needs the call ends at once with outcome `hangup`."),
            "type": "string",
            "maxLength": 64,
        },
        "on_error": {
            "title": "On error",
            "description": ("A step to go to (once per call) when a step fails and has no `on: "
                            "{error: ...}` edge. Without it the call's flow ends with the error "
                            "in its trace."),
            "type": "string",
            "maxLength": 64,
        },
        "schedules": {
            "title": "Schedules",
            "description": ("Named opening hours: `is_open('<name>')`, `next_open('<name>')` and "
                            "`next_close('<name>')` in templates and `when:` "
                            "(docs/flow-language.md, Schedules)."),
            "type": "object",
            "propertyNames": {"$ref": "#/definitions/name"},
            "additionalProperties": {
                "title": "Schedule",
                "description": ("Weekly hours in a time zone, with closed dates and special "
                                "openings."),
                "type": "object",
                "properties": {
                    "timezone": {
                        "title": "Time zone",
                        "description": ("The IANA zone the hours and dates are in; the hours "
                                        "are local wall-clock times, also on the days the "
                                        "clocks change."),
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 64,
                        "examples": ["America/New_York", "Europe/Berlin", "UTC"],
                    },
                    "hours": {
                        "title": "Weekly hours",
                        "description": ("Days (`mon`, `mon-fri`, `sat,sun`, `daily`) → a range "
                                        "`HH:MM-HH:MM` or a list of them (or `closed`). A range "
                                        "whose end is not after its start runs overnight "
                                        "(`22:00-06:00`); ranges may touch, not overlap."),
                        "type": "object",
                        "propertyNames": {"type": "string", "maxLength": 64},
                        "additionalProperties": {
                            "type": ["string", "array"],
                            "maxLength": 200,
                            "items": {"type": "string", "maxLength": 200},
                            "maxItems": 48,
                        },
                        "examples": [{"mon-fri": "09:00-17:30",
                                      "sat": ["10:00-12:00", "13:00-14:00"]}],
                    },
                    "closed": {
                        "title": "Closed dates",
                        "description": ("Dates closed all day, in the schedule's zone: "
                                        "`YYYY-MM-DD`, `MM-DD` (every year) or "
                                        "`YYYY-MM-DD..YYYY-MM-DD` (both included)."),
                        "type": "array",
                        "maxItems": 1000,
                        "items": {"type": "string", "maxLength": 32},
                        "examples": [["2026-12-25", "01-01", "2026-08-03..2026-08-14"]],
                    },
                    "open": {
                        "title": "Special openings",
                        "description": ("`YYYY-MM-DD HH:MM-HH:MM[, HH:MM-HH:MM]`: that date's "
                                        "hours instead of its weekly ones (it wins over "
                                        "`closed`)."),
                        "type": "array",
                        "maxItems": 1000,
                        "items": {"type": "string", "maxLength": 200},
                        "examples": [["2026-12-24 09:00-12:00"]],
                    },
                    "description": {
                        "title": "Description",
                        "description": "Free text about the schedule.",
                        "type": "string",
                        "maxLength": 4096,
                    },
                },
                "required": ["timezone", "hours"],
                "additionalProperties": False,
            },
            "examples": [{"support": {"timezone": "America/New_York",
                                      "hours": {"mon-fri": "09:00-17:30"},
                                      "closed": ["2026-12-25"]}}],
        },
        "limits": {
            "title": "Limits",
            "description": "Guards for each call running this flow.",
            "type": "object",
            "properties": {
                "max_steps": {
                    "title": "Maximum steps per call",
                    "description": ("A loop guard: the call's flow ends with an error after "
                                    "this many steps."),
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 1000000,
                    "default": 1000,
                },
                "max_duration": {
                    "title": "Maximum duration (seconds)",
                    "description": ("The call's flow ends (and the call is hung up) after this "
                                    "many seconds. Default: no limit."),
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "examples": [3600],
                },
            },
            "additionalProperties": False,
        },
    },
    "required": ["name", "steps"],
    "additionalProperties": False,
}

#: Definitions every part of the schema may use.
SHARED_DEFINITIONS: dict[str, Any] = {
    "name": {
        "title": "Name",
        "description": ("A step id or variable name: letters, digits and '_', starting with a "
                        "letter or '_', so that templates can write `steps.<id>` and "
                        "`vars.<name>`."),
        "type": "string",
        "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
        "patternErrorMessage": ("use letters, digits and '_', starting with a letter or '_' "
                                "(templates write steps.<id> and vars.<name>)"),
        "maxLength": 64,
    },
    "target": {
        "title": "Step id",
        "description": ("The step to go to; `null` ends the flow (and the call is hung up if it "
                        "is still live)."),
        "type": ["string", "null"],
        "maxLength": 64,
    },
    "text": {
        "description": ("Text; a Jinja template rendered when the step starts (`{{ vars.x }}`, "
                        "`{{ call.from }}`, `{{ steps.<id>.<field> }}`)."),
        "type": "string",
        "maxLength": 4096,
    },
    "value": {
        "description": ("Any value. Strings are Jinja templates; a string that is exactly one "
                        "`{{ expression }}` keeps the expression's type (a number stays a "
                        "number)."),
        "type": ["string", "number", "boolean", "null", "array", "object"],
        "maxLength": 4096,
        "items": {"$ref": "#/definitions/value"},
        "additionalProperties": {"$ref": "#/definitions/value"},
    },
}

#: The keys of a step besides its action.
STEP_COMMON: dict[str, Any] = {
    "next": {
        "title": "Next step",
        "description": ("The step to go to after this one. Default: the step written after it "
                        "(none after the last step or after `hangup`: the flow ends). `null` "
                        "ends the flow here."),
        "$ref": "#/definitions/target",
    },
    "on": {"$ref": "#/definitions/outcomes"},
    "timeout": {
        "title": "Timeout (seconds)",
        "description": "The step ends with outcome `timeout` if it runs longer than this.",
        "type": "number",
        "exclusiveMinimum": 0,
        "maximum": 86400,
        "examples": [30],
    },
    "description": {
        "title": "Description",
        "description": "Free text about the step (shown by `flowengine graph`).",
        "type": "string",
        "maxLength": 4096,
    },
}

#: The ``on:`` map (``#/definitions/outcomes``) without its per-outcome keys.
OUTCOMES: dict[str, Any] = {
    "title": "Edges by outcome",
    "description": ("Outcome → step id (`null` ends the flow). An outcome without an edge "
                    "follows `next`, except `error` (the flow's `on_error`, else the flow ends "
                    "with the error) and `hangup` (the flow's `on_hangup`, else the flow ends)."),
    "type": "object",
    "propertyNames": {"type": "string", "maxLength": 64},
    "additionalProperties": {"$ref": "#/definitions/target"},
    "examples": [{"finished": "thanks", "no_input": "nothing_heard"}],
}

#: What an outcome means for every step that can end with it (before the actions' own texts).
GENERIC_OUTCOMES: dict[str, str] = {
    "error": "Any step: it failed (RELAY error, a template that cannot render).",
    "hangup": "Steps that need the call: the caller hung up during the step.",
    "timeout": "A step with `timeout`: it ran longer than that.",
}


def _outcome_text(outcome: str, specs: Iterable[ActionSpec]) -> str:
    parts = [GENERIC_OUTCOMES[outcome]] if outcome in GENERIC_OUTCOMES else []
    parts += [f"{spec.name}: {spec.outcome_docs[outcome]}" for spec in specs
              if outcome in spec.outcome_docs]
    return " ".join(parts)


def build_schema(actions: Iterable[ActionSpec] | None = None) -> dict[str, Any]:
    """The flow schema for these actions (default: every registered one, in registry order).

    The result is fresh (deep-copied): callers may change it.
    """
    specs = list(ACTIONS.values() if actions is None else actions)
    names = [spec.name for spec in specs]
    listed = ", ".join(names)
    step: dict[str, Any] = {
        "title": "Step",
        "description": f"Exactly one action ({listed}) plus the common keys "
                       + ", ".join(STEP_COMMON) + ".",
        "type": "object",
        "properties": {**{name: {"$ref": f"#/definitions/action.{name}"} for name in names},
                       **STEP_COMMON},
        "additionalProperties": False,
        "oneOf": [{"required": [name]} for name in names],
        "errorMessage": f"a step takes exactly one action: {listed}",
    }
    seen: list[str] = []
    for spec in specs:
        seen.extend(o for o in spec.outcomes if o not in seen)
    seen.extend(o for o in GENERIC_OUTCOMES if o not in seen)
    # An outcome no text describes (a goto's ``next``) is not written under ``on:``.
    outcomes = {**OUTCOMES, "properties": {
        outcome: {"description": text, "$ref": "#/definitions/target"}
        for outcome in seen if (text := _outcome_text(outcome, specs))}}
    definitions: dict[str, Any] = {**SHARED_DEFINITIONS, "step": step, "outcomes": outcomes}
    for spec in specs:
        definitions[f"action.{spec.name}"] = dict(spec.schema)
        for key, value in spec.definitions.items():
            if key in definitions and definitions[key] != value:
                raise ValueError(f"{spec.name}: definition {key!r} differs from another's")
            definitions[key] = value
    return copy.deepcopy({**FRAME, "definitions": definitions})


def _dump(value: Any, indent: int, width: int) -> str:
    one = json.dumps(value, ensure_ascii=False)
    if indent + len(one) <= width or not isinstance(value, (dict, list)) or not value:
        return one
    pad = " " * (indent + 2)
    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            head = f"{json.dumps(key, ensure_ascii=False)}: "
            items.append(pad + head + _dump(item, indent + 2, width - len(head)))
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    return ("[\n" + ",\n".join(pad + _dump(item, indent + 2, width) for item in value)
            + "\n" + " " * indent + "]")


def schema_text(schema: dict[str, Any] | None = None) -> str:
    """The schema as the committed file writes it: two-space JSON, short values on one line."""
    return _dump(build_schema() if schema is None else schema, 0, 100) + "\n"
