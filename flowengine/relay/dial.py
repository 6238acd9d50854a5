"""Outbound calls: ``calling.dial`` and the events that follow it (§4.9, §5.9).

RELAY's reply to ``calling.dial`` carries no call id. What follows is routed by the
``tag`` the client chose: a ``calling.call.state`` event for each leg RELAY places (its
``call_id`` new to the client, its ``tag`` ours), and ``calling.call.dial`` events
(``dialing``, then ``answered`` naming the winning leg, or ``failed``). A :class:`Dial`
collects them for :meth:`RelayClient.dial <flowengine.relay.client.RelayClient.dial>`,
synchronously in the reader task like every other event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from .call import Call

__all__ = ["DIAL_TIMEOUT", "MACHINE_EVENTS", "OUTCOMES", "Dial", "DialResult", "outcome_of",
           "phone_device"]

#: Seconds :meth:`RelayClient.dial` waits for an answer when not told (the SDK's default).
DIAL_TIMEOUT = 120.0
#: What a dial can come to. ``machine`` only when the dial was asked to detect one
#: (``detect_machine``): an answering machine took the call, which is live.
OUTCOMES = ("answered", "machine", "busy", "no_answer", "failed")
#: What a machine detector ends with that means "a machine" (READY: its greeting ended).
MACHINE_EVENTS = frozenset({"MACHINE", "READY"})
#: §4.2 end reasons (and a failed dial's ``reason``) → the outcome they mean.
_OUTCOME_OF_REASON = {"busy": "busy", "decline": "busy", "noAnswer": "no_answer"}


def outcome_of(reason: str | None) -> str:
    """The outcome a leg's ``end_reason`` (or a failed dial's ``reason``) means: ``busy``
    (busy, decline), ``no_answer`` (noAnswer) or ``failed`` (anything else)."""
    return _OUTCOME_OF_REASON.get(reason or "", "failed")


def phone_device(to_number: str, from_number: str, *, timeout: float | None = None
                 ) -> dict[str, Any]:
    """A ``phone`` device for :meth:`RelayClient.dial` (§5.6); ``timeout`` is how long it
    rings, in seconds (RELAY's default when ``None``)."""
    params: dict[str, Any] = {"to_number": to_number, "from_number": from_number}
    if timeout is not None:
        params["timeout"] = timeout
    return {"type": "phone", "params": params}


@dataclass(frozen=True, slots=True)
class DialResult:
    """How a dial ended.

    Attributes:
        outcome: ``answered``, ``machine`` (answered by a machine, with ``detect_machine``),
            ``busy``, ``no_answer`` or ``failed`` (:data:`OUTCOMES`).
        call: the answered leg, a live :class:`Call` (play, record, detect, hangup…), when
            ``outcome`` is ``answered`` or ``machine``; else ``None``.
        reason: what RELAY said: the failed dial's ``reason`` or the last leg's
            ``end_reason`` (``busy``, ``noAnswer``, ``decline``, ``error``…); ``timeout``
            when no answer came within the dial's bound, ``session_lost`` or
            ``client_closed`` when the session went first; ``None`` when answered.
        tag: the dial's tag.
        legs: every leg RELAY placed for it, in order (the winner included).
        detected: with ``detect_machine``, what the machine detector ended with on the
            answered call: ``HUMAN``, ``MACHINE``, ``READY`` (a machine's greeting ended:
            leave the message now), ``UNKNOWN``, ``finished`` (nothing told in time),
            ``error``, ``hangup``; else ``None``.
    """

    outcome: str
    call: Call | None
    reason: str | None
    tag: str
    legs: tuple[Call, ...] = field(default=())
    detected: str | None = None


class Dial:
    """One ``calling.dial`` waiting for its outcome; fed by the client's reader."""

    __slots__ = ("_done", "_heard", "dial_states", "legs", "reason", "state", "tag",
                 "winner", "winner_id")

    def __init__(self, tag: str) -> None:
        self.tag = tag
        #: ``dialing`` until a ``calling.call.dial`` says ``answered`` or ``failed``, or
        #: the client ends it (``lost``).
        self.state = "dialing"
        self.reason: str | None = None
        self.winner_id: str | None = None
        #: The ``call`` object of the ``answered`` event (to build the winner's Call when
        #: no state event came for it).
        self.winner: dict[str, Any] | None = None
        self.legs: list[Call] = []
        #: Every ``dial_state`` seen, in order (for logs and tests).
        self.dial_states: list[str] = []
        self._done = anyio.Event()
        self._heard = anyio.Event()

    def __repr__(self) -> str:
        return f"<Dial {self.tag} {self.state} legs={len(self.legs)}>"

    @property
    def done(self) -> bool:
        """True once the dial answered or failed (or was ended locally)."""
        return self.state != "dialing"

    @property
    def heard(self) -> bool:
        """True once any event about this dial arrived (RELAY acted on it)."""
        return bool(self.legs or self.dial_states)

    async def wait(self) -> None:
        """Until :attr:`done`."""
        await self._done.wait()

    async def wait_heard(self) -> None:
        """Until :attr:`heard` (or :attr:`done`)."""
        await self._heard.wait()

    def add_leg(self, call: Call) -> None:
        """A leg placed for this dial (its first ``calling.call.state`` came)."""
        self.legs.append(call)
        self._heard.set()

    def leg(self, call_id: str) -> Call | None:
        """The leg with ``call_id``, if it is one of ours."""
        return next((leg for leg in self.legs if leg.call_id == call_id), None)

    def update(self, params: Mapping[str, Any]) -> None:
        """A ``calling.call.dial`` event for this tag (§4.9)."""
        dial_state = params.get("dial_state")
        if not isinstance(dial_state, str):
            return
        self.dial_states.append(dial_state)
        self._heard.set()
        if self.done:
            return
        if dial_state == "answered":
            call = params.get("call")
            if isinstance(call, Mapping) and isinstance(call.get("call_id"), str) \
                    and call["call_id"]:
                self.winner_id, self.winner = call["call_id"], dict(call)
                self._finish("answered", None)
        elif dial_state == "failed":
            reason = params.get("reason")
            if not isinstance(reason, str) or not reason:
                # No reason given: the last leg to end says why.
                ended = [leg.end_reason for leg in self.legs if leg.end_reason]
                reason = ended[-1] if ended else None
            self._finish("failed", reason)

    def end_locally(self, reason: str) -> None:
        """No more events will come (the session was lost, the client closed)."""
        self._finish("lost", reason)

    def _finish(self, state: str, reason: str | None) -> None:
        if not self.done:
            self.state, self.reason = state, reason
            self._done.set()
            self._heard.set()
