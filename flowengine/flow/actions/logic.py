"""Logic — the specs of branch, set, log, goto.

Their runners are in ``flowengine.actions.logic``.
"""

from __future__ import annotations

from .spec import ActionSpec, Conditional, frozen

RUNNERS = "flowengine.actions.logic"

BRANCH = ActionSpec(
    name="branch",
    outcomes=(),
    result_fields=("goto", "index"),
    runner=f"{RUNNERS}:run_branch",
    summary="Go to the first target whose `when` is true.",
    needs_call=False,
    schema=frozen({
        "title": "branch",
        "description": ("Go to the `goto` of the first choice whose `when` is true; a last "
                        "choice without `when` is the default. Without a match the flow follows "
                        "`next`. Result: steps.<id>.goto, index."),
        "type": "array",
        "minItems": 1,
        "maxItems": 100,
        "items": {
            "title": "Choice",
            "type": "object",
            "properties": {
                "when": {
                    "title": "Condition",
                    "description": ("A Jinja expression without braces, e.g. "
                                    "`steps.rec.duration >= 2`, `call.from in vars.vips`."),
                    "type": ["string", "boolean"],
                    "maxLength": 1024,
                    "examples": ["steps.take_message.duration >= 2"],
                },
                "goto": {
                    "title": "Go to",
                    "description": "The step to go to when `when` is true.",
                    "$ref": "#/definitions/target",
                },
            },
            "required": ["goto"],
            "additionalProperties": False,
        },
        "examples": [
            [{"when": "call.from == '+15551230000'", "goto": "vip"}, {"goto": "everyone"}],
        ],
    }),
)

SET = ActionSpec(
    name="set",
    outcomes=(),
    result_fields=(),
    runner=f"{RUNNERS}:run_set",
    summary="Set flow variables (under `vars`).",
    needs_call=False,
    schema=frozen({
        "title": "set",
        "description": ("Set flow variables (`vars.<name>`). Values are templates; one `{{ "
                        "expression }}` keeps its type."),
        "type": "object",
        "minProperties": 1,
        "propertyNames": {"$ref": "#/definitions/name"},
        "additionalProperties": {"$ref": "#/definitions/value"},
        "examples": [{"attempts": "{{ vars.attempts + 1 }}"}],
    }),
)

LOG = ActionSpec(
    name="log",
    outcomes=(),
    result_fields=("text",),
    runner=f"{RUNNERS}:run_log",
    summary="Write a line to the call's log and trace.",
    needs_call=False,
    schema=frozen({
        "title": "log",
        "description": ("Write a line (a template) to the call's log and trace. Result: "
                        "steps.<id>.text."),
        "$ref": "#/definitions/text",
        "examples": ["recording: {{ steps.take_message.url }}"],
    }),
)



GOTO = ActionSpec(
    name="goto",
    outcomes=("next", "exhausted"),
    result_fields=("target", "visits"),
    runner=f"{RUNNERS}:run_goto",
    summary="Go to a step; with max_visits, only while that step has run fewer times.",
    needs_call=False,
    shorthand="step",
    outcome_docs={
        "exhausted": ("with max_visits, its step has already run that many times. Default: the "
                      "step written after the goto."),
    },
    conditional={"exhausted": Conditional(lambda p: p.get("max_visits") is not None,
                                          "a goto ends with exhausted only with max_visits")},
    schema=frozen({
        "title": "goto",
        "description": ("Go to a step — often back, to try again. With max_visits the jump is "
                        "taken only while that step has run fewer than max_visits times on this "
                        "call; then the goto ends with exhausted (on: {exhausted: …}, else the "
                        "step written after it). Written as the step id, or {step, max_visits}. "
                        "Outcomes: next (the jump), exhausted. Result: steps.<id>.target, "
                        "visits (how many times the target had run)."),
        "type": ["string", "object"],
        "maxLength": 64,
        "properties": {
            "step": {
                "title": "Step",
                "description": "The step to go to.",
                "type": "string",
                "maxLength": 64,
                "examples": ["menu"],
            },
            "max_visits": {
                "title": "Most visits",
                "description": ("Go only while the step has run fewer times than this on this "
                                "call."),
                "type": "integer",
                "minimum": 1,
                "maximum": 1000,
                "examples": [3],
            },
        },
        "required": ["step"],
        "additionalProperties": False,
        "examples": ["menu", {"step": "menu", "max_visits": 3}],
    }),
)

#: This family's actions, in the order the schema and docs list them.
SPECS = (BRANCH, SET, LOG, GOTO)
