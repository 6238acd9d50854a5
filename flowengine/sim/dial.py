"""``calling.dial`` in the simulator: outbound legs rung as their callee scripts say.

A dial rings its serial groups one after another; the devices of a group ring in parallel
and the first to answer wins, the others end ``cancel``. Each device is a leg of its own —
a :class:`~flowengine.sim.calls.SimCall` with ``direction: "outbound"`` owned by the
dialling session — that does what the callee script of its ``to`` number says
(``Simulator.set_callee``): it answers after ringing, is busy, rings out, declines, fails,
or an answering machine takes it. Once answered, the leg is a call like any other: the
script's caller clauses (``speak:``, ``digits:``, ``hangup:N``, ``machine:N``…) say what
the callee does. The wire contract is §4.9 and §5.9 of docs/relay-protocol.md.

Events, in order: each leg's ``calling.call.state created`` (and ``ringing`` when it
rings), ``calling.call.dial dialing`` once the first group rings; then either the winner's
``answered``, the other legs' ``ending``/``ended`` (``cancel``) and ``calling.call.dial
answered`` naming the winner; or, once every leg of the last group has ended,
``calling.call.dial failed`` with the ``reason`` the last leg ended with.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flowengine.sim.caller import DEFAULT_RING, CallerScript
from flowengine.sim.calls import CommandError, SimCall

if TYPE_CHECKING:
    from flowengine.sim.core import Session, SimCore

#: Simulated seconds from ``created`` to ``ringing``.
RING_START_SECONDS = 0.2
#: When a busy line, a declining callee and a failing call end (simulated seconds).
BUSY_SECONDS = 1.0
DECLINE_SECONDS = 2.0
FAIL_SECONDS = 0.5
#: How long a device rings when its ``timeout`` does not say (RELAY's default).
RING_TIMEOUT = 30.0
#: The end_reason of each way a callee can fail to answer (§4.2).
PICKUP_END_REASONS = {"busy": "busy", "noanswer": "noAnswer", "decline": "decline",
                      "fail": "error"}
#: Device types a dial can ring (``call`` and ``queue`` are for connect only, §5.6).
DIAL_DEVICE_TYPES = frozenset({"phone", "sip", "webrtc"})
_E164 = re.compile(r"^\+[1-9]\d{5,14}$")


def check_devices(devices: Any) -> list[list[dict[str, Any]]]:
    """The ``devices`` of a ``calling.dial``, checked.

    Raises:
        CommandError: "400" unless it is a non-empty list of non-empty lists of phone
            devices (``to_number`` and ``from_number`` in E.164) or sip/webrtc devices
            (``to`` and ``from``).
    """
    shape = ("devices must be a non-empty list of non-empty lists of phone, sip or webrtc "
             "devices")
    if not isinstance(devices, list) or not devices:
        raise CommandError("400", shape)
    for group in devices:
        if not isinstance(group, list) or not group:
            raise CommandError("400", shape)
        for device in group:
            if not isinstance(device, dict) or device.get("type") not in DIAL_DEVICE_TYPES:
                raise CommandError("400", shape)
            params = device.get("params")
            if not isinstance(params, dict):
                raise CommandError("400", "each device needs params")
            if device["type"] == "phone":
                for key in ("to_number", "from_number"):
                    value = params.get(key)
                    if not isinstance(value, str) or not _E164.match(value):
                        raise CommandError("400", f"a phone device's {key} must be a phone "
                                                  "number (+ and digits)")
            else:
                for key in ("to", "from"):
                    if not isinstance(params.get(key), str) or not params[key]:
                        raise CommandError("400", f"a {device['type']} device needs {key!r}")
    return devices


def device_numbers(device: dict[str, Any]) -> tuple[str, str]:
    """``(from, to)`` of a checked device."""
    params = device["params"]
    if device["type"] == "phone":
        return params["from_number"], params["to_number"]
    return params["from"], params["to"]


def _seconds(value: Any, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return default
    return float(value)


class SimDial:
    """One ``calling.dial`` in progress (or done): its legs and how it ended.

    Read-only for users: ``tag``, ``devices``, ``legs`` (every leg rung, in order),
    ``state`` (``dialing``, ``answered`` or ``failed``), ``winner`` (the answered leg),
    ``reason`` (why it failed: the last leg's end_reason, ``cancel`` when the client ended
    a leg itself).
    """

    def __init__(self, core: SimCore, session: Session, tag: str,
                 devices: list[list[dict[str, Any]]], max_duration: float | None,
                 callee: Callable[[str], CallerScript]) -> None:
        self.tag = tag
        self.devices = devices
        self.legs: list[SimCall] = []
        self.state = "dialing"
        self.winner: SimCall | None = None
        self.reason: str | None = None
        self._core = core
        self._session = session
        self._max_duration = max_duration
        self._callee = callee
        self._group = 0
        self._ringing: list[SimCall] = []
        #: The leg this dial is ending itself (its on_end is not a client's doing).
        self._ending: SimCall | None = None

    def __repr__(self) -> str:
        return f"<SimDial {self.tag} {self.state} legs={len(self.legs)}>"

    @property
    def done(self) -> bool:
        """True once the dial answered or failed."""
        return self.state != "dialing"

    def start(self) -> None:
        """Ring the first group (after the reply to ``calling.dial`` went out)."""
        self._ring_group()
        self._dial_event("dialing")

    def _ring_group(self) -> None:
        self._ringing = []
        for device in self.devices[self._group]:
            from_number, to_number = device_numbers(device)
            leg = SimCall(self._core, call_id=str(uuid.uuid4()), node_id=self._core.node_id,
                          context="", from_number=from_number, to_number=to_number,
                          caller=self._callee(to_number), tag=self.tag,
                          direction="outbound", device=device)
            self._core.leg_created(self._session, leg)
            leg.on_end = self._leg_ended
            self.legs.append(leg)
            self._ringing.append(leg)
            leg._state_event("created")
            self._plan(leg, device)

    def _plan(self, leg: SimCall, device: dict[str, Any]) -> None:
        """Decide now what the leg does, from its callee script and the device's timeout."""
        script = leg.caller
        timeout = _seconds(device["params"].get("timeout"), RING_TIMEOUT)
        if script.pickup in ("busy", "fail"):
            wait = BUSY_SECONDS if script.pickup == "busy" else FAIL_SECONDS
            leg.after(wait, lambda: self._fails(leg, PICKUP_END_REASONS[script.pickup]))
            return
        leg.after(RING_START_SECONDS, leg.ringing)
        if script.pickup == "decline":
            leg.after(DECLINE_SECONDS, lambda: self._fails(leg, "decline"))
            return
        ring = DEFAULT_RING if script.ring is None else script.ring
        if script.pickup == "noanswer" or ring >= timeout:
            leg.after(timeout, lambda: self._fails(leg, "noAnswer"))
        else:
            leg.after(ring, lambda: self._answers(leg))

    def _answers(self, leg: SimCall) -> None:
        if self.done or leg.ended:
            return
        self.state, self.winner = "answered", leg
        max_duration = self._max_duration
        leg.answered(max_duration * 60 if max_duration is not None else None)
        # The other legs of the group lose: they end before the dial names the winner, so
        # a client that has its answered call also sees every other leg over.
        for other in self._ringing:
            if other is not leg:
                self._end(other, "cancel")
        self._ringing = []
        self._dial_event("answered", call={
            "call_id": leg.call_id, "node_id": leg.node_id, "tag": self.tag,
            "device": leg.device, "dial_winner": True})

    def _fails(self, leg: SimCall, reason: str) -> None:
        if not leg.ended:
            self._end(leg, reason)

    def _end(self, leg: SimCall, reason: str) -> None:
        self._ending = leg
        try:
            leg.end(reason)
        finally:
            self._ending = None

    def _leg_ended(self, leg: SimCall) -> None:
        """A leg ended: by its callee (try on), or by the client or the simulator (over)."""
        if self.done or leg not in self._ringing:
            return
        self._ringing.remove(leg)
        reason = leg.end_reason or "error"
        if self._ending is not leg:
            # The client hung up a ringing leg (or its session expired): it gave up on the
            # dial, so nothing more is rung. Over first, so that the legs ended here do not
            # ring the next group.
            self.state = "failed"
            others, self._ringing = self._ringing, []
            for other in others:
                self._end(other, "cancel")
            self._failed(reason)
            return
        if self._ringing:
            return
        self._group += 1
        if self._group < len(self.devices):
            self._ring_group()
        else:
            self._failed(reason)

    def _failed(self, reason: str) -> None:
        self.state, self.reason = "failed", reason
        self._dial_event("failed", reason=reason)

    def _dial_event(self, dial_state: str, **extra: Any) -> None:
        # §4.9: no top-level call_id; routed by tag.
        self._core.emit_dial_event(self._session, {
            "node_id": self._core.node_id, "tag": self.tag, "dial_state": dial_state, **extra})
