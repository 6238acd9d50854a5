"""SIP REFER on simulated calls (``calling.refer``, §5.12, §10).

What the far end answers is scripted per target: ``SimCore.set_refer_target(uri,
answer)`` (``flowengine simulator --refer URI=ANSWER``), else the caller script's
``refer:`` clause, else :data:`DEFAULT_ANSWER`. An answer is the REFER's response code,
optionally with the final code of the referred call that NOTIFY reports:

- ``202`` (or ``202:200``): accepted, and the referred call is answered: the call leaves
  us (``state: success``, then the call ends);
- ``202:486`` / ``202:480`` / ``202:487`` / ``202:500``: accepted, but the referred call
  failed (``busy`` / ``noAnswer`` / ``cancel`` / ``error``): the call stays with us;
- ``403``, ``404``, ``503``… (a 4xx/5xx/6xx): refused (``state: error``); the call stays.

Events (§4.11), after the 200 reply: ``calling.call.refer`` ``inProgress`` at once, then
the final state :data:`REFER_SECONDS` (and, once accepted, :data:`NOTIFY_SECONDS`) later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flowengine.sim.calls import CommandError, Reply

if TYPE_CHECKING:
    from flowengine.sim.calls import SimCall

#: How a REFER is answered when neither the target nor the caller script says.
DEFAULT_ANSWER = "202"
#: Simulated seconds until the REFER's response, then until the NOTIFY's final code.
REFER_SECONDS = 0.5
NOTIFY_SECONDS = 1.0
_ANSWER_RE = re.compile(r"([1-6]\d\d)(?::([1-6]\d\d))?")
#: A final NOTIFY code → the REFER's state (§4.11); any other failure is ``error``.
_NOTIFY_STATES = {"486": "busy", "600": "busy", "480": "noAnswer", "408": "noAnswer",
                  "487": "cancel"}


@dataclass(frozen=True, slots=True)
class ReferAnswer:
    """How a REFER target answers: the REFER's code, and NOTIFY's final code."""

    code: str
    notify: str

    @classmethod
    def parse(cls, text: str) -> ReferAnswer:
        """``202``, ``202:486``, ``403``…

        Raises:
            ValueError: not a SIP code (100–699), or a NOTIFY code after a refusal.
        """
        m = _ANSWER_RE.fullmatch(text.strip())
        if m is None:
            raise ValueError(f"bad REFER answer {text!r}: a SIP code such as 202, 202:486 "
                             "or 403")
        code, notify = m[1], m[2]
        if notify is not None and not code.startswith("2"):
            raise ValueError(f"bad REFER answer {text!r}: only an accepted REFER (2xx) has a "
                             "NOTIFY code")
        return cls(code, notify or ("200" if code.startswith("2") else ""))

    @property
    def state(self) -> str:
        """The REFER's final state (§4.11)."""
        if not self.code.startswith("2"):
            return "error"
        if self.notify.startswith("2"):
            return "success"
        return _NOTIFY_STATES.get(self.notify, "error")

    def __str__(self) -> str:
        return self.code if self.notify in ("", "200") else f"{self.code}:{self.notify}"


def _headers(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, list) or not all(
            isinstance(h, dict) and isinstance(h.get("name"), str) and h["name"]
            and isinstance(h.get("value"), str) for h in value):
        raise CommandError("400", "headers must be a list of {name, value} strings")
    return {h["name"]: h["value"] for h in value}


def refer_call(call: SimCall, params: dict[str, Any], reply: Reply, answer: ReferAnswer) -> None:
    """``calling.refer`` on ``call``: 200 "Referring", then the events above. 409 before
    the call is answered or while another REFER is in flight; 400 for a device that is not
    ``sip`` with a ``sip:`` ``to``."""
    if call.state != "answered":
        raise CommandError("409", "The call is not answered")
    if call.refer_pending:
        raise CommandError("409", "A REFER is already in progress")
    device = params.get("device")
    inner = device.get("params") if isinstance(device, dict) else None
    to = inner.get("to") if isinstance(inner, dict) else None
    if (not isinstance(device, dict) or device.get("type") != "sip" or not isinstance(to, str)
            or not to.startswith("sip:")):
        raise CommandError("400", "device must be a sip device with a sip: to")
    assert isinstance(inner, dict)
    headers = _headers(inner.get("headers"))
    reply({"code": "200", "message": "Referring", "call_id": call.call_id})
    call.refers.append({"to": to, "headers": headers, "answer": str(answer)})
    call.refer_pending = True
    ids = {"call_id": call.call_id, "node_id": call.node_id, "sip_refer_to": to}
    call.emit("calling.call.refer", {**ids, "state": "inProgress"})
    call.action_started("refer", None)

    def finish() -> None:
        call.refer_pending = False
        final = {**ids, "state": answer.state, "sip_refer_response_code": answer.code}
        if answer.notify:
            final["sip_notify_response_code"] = answer.notify
        call.emit("calling.call.refer", final)
        if answer.state == "success":
            # The far end now talks to the referred party: the call is no longer ours.
            call.referred_to = to
            call.end("hangup")

    if answer.code.startswith("2"):
        call.after(REFER_SECONDS + NOTIFY_SECONDS, finish)
    else:
        call.after(REFER_SECONDS, finish)
