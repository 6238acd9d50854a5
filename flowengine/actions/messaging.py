"""send_sms: a text message (messaging.send), followed until RELAY reports its fate
(messaging.state). It needs no live call: a flow can text the caller after a hangup."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowengine.actions.base import StepResult
from flowengine.relay import RelayError

if TYPE_CHECKING:
    from flowengine.engine.session import Session
    from flowengine.flow import Step


async def run_send_sms(session: Session, step: Step, params: dict[str, Any]) -> StepResult:
    """``send_sms: {to, from, body, media}`` → ``messaging.send``; waits for the final
    ``messaging.state``: outcome ``delivered``, ``undelivered`` or ``failed`` (``error``
    when RELAY refuses the message). ``to`` defaults to the caller, ``from`` to the number
    the caller called, the RELAY context to the call's. On a call we placed (direction
    ``outbound``, with or without a live call) the other party is the number called:
    ``to`` defaults to it, ``from`` to our caller id, the context to the flow's first."""
    client = session.client
    info = session.call_info
    outbound = info["direction"] == "outbound"
    fields: dict[str, Any] = {"message_id": None, "state": None, "reason": None}
    media = [str(m) for m in params.get("media") or ()]
    peer, ours = (info["to"], info["from"]) if outbound else (info["from"], info["to"])
    context = params.get("context") or info["context"] or session.flow.contexts[0]
    try:
        message = await client.send_message(
            context=str(context),
            to_number=str(params.get("to") or peer),
            from_number=str(params.get("from") or ours),
            body=str(params["body"]) if params.get("body") else None, media=media or None)
    except RelayError as exc:
        return StepResult("error", fields, method="messaging.send", error=str(exc))
    fields["message_id"] = message.message_id
    try:
        state = await message.wait()
    finally:
        if not message.done:  # the step's timeout: stop following it
            client.forget_message(message)
    fields.update(state=state, reason=message.reason)
    return StepResult(state, fields, method="messaging.send",
                      error=message.reason if state != "delivered" else None)
