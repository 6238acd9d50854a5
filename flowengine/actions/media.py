"""play, record and background recording: media on the call (calling.play,
calling.record, calling.record.stop)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from flowengine.actions.base import STOP_GRACE, StepResult, wait_action
from flowengine.relay import RelayError

if TYPE_CHECKING:
    from flowengine.engine.session import Session
    from flowengine.flow import Step

_TTS_KEYS = ("language", "gender", "voice")


def relay_media(item: dict[str, Any]) -> dict[str, Any]:
    """One flow media item (``say``/``audio``/``silence``/``ringtone``) → a RELAY play item
    (§5.3)."""
    if "say" in item:
        params = {"text": str(item["say"])}
        params.update({k: item[k] for k in _TTS_KEYS if item.get(k) is not None})
        return {"type": "tts", "params": params}
    if "audio" in item:
        return {"type": "audio", "params": {"url": str(item["audio"])}}
    if "silence" in item:
        return {"type": "silence", "params": {"duration": float(item["silence"])}}
    if "ringtone" in item:
        ring: dict[str, Any] = {"name": str(item["ringtone"])}
        if item.get("duration") is not None:
            ring["duration"] = float(item["duration"])
        return {"type": "ringtone", "params": ring}
    raise ValueError(f"unknown media item {sorted(item)}")


async def run_play(session: Session, step: Step, params: dict[str, Any]) -> StepResult:
    """``play: [media…]`` → ``calling.play``; waits for the terminal ``calling.call.play``."""
    media = [relay_media(item) for item in params["media"]]
    try:
        action = await session.call.play(media, volume=params.get("volume"))
    except RelayError as exc:
        return StepResult("error", {"state": "error"}, method="calling.play", error=str(exc))
    result, timed_out = await wait_action(action, session.step_timeout(step))
    state = result.state if result is not None else "error"
    outcome = "timeout" if timed_out else state
    return StepResult(outcome, {"state": state}, method="calling.play",
                      control_id=action.control_id)


async def run_record(session: Session, step: Step, params: dict[str, Any]) -> StepResult:
    """``record: {…}`` → ``calling.record``; waits for ``finished`` or ``no_input``.

    When the caller hangs up while recording, RELAY still delivers the recording before the
    call ends (§4.4), so the result keeps its url; the session turns the outcome into
    ``hangup`` because the call is gone.
    """
    audio = {k: v for k, v in params.items() if v is not None}
    try:
        action = await session.call.record(audio)
    except RelayError as exc:
        return StepResult("error", {"state": "error"}, method="calling.record", error=str(exc))
    result, timed_out = await wait_action(action, session.step_timeout(step))
    fields: dict[str, Any] = {
        "state": result.state if result is not None else "error",
        "url": result.url if result is not None else None,
        "duration": result.duration if result is not None else None,
        "size": result.size if result is not None else None,
        "format": audio.get("format") or _format_of(result.url if result is not None else None),
    }
    outcome = "timeout" if timed_out else fields["state"]
    return StepResult(outcome, fields, method="calling.record", control_id=action.control_id)


def _format_of(url: str | None) -> str | None:
    if url and "." in url.rsplit("/", 1)[-1]:
        return url.rsplit(".", 1)[-1].lower()
    return None


#: What a background recording sends RELAY besides the flow's parameters: it runs until
#: stopped or until the call ends (§5.4: a timeout of 0 is disabled; no terminators).
_BACKGROUND = {"initial_timeout": 0, "end_silence_timeout": 0, "terminators": ""}


async def run_record_call(session: Session, step: Step, params: dict[str, Any]) -> StepResult:
    """``record_call: {…}`` → ``calling.record`` in the background; the step ends at once
    (``started``). The recording runs until ``stop_record_call`` or the end of the call;
    when it ends, its ``state``, ``url``, ``duration`` and ``size`` land in this step's
    result (the engine writes them before the next step starts)."""
    audio = {k: v for k, v in params.items() if v is not None}
    audio.setdefault("direction", "both")
    audio.update(_BACKGROUND)
    try:
        action = await session.call.record(audio)
    except RelayError as exc:
        return StepResult("error", {"state": "error"}, method="calling.record", error=str(exc))
    url = action.reply.get("url") if isinstance(action.reply.get("url"), str) else None
    session.background.append((session.steps, step.id, action))
    fields = {"state": "recording", "url": url, "duration": None, "size": None,
              "format": audio.get("format") or _format_of(url)}
    return StepResult("started", fields, method="calling.record", control_id=action.control_id)


async def run_stop_record_call(session: Session, step: Step,
                               params: dict[str, Any]) -> StepResult:
    """``stop_record_call: STEP`` (or ``{}``: every one running) → ``calling.record.stop``;
    waits for the recording's end, so its url, duration and size are in ``steps.STEP``
    (and in this step's result) from the next step on."""
    target = params.get("step")
    running = [(steps, sid, action) for steps, sid, action in session.background
               if steps is session.steps and (target is None or sid == target)]
    if target is not None and not running and target not in session.steps:
        return StepResult("error", dict.fromkeys(("url", "duration", "size")),
                          error=f"record_call step '{target}' has not run on this call")
    for _, _, action in running:
        try:
            await action.stop()
        except RelayError as exc:
            return StepResult("error", dict.fromkeys(("url", "duration", "size")),
                              method="calling.record.stop", control_id=action.control_id,
                              error=str(exc))
        with anyio.move_on_after(STOP_GRACE):
            await action.wait()
    session.collect_background()
    sid = target if target is not None else (running[-1][1] if running else None)
    last = session.steps.get(sid) if sid is not None else None
    fields = {k: (last or {}).get(k) for k in ("url", "duration", "size")}
    return StepResult("finished", fields, method="calling.record.stop" if running else None,
                      control_id=running[-1][2].control_id if running else None)
