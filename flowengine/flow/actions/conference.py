"""Conferences — the specs of conference and leave_conference.

Their runners are in ``flowengine.actions.conference``.
"""

from __future__ import annotations

from typing import Any

from .spec import CALL_OUTCOMES, ActionSpec, CheckContext, Conditional, Problem, fields, frozen

RUNNERS = "flowengine.actions.conference"

#: What a conference step stores under steps.<id>.
CONFERENCE_RESULTS = ("conference_id", "name", "reason", "duration", "recording_url")


def _check_conference(step: str, value: Any, ctx: CheckContext) -> list[Problem]:
    problems: list[Problem] = []
    if not isinstance(value, dict):  # the shorthand: a name only
        return problems
    if value.get("coach") and value.get("muted") is True:
        problems.append(Problem(("muted",), f"conference in step '{step}': a muted coach is "
                                "heard by nobody, not even the participant it coaches",
                                key=True, warning=True, hint="remove muted: true"))
    if value.get("wait") is False and "leave_conference" not in ctx.used:
        problems.append(Problem(("wait",), f"conference in step '{step}' does not wait, and no "
                                "step leaves the conference: the call stays in it until the "
                                "conference or the call ends", key=True, warning=True,
                                hint="add a leave_conference step, or remove wait: false"))
    return problems


CONFERENCE = ActionSpec(
    name="conference",
    outcomes=("ended", "left", "full", "joined", *CALL_OUTCOMES),
    result_fields=CONFERENCE_RESULTS,
    runner=f"{RUNNERS}:run_conference",
    summary="Put the caller in a named conference (calling.join_conference) until it ends.",
    method="calling.join_conference",
    own_timeout=True,
    shorthand="name",
    fields=fields(name="text", wait_url="text", coach="text"),
    outcome_docs={
        "ended": ("the conference ended (its moderator left with end_on_exit, or everyone "
                  "else did); the caller is still on the line."),
        "left": "the caller was taken out of the conference (leave_conference, or kicked).",
        "full": "the conference already had max_participants: the caller never got in.",
        "joined": "with wait: false, the caller is in; the flow goes on while they talk.",
    },
    conditional={
        "joined": Conditional(lambda p: p.get("wait") is False,
                              "a conference ends with joined only with wait: false"),
    },
    check=_check_conference,
    schema=frozen({
        "title": "conference",
        "description": (
            "Put the caller in the conference `name` (RELAY calling.join_conference), created "
            "by its first participant. By default the step lasts as long as the caller is in "
            "it. Outcomes: ended (the conference ended), left (taken out), full "
            "(max_participants reached), hangup, error; with wait: false, joined; a step "
            "timeout takes the caller out (timeout). Result: steps.<id>.conference_id, name, "
            "reason, duration (seconds in it), recording_url."),
        "type": ["string", "object"],
        "minLength": 1,
        "maxLength": 256,
        "properties": {
            "name": {
                "title": "Conference name",
                "description": ("Callers who join the same name talk together; a template, "
                                "e.g. from the PIN the caller keyed."),
                "$ref": "#/definitions/text",
                "examples": ["room-{{ steps.pin.digits }}"],
            },
            "muted": {
                "title": "Muted",
                "description": "The caller listens only: nobody hears them.",
                "type": "boolean",
                "default": False,
            },
            "beep": {
                "title": "Beep",
                "description": ("A beep when someone enters or leaves: true, false, or only "
                                "on_enter / on_exit."),
                "enum": [True, False, "on_enter", "on_exit"],
                "default": True,
            },
            "start_on_enter": {
                "title": "Starts the conference",
                "description": ("The conference starts when this caller enters (a moderator). "
                                "With false the caller waits, hearing the wait media, until "
                                "one who starts it comes in."),
                "type": "boolean",
                "default": True,
            },
            "end_on_exit": {
                "title": "Ends the conference",
                "description": "When this caller leaves, the conference ends for everyone.",
                "type": "boolean",
                "default": False,
            },
            "wait_url": {
                "title": "Wait media",
                "description": ("Audio played while the caller waits for the conference to "
                                "start, or is alone in it; a template. Default: hold music."),
                "$ref": "#/definitions/text",
                "examples": ["https://example.com/wait.mp3"],
            },
            "max_participants": {
                "title": "Maximum participants",
                "description": ("A caller who finds the conference this full does not get in "
                                "(outcome full). Set by whoever creates the conference."),
                "type": "integer",
                "minimum": 2,
                "maximum": 100000,
                "examples": [10],
            },
            "record": {
                "title": "Record",
                "description": ("Record the conference from its start "
                                "(steps.<id>.recording_url)."),
                "type": "boolean",
                "default": False,
            },
            "coach": {
                "title": "Coach",
                "description": ("The call id of the participant this caller coaches: only that "
                                "participant hears the caller (a whisper); the caller hears "
                                "everyone. A template."),
                "$ref": "#/definitions/text",
                "examples": ["{{ vars.agent_call_id }}"],
            },
            "wait": {
                "title": "Wait for the end",
                "description": ("true: the step lasts as long as the caller is in the "
                                "conference. false: it ends (joined) once the caller is in, "
                                "and the flow goes on; when the flow ends, the call stays up "
                                "until it leaves the conference."),
                "type": "boolean",
                "default": True,
            },
        },
        "required": ["name"],
        "additionalProperties": False,
        "examples": [
            "team-standup",
            {"name": "room-{{ steps.pin.digits }}", "start_on_enter": False,
             "wait_url": "https://example.com/wait.mp3"},
            {"name": "room-{{ steps.pin.digits }}", "end_on_exit": True, "record": True},
        ],
    }),
)

LEAVE_CONFERENCE = ActionSpec(
    name="leave_conference",
    outcomes=("left", *CALL_OUTCOMES),
    result_fields=("conference_id",),
    runner=f"{RUNNERS}:run_leave_conference",
    summary="Take the caller out of the conference it is in (calling.leave_conference).",
    method="calling.leave_conference",
    outcome_docs={"left": "the caller is out of the conference, still on the line."},
    schema=frozen({
        "title": "leave_conference",
        "description": ("Take the caller out of the conference a `conference` step with "
                        "wait: false put them in (RELAY calling.leave_conference). Outcomes: "
                        "left, error (the caller is in no conference), hangup. Result: "
                        "steps.<id>.conference_id."),
        "type": ["object", "null"],
        "properties": {},
        "additionalProperties": False,
        "default": {},
        "examples": [{}],
    }),
)

#: This family's actions, in the order the schema and docs list them.
SPECS = (CONFERENCE, LEAVE_CONFERENCE)
