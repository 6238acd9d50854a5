"""Media — the specs of play, record, record_call, stop_record_call.

Their runners are in ``flowengine.actions.media``.
"""

from __future__ import annotations

from typing import Any

from ..diagnostics import did_you_mean
from .spec import CALL_OUTCOMES, ActionSpec, CheckContext, Problem, fields, frozen

RUNNERS = "flowengine.actions.media"

#: Shared by play, prompt and connect (``#/definitions/media``, ``media_list``).
DEFINITIONS = {
    "media": {
        "title": "Media item",
        "description": ("One of: say (text to speech), audio (a URL), silence (seconds), "
                        "ringtone (a country's ring)."),
        "type": "object",
        "oneOf": [
            {
                "title": "say",
                "required": ["say"],
                "properties": {
                    "say": {
                        "title": "Text to speak",
                        "$ref": "#/definitions/text",
                        "examples": ["Hello {{ call.from }}"],
                    },
                    "language": {
                        "title": "Language",
                        "description": "TTS language, e.g. en-US.",
                        "type": "string",
                        "maxLength": 64,
                        "examples": ["en-US"],
                    },
                    "gender": {
                        "title": "Voice gender",
                        "type": "string",
                        "enum": ["male", "female"],
                    },
                    "voice": {
                        "title": "Voice",
                        "description": "A TTS voice name, e.g. Polly.Joanna.",
                        "type": "string",
                        "maxLength": 128,
                        "examples": ["Polly.Joanna"],
                    },
                },
                "additionalProperties": False,
            },
            {
                "title": "audio",
                "required": ["audio"],
                "properties": {
                    "audio": {
                        "title": "Audio URL",
                        "description": "An http(s) URL of an audio file.",
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 2048,
                        "examples": ["https://example.com/greeting.mp3"],
                    },
                },
                "additionalProperties": False,
            },
            {
                "title": "silence",
                "required": ["silence"],
                "properties": {
                    "silence": {
                        "title": "Silence (seconds)",
                        "type": "number",
                        "exclusiveMinimum": 0,
                        "maximum": 3600,
                        "examples": [1],
                    },
                },
                "additionalProperties": False,
            },
            {
                "title": "ringtone",
                "required": ["ringtone"],
                "properties": {
                    "ringtone": {
                        "title": "Ringtone",
                        "description": "A country's ring, by short country code.",
                        "type": "string",
                        "enum": [
                            "at",
                            "au",
                            "bg",
                            "br",
                            "be",
                            "ch",
                            "cl",
                            "cn",
                            "cz",
                            "de",
                            "dk",
                            "ee",
                            "es",
                            "fi",
                            "fr",
                            "gr",
                            "hu",
                            "il",
                            "in",
                            "it",
                            "lt",
                            "jp",
                            "mx",
                            "my",
                            "nl",
                            "no",
                            "nz",
                            "ph",
                            "pl",
                            "pt",
                            "ru",
                            "se",
                            "sg",
                            "th",
                            "uk",
                            "us",
                            "tw",
                            "ve",
                            "za",
                        ],
                    },
                    "duration": {
                        "title": "Duration (seconds)",
                        "description": "How long to ring. Default: one ring.",
                        "type": "number",
                        "exclusiveMinimum": 0,
                        "maximum": 3600,
                    },
                },
                "additionalProperties": False,
            },
        ],
        "errorMessage": "a media item is one of say, audio, silence or ringtone",
        "examples": [
            {"say": "Hello", "language": "en-US"},
            {"audio": "https://example.com/a.mp3"},
            {"silence": 1},
            {"ringtone": "us", "duration": 5},
        ],
    },
    "media_list": {
        "title": "Media",
        "description": "Media items played in order (as for play).",
        "type": "array",
        "minItems": 1,
        "maxItems": 100,
        "items": {"$ref": "#/definitions/media"},
    },
}

PLAY = ActionSpec(
    name="play",
    definitions=DEFINITIONS,
    shorthand="media",
    fields=fields(media="media"),
    defaults={"volume": None},
    outcomes=("finished", *CALL_OUTCOMES),
    result_fields=("state",),
    runner=f"{RUNNERS}:run_play",
    summary="Play text-to-speech, audio, silence or a ringtone (calling.play).",
    method="calling.play",
    own_timeout=True,
    outcome_docs={"finished": "the media finished."},
    schema=frozen({
        "title": "play",
        "description": ("Play media to the caller (RELAY calling.play) and wait until it ends. "
                        "A list of media items, or {media: [...], volume: N}. Outcomes: "
                        "finished, error, hangup. Result: steps.<id>.state."),
        "type": ["array", "object"],
        "minItems": 1,
        "maxItems": 100,
        "items": {"$ref": "#/definitions/media"},
        "properties": {
            "media": {
                "title": "Media",
                "description": "What to play, in order.",
                "type": "array",
                "minItems": 1,
                "maxItems": 100,
                "items": {"$ref": "#/definitions/media"},
            },
            "volume": {
                "title": "Volume (dB)",
                "description": "Gain applied to everything played, from -40 to 40 dB.",
                "type": "number",
                "minimum": -40,
                "maximum": 40,
                "default": 0,
            },
        },
        "required": ["media"],
        "additionalProperties": False,
        "examples": [
            [{"say": "Hello"}],
            {"media": [{"audio": "https://example.com/hold.mp3"}], "volume": -6},
        ],
    }),
)

RECORD = ActionSpec(
    name="record",
    outcomes=("finished", "no_input", *CALL_OUTCOMES),
    result_fields=("state", "url", "duration", "size", "format"),
    runner=f"{RUNNERS}:run_record",
    summary="Record the caller (calling.record) until a terminator, silence or hangup.",
    method="calling.record",
    own_timeout=True,
    outcome_docs={
        "finished": "a recording was made.",
        "no_input": "nothing was heard before initial_timeout.",
    },
    schema=frozen({
        "title": "record",
        "description": ("Record the caller (RELAY calling.record, audio) until a terminator, "
                        "silence or hangup. Outcomes: finished, no_input, error, hangup. "
                        "Result: steps.<id>.state, url, duration, size, format. A caller who "
                        "hangs up while recording gives outcome hangup, and the result still "
                        "holds the recording's url, duration and size."),
        "type": ["object", "null"],
        "properties": {
            "beep": {
                "title": "Beep",
                "description": "Play a beep before recording.",
                "type": "boolean",
                "default": False,
            },
            "format": {
                "title": "Format",
                "description": "The recording's file format.",
                "type": "string",
                "enum": ["mp3", "wav"],
                "default": "mp3",
            },
            "stereo": {
                "title": "Stereo",
                "description": "Record both directions on separate channels.",
                "type": "boolean",
                "default": False,
            },
            "direction": {
                "title": "Direction",
                "description": "speak: what the caller says; listen: what the caller hears; both.",
                "type": "string",
                "enum": ["speak", "listen", "both"],
                "default": "speak",
            },
            "initial_timeout": {
                "title": "Initial timeout (seconds)",
                "description": ("How long to wait for sound before giving up with no_input; 0 "
                                "disables."),
                "type": "number",
                "minimum": 0,
                "default": 5,
            },
            "end_silence_timeout": {
                "title": "End silence timeout (seconds)",
                "description": "How much silence ends the recording; 0 disables.",
                "type": "number",
                "minimum": 0,
                "default": 1,
            },
            "terminators": {
                "title": "Terminators",
                "description": "DTMF keys that end the recording. Write it as a string.",
                "type": "string",
                "pattern": "^[0-9*#A-Da-d]*$",
                "patternErrorMessage": "terminators are DTMF keys: 0-9, *, # and A-D",
                "default": "#*",
                "examples": ["#"],
            },
            "input_sensitivity": {
                "title": "Input sensitivity",
                "description": ("How sensitive the voice activity detector is to background "
                                "noise, 0-100; larger is more sensitive."),
                "type": "number",
                "minimum": 0,
                "maximum": 100,
                "default": 44,
            },
        },
        "additionalProperties": False,
        "default": {},
        "examples": [
            {"beep": True, "end_silence_timeout": 3, "terminators": "#", "format": "mp3"},
        ],
    }),
)

RECORD_CALL = ActionSpec(
    name="record_call",
    outcomes=("started", *CALL_OUTCOMES),
    result_fields=("state", "url", "duration", "size", "format"),
    runner=f"{RUNNERS}:run_record_call",
    summary=("Record the whole call in the background (calling.record) until stop_record_call "
             "or the end of the call."),
    method="calling.record",
    waits=False,
    outcome_docs={"started": "the background recording started."},
    schema=frozen({
        "title": "record_call",
        "description": ("Record the whole call in the background (RELAY calling.record with no "
                        "timeouts or terminators): the step ends at once (started) and the flow "
                        "goes on. The recording runs until a stop_record_call step or the end "
                        "of the call; when it ends, steps.<id>.state, url, duration and size "
                        "are updated (from the next step on). Outcomes: started, error, hangup. "
                        "Result: steps.<id>.state (recording, then finished or no_input), url "
                        "(known at once), duration, size, format."),
        "type": ["object", "null"],
        "properties": {
            "format": {
                "title": "Format",
                "description": "The recording's file format.",
                "type": "string",
                "enum": ["mp3", "wav"],
                "default": "mp3",
            },
            "direction": {
                "title": "Direction",
                "description": ("both: the whole conversation; speak: the caller; listen: what "
                                "the caller hears."),
                "type": "string",
                "enum": ["speak", "listen", "both"],
                "default": "both",
            },
            "stereo": {
                "title": "Stereo",
                "description": "Each direction on its own channel.",
                "type": "boolean",
                "default": False,
            },
            "beep": {
                "title": "Beep",
                "description": "Play a beep when the recording starts.",
                "type": "boolean",
                "default": False,
            },
        },
        "additionalProperties": False,
        "default": {},
        "examples": [{"format": "wav", "stereo": True}],
    }),
)

def _check_stop_record_call(step: str, value: Any, ctx: CheckContext) -> list[Problem]:
    target = value.get("step") if isinstance(value, dict) else value
    where: tuple[str, ...] = ("step",) if isinstance(value, dict) else ()
    if target is None:
        return []
    if target not in ctx.actions:
        return [Problem(where, f"unknown step '{target}' in stop_record_call",
                        hint=did_you_mean(target, list(ctx.actions)))]
    if ctx.actions[target] != "record_call":
        return [Problem(where, f"step '{target}' is a {ctx.actions[target]} step, not "
                        "record_call", hint="stop_record_call stops what a record_call step "
                        "started")]
    return []

STOP_RECORD_CALL = ActionSpec(
    name="stop_record_call",
    outcomes=("finished", *CALL_OUTCOMES),
    result_fields=("url", "duration", "size"),
    runner=f"{RUNNERS}:run_stop_record_call",
    summary="Stop a background recording (calling.record.stop) and wait for its url.",
    method="calling.record.stop",
    shorthand="step",
    outcome_docs={"finished": "the recording ended."},
    check=_check_stop_record_call,
    schema=frozen({
        "title": "stop_record_call",
        "description": ("Stop a background recording that a record_call step started, and wait "
                        "until RELAY reports its end: the url, duration and size are then in "
                        "steps.<record_call id> (and in this step's result). Written as the "
                        "record_call step's id, or `{}` (or nothing) for every one running. "
                        "Outcomes: finished, error, hangup. Result: steps.<id>.url, duration, "
                        "size."),
        "type": ["string", "object", "null"],
        "maxLength": 64,
        "properties": {
            "step": {
                "title": "record_call step",
                "description": "The record_call step whose recording to stop.",
                "type": "string",
                "maxLength": 64,
            },
        },
        "additionalProperties": False,
        "examples": ["whole_call"],
    }),
)

#: This family's actions, in the order the schema and docs list them.
SPECS = (PLAY, RECORD, RECORD_CALL, STOP_RECORD_CALL)
