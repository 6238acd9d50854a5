"""Input — the specs of prompt, detect.

Their runners are in ``flowengine.actions.input``.
"""

from __future__ import annotations

from typing import Any

from .spec import (
    CALL_OUTCOMES,
    ActionSpec,
    CheckContext,
    Conditional,
    Problem,
    fields,
    frozen,
)

RUNNERS = "flowengine.actions.input"

def _check_prompt(step: str, value: Any, ctx: CheckContext) -> list[Problem]:
    found = []
    if "digits" not in value and "speech" not in value:
        found.append(Problem((), f"prompt in step '{step}' listens for nothing", key=True,
                             hint="add digits: {} (keys), speech: {} (words) or both"))
    if value.get("max_attempts", 1) == 1:
        found.extend(Problem((key,), f"{key} is never played: the prompt asks only once "
                             "(max_attempts is 1)", key=True, warning=True,
                             hint="set max_attempts: 2 or more")
                     for key in ("no_input_play", "no_match_play") if key in value)
    return found

PROMPT = ActionSpec(
    name="prompt",
    outcomes=("digit", "speech", "no_input", "no_match", *CALL_OUTCOMES),
    result_fields=("digits", "terminator", "text", "confidence", "choice", "attempts"),
    runner=f"{RUNNERS}:run_prompt",
    summary=("Ask the caller and collect keys or speech (calling.play_and_collect), asking "
             "again up to max_attempts times."),
    method="calling.play_and_collect",
    own_timeout=True,
    fields=fields(play="media", no_input_play="media", no_match_play="media", choices="texts"),
    outcome_docs={
        "no_input": "nothing was heard, on the last attempt.",
        "digit": ("the caller pressed keys (one of the choices, if any); steps.<id>.digits "
                  "holds them."),
        "speech": ("the caller spoke (one of the choices, if any). steps.<id>.text holds the "
                   "words."),
        "no_match": ("the answer was not one of the choices (or not understood), on the last "
                     "attempt."),
    },
    check=_check_prompt,
    schema=frozen({
        "title": "prompt",
        "description": ("Ask the caller and collect the answer (RELAY "
                        "calling.play_and_collect): play `play`, then listen for keys "
                        "(`digits`) and/or words (`speech`). When nothing is heard (no_input) "
                        "or the answer is not one of `choices` (no_match), play `no_input_play` "
                        "/ `no_match_play` and ask again, up to `max_attempts` times in all. "
                        "Outcomes: digit, speech, no_input, no_match, error, hangup. Result: "
                        "steps.<id>.digits, terminator, text, confidence, choice (the choice "
                        "the answer matched, as written), attempts."),
        "type": "object",
        "properties": {
            "play": {
                "title": "Prompt",
                "description": ("What to play before listening (media items, as for play). It "
                                "is played again on every attempt."),
                "$ref": "#/definitions/media_list",
                "examples": [
                    [
                        {
                            "say": ("For sales press 1 or say sales. For billing press 2 or say "
                                    "billing."),
                        },
                    ],
                ],
            },
            "digits": {
                "title": "Collect keys",
                "description": "Listen for DTMF keys. `{}` takes one key.",
                "type": ["object", "null"],
                "properties": {
                    "max": {
                        "title": "Most keys",
                        "description": "The answer ends after this many keys.",
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 64,
                        "default": 1,
                    },
                    "terminators": {
                        "title": "Terminators",
                        "description": ("Keys that end the answer (not part of it). Write it as "
                                        "a string."),
                        "type": "string",
                        "pattern": "^[0-9*#A-Da-d]*$",
                        "patternErrorMessage": "terminators are DTMF keys: 0-9, *, # and A-D",
                        "examples": ["#"],
                    },
                    "digit_timeout": {
                        "title": "Digit timeout (seconds)",
                        "description": "The answer ends when no key comes for this long.",
                        "type": "number",
                        "exclusiveMinimum": 0,
                        "maximum": 600,
                        "default": 5,
                    },
                },
                "additionalProperties": False,
                "default": {},
                "examples": [{"max": 4, "terminators": "#"}],
            },
            "speech": {
                "title": "Collect speech",
                "description": ("Listen for words (speech recognition). `{}` uses RELAY's "
                                "defaults."),
                "type": ["object", "null"],
                "properties": {
                    "language": {
                        "title": "Language",
                        "description": "The language spoken, e.g. en-US.",
                        "type": "string",
                        "maxLength": 64,
                        "examples": ["en-US"],
                    },
                    "hints": {
                        "title": "Hints",
                        "description": ("Words or phrases the caller is likely to say; they "
                                        "help recognition."),
                        "type": "array",
                        "maxItems": 500,
                        "items": {"type": "string", "maxLength": 256},
                        "examples": [["sales", "billing"]],
                    },
                    "end_silence_timeout": {
                        "title": "End silence timeout (seconds)",
                        "description": "How much silence after the words ends the answer.",
                        "type": "number",
                        "exclusiveMinimum": 0,
                        "maximum": 600,
                        "default": 1,
                    },
                    "speech_timeout": {
                        "title": "Speech timeout (seconds)",
                        "description": "The longest an answer may be.",
                        "type": "number",
                        "exclusiveMinimum": 0,
                        "maximum": 600,
                        "default": 60,
                    },
                },
                "additionalProperties": False,
                "default": {},
                "examples": [{"language": "en-US", "hints": ["sales", "billing"]}],
            },
            "initial_timeout": {
                "title": "Initial timeout (seconds)",
                "description": ("How long to wait for the caller to start answering, after the "
                                "prompt, before the attempt ends with no_input."),
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 600,
                "default": 5,
            },
            "choices": {
                "title": "Choices",
                "description": ("The answers accepted: keys as written (\"1\", \"42\"), or "
                                "words compared without case and surrounding punctuation "
                                "(\"sales\" matches \"Sales.\"). Any other answer is no_match. "
                                "Without choices every answer is accepted. Each is a template."),
                "type": "array",
                "minItems": 1,
                "maxItems": 1000,
                "items": {"$ref": "#/definitions/text"},
                "examples": [["1", "2", "sales", "billing"]],
            },
            "max_attempts": {
                "title": "Attempts",
                "description": ("How many times to ask, in all, before ending with no_input or "
                                "no_match."),
                "type": "integer",
                "minimum": 1,
                "maximum": 10,
                "default": 1,
                "examples": [3],
            },
            "no_input_play": {
                "title": "Re-prompt after no input",
                "description": ("Played before the prompt on the next attempt when nothing was "
                                "heard."),
                "$ref": "#/definitions/media_list",
                "examples": [[{"say": "Sorry, I did not hear anything."}]],
            },
            "no_match_play": {
                "title": "Re-prompt after no match",
                "description": ("Played before the prompt on the next attempt when the answer "
                                "was not one of the choices."),
                "$ref": "#/definitions/media_list",
                "examples": [[{"say": "Sorry, that is not one of the options."}]],
            },
            "volume": {
                "title": "Volume (dB)",
                "description": "Gain applied to everything the prompt plays, from -40 to 40 dB.",
                "type": "number",
                "minimum": -40,
                "maximum": 40,
                "default": 0,
            },
        },
        "required": ["play"],
        "additionalProperties": False,
        "examples": [
            {
                "play": [{"say": "For sales press 1. For billing press 2."}],
                "digits": {"max": 1},
                "choices": ["1", "2"],
                "max_attempts": 3,
                "no_input_play": [{"say": "Sorry, I did not hear you."}],
                "no_match_play": [{"say": "Sorry, that is not an option."}],
            },
        ],
    }),
)

#: Detect parameters that belong to one type only.
_DETECT_OWNERS = {"wait_for_beep": "machine", "initial_timeout": "machine",
                  "end_silence_timeout": "machine", "machine_voice_threshold": "machine",
                  "machine_words_threshold": "machine", "tone": "fax", "digits": "digit"}


def _check_detect(step: str, value: Any, ctx: CheckContext) -> list[Problem]:
    return [Problem((key,), f"'{key}' does not go with detect type {value['type']}", key=True,
                    hint=f"'{key}' belongs to type: {kind}")
            for key, kind in _DETECT_OWNERS.items() if key in value and value["type"] != kind]


def _detect_type(kind: str, outcome: str) -> Conditional:
    return Conditional(lambda p: p.get("type") == kind,
                       f"a detect ends with {outcome} only with type: {kind}")

DETECT = ActionSpec(
    name="detect",
    outcomes=("human", "machine", "unknown", "fax", "digit", *CALL_OUTCOMES),
    result_fields=("event", "beep"),
    runner=f"{RUNNERS}:run_detect",
    summary=("Tell who is on the line: a person or an answering machine, a fax, a key "
             "(calling.detect)."),
    method="calling.detect",
    own_timeout=True,
    outcome_docs={
        "digit": "with type digit, a key was pressed; steps.<id>.event holds it.",
        "human": "with type machine, a person answered.",
        "machine": ("with type machine, an answering machine; with wait_for_beep, once its "
                    "greeting ended."),
        "unknown": "nothing could be told within its duration.",
        "fax": "with type fax, the fax tone was heard.",
    },
    conditional={"human": _detect_type("machine", "human"),
                 "machine": _detect_type("machine", "machine"),
                 "fax": _detect_type("fax", "fax"),
                 "digit": _detect_type("digit", "digit")},
    check=_check_detect,
    schema=frozen({
        "title": "detect",
        "description": ("Tell who or what is on the line (RELAY calling.detect): type machine "
                        "(a person or an answering machine), fax (a fax tone) or digit (a key). "
                        "Outcomes: human, machine, unknown (nothing could be told in "
                        "`duration`), fax, digit — those its type can give — and error, hangup. "
                        "Result: steps.<id>.event (HUMAN, MACHINE, CED, CNG or the key; null "
                        "when unknown), beep (with wait_for_beep: whether the machine's "
                        "greeting ended)."),
        "type": "object",
        "properties": {
            "type": {
                "title": "Detector",
                "description": ("machine: person or answering machine; fax: a fax tone; digit: "
                                "a key press."),
                "type": "string",
                "enum": ["machine", "fax", "digit"],
            },
            "duration": {
                "title": "Listen for (seconds)",
                "description": "How long the detector listens before giving up (unknown).",
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 600,
                "default": 30,
            },
            "wait_for_beep": {
                "title": "Wait for the beep",
                "description": ("machine: after an answering machine is heard, wait until its "
                                "greeting ends (RELAY detect_message_end), so that a message "
                                "played next is recorded whole."),
                "type": "boolean",
                "default": False,
            },
            "initial_timeout": {
                "title": "Initial timeout (seconds)",
                "description": "machine: how long to wait for the first sound.",
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 600,
                "default": 4.5,
            },
            "end_silence_timeout": {
                "title": "End silence timeout (seconds)",
                "description": "machine: the silence that ends a person's greeting.",
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 600,
                "default": 1.0,
            },
            "machine_voice_threshold": {
                "title": "Machine voice threshold (seconds)",
                "description": "machine: talking longer than this suggests a machine.",
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 60,
                "default": 1.25,
            },
            "machine_words_threshold": {
                "title": "Machine words threshold",
                "description": "machine: more words than this suggest a machine.",
                "type": "integer",
                "minimum": 1,
                "maximum": 100,
                "default": 6,
            },
            "tone": {
                "title": "Fax tone",
                "description": ("fax: CED (an answering fax) or CNG (a calling fax: use it for "
                                "a fax machine that calls in)."),
                "type": "string",
                "enum": ["CED", "CNG"],
                "default": "CED",
            },
            "digits": {
                "title": "Keys",
                "description": "digit: the keys that count. Write it as a string.",
                "type": "string",
                "pattern": "^[0-9*#A-Da-d]+$",
                "patternErrorMessage": "digits are DTMF keys: 0-9, *, # and A-D",
                "default": "0123456789#*",
            },
        },
        "required": ["type"],
        "additionalProperties": False,
        "examples": [{"type": "machine", "wait_for_beep": True}, {"type": "fax", "tone": "CNG"}],
    }),
)

#: This family's actions, in the order the schema and docs list them.
SPECS = (PROMPT, DETECT)
