"""answer, hangup, connect, send_digits, sleep, hold and unhold: the call's lifecycle, its
bridges and its line (calling.answer, calling.end, calling.connect, calling.send_digits,
calling.hold, calling.unhold)."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

import anyio

from flowengine.actions.base import STOP_GRACE, StepResult
from flowengine.actions.media import relay_media
from flowengine.relay import CallEnded, RelayError

if TYPE_CHECKING:
    from flowengine.engine.session import Session
    from flowengine.flow import Step


async def run_answer(session: Session, step: Step, params: dict[str, Any]) -> StepResult:
    """``answer: {}`` → ``calling.answer``; outcome ``answered``."""
    call = session.call
    try:
        await call.answer(**params)
    except CallEnded:
        return StepResult("hangup", {"state": "ended"}, method="calling.answer")
    except RelayError as exc:
        return StepResult("error", {"state": call.state}, method="calling.answer", error=str(exc))
    return StepResult("answered", {"state": "answered"}, method="calling.answer")


async def run_hangup(session: Session, step: Step, params: dict[str, Any]) -> StepResult:
    """``hangup: {reason?}`` → ``calling.end``. Nothing runs after it by default."""
    reason = str(params.get("reason") or "hangup")
    try:
        await session.call.hangup(reason)
    except RelayError as exc:
        return StepResult("error", {"reason": reason}, method="calling.end", error=str(exc))
    session.hangup_sent = True
    return StepResult("next", {"reason": reason}, method="calling.end")


#: A number a phone device can dial (E.164), or a SIP address.
_PHONE = re.compile(r"^\+[1-9]\d{5,14}$")


def relay_device(address: str, from_: str, ring_timeout: float | None) -> dict[str, Any]:
    """One address of a connect (``+15551234567`` or ``sip:…``) → a RELAY device (§5.6)."""
    if address.startswith("sip:"):
        params: dict[str, Any] = {"to": address}
        if from_.startswith("sip:"):
            params["from"] = from_
    elif _PHONE.match(address):
        params = {"to_number": address, "from_number": from_}
    else:
        raise ValueError(f"{address!r} is not a phone number (+ and digits) or a sip: address")
    if ring_timeout is not None:
        params["timeout"] = ring_timeout
    return {"type": "sip" if address.startswith("sip:") else "phone", "params": params}


async def run_connect(session: Session, step: Step, params: dict[str, Any]) -> StepResult:
    """``connect: {to | devices, …}`` → ``calling.connect``; bridges the caller with the
    first device that answers.

    With ``wait`` (the default) the step lasts as long as the two talk: ``disconnected``
    when the peer hangs up (the caller is still on the line), ``hangup`` when the caller
    does. ``wait: false`` ends it with ``connected`` as soon as the peer answers. ``failed``
    when no device answered (``reason``); ``timeout`` ends the bridge or the dialling.
    """
    call = session.call
    fields: dict[str, Any] = {"peer": None, "reason": None}
    from_ = str(params.get("from") or call.to_number)
    ring = params.get("ring_timeout")
    queue = str(params["queue"]).strip() if "queue" in params else None
    if queue is not None:
        # An agent takes the longest-waiting caller of a queue (§5.10).
        if not queue:
            return StepResult("error", fields, error="the queue name is empty")
        devices = [[{"type": "queue", "params": {"queue_name": queue}}]]
    else:
        items = params["devices"] if "devices" in params else [params["to"]]
        try:
            devices = [[relay_device(str(a), from_, ring)
                        for a in (item if isinstance(item, list) else [item])]
                       for item in items]
        except ValueError as exc:
            return StepResult("error", fields, error=str(exc))
    ringback = [relay_media(item) for item in params.get("ringback") or ()] or None
    try:
        bridge = await call.connect(devices, ringback=ringback)
    except RelayError as exc:
        return StepResult("error", fields, method="calling.connect", error=str(exc))
    until = ("disconnected",) if params.get("wait", True) else ("connected",)
    timeout = session.step_timeout(step)
    with anyio.move_on_after(math.inf if timeout is None else timeout) as scope:
        await bridge.wait(until)
    if scope.cancelled_caught:
        with anyio.move_on_after(STOP_GRACE, shield=True):
            try:
                await call.disconnect()
            except RelayError:
                pass  # the bridge may have ended meanwhile; the wait below settles it
            await bridge.wait()
    peer = bridge.peer.get("device") if bridge.peer else None
    peer_params = peer.get("params") if isinstance(peer, dict) else None
    if isinstance(peer_params, dict):
        # A queue's caller called us: their number is the from of their device.
        fields["peer"] = (peer_params.get("from_number") or peer_params.get("from")
                          if queue is not None else
                          peer_params.get("to_number") or peer_params.get("to"))
    fields["reason"] = bridge.reason
    outcome = "timeout" if scope.cancelled_caught else bridge.state
    if queue is not None and outcome == "failed":
        if bridge.reason != "queue_empty":
            return StepResult("error", fields, method="calling.connect",
                              error=f"RELAY could not take a caller from queue {queue!r} "
                                    f"({bridge.reason or 'no reason given'})")
        outcome = "empty"
    return StepResult(outcome, fields, method="calling.connect")


#: What ``send_digits`` may send: DTMF keys, ``w`` (wait half a second), ``W`` (a second).
_DTMF = re.compile(r"^[0-9*#A-DwW]+$")


async def run_send_digits(session: Session, step: Step, params: dict[str, Any]) -> StepResult:
    """``send_digits: "1w2#"`` → ``calling.send_digits``; waits until RELAY sent them."""
    digits = str(params["digits"])
    if not _DTMF.match(digits):
        return StepResult("error", {"digits": digits}, error=f"{digits!r} is not DTMF: use "
                          "0-9, *, #, A-D, w (wait 0.5 s) and W (wait 1 s)")
    try:
        action = await session.call.send_digits(digits)
    except RelayError as exc:
        return StepResult("error", {"digits": digits}, method="calling.send_digits",
                          error=str(exc))
    result = await action.wait()
    return StepResult(result.state, {"digits": digits}, method="calling.send_digits",
                      control_id=action.control_id)


async def run_sleep(session: Session, step: Step, params: dict[str, Any]) -> StepResult:
    """``sleep: SECONDS`` → wait, with the caller on the line (nothing is sent); ``hangup``
    as soon as the caller hangs up."""
    with anyio.move_on_after(float(params["seconds"]) * session.time_scale):
        await session.call.wait_for_ended()
    return StepResult("hangup" if session.call.ended else "finished", {})


async def run_hold(session: Session, step: Step, params: dict[str, Any]) -> StepResult:
    """``hold: {}`` → ``calling.hold``; outcome ``held`` (the caller hears hold music)."""
    return await _hold_verb(session, hold=True)


async def run_unhold(session: Session, step: Step, params: dict[str, Any]) -> StepResult:
    """``unhold: {}`` → ``calling.unhold``; outcome ``unheld``."""
    return await _hold_verb(session, hold=False)


async def _hold_verb(session: Session, *, hold: bool) -> StepResult:
    call = session.call
    method, outcome, state = (("calling.hold", "held", "hold") if hold
                              else ("calling.unhold", "unheld", "unhold"))
    try:
        await (call.hold() if hold else call.unhold())
    except CallEnded:
        return StepResult("hangup", {"state": "ended"}, method=method)
    except RelayError as exc:
        return StepResult("error", {"state": call.state}, method=method, error=str(exc))
    return StepResult(outcome, {"state": state}, method=method)
