"""Handles for a call in a conference (§5.11) and a SIP REFER in flight (§5.12).

RELAY answers ``calling.join_conference`` and ``calling.refer`` as plain verbs (no
``control_id``); what follows comes as events: ``calling.conference`` (§4.10) for the
conference, ``calling.call.refer`` (§4.11) for the REFER. A :class:`Conference` or
:class:`Refer` turns them into something to wait on, and — the hang-up guarantee of
``call.py`` — is over at the latest when its call ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

__all__ = [
    "CONFERENCE_LEFT",
    "REFER_PENDING",
    "Conference",
    "ConferenceResult",
    "Refer",
    "ReferResult",
    "sip_device",
]

#: §4.10: a participant's ``status`` values and the conference's own.
PARTICIPANT_JOIN = "participant-join"
PARTICIPANT_LEAVE = "participant-leave"
CONFERENCE_START = "conference-start"
CONFERENCE_END = "conference-end"
#: Why a participant left (``reason`` of ``participant-leave``), and ``hangup``, ours: the
#: call ended without the event.
CONFERENCE_LEFT = frozenset({"left", "ended", "hangup", "full", "kicked"})
#: §4.11: the state of a REFER still waiting for the far end's answer.
REFER_PENDING = "inProgress"


def sip_device(to: str, headers: Mapping[str, str] | None = None,
               **params: Any) -> dict[str, Any]:
    """A ``sip`` device (§5.6) to ``to``, with custom SIP headers as RELAY takes them: a
    list of ``{"name", "value"}`` (names such as ``X-Account``)."""
    device: dict[str, Any] = {"to": to, **params}
    if headers:
        device["headers"] = [{"name": str(k), "value": str(v)} for k, v in headers.items()]
    return {"type": "sip", "params": device}


class _Waitable:
    """A result set once and awaited by any number of waiters, shielded."""

    __slots__ = ("_done",)

    def __init__(self) -> None:
        self._done: asyncio.Future[None] | None = None

    def _wake(self) -> None:
        done = self._done
        if done is not None and not done.done():
            done.set_result(None)

    async def _wait_until(self, ready: bool) -> None:
        if not ready:
            if self._done is None:
                self._done = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._done)


@dataclass(frozen=True, slots=True)
class ConferenceResult:
    """How a call's time in a conference ended.

    Attributes:
        reason: ``left`` (this call left: ``leave_conference``, or it was taken out),
            ``ended`` (the conference ended: its moderator left with ``end_on_exit``, or
            everyone else did), ``full`` (``max_participants`` reached: never admitted),
            ``kicked``, or ``hangup`` (the call ended first).
        params: the inner params of the event that said so (empty for ``hangup``).
    """

    reason: str
    params: Mapping[str, Any]

    @property
    def recording_url(self) -> str | None:
        """The conference's recording, when it records (``record``), else None."""
        url = self.params.get("recording_url")
        return url if isinstance(url, str) and url else None


class Conference(_Waitable):
    """A call's stay in a conference (``calling.join_conference``, §5.11).

    Attributes:
        name: the conference's name as joined.
        conference_id: RELAY's id for it (from the reply), ``""`` until known.
        reply: the result object of the reply.
        status: the latest ``status`` of a ``calling.conference`` event about it
            (``participant-join``, ``conference-start``…); ``joining`` before any.
        events: every ``calling.conference`` params about this call or its conference,
            in order.
        result: the :class:`ConferenceResult` once the call is out, else None.
    """

    __slots__ = ("_joined", "conference_id", "events", "joined", "name", "reply", "result",
                 "status")

    def __init__(self, name: str) -> None:
        super().__init__()
        self._joined: asyncio.Future[None] | None = None
        #: True once RELAY said the call is in (``participant-join``).
        self.joined = False
        self.name = name
        self.conference_id = ""
        self.reply: dict[str, Any] = {}
        self.status = "joining"
        self.events: list[Mapping[str, Any]] = []
        self.result: ConferenceResult | None = None

    def __repr__(self) -> str:
        return f"<Conference {self.name!r} {self.status}>"

    @property
    def done(self) -> bool:
        """True once the call is out of the conference (or never got in)."""
        return self.result is not None

    async def wait(self) -> ConferenceResult:
        """Wait until the call is out of the conference; never hangs (a call's end ends
        it)."""
        await self._wait_until(self.result is not None)
        assert self.result is not None
        return self.result

    async def wait_joined(self) -> bool:
        """Wait until the call is in the conference (True) or never will be (False: full,
        or the call ended first)."""
        if not self.joined and self.result is None:
            if self._joined is None:
                self._joined = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._joined)
        return self.joined and (self.result is None or self.result.reason != "full")

    def _wake_joined(self) -> None:
        if self._joined is not None and not self._joined.done():
            self._joined.set_result(None)

    def _update(self, params: Mapping[str, Any], own: bool) -> None:
        """One ``calling.conference`` event; ``own``: it names this call (a participant's
        event), not only the conference."""
        if self.result is not None:
            return
        cid = params.get("conference_id")
        if self.conference_id and cid != self.conference_id:
            return
        if not self.conference_id and isinstance(cid, str) and own:
            self.conference_id = cid
        self.events.append(params)
        status = params.get("status")
        if isinstance(status, str):
            self.status = status
        if own and status == PARTICIPANT_JOIN:
            self.joined = True
            self._wake_joined()
        elif own and status == PARTICIPANT_LEAVE:
            reason = params.get("reason")
            self._resolve(reason if reason in CONFERENCE_LEFT else "left", params)
        elif status == CONFERENCE_END:
            # A conference that ends takes every participant out, whether or not RELAY
            # sends each one its own leave.
            self._resolve("ended", params)

    def _resolve(self, reason: str, params: Mapping[str, Any]) -> None:
        if self.result is None:
            self.result = ConferenceResult(reason, params)
            self._wake()
            self._wake_joined()


_NO_PARAMS: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ReferResult:
    """How a SIP REFER ended (§4.11).

    Attributes:
        state: ``success`` (the far end took the call: it leaves us), ``error``,
            ``busy``, ``noAnswer``, ``cancel`` (refused or failed), or ``hangup`` (the
            call ended before an answer).
        refer_to: the SIP URI referred to.
        response_code: the answer to the REFER itself (``202`` accepted, ``403``…), or
            ``""``.
        notify_code: the final answer of the referred call, reported by NOTIFY (``200``,
            ``486``…), or ``""``.
        params: the raw event params (empty for ``hangup``).
    """

    state: str
    refer_to: str
    response_code: str
    notify_code: str
    params: Mapping[str, Any]

    @property
    def accepted(self) -> bool:
        """True when the far end took the call."""
        return self.state == "success"


class Refer(_Waitable):
    """A ``calling.refer`` in flight (§5.12): it ends on the first ``calling.call.refer``
    whose state is not ``inProgress``, or when the call ends."""

    __slots__ = ("refer_to", "reply", "result", "state")

    def __init__(self, refer_to: str) -> None:
        super().__init__()
        self.refer_to = refer_to
        self.reply: dict[str, Any] = {}
        self.state = REFER_PENDING
        self.result: ReferResult | None = None

    def __repr__(self) -> str:
        return f"<Refer {self.refer_to} {self.state}>"

    @property
    def done(self) -> bool:
        """True once the REFER has its answer."""
        return self.result is not None

    async def wait(self) -> ReferResult:
        """Wait for the REFER's answer; never hangs (a call's end ends it)."""
        await self._wait_until(self.result is not None)
        assert self.result is not None
        return self.result

    def _update(self, params: Mapping[str, Any]) -> None:
        if self.result is not None:
            return
        state = params.get("state")
        if not isinstance(state, str) or not state:
            return
        self.state = state
        if state != REFER_PENDING:
            self._resolve(state, params)

    def _resolve(self, state: str, params: Mapping[str, Any]) -> None:
        if self.result is None:
            self.result = ReferResult(
                state=state,
                refer_to=str(params.get("sip_refer_to") or self.refer_to),
                response_code=str(params.get("sip_refer_response_code") or ""),
                notify_code=str(params.get("sip_notify_response_code") or ""),
                params=params or _NO_PARAMS)
            self._wake()
