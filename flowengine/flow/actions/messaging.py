"""Messaging — the specs of send_sms.

Their runners are in ``flowengine.actions.messaging``.
"""

from __future__ import annotations

from typing import Any

from .spec import ActionSpec, CheckContext, FieldKind, Problem, fields, frozen

RUNNERS = "flowengine.actions.messaging"

#: ``from`` is a Python keyword: the parameter is passed as ``**_FROM``.
_FROM: dict[str, FieldKind] = {"from": "text"}

def _check_send_sms(step: str, value: Any, ctx: CheckContext) -> list[Problem]:
    if not value.get("body") and not value.get("media"):
        return [Problem((), f"send_sms in step '{step}' has nothing to send", key=True,
                        hint="add body: TEXT, media: [URL…] or both")]
    return []

SEND_SMS = ActionSpec(
    name="send_sms",
    outcomes=("delivered", "undelivered", "failed", "error"),
    result_fields=("message_id", "state", "reason"),
    runner=f"{RUNNERS}:run_send_sms",
    summary="Send a text message (messaging.send) and wait for its fate (messaging.state).",
    needs_call=False,
    method="messaging.send",
    waits=True,
    fields=fields(to="text", body="text", media="texts", **_FROM),
    outcome_docs={
        "failed": "the message failed; steps.<id>.reason says why.",
        "delivered": "the message was delivered.",
        "undelivered": "the carrier could not deliver it; steps.<id>.reason says why.",
    },
    check=_check_send_sms,
    params_intro=("A mapping with `body`, `media` or both (`{}` has nothing to send: `check` "
                  "refuses it):"),
    schema=frozen({
        "title": "send_sms",
        "description": ("Send a text message (RELAY messaging.send) and wait for its fate "
                        "(messaging.state). Needs no live call: it also runs after the caller "
                        "hung up. Outcomes: delivered, undelivered, failed, error (RELAY "
                        "refused it); give the step a timeout for carriers that never confirm "
                        "delivery. Result: steps.<id>.message_id, state, reason."),
        "type": "object",
        "properties": {
            "to": {
                "title": "To",
                "description": ("The number to text (E.164); a template. Default: the caller "
                                "({{ call.from }}); on a call we placed, the number called "
                                "({{ call.to }})."),
                "$ref": "#/definitions/text",
                "examples": ["{{ call.from }}"],
            },
            "from": {
                "title": "From",
                "description": ("One of your numbers; a template. Default: the number the "
                                "caller called ({{ call.to }}); on a call we placed, its "
                                "caller id."),
                "$ref": "#/definitions/text",
            },
            "body": {
                "title": "Text",
                "description": "The message; a template.",
                "type": "string",
                "minLength": 1,
                "maxLength": 1600,
                "examples": [
                    "Thanks for calling {{ vars.company }}. We will call you back today.",
                ],
            },
            "media": {
                "title": "Media",
                "description": "URLs of images or other media (MMS); templates.",
                "type": "array",
                "minItems": 1,
                "maxItems": 10,
                "items": {"$ref": "#/definitions/text"},
            },
            "context": {
                "title": "RELAY context",
                "description": ("The messaging context (state events go to it). Default: the "
                                "call's context."),
                "type": "string",
                "minLength": 1,
                "maxLength": 100,
            },
        },
        "additionalProperties": False,
        "examples": [{"body": "Sorry we missed you. We will call you back within the hour."}],
    }),
)

#: This family's actions, in the order the schema and docs list them.
SPECS = (SEND_SMS,)
