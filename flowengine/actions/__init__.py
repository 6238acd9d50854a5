"""The actions a step can take, and what the rest of flowengine needs to know about them.

Each action family lives in its own module (``media.py``, ``call_control.py``, ``logic.py``)
with an ``async def run_<action>(ctx) -> StepResult`` per action. This registry is the
light part — names, outcomes, result fields — that the checker and the graph need without
importing the RELAY stack.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Outcomes every action that talks to the call can end with, besides its own.
CALL_OUTCOMES = ("error", "hangup")
#: The outcome of a step that ran longer than its ``timeout``.
TIMEOUT_OUTCOME = "timeout"


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """What one action is, seen from outside its module."""

    name: str
    #: Outcome names the action can end with (the RELAY terminal states themselves).
    outcomes: tuple[str, ...]
    #: Keys of the result stored under ``steps.<id>``.
    result_fields: tuple[str, ...]
    #: False for actions that need no live call (they still run after a hangup).
    needs_call: bool
    #: True when nothing runs after the step by default (``hangup``).
    ends_flow: bool
    #: ``module:function`` that runs it; imported only by the engine.
    runner: str
    summary: str


ACTIONS: dict[str, ActionSpec] = {
    spec.name: spec
    for spec in (
        ActionSpec("answer", ("answered", *CALL_OUTCOMES), ("state",), True, False,
                   "flowengine.actions.call_control:run_answer", "Answer the call (calling.answer)."),
        ActionSpec("play", ("finished", *CALL_OUTCOMES), ("state",), True, False,
                   "flowengine.actions.media:run_play",
                   "Play text-to-speech, audio, silence or a ringtone (calling.play)."),
        ActionSpec("record", ("finished", "no_input", *CALL_OUTCOMES),
                   ("state", "url", "duration", "size", "format"), True, False,
                   "flowengine.actions.media:run_record",
                   "Record the caller (calling.record) until a terminator, silence or hangup."),
        ActionSpec("branch", (), ("goto", "index"), False, False,
                   "flowengine.actions.logic:run_branch",
                   "Go to the first target whose `when` is true."),
        ActionSpec("set", (), (), False, False, "flowengine.actions.logic:run_set",
                   "Set flow variables (under `vars`)."),
        ActionSpec("log", (), ("text",), False, False, "flowengine.actions.logic:run_log",
                   "Write a line to the call's log and trace."),
        ActionSpec("hangup", (), ("reason",), True, True,
                   "flowengine.actions.call_control:run_hangup", "Hang up the call (calling.end)."),
    )
}


def outcomes_of(action: str, *, has_timeout: bool = False) -> tuple[str, ...]:
    """Every outcome a step with this action can end with."""
    outcomes = ACTIONS[action].outcomes
    return (*outcomes, TIMEOUT_OUTCOME) if has_timeout else outcomes
