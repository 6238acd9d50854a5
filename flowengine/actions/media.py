"""play and record: media on the call (calling.play, calling.record)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowengine.actions.base import StepResult, wait_action
from flowengine.relay import RelayError

if TYPE_CHECKING:
    from flowengine.engine.session import Session
    from flowengine.flow import Step

_TTS_KEYS = ("language", "gender", "voice")


def relay_media(item: dict[str, Any]) -> dict[str, Any]:
    """One flow media item (``say``/``audio``/``silence``/``ringtone``) → a RELAY play item (§5.3)."""
    if "say" in item:
        params = {"text": str(item["say"])}
        params.update({k: item[k] for k in _TTS_KEYS if item.get(k) is not None})
        return {"type": "tts", "params": params}
    if "audio" in item:
        return {"type": "audio", "params": {"url": str(item["audio"])}}
    if "silence" in item:
        return {"type": "silence", "params": {"duration": float(item["silence"])}}
    if "ringtone" in item:
        params = {"name": str(item["ringtone"])}
        if item.get("duration") is not None:
            params["duration"] = float(item["duration"])
        return {"type": "ringtone", "params": params}
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
    return StepResult(outcome, {"state": state}, method="calling.play", control_id=action.control_id)


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
