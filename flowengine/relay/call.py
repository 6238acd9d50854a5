"""Call and Action handles: what a flow step holds on to while a call is live.

Events reach these objects synchronously from the connection's reader task (never
through a per-call task or queue): the reader calls :meth:`Call._handle_event`, which
updates state and resolves :class:`Action` waiters by completing a future.

The hang-up guarantee: when a call reaches ``ended`` every pending action resolves with
an :class:`ActionResult` whose state is ``hangup``. Where the official SDK lets
``wait()`` hang forever (§6.6), no task waiting on a flowengine action ever does.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import anyio

from .conference import Conference, Refer, sip_device
from .errors import CallEnded, ConnectionLost, RelayError
from .events import CallEvent
from .queues import QueueWait

if TYPE_CHECKING:
    from .client import RelayClient

__all__ = [
    "CALL_STATES",
    "CLIENT_CLOSED",
    "COLLECT_RESULTS",
    "PLAY_TERMINAL",
    "RECORD_TERMINAL",
    "RESEND_ATTEMPTS",
    "RESENT_ACTIONS",
    "SESSION_LOST",
    "Action",
    "ActionResult",
    "Bridge",
    "Call",
    "DetectTerminal",
    "Terminal",
    "collect_terminal",
]

logger = logging.getLogger("flowengine.relay")

#: The end_reason of a call lost with its RELAY session (the server started a new one
#: instead of resuming it): no event will come for it again, so it ends here.
SESSION_LOST = "session_lost"
#: The end_reason of a call still up when its client closed.
CLIENT_CLOSED = "client_closed"
#: §4.2: the order of call states; a call never moves back.
CALL_STATES = ("created", "ringing", "answered", "ending", "ended")
_STATE_RANK = {state: rank for rank, state in enumerate(CALL_STATES)}
#: How many times a request that is safe to repeat is sent when the link drops under it
#: (each attempt within the request deadline): calling.end, calling.answer, the action
#: verbs that carry a control_id, and their controls.
RESEND_ATTEMPTS = 8
#: The action verbs sent again, with the same control_id, when their reply was lost with
#: the link: RELAY takes a repeated control_id as the same action (it does not start a
#: second one). send_digits is not among them: keys sent twice would be dialled twice if
#: the server did not recognise the repeat.
RESENT_ACTIONS = frozenset({"play", "record", "collect", "play_and_collect", "detect",
                            "queue.enter"})
#: A state read from a frame → the one str object of that name (not one per call).
_STATE_NAME = {state: state for state in CALL_STATES}
#: §4.3: a play ends on ``finished`` or ``error``.
PLAY_TERMINAL = frozenset({"finished", "error"})
#: §4.4: a record ends on ``finished`` or ``no_input`` (``error`` is not terminal).
RECORD_TERMINAL = frozenset({"finished", "no_input"})
#: §4.8: send_digits ends with ``finished``.
SEND_DIGITS_TERMINAL = frozenset({"finished"})
#: §4.5: the result types of a collect (``calling.call.collect`` ``result.type``).
COLLECT_RESULTS = frozenset({"digit", "speech", "no_input", "no_match", "error"})
#: §7: the codes that mean "this call is gone".
_GONE_CODES = (404, 410)

EventHandler = Callable[[CallEvent], Any]
#: Decides whether an event ends an action: ``(event_type, params)`` → the terminal state,
#: or None when the action goes on.
TerminalRule = Callable[[str, Mapping[str, Any]], "str | None"]
#: What ends an action: the ``state`` values that are terminal (on any event with the
#: action's control_id), or a rule.
Terminal = Collection[str] | TerminalRule


def collect_terminal(event_type: str, params: Mapping[str, Any]) -> str | None:
    """§4.5: a collect (or play_and_collect) ends with its first final ``calling.call.collect``
    event that carries a result; its state is the result's type (``digit``, ``speech``,
    ``no_input``, ``no_match``, ``error``). The ``calling.call.play`` events of the prompt
    share the control_id and are ignored, and so are partial results (``final: false``)."""
    if event_type != "calling.call.collect" or params.get("final") is False:
        return None
    result = params.get("result")
    kind = result.get("type") if isinstance(result, Mapping) else None
    if kind in COLLECT_RESULTS:
        return str(kind)
    state = params.get("state")
    return state if state in ("error", "no_input", "no_match") else None


#: The action kinds :meth:`Call.reattach` takes over after a restart, and what ends each.
REATTACH_TERMINALS: dict[str, Terminal] = {
    "play": PLAY_TERMINAL, "record": RECORD_TERMINAL, "play_and_collect": collect_terminal,
    "send_digits": SEND_DIGITS_TERMINAL}


def _lookup(params: Mapping[str, Any], key: str) -> Any:
    # §4.4: the real server puts url/duration/size at the top level; some servers nest
    # them under "record". Top level first, then the nested copy.
    value = params.get(key)
    if value is None:
        nested = params.get("record")
        if isinstance(nested, Mapping):
            value = nested.get(key)
    return value


@dataclass(frozen=True, slots=True)
class ActionResult:
    """How an action ended.

    Attributes:
        state: the terminal state (``finished``, ``error``, ``no_input``…) or ``hangup``
            when the call ended first, the server answered 404/410, or the action was
            started on a call that had already ended.
        event_type: the terminal event's type (``calling.call.record``), ``""`` for a
            synthesized ``hangup`` result.
        params: the raw inner params of the terminal event (empty when synthesized).
    """

    state: str
    event_type: str
    params: Mapping[str, Any]

    @property
    def url(self) -> str | None:
        """The recording URL (record actions), or ``None``."""
        value = _lookup(self.params, "url")
        return value if isinstance(value, str) and value else None

    @property
    def duration(self) -> float | None:
        """The recording length in seconds, or ``None`` (also for anything that is not a
        finite number, such as a frame's ``1e400``)."""
        value = _lookup(self.params, "duration")
        try:
            seconds = float(value) if value is not None else None
        except (TypeError, ValueError):
            return None
        return seconds if seconds is not None and math.isfinite(seconds) else None

    @property
    def size(self) -> int | None:
        """The recording size in bytes, or ``None`` (also for anything that is not a finite
        number)."""
        value = _lookup(self.params, "size")
        try:
            return int(value) if value is not None else None
        except (TypeError, ValueError, OverflowError):
            return None


#: The one result of every action cut short by the end of its call.
HANGUP_RESULT = ActionResult(state="hangup", event_type="", params=MappingProxyType({}))


class Action:
    """A long-running call operation (play, record…) started by :class:`Call`.

    Attributes:
        call: the call it runs on.
        control_id: the id RELAY echoes in the action's events (§5.1).
        kind: ``play``, ``record``…; controls are sent as ``calling.<kind>.<verb>``.
        result: the :class:`ActionResult` once done, else ``None``.
        reply: the result object of RELAY's reply to the verb (a record's carries its
            ``url``, §5.4), ``{}`` when there was none.
    """

    __slots__ = ("_done", "_terminal", "call", "control_id", "kind", "reply", "result")

    def __init__(self, call: Call, kind: str, control_id: str, terminal: Terminal) -> None:
        self.call = call
        self.kind = kind
        self.control_id = control_id
        self.result: ActionResult | None = None
        #: The result object of RELAY's reply to the verb (``url`` for a record), or {}.
        self.reply: dict[str, Any] = {}
        self._terminal = terminal
        # Created only when someone waits: most results are set before anyone looks. A bare
        # future (0.15 KB) rather than an anyio.Event (0.9 KB with its deque of waiters): one
        # of these per call in flight; waiters await it shielded, so a cancelled waiter
        # leaves it pending for the others.
        self._done: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        state = self.result.state if self.result is not None else "pending"
        return f"<Action {self.kind} {self.control_id} {state}>"

    @property
    def done(self) -> bool:
        """True once the action has its result."""
        return self.result is not None

    async def wait(self, timeout: float | None = None) -> ActionResult:
        """Wait for the result.

        Args:
            timeout: seconds to wait; ``None`` waits until the action ends, which it
                always does (at the latest when the call ends).

        Raises:
            TimeoutError: ``timeout`` ran out. The action carries on; wait again or
                :meth:`stop` it.
        """
        if self.result is None:
            done = self._done
            if done is None:
                done = self._done = asyncio.get_running_loop().create_future()
            if timeout is None:
                await asyncio.shield(done)
            else:
                with anyio.fail_after(timeout):
                    await asyncio.shield(done)
        assert self.result is not None
        return self.result

    async def stop(self) -> dict[str, Any]:
        """Stop the action (``calling.<kind>.stop``); its terminal event follows.

        A no-op returning ``{}`` when the action is done or the call is gone.
        """
        return await self._control("stop", {})

    async def pause(self, behavior: str | None = None) -> dict[str, Any]:
        """Pause the action (``calling.<kind>.pause``; record accepts ``silence``/``skip``).

        A no-op returning ``{}`` when the action is done or the call is gone.
        """
        return await self._control("pause", {"behavior": behavior} if behavior else {})

    async def resume(self) -> dict[str, Any]:
        """Resume a paused action (``calling.<kind>.resume``).

        A no-op returning ``{}`` when the action is done or the call is gone.
        """
        return await self._control("resume", {})

    async def _control(self, verb: str, extra: dict[str, Any]) -> dict[str, Any]:
        if self.result is not None or self.call.state == "ended":
            return {}
        try:
            # Stopping, pausing or resuming twice is the same as once (a stop that comes
            # after the end gets 404, i.e. {}): safe to send again after a lost reply.
            return await self.call.execute(f"{self.kind}.{verb}",
                                           {"control_id": self.control_id, **extra},
                                           resend=True)
        except CallEnded:
            return {}

    def _terminal_state(self, event_type: str, params: Mapping[str, Any]) -> str | None:
        """The state this event ends the action with, or None when it goes on."""
        if callable(self._terminal):
            return self._terminal(event_type, params)
        state = params.get("state")
        return state if isinstance(state, str) and state in self._terminal else None

    def _resolve(self, result: ActionResult) -> None:
        if self.result is None:
            self.result = result
            done = self._done
            if done is not None and not done.done():
                done.set_result(None)


#: §4.6: the order of connect states; ``failed`` and ``disconnected`` end a bridge, and
#: ``hangup`` is ours: the call ended before the bridge did.
_BRIDGE_RANK = {"connecting": 0, "connected": 1, "disconnected": 2, "failed": 2, "hangup": 2}


class DetectTerminal:
    """§4.8: when a ``calling.call.detect`` ends its action, and with what state.

    A machine detection ends with ``HUMAN``, ``MACHINE`` or ``UNKNOWN``; with
    ``wait_for_beep`` a ``MACHINE`` is held until ``READY`` (the greeting ended: leave the
    message now), and a detection that finishes after a ``MACHINE`` without ``READY`` ends
    ``MACHINE``. A fax detection ends with its tone (``CED``/``CNG``), a digit detection
    with the key. ``finished`` (nothing detected in time) and ``error`` end any of them.
    One instance per action: it remembers what it saw.
    """

    __slots__ = ("machine_seen", "wait_for_beep")

    def __init__(self, wait_for_beep: bool = False) -> None:
        self.wait_for_beep = wait_for_beep
        self.machine_seen = False

    def __call__(self, event_type: str, params: Mapping[str, Any]) -> str | None:
        if event_type != "calling.call.detect":
            return None
        detect = params.get("detect")
        if not isinstance(detect, Mapping):
            state = params.get("state")
            return state if state in ("finished", "error") else None
        inner = detect.get("params")
        event = inner.get("event") if isinstance(inner, Mapping) else None
        kind = detect.get("type")
        if event in ("finished", "error"):
            return "MACHINE" if event == "finished" and self.machine_seen else str(event)
        if not isinstance(event, str) or not event:
            return None
        if kind == "machine":
            if event == "MACHINE" and self.wait_for_beep:
                self.machine_seen = True
                return None
            if event == "NOT_READY":
                return None
            return event
        return event


class Bridge:
    """A ``calling.connect`` on a call (§4.6, §5.7): where it stands, from the call's
    ``calling.call.connect`` events. RELAY gives connect no control_id; a call has at most
    one bridge at a time.

    Attributes:
        state: ``connecting``, ``connected`` (the peer answered; the two talk),
            ``disconnected`` (the bridge ended, the call is still up), ``failed`` (no
            device answered) or ``hangup`` (the call ended first).
        peer: the peer's ``{call_id, node_id, device…}`` once connected, else None.
        reason: ``failed_reason`` of a failed connect (``busy``, ``noAnswer``…), else None.
    """

    __slots__ = ("_changed", "peer", "reason", "state")

    def __init__(self) -> None:
        self.state = "connecting"
        self.peer: dict[str, Any] | None = None
        self.reason: str | None = None
        self._changed: anyio.Event | None = None

    def __repr__(self) -> str:
        return f"<Bridge {self.state}>"

    @property
    def done(self) -> bool:
        """True once the bridge is over (disconnected, failed, or the call ended)."""
        return _BRIDGE_RANK[self.state] >= 2

    async def wait(self, states: Collection[str] = ()) -> str:
        """Wait until the state is one of ``states``, or the bridge is over; its state.

        Never hangs: a bridge is over at the latest when its call ends.
        """
        while self.state not in states and not self.done:
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()
        return self.state

    def _set(self, state: str) -> None:
        if (state != self.state and not self.done
                and _BRIDGE_RANK[state] >= _BRIDGE_RANK[self.state]):
            self.state = state
            if self._changed is not None:
                self._changed.set()
                self._changed = None

    def _update(self, params: Mapping[str, Any]) -> None:
        state = params.get("connect_state")
        if state not in ("connecting", "connected", "disconnected", "failed") or self.done:
            return
        peer = params.get("peer")
        if isinstance(peer, dict) and state == "connected":
            self.peer = peer
        reason = params.get("failed_reason")
        if state == "failed" and isinstance(reason, str):
            self.reason = reason
        self._set(state)


class Call:
    """One live call, offered by :meth:`RelayClient.incoming_calls`.

    Attributes:
        call_id, node_id: RELAY's ids for the call (sent with every command).
        context: the context the call was offered on.
        direction: ``inbound`` or ``outbound``.
        device: the raw device object (§4.1).
        from_number, to_number: taken from the device (phone numbers or SIP addresses).
        tag: the client tag, if any.
        state: ``created``, ``ringing``, ``answered``, ``ending`` or ``ended``.
        end_reason: why it ended (``hangup``, ``busy``…; ``session_lost`` when the RELAY
            session was replaced, ``client_closed`` when the client closed first).
        bridge: the latest :class:`Bridge` started by :meth:`connect`, or None.
        conference: the latest :class:`Conference` joined by :meth:`join_conference`, or
            None.
        last_refer: the latest :class:`Refer` sent by :meth:`refer`, or None.
    """

    __slots__ = (
        "_actions",
        "_client",
        "_device",
        "_ended_event",
        "_listeners",
        "_reattached",
        "bridge",
        "call_id",
        "conference",
        "context",
        "direction",
        "end_reason",
        "from_number",
        "last_refer",
        "node_id",
        "state",
        "tag",
        "to_number",
    )

    def __init__(self, client: RelayClient, params: Mapping[str, Any]) -> None:
        self._client = client
        self.call_id: str = params["call_id"]
        self.node_id: str = str(params.get("node_id", ""))
        # Interned: the same few values on every call, one copy each instead of one per call.
        self.context: str = sys.intern(str(params.get("context", "")))
        self.direction: str = sys.intern(str(params.get("direction", "inbound")))
        device = params.get("device")
        if not isinstance(device, dict):
            device = {}
        tag = params.get("tag")
        self.tag: str | None = tag if isinstance(tag, str) else None
        device_params = device.get("params")
        if not isinstance(device_params, dict):
            device_params = {}
        self.from_number: str = str(device_params.get("from_number")
                                    or device_params.get("from") or "")
        self.to_number: str = str(device_params.get("to_number")
                                  or device_params.get("to") or "")
        # A plain phone device is rebuilt when asked for: two dicts less per call in flight.
        self._device: dict[str, Any] | None = (
            None if device == _phone_device(self.from_number, self.to_number) else device)
        state = params.get("call_state")
        self.state: str = _STATE_NAME.get(state, "created") if type(state) is str else "created"
        self.end_reason: str | None = None
        self._actions: dict[str, Action] = {}
        self.bridge: Bridge | None = None
        self.conference: Conference | None = None
        self.last_refer: Refer | None = None
        self._ended_event: anyio.Event | None = None
        self._listeners: dict[str, list[EventHandler]] | None = None
        #: Actions started by an earlier process, taken over on a restart (see reattach).
        self._reattached: dict[str, Action] | None = None

    def __repr__(self) -> str:
        return f"<Call {self.call_id} {self.state} {self.from_number}→{self.to_number}>"

    @property
    def device(self) -> dict[str, Any]:
        """The offer's ``device`` (``type``, ``params`` with ``from_number``/``to_number``)."""
        if self._device is None:
            return _phone_device(self.from_number, self.to_number)
        return self._device

    @property
    def sip_headers(self) -> dict[str, str]:
        """The custom SIP headers the call came with (§4.1: a ``sip`` device's ``headers``,
        ``[{name, value}]``), name → value; ``{}`` for other calls."""
        if self._device is None:  # a plain phone device: no headers, nothing to build
            return {}
        params = self._device.get("params")
        headers = params.get("headers") if isinstance(params, dict) else None
        if not isinstance(headers, list):
            return {}
        return {str(h["name"]): str(h.get("value", "")) for h in headers
                if isinstance(h, dict) and isinstance(h.get("name"), str)}

    @property
    def client(self) -> RelayClient:
        """The client the call came in on (to send messages, say)."""
        return self._client

    @property
    def ended(self) -> bool:
        """True once the call is ``ending`` or ``ended``."""
        return _STATE_RANK[self.state] >= _STATE_RANK["ending"]

    # ------------------------------------------------------------------ commands

    async def execute(self, verb: str, params: Mapping[str, Any] | None = None, *,
                      resend: bool = False) -> dict[str, Any]:
        """Send ``calling.<verb>`` for this call (``node_id``/``call_id`` are added).

        Args:
            resend: the request is safe to repeat (idempotent by protocol, or by its
                ``control_id``): if the link drops before its reply, it is sent again, the
                same, once the session is resumed (up to :data:`RESEND_ATTEMPTS` times).
                Without it a lost reply is a :class:`ConnectionLost`.

        Returns:
            the result object of a 2xx reply.

        Raises:
            CallEnded: the call is gone (404/410, §7).
            RelayError: any other non-2xx reply, a timeout or a lost link.
        """
        method = f"calling.{verb}"
        request = {"node_id": self.node_id, "call_id": self.call_id}
        if params:
            request.update(params)
        attempt = 1
        while True:
            try:
                return await self._client.execute(method, request)
            except ConnectionLost:
                # The server may or may not have acted on it: only a request that means
                # the same the second time may go again. Not once the call has ended
                # (nothing left to do), nor once the client is closed (no link will come).
                if (not resend or attempt >= RESEND_ATTEMPTS or self._client.closed
                        or self.state == "ended"):
                    raise
                attempt += 1
                logger.info("= %s: %s lost with the link; sending it again", self.call_id,
                            method)
            except RelayError as exc:
                if exc.code in _GONE_CODES and type(exc) is RelayError:
                    raise CallEnded(exc.code, exc.method, exc.message) from None
                raise

    async def answer(self, **extra: Any) -> dict[str, Any]:
        """Answer the call (``calling.answer``; extra keys such as ``max_duration`` pass through).

        Raises:
            CallEnded: the call has ended or is gone (404/410).
            RelayError: any other failure.
        """
        if self.state == "ended":
            # §5.1: like the SDK, send nothing for an ended call.
            raise CallEnded(410, "calling.answer", "the call has already ended")
        # Answering an answered call changes nothing (RELAY replies 200 again): a lost
        # reply is sent again.
        return await self.execute("answer", extra, resend=True)

    async def hangup(self, reason: str = "hangup") -> None:
        """Hang up (``calling.end``). A no-op once the call is ending or ended, or gone.

        It returns when RELAY accepted the command; :meth:`wait_for_ended` waits for the
        end itself. ``calling.end`` is idempotent, so a hang-up lost with a dropped link is
        sent again once the link is back (within the request deadline each time): a call
        must not stay up because its hang-up was in flight when the socket went.
        """
        if self.ended:
            return
        try:
            await self.execute("end", {"reason": reason}, resend=True)
        except CallEnded:
            return

    async def hold(self) -> dict[str, Any]:
        """Put the call on hold (``calling.hold``): the caller hears hold music until
        :meth:`unhold`. RELAY confirms with a ``calling.call.hold`` event (``state: hold``);
        like the SDK's ``hold()``, this returns on the reply. Holding a held call changes
        nothing, so a request lost with the link is sent again on the resume.

        Raises:
            CallEnded: the call has ended or is gone (404/410).
            RelayError: any other failure (a call not answered yet, for one).
        """
        if self.state == "ended":
            raise CallEnded(410, "calling.hold", "the call has already ended")
        return await self.execute("hold", resend=True)

    async def unhold(self) -> dict[str, Any]:
        """Take the call off hold (``calling.unhold``; event ``calling.call.hold``
        ``state: unhold``).

        Raises:
            CallEnded: the call has ended or is gone (404/410).
            RelayError: any other failure.
        """
        if self.state == "ended":
            raise CallEnded(410, "calling.unhold", "the call has already ended")
        return await self.execute("unhold", resend=True)

    async def join_conference(self, name: str, *, muted: bool | None = None,
                              beep: str | None = None, start_on_enter: bool | None = None,
                              end_on_exit: bool | None = None, wait_url: str | None = None,
                              max_participants: int | None = None, record: str | None = None,
                              coach: str | None = None, **extra: Any) -> Conference:
        """Put the call in the conference ``name`` (``calling.join_conference``, §5.11);
        returns when RELAY accepted it, with the :class:`Conference` (also
        ``call.conference``), over when the call leaves it.

        Args take the SDK's names and values: ``beep`` ``"true"``/``"false"``/
        ``"onEnter"``/``"onExit"``; ``start_on_enter`` (default true: this participant
        starts the conference), ``end_on_exit`` (its leaving ends it for all), ``wait_url``
        (media while the conference waits to start or the call is alone),
        ``max_participants``, ``record`` (``"record-from-start"`` or
        ``"do-not-record"``), ``coach`` (the call_id of the participant this one coaches:
        only that one hears it); ``extra``: other keys (``status_callback``…) as given.
        Left out when None, as the SDK does.

        Raises:
            CallEnded: the call has ended or is gone (404/410).
            RelayError: any other failure.
        """
        if self.state == "ended":
            raise CallEnded(410, "calling.join_conference", "the call has already ended")
        params: dict[str, Any] = {"name": name}
        for key, value in (("muted", muted), ("beep", beep), ("start_on_enter", start_on_enter),
                           ("end_on_exit", end_on_exit), ("wait_url", wait_url),
                           ("max_participants", max_participants), ("record", record),
                           ("coach", coach)):
            if value is not None:
                params[key] = value
        params.update(extra)
        # Registered before sending: the join's events may come before its reply.
        conference = Conference(name)
        previous, self.conference = self.conference, conference
        try:
            conference.reply = await self.execute("join_conference", params)
        except BaseException:
            self.conference = previous
            raise
        cid = conference.reply.get("conference_id")
        if isinstance(cid, str) and not conference.conference_id:
            conference.conference_id = cid
            if not conference.done:
                self._client._watch_conference(conference)
        return conference

    async def leave_conference(self, conference_id: str | None = None) -> dict[str, Any]:
        """Take the call out of a conference (``calling.leave_conference``, §5.11):
        ``conference_id``, or the one :attr:`conference` is in. ``{}`` when the call is
        gone or in none."""
        if conference_id is None:
            conference = self.conference
            if conference is None or conference.done or not conference.conference_id:
                return {}
            conference_id = conference.conference_id
        try:
            return await self.execute("leave_conference", {"conference_id": conference_id})
        except CallEnded:
            return {}

    async def refer(self, to: str | dict[str, Any], *,
                    headers: Mapping[str, str] | None = None, **extra: Any) -> Refer:
        """Hand the call to another SIP endpoint with a SIP REFER (``calling.refer``,
        §5.12); returns when RELAY accepted the request, with the :class:`Refer` (also
        ``call.last_refer``), over on the REFER's answer.

        Args:
            to: a ``sip:`` URI, or a whole ``sip`` device as the SDK's ``refer(device)``
                takes it.
            headers: custom SIP headers sent with the REFER (``{"X-Ticket": "42"}``).
            extra: other keys (``status_url``…) as given.

        Raises:
            CallEnded: the call has ended or is gone (404/410).
            RelayError: any other failure.
        """
        if self.state == "ended":
            raise CallEnded(410, "calling.refer", "the call has already ended")
        device = to if isinstance(to, dict) else sip_device(to, headers)
        device_params = device.get("params")
        target = device_params.get("to") if isinstance(device_params, dict) else None
        refer = Refer(str(target or ""))
        previous, self.last_refer = self.last_refer, refer
        try:
            refer.reply = await self.execute("refer", {"device": device, **extra})
        except BaseException:
            self.last_refer = previous
            raise
        return refer

    async def queue_enter(self, name: str, *, status_url: str | None = None,
                          wait_url: str | None = None, **extra: Any) -> QueueWait:
        """Put the call in the queue ``name`` (``calling.queue.enter``, §5.10) to wait for an
        agent; returns when RELAY accepted it.

        Returns:
            the :class:`QueueWait`: its ``position``/``size`` follow the
            ``calling.call.queue`` events; ``await wait.action.wait()`` ends ``dequeued``
            (an agent took the call: ``call.bridge`` says when they are connected and
            when the bridge ends), ``left`` (:meth:`queue_leave`) or ``hangup``.

        Raises:
            RelayError: a non-2xx reply other than 404/410 (409: not answered, or in a
                queue already), a timeout or a lost link.
        """
        wait = QueueWait(name, self._client.queues)
        params: dict[str, Any] = {"queue_name": name, **extra}
        if status_url is not None:
            params["status_url"] = status_url
        if wait_url is not None:
            params["wait_url"] = wait_url
        # The agent's take arrives as calling.call.connect on this call: a bridge that
        # RELAY starts, registered before the verb like a connect's.
        previous, self.bridge = self.bridge, Bridge()
        try:
            wait.action = await self.start_action("queue.enter", params, wait)
        except BaseException:
            self.bridge = previous
            raise
        if wait.action.done:
            wait.gone()
        else:
            queue_id = wait.action.reply.get("queue_id")
            if isinstance(queue_id, str) and not wait.queue_id:
                wait.queue_id = queue_id
            wait.entered = asyncio.get_running_loop().time()
        return wait

    async def queue_leave(self, wait: QueueWait) -> dict[str, Any]:
        """Take the call out of its queue (``calling.queue.leave``, §5.10); the wait ends
        ``left``. ``{}`` when the call or the wait is gone already (404/410)."""
        if wait.action is None or wait.action.done or self.state == "ended":
            return {}
        params: dict[str, Any] = {"queue_name": wait.name,
                                  "control_id": wait.action.control_id}
        if wait.queue_id:
            params["queue_id"] = wait.queue_id
        try:
            # Leaving twice is leaving once (the second gets 404, i.e. {}): safe to resend.
            return await self.execute("queue.leave", params, resend=True)
        except CallEnded:
            return {}

    async def play(self, media: list[dict[str, Any]], *, volume: float | None = None,
                   **extra: Any) -> Action:
        """Start playing ``media`` (``calling.play``, §5.3); returns when RELAY accepted it.

        Args:
            media: RELAY play items, e.g. ``[{"type": "tts", "params": {"text": "Hi"}}]``.
            volume: gain in dB (0 = unchanged); left out when ``None``.
            extra: other top-level keys (``direction``, ``loop``…).

        Returns:
            the :class:`Action`; ``wait()`` gives ``finished``, ``error`` or ``hangup``.

        Raises:
            RelayError: a non-2xx reply other than 404/410, a timeout or a lost link.
        """
        params: dict[str, Any] = {"play": media, **extra}
        if volume is not None:
            params["volume"] = volume
        return await self.start_action("play", params, PLAY_TERMINAL)

    async def record(self, audio: dict[str, Any] | None = None, **extra: Any) -> Action:
        """Start recording (``calling.record``, §5.4); returns when RELAY accepted it.

        Args:
            audio: the ``record.audio`` object (``beep``, ``format``, ``terminators``,
                ``end_silence_timeout``…).
            extra: other top-level keys (§6.1: they do not go into ``record``).

        Returns:
            the :class:`Action`; ``wait()`` gives ``finished``, ``no_input`` or ``hangup``,
            with ``url``/``duration``/``size`` on the result.

        Raises:
            RelayError: a non-2xx reply other than 404/410, a timeout or a lost link.
        """
        return await self.start_action(
            "record", {"record": {"audio": audio or {}}, **extra}, RECORD_TERMINAL)

    async def play_and_collect(self, media: list[dict[str, Any]], collect: dict[str, Any], *,
                               volume: float | None = None, **extra: Any) -> Action:
        """Play a prompt and collect digits and/or speech (``calling.play_and_collect``, §5.5).

        Args:
            media: RELAY play items, as for :meth:`play`.
            collect: the ``collect`` object: ``initial_timeout``, ``digits`` (``max``,
                ``terminators``, ``digit_timeout``), ``speech`` (``end_silence_timeout``,
                ``speech_timeout``, ``language``, ``hints``)…
            volume: gain in dB for the prompt; left out when ``None``.

        Returns:
            the :class:`Action` (kind ``play_and_collect``); ``wait()`` gives a result whose
            state is the collect result's type (``digit``, ``speech``, ``no_input``,
            ``no_match``, ``error``) or ``hangup``; the event's ``result.params`` holds
            ``digits``/``terminator`` or ``text``/``confidence``.

        Raises:
            RelayError: a non-2xx reply other than 404/410, a timeout or a lost link.
        """
        params: dict[str, Any] = {"play": media, "collect": collect, **extra}
        if volume is not None:
            params["volume"] = volume
        return await self.start_action("play_and_collect", params, collect_terminal)

    async def connect(self, devices: list[list[dict[str, Any]]], *,
                      ringback: list[dict[str, Any]] | None = None, **extra: Any) -> Bridge:
        """Dial ``devices`` and bridge the first to answer with this call (``calling.connect``,
        §5.7); returns when RELAY accepted it.

        Args:
            devices: serial groups, each a list of devices rung in parallel, e.g.
                ``[[{"type": "phone", "params": {"to_number": …, "from_number": …}}]]``.
            ringback: RELAY play items the caller hears while it rings.
            extra: other top-level keys (``max_duration``, ``tag``…).

        Returns:
            the :class:`Bridge` (also ``call.bridge``); ``await bridge.wait(...)``.

        Raises:
            RelayError: a non-2xx reply other than 404/410, a timeout or a lost link.
        """
        bridge = Bridge()
        if self.state == "ended":
            bridge._set("hangup")
            return bridge
        # Register before sending: the first events may come before the reply.
        previous, self.bridge = self.bridge, bridge
        params: dict[str, Any] = {"devices": devices, **extra}
        if ringback:
            params["ringback"] = ringback
        try:
            await self.execute("connect", params)
        except CallEnded:
            bridge._set("hangup")
        except BaseException:
            self.bridge = previous
            raise
        return bridge

    async def disconnect(self) -> dict[str, Any]:
        """End the bridge, keeping this call (``calling.disconnect``, §5.7); the bridge
        becomes ``disconnected``. ``{}`` when the call is gone."""
        try:
            return await self.execute("disconnect", {})
        except CallEnded:
            return {}

    async def detect(self, detect: dict[str, Any], *, timeout: float | None = None,
                     wait_for_beep: bool = False) -> Action:
        """Start a detector (``calling.detect``, §5.7): ``{"type": "machine"|"fax"|"digit",
        "params": {…}}``; ``timeout`` is how long it listens (RELAY's default 30 s).

        Returns:
            the :class:`Action` (kind ``detect``); ``wait()`` gives a result whose state is
            what was detected (``HUMAN``, ``MACHINE``, ``UNKNOWN``, ``READY`` after a machine's
            greeting with ``wait_for_beep``, ``CED``/``CNG``, a key), ``finished`` (nothing
            in time), ``error`` or ``hangup``. The detector may still run on RELAY's side:
            stop it with ``call.execute("detect.stop", {"control_id": …})``.
        """
        params: dict[str, Any] = {"detect": detect}
        if timeout is not None:
            params["timeout"] = timeout
        return await self.start_action("detect", params, DetectTerminal(wait_for_beep))

    async def send_digits(self, digits: str) -> Action:
        """Send DTMF to the call (``calling.send_digits``, §5.7); ``w``/``W`` wait 0.5/1 s.

        Returns:
            the :class:`Action`; ``wait()`` gives ``finished`` once RELAY sent them (the
            ``calling.call.send_digits`` event), or ``hangup``.
        """
        return await self.start_action("send_digits", {"digits": digits}, SEND_DIGITS_TERMINAL)

    async def start_action(self, kind: str, params: Mapping[str, Any],
                           terminal: Terminal) -> Action:
        """Start any action verb: send ``calling.<kind>`` with a fresh ``control_id``.

        The action resolves on the first event with its ``control_id`` that ``terminal``
        accepts (a ``state`` among those given, or a rule that says so), or with
        ``hangup`` when the call ends first. A verb of :data:`RESENT_ACTIONS` whose reply
        is lost with the link is sent again with the same ``control_id`` once the session
        is resumed; the action stays registered meanwhile, so its events (sent again on
        resume when they were not ACKed) reach it whichever comes first.
        """
        if self._reattached is not None and kind in self._reattached:
            # Started by the process before a restart: already running on RELAY (or
            # over, its events delivered on the resumed session): nothing is sent.
            return self._reattached.pop(kind)
        action = Action(self, kind, str(uuid.uuid4()), terminal)
        if self.state == "ended":
            # §5.1: nothing is sent for an ended call; the action is already over.
            action._resolve(HANGUP_RESULT)
            return action
        # getattr: the tests' scripted clients stand in for a RelayClient without it.
        hook = getattr(self._client, "before_action", None)
        if hook is not None:
            # The state store's checkpoint naming this control id, written before the
            # command goes out (docs/store.md): a restarted daemon can re-attach to it.
            await hook(self, kind, action.control_id)
        # §6.1: register before sending: events may arrive before the reply.
        self._actions[action.control_id] = action
        try:
            action.reply = await self.execute(kind, {"control_id": action.control_id, **params},
                                              resend=kind in RESENT_ACTIONS)
        except CallEnded:
            # §7: 404/410, the call is gone: a finished action, not an error.
            self._actions.pop(action.control_id, None)
            action._resolve(HANGUP_RESULT)
        except BaseException:
            self._actions.pop(action.control_id, None)
            raise
        return action

    def reattach(self, kind: str, control_id: str) -> Action:
        """Take over an action a previous process started on this call (a restart resuming
        its RELAY session, §2.8): its events, sent again on the resumed session, reach it
        by ``control_id``, and the next :meth:`start_action` of that ``kind`` returns it
        instead of sending the verb again. Kinds: those of :data:`REATTACH_TERMINALS`.

        Raises:
            ValueError: a kind that cannot be re-attached.
        """
        terminal = REATTACH_TERMINALS.get(kind)
        if terminal is None:
            raise ValueError(f"an action of kind {kind!r} cannot be re-attached")
        action = Action(self, kind, control_id, terminal)
        if self.state == "ended":
            action._resolve(HANGUP_RESULT)
        else:
            self._actions[control_id] = action
        if self._reattached is None:
            self._reattached = {}
        self._reattached[kind] = action
        return action

    async def wait_for_ended(self) -> None:
        """Wait until the call's state is ``ended`` (at once if it already is)."""
        if self.state != "ended":
            if self._ended_event is None:
                self._ended_event = anyio.Event()
            await self._ended_event.wait()

    def on(self, event_type: str, handler: EventHandler) -> None:
        """Call ``handler(event)`` for every later event of this type on this call.

        The handler runs synchronously in the reader: keep it short and non-blocking.
        Exceptions it raises are logged and ignored.
        """
        if self._listeners is None:
            self._listeners = {}
        self._listeners.setdefault(event_type, []).append(handler)

    # ------------------------------------------------------- events (reader side)

    def _handle_event(self, event: CallEvent) -> None:
        """Apply one event. Runs in the reader task; never awaits."""
        params = event.params
        if event.event_type == "calling.call.state":
            state = params.get("call_state")
            if (type(state) is str and state in _STATE_RANK
                    and _STATE_RANK[state] > _STATE_RANK[self.state]):
                self.state = state = _STATE_NAME[state]
                if state == "ended":
                    reason = params.get("end_reason")
                    self.end_reason = reason if isinstance(reason, str) else None
        elif event.event_type == "calling.call.connect":
            if self.bridge is not None:
                self.bridge._update(params)
        elif event.event_type == "calling.conference":
            conference = self.conference
            if conference is not None and not conference.done:
                known = conference.conference_id
                conference._update(params, own=True)
                if conference.done:
                    self._client._unwatch_conference(conference)
                elif not known and conference.conference_id:
                    # Its join came before the reply was read: the conference's own events
                    # that follow at once must find the handle.
                    self._client._watch_conference(conference)
        elif event.event_type == "calling.call.refer":
            if self.last_refer is not None:
                self.last_refer._update(params)
        elif event.control_id is not None:
            action = self._actions.get(event.control_id)
            terminal = (action._terminal_state(event.event_type, params)
                        if action is not None else None)
            if action is not None and terminal is not None:
                del self._actions[event.control_id]
                action._resolve(ActionResult(state=terminal, event_type=event.event_type,
                                             params=params))
        if self._listeners is not None:
            for handler in self._listeners.get(event.event_type, ()):
                try:
                    handler(event)
                except Exception:
                    logger.exception("! listener for %s on call %s failed",
                                     event.event_type, self.call_id)
        if self.state == "ended":
            self._finish()

    def _end_locally(self, reason: str) -> None:
        """End the call without a server event (session lost, client closed)."""
        if self.state != "ended":
            self.state = "ended"
            self.end_reason = reason
        self._finish()

    def _finish(self) -> None:
        # The hang-up guarantee: every pending action resolves, nothing waits forever.
        actions, self._actions = self._actions, {}
        for action in actions.values():
            action._resolve(HANGUP_RESULT)
        if self.bridge is not None:
            self.bridge._set("hangup")
        if self.conference is not None and not self.conference.done:
            self.conference._resolve("hangup", {})
            self._client._unwatch_conference(self.conference)
        if self.last_refer is not None:
            self.last_refer._resolve("hangup", {})
        if self._ended_event is not None:
            self._ended_event.set()


def _phone_device(from_number: str, to_number: str) -> dict[str, Any]:
    return {"type": "phone", "params": {"from_number": from_number, "to_number": to_number}}
