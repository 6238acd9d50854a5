"""Handing a call on — the specs of refer (to a SIP endpoint) and transfer (to another flow).

Their runners are in ``flowengine.actions.transfer``.
"""

from __future__ import annotations

from typing import Any

from .spec import CALL_OUTCOMES, ActionSpec, CheckContext, Problem, fields, frozen

RUNNERS = "flowengine.actions.transfer"

#: A SIP header name (an RFC 3261 token).
HEADER_NAME = r"^[A-Za-z0-9!%*_+`'~.-]+$"

#: The headers schema shared by refer and connect: name → a text template.
SIP_HEADERS_SCHEMA = {
    "title": "SIP headers",
    "description": ("Custom SIP headers sent with the request (name → value; values are "
                    "templates). Use X- names for your own data, e.g. X-Ticket."),
    "type": "object",
    "propertyNames": {"pattern": HEADER_NAME, "maxLength": 64},
    "maxProperties": 20,
    "additionalProperties": {"$ref": "#/definitions/text"},
    "examples": [{"X-Account": "{{ steps.account.digits }}", "X-Reason": "billing"}],
}


def _check_refer(step: str, value: Any, ctx: CheckContext) -> list[Problem]:
    to = value["to"] if isinstance(value, dict) else value
    where: tuple[str, ...] = ("to",) if isinstance(value, dict) else ()
    if "{" not in to and not to.startswith(("sip:", "sips:")):
        return [Problem(where, f"refer in step '{step}' needs a SIP URI, not {to!r}",
                        hint="write it as sip:user@host (a REFER goes to a SIP endpoint)")]
    return []


REFER = ActionSpec(
    name="refer",
    outcomes=("accepted", "refused", *CALL_OUTCOMES),
    result_fields=("to", "state", "code", "notify_code"),
    runner=f"{RUNNERS}:run_refer",
    summary="Hand a SIP call to another SIP endpoint with a SIP REFER (calling.refer).",
    method="calling.refer",
    shorthand="to",
    hands_off=("accepted",),
    fields=fields(to="text", headers="text_map"),
    outcome_docs={
        "accepted": ("the far end took the call (REFER 202, then the referred call "
                     "answered): the call is no longer ours, and the flow ends unless on: says "
                     "otherwise."),
        "refused": ("the REFER was refused (steps.<id>.code: 403, 503…) or the referred call "
                    "failed (notify_code: 486…); the caller is still on the line."),
    },
    check=_check_refer,
    schema=frozen({
        "title": "refer",
        "description": ("Hand the call to another SIP endpoint (a PBX, a desk phone) with a SIP "
                        "REFER (RELAY calling.refer), sending context in SIP headers. Works on "
                        "calls that came in over SIP. Outcomes: accepted (the call left us; the "
                        "flow ends unless on: says otherwise), refused, hangup, error. Result: "
                        "steps.<id>.to, state, code (the REFER's SIP response), notify_code "
                        "(the referred call's, from NOTIFY)."),
        "type": ["string", "object"],
        "minLength": 1,
        "maxLength": 256,
        "properties": {
            "to": {
                "title": "SIP URI",
                "description": "Where the call goes: sip:user@host; a template.",
                "$ref": "#/definitions/text",
                "examples": ["sip:frontdesk@pbx.example.com"],
            },
            "headers": SIP_HEADERS_SCHEMA,
        },
        "required": ["to"],
        "additionalProperties": False,
        "examples": [
            "sip:frontdesk@pbx.example.com",
            {"to": "sip:billing@pbx.example.com",
             "headers": {"X-Account": "{{ steps.account.digits }}"}},
        ],
    }),
)

TRANSFER = ActionSpec(
    name="transfer",
    outcomes=("transferred", *CALL_OUTCOMES),
    result_fields=("flow", "version"),
    runner=f"{RUNNERS}:run_transfer",
    summary="Go on in another flow, by name: the call runs that flow's current version.",
    waits=False,
    fails=True,
    shorthand="flow",
    hands_off=("transferred",),
    fields=fields(flow="text"),
    outcome_docs={
        "transferred": ("the call goes on in the other flow, from its start; nothing more of "
                        "this flow runs (its on_hangup included)."),
    },
    schema=frozen({
        "title": "transfer",
        "description": ("Go on in another flow, named by its `name:` (a template): the call "
                        "runs that flow's current version from its start, with its own vars, "
                        "and stays on that version even if the flow is reloaded. Nothing more "
                        "of this flow runs, its on_hangup included. `serve` finds the flow "
                        "among the flows it serves; `run` and `test` in this file's folder. "
                        "Outcomes: transferred, error (no such flow), hangup. Result: "
                        "steps.<id>.flow, version."),
        "type": ["string", "object"],
        "minLength": 1,
        "maxLength": 128,
        "properties": {
            "flow": {
                "title": "Flow name",
                "description": "The `name:` of the flow to go on in; a template.",
                "$ref": "#/definitions/text",
                "examples": ["billing"],
            },
        },
        "required": ["flow"],
        "additionalProperties": False,
        "examples": ["billing", {"flow": "{{ vars.department }}"}],
    }),
)

#: This family's actions, in the order the schema and docs list them.
SPECS = (REFER, TRANSFER)

__all__ = ["HEADER_NAME", "REFER", "SIP_HEADERS_SCHEMA", "SPECS", "TRANSFER"]
