"""Subflows — the specs of call, return.

Their runners are in ``flowengine.actions.subflow``.
"""

from __future__ import annotations

from .spec import CALL_OUTCOMES, ActionSpec, fields, frozen

RUNNERS = "flowengine.actions.subflow"

CALL = ActionSpec(
    name="call",
    outcomes=("returned", *CALL_OUTCOMES),
    result_fields=(),
    runner=f"{RUNNERS}:run_call",
    summary=("Run another flow file (a subflow) with params; what it returns lands under "
             "steps.<id>."),
    needs_call=False,
    shorthand="flow",
    fields=fields(params="value"),
    fails=True,
    outcome_docs={
        "returned": ("the subflow ended (at a return step, or its end); its return values are "
                     "under steps.<id>."),
    },
    schema=frozen({
        "title": "call",
        "description": ("Run another flow file — a subflow — on this call, with `params`; it "
                        "has its own steps and vars. What its `return` step gives lands under "
                        "steps.<id>. Written as the file's path (relative to this file), or "
                        "{flow, params}. Outcomes: returned, hangup (the caller hung up and the "
                        "subflow did not handle it), error (the subflow failed)."),
        "type": ["string", "object"],
        "minLength": 1,
        "maxLength": 1024,
        "properties": {
            "flow": {
                "title": "Flow file",
                "description": ("The subflow's file, relative to this flow's file. Keep "
                                "subflows in a folder of their own (e.g. lib/) so that the "
                                "daemon does not serve them as flows."),
                "type": "string",
                "minLength": 1,
                "maxLength": 1024,
                "examples": ["lib/account_number.yaml"],
            },
            "params": {
                "title": "Parameters",
                "description": ("Values for the subflow's `params` (each must be one it "
                                "declares). Strings are templates rendered in this flow; one "
                                "`{{ expression }}` keeps its type."),
                "type": "object",
                "propertyNames": {"$ref": "#/definitions/name"},
                "additionalProperties": {"$ref": "#/definitions/value"},
                "examples": [{"question": "Enter the number on your invoice."}],
            },
        },
        "required": ["flow"],
        "additionalProperties": False,
        "examples": [
            "lib/account_number.yaml",
            {
                "flow": "lib/account_number.yaml",
                "params": {"question": "Enter your customer number, then press pound."},
            },
        ],
    }),
)

RETURN = ActionSpec(
    name="return",
    outcomes=(),
    result_fields=(),
    runner=f"{RUNNERS}:run_return",
    summary="End the flow; in a subflow, give these values to the step that called it.",
    needs_call=False,
    ends_flow=True,
    schema=frozen({
        "title": "return",
        "description": ("End the flow. In a subflow, the values are the calling step's result "
                        "(steps.<id>.<key>). Values are templates; one `{{ expression }}` keeps "
                        "its type. `return: {}` (or nothing) gives no values."),
        "type": ["object", "null"],
        "propertyNames": {"$ref": "#/definitions/name"},
        "additionalProperties": {"$ref": "#/definitions/value"},
        "default": {},
        "examples": [{"account": "{{ steps.ask.digits }}", "found": True}],
    }),
)

#: This family's actions, in the order the schema and docs list them.
SPECS = (CALL, RETURN)
