"""prompt and detect: listen to the caller (calling.play_and_collect, calling.detect).

A prompt is a VoiceXML-style field: play the question, collect the answer, and when nothing
was heard (``no_input``) or the answer is not one of the ``choices`` (``no_match``) say so
and ask again, up to ``max_attempts`` times, before the step ends with that outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flowengine.actions.base import StepResult, wait_action
from flowengine.actions.media import relay_media
from flowengine.relay import RelayError

if TYPE_CHECKING:
    from flowengine.engine.session import Session
    from flowengine.flow import Step

#: The RELAY collect keys a prompt passes through (§5.5), by where they go.
_COLLECT_KEYS = ("initial_timeout",)
_DIGITS_KEYS = ("max", "terminators", "digit_timeout")
_SPEECH_KEYS = ("end_silence_timeout", "speech_timeout", "language", "hints")
#: Characters a spoken answer may end with that do not count when comparing with choices.
_TRAILING = " .,!?;:"


def collect_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """A prompt's parameters → the RELAY ``collect`` object of ``calling.play_and_collect``."""
    collect: dict[str, Any] = {k: params[k] for k in _COLLECT_KEYS if params.get(k) is not None}
    if "digits" in params:
        digits = params.get("digits") or {}
        collect["digits"] = {k: digits[k] for k in _DIGITS_KEYS if digits.get(k) is not None}
        collect["digits"].setdefault("max", 1)
    if "speech" in params:
        speech = params.get("speech") or {}
        collect["speech"] = {k: speech[k] for k in _SPEECH_KEYS if speech.get(k) is not None}
    return collect


def normalise_speech(text: str) -> str:
    """How a spoken answer is compared with ``choices``: case and surrounding punctuation
    and spaces do not count (``"Sales."`` matches ``sales``)."""
    return " ".join(text.strip(_TRAILING).casefold().split())


async def run_prompt(session: Session, step: Step, params: dict[str, Any]) -> StepResult:
    """``prompt: {…}`` → ``calling.play_and_collect``, once per attempt.

    Outcomes: ``digit`` or ``speech`` (an answer that is one of ``choices`` — then
    ``choice`` is that choice as written — or any answer without ``choices``),
    ``no_input`` / ``no_match`` once ``max_attempts`` are used up, ``error``, ``hangup``,
    and ``timeout`` when the step's ``timeout`` (for all attempts) runs out.
    """
    collect = collect_params(params)
    choices = params.get("choices")
    max_attempts = int(params.get("max_attempts") or 1)
    reprompts = {"no_input": params.get("no_input_play") or [],
                 "no_match": params.get("no_match_play") or []}
    fields: dict[str, Any] = {"digits": None, "terminator": None, "text": None,
                              "confidence": None, "choice": None, "attempts": 0}
    played: list[dict[str, Any]] = []
    timeout = session.step_timeout(step)
    clock = asyncio.get_running_loop().time  # the clock wait_action's timeout runs on
    deadline = None if timeout is None else clock() + timeout
    outcome = "error"
    control_id: str | None = None
    for attempt in range(1, max_attempts + 1):
        items = list(params["play"]) if attempt == 1 else [*reprompts[outcome], *params["play"]]
        try:
            action = await session.call.play_and_collect(
                [relay_media(item) for item in items], collect, volume=params.get("volume"))
        except RelayError as exc:
            return StepResult("error", fields, method="calling.play_and_collect",
                              control_id=control_id, error=str(exc), played=played)
        control_id = action.control_id
        played.extend(items)
        fields["attempts"] = attempt
        left = None if deadline is None else max(0.0, deadline - clock())
        result, timed_out = await wait_action(action, left)
        answer = result.params.get("result") if result is not None else None
        heard = answer.get("params") if isinstance(answer, Mapping) else None
        heard = heard if isinstance(heard, Mapping) else {}
        outcome = result.state if result is not None else "error"
        if outcome == "digit":
            fields.update(digits=str(heard.get("digits") or ""),
                          terminator=heard.get("terminator") or None, text=None, confidence=None,
                          choice=None)
            if choices is not None:
                fields["choice"] = fields["digits"] if fields["digits"] in choices else None
                outcome = outcome if fields["choice"] is not None else "no_match"
        elif outcome == "speech":
            text = str(heard.get("text") or "")
            confidence = heard.get("confidence")
            fields.update(digits=None, terminator=None, text=text,
                          confidence=float(confidence) if isinstance(confidence, (int, float))
                          and not isinstance(confidence, bool) else None, choice=None)
            if choices is not None:
                said = normalise_speech(text)
                fields["choice"] = next((c for c in choices if normalise_speech(c) == said), None)
                outcome = outcome if fields["choice"] is not None else "no_match"
        if timed_out:
            outcome = "timeout"
            break
        if outcome not in ("no_input", "no_match") or session.call.ended:
            break
    return StepResult(outcome, fields, method="calling.play_and_collect", control_id=control_id,
                      played=played)


#: A detector's event → the detect step's outcome.
_DETECTED = {"HUMAN": "human", "MACHINE": "machine", "READY": "machine", "UNKNOWN": "unknown",
             "CED": "fax", "CNG": "fax", "finished": "unknown", "error": "error",
             "hangup": "hangup"}
#: The machine detector's RELAY parameters a detect step passes through.
_MACHINE_KEYS = ("initial_timeout", "end_silence_timeout", "machine_voice_threshold",
                 "machine_words_threshold")


def detect_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """A detect step's parameters → RELAY's ``detect`` object (§5.7)."""
    kind = params["type"]
    inner: dict[str, Any] = {}
    if kind == "machine":
        inner = {k: params[k] for k in _MACHINE_KEYS if params.get(k) is not None}
        if params.get("wait_for_beep"):
            inner["detect_message_end"] = True
    elif kind == "fax" and params.get("tone"):
        inner["tone"] = params["tone"]
    elif kind == "digit" and params.get("digits"):
        inner["digits"] = params["digits"]
    return {"type": kind, "params": inner}


async def run_detect(session: Session, step: Step, params: dict[str, Any]) -> StepResult:
    """``detect: {type: machine|fax|digit, …}`` → ``calling.detect``; ends with what it heard.

    Outcomes: ``human``, ``machine`` (with ``wait_for_beep``: once its greeting ended,
    ``beep`` true), ``unknown`` (nothing could be told in ``duration``), ``fax``, ``digit``,
    ``error``, ``hangup``, ``timeout``. The detector is stopped once it has an answer.
    """
    call = session.call
    fields: dict[str, Any] = {"event": None, "beep": None}
    try:
        action = await call.detect(detect_params(params), timeout=params.get("duration"),
                                   wait_for_beep=bool(params.get("wait_for_beep")))
    except RelayError as exc:
        return StepResult("error", fields, method="calling.detect", error=str(exc))
    result, timed_out = await wait_action(action, session.step_timeout(step))
    event = result.state if result is not None else "error"
    outcome = _DETECTED.get(event, "digit" if params["type"] == "digit" else "unknown")
    if outcome not in ("unknown", "error", "hangup"):
        fields["event"] = "MACHINE" if event == "READY" else event
    if params["type"] == "machine" and params.get("wait_for_beep"):
        fields["beep"] = event == "READY"
    if not timed_out and event not in ("finished", "error", "hangup") and not call.ended:
        try:  # it has its answer; RELAY's detector would go on listening
            await call.execute("detect.stop", {"control_id": action.control_id})
        except RelayError:
            pass  # it ended meanwhile
    return StepResult("timeout" if timed_out else outcome, fields, method="calling.detect",
                      control_id=action.control_id)
