"""Simulated calls and the actions running on them (play, record, collect).

Everything here is synchronous and free of I/O: a call emits events through its host (the
simulator core, :mod:`flowengine.sim.core`) and asks it for timers. Times inside an action
are *simulated* seconds; the host turns them into real seconds with its ``time_scale``.

The ordering rules of the protocol live here (``§n`` = a section of docs/relay-protocol.md):

- a command's reply is queued before any event it causes (the ``reply`` callable is
  always called first);
- when a call ends, ``ending`` comes first, then the terminal event of every running
  action, then ``ended`` (§3: the SDK drops events for a call after ``ended``).
"""

from __future__ import annotations

import functools
import math
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from flowengine.sim import audio
from flowengine.sim.caller import DEFAULT_HANGUP_OFFSET, SKIP, CallerScript
from flowengine.sim.timers import Timer

if TYPE_CHECKING:
    from flowengine.sim.core import Session
    from flowengine.sim.queues import SimQueues

Reply = Callable[[dict[str, Any]], None]

#: End reasons a client may ask for in ``calling.end`` (§4.2); others become "hangup".
END_REASONS = frozenset({"hangup", "cancel", "busy", "noAnswer", "decline", "error",
                         "abandoned", "max_duration", "not_found"})

#: Simulated lengths (seconds) of the media a play can hold.
TTS_SECONDS_PER_CHAR = 0.06
TTS_MIN_SECONDS = 0.5
AUDIO_SECONDS = 2.0
RINGTONE_SECONDS = 5.0
SILENCE_SECONDS = 1.0
#: The beep before a recording; capture (and the caller's speech) starts after it.
BEEP_SECONDS = 0.5
#: Record defaults (public RELAY docs): silence before giving up, silence that ends it.
RECORD_INITIAL_TIMEOUT = 5.0
RECORD_END_SILENCE_TIMEOUT = 1.0
RECORD_TERMINATORS = "#*"
#: Collect defaults and the caller's typing rhythm.
COLLECT_INITIAL_TIMEOUT = 5.0
COLLECT_DIGIT_TIMEOUT = 5.0
COLLECT_MAX_DIGITS = 10
COLLECT_END_SILENCE_TIMEOUT = 1.0
CALLER_REACTION_SECONDS = 0.5
CALLER_KEY_INTERVAL = 0.25
DIGIT_SEND_SECONDS = 0.1
#: The far end of a connect (``peer:`` in the caller script): how long each device rings
#: before it answers, is busy or declines; how long it talks when the script does not say;
#: how long a device rings unanswered when the connect gives no ``timeout``.
PEER_ANSWER_SECONDS = 3.0
PEER_BUSY_SECONDS = 1.0
PEER_DECLINE_SECONDS = 2.0
PEER_TALK_SECONDS = 10.0
PEER_RING_TIMEOUT = 30.0
#: Detectors (§5.7): RELAY's default listening time, when each kind of caller is told
#: apart, and a machine detector's initial_timeout default (a silent caller: UNKNOWN).
DETECT_TIMEOUT = 30.0
DETECT_HUMAN_SECONDS = 1.5
DETECT_MACHINE_SECONDS = 2.5
DETECT_FAX_SECONDS = 1.0
DETECT_INITIAL_TIMEOUT = 4.5
DETECT_DIGITS = "0123456789#*"
#: RELAY's failed_reason for each way a device can fail (§4.2 end reasons).
_PEER_FAILURES = {"busy": "busy", "noanswer": "noAnswer", "decline": "decline"}
#: Device types a connect may dial (§5.6).
_DEVICE_TYPES = frozenset({"phone", "sip", "webrtc", "call", "queue"})

#: A ``say:`` phrase the recognizer cannot make out: the collect ends ``no_match``.
UNINTELLIGIBLE = "?"

_TAG_RE = re.compile(r"<[^>]*>")
_SEND_DIGITS_RE = re.compile(r"^[0-9*#A-DwW]+$")


class CallHost(Protocol):
    """What a call needs from the simulator core."""

    time_scale: float
    #: The simulator's call queues (``calling.queue.enter``, a connect's queue device).
    queues: SimQueues

    @property
    def now(self) -> float: ...
    def after(self, sim_seconds: float, callback: Callable[[], None]) -> Timer: ...
    def emit_call_event(self, call: SimCall, event_type: str, params: dict[str, Any]) -> None: ...
    def new_recording(self, call: SimCall, control_id: str, fmt: str) -> SimRecording: ...
    def recording_finished(self, recording: SimRecording) -> None: ...
    def call_ended(self, call: SimCall) -> None: ...


class CommandError(Exception):
    """A command the call cannot carry out; becomes ``result {"code": code, …}`` (§5.1)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(eq=False, slots=True)
class SimRecording:
    """A recording made by ``calling.record``; its file is served over HTTP once finished."""

    id: str
    url: str
    format: str            # "wav" or "mp3"
    call_id: str
    control_id: str
    duration: float = 0.0  # simulated seconds recorded
    spoken: float = 0.0    # of which the caller was speaking (a tone in the WAV)
    size: int = 0          # byte length of data()
    finished: bool = False

    @property
    def content_type(self) -> str:
        """The HTTP Content-Type of :meth:`data`."""
        return "audio/mpeg" if self.format == "mp3" else "audio/wav"

    def data(self) -> bytes:
        """The audio file, built on demand (recordings are not kept in memory)."""
        if self.format == "mp3":
            return audio.mp3_bytes(self.duration)
        return audio.wav_bytes(self.duration, self.spoken)


def media_length(media: Any) -> float:
    """Simulated seconds a ``play`` list lasts.

    Accepts the §5.3 shape ``{"type": "tts", "params": {"text": …}}`` and the flat
    ``{"type": "tts", "text": …}`` of the SDK's own record example.

    Raises:
        CommandError: "400" for anything that is not a non-empty list of known media.
    """
    if not isinstance(media, list) or not media:
        raise CommandError("400", "play must be a non-empty list of media")
    total = 0.0
    for item in media:
        if not isinstance(item, dict):
            raise CommandError("400", "each play item must be an object")
        kind = item.get("type")
        p = item.get("params")
        if not isinstance(p, dict):
            p = item
        if kind == "tts":
            text = p.get("text") or _TAG_RE.sub("", str(p.get("ssml") or ""))
            total += max(TTS_MIN_SECONDS, TTS_SECONDS_PER_CHAR * len(str(text)))
        elif kind == "audio":
            total += AUDIO_SECONDS
        elif kind == "silence":
            total += _seconds(p.get("duration"), SILENCE_SECONDS)
        elif kind == "ringtone":
            total += _seconds(p.get("duration"), RINGTONE_SECONDS)
        else:
            raise CommandError("400", f"unknown media type {kind!r}")
    return total


def _seconds(value: Any, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    return max(0.0, float(value))


def _number(value: Any, default: float) -> float:
    """A timeout from client params; anything that is not a number keeps the default."""
    return _seconds(value, default)


class SimCall:
    """One simulated inbound call, as the tests and the command line see it.

    Read-only for users: ``call_id``, ``node_id``, ``context``, ``from_number``,
    ``to_number``, ``caller`` (the :class:`CallerScript`), ``state``
    (created → answered → ending → ended), ``end_reason``, ``on_hold`` (the caller hears
    hold music) and ``holds`` (how many times it was put on hold), ``commands`` (every
    RELAY method received for this call, in order), ``events`` (``(event_type, params)``
    for every event sent about it, in order), ``recordings``, ``protocol`` (the session it
    was offered to) and ``leaked`` (still up when the simulator shut down).
    """

    def __init__(self, host: CallHost, *, call_id: str, node_id: str, context: str,
                 from_number: str, to_number: str, caller: CallerScript,
                 tag: str | None = None, direction: str = "inbound",
                 device: dict[str, Any] | None = None) -> None:
        self.call_id = call_id
        #: ``inbound`` (offered) or ``outbound`` (a leg of a ``calling.dial``).
        self.direction = direction
        self._device = device
        #: Called once the call has ended (the dial that placed an outbound leg listens).
        self.on_end: Callable[[SimCall], None] | None = None
        self.node_id = node_id
        self.context = context
        self.from_number = from_number
        self.to_number = to_number
        self.caller = caller
        self.tag = tag
        self.state = "created"
        self.end_reason: str | None = None
        self.commands: list[str] = []
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.recordings: list[SimRecording] = []
        self.protocol: str | None = None
        self.leaked = False
        self._host = host
        self._session: Session | None = None
        self._actions: dict[str, _Action] = {}
        #: control_id → (verb, reply) of every action verb accepted on this call: a verb
        #: repeated with its control_id (a client whose reply was lost with its socket
        #: sends it again) is the same action, answered the same, not a second one.
        self._accepted: dict[str, tuple[str, dict[str, Any]]] = {}
        self._timers: list[Timer] = []
        self._started_kinds: dict[str, int] = {}
        self._ring_timer_set = False
        self._digits_used = 0
        self._say_used = 0
        self._peers_used = 0
        #: The running connect: a dial (ConnectAction) or either side of a queue bridge.
        self._bridge: _Action | None = None
        self._passed_by: set[str] = set()
        #: True while the caller is on hold (hears hold music): calling.hold until
        #: calling.unhold.
        self.on_hold = False
        #: How many times the call was put on hold.
        self.holds = 0
        self._waiters: list[anyio.Event] = []

    def __repr__(self) -> str:
        return (f"<SimCall {self.call_id} {self.context} {self.state}"
                f"{' ' + self.end_reason if self.end_reason else ''} caller={self.caller}>")

    @property
    def ended(self) -> bool:
        """True once ``calling.call.state ended`` was sent."""
        return self.state == "ended"

    @property
    def device(self) -> dict[str, Any]:
        """The caller's device as RELAY describes it (§4.1); an outbound leg's is the device
        its dial rang (§5.9)."""
        if self._device is not None:
            return self._device
        return {"type": "phone",
                "params": {"from_number": self.from_number, "to_number": self.to_number}}

    async def wait_ended(self, timeout: float | None = None) -> None:
        """Wait until the call has ended.

        Raises:
            TimeoutError: ``timeout`` (real seconds) passed first.
        """
        if self.ended:
            return
        event = anyio.Event()
        self._waiters.append(event)
        with anyio.fail_after(timeout):
            await event.wait()

    # -- events ---------------------------------------------------------------------------

    def _ids(self) -> dict[str, Any]:
        return {"call_id": self.call_id, "node_id": self.node_id}

    def emit(self, event_type: str, params: dict[str, Any]) -> None:
        """Record an event about this call and send it to the session that owns it."""
        self.events.append((event_type, params))
        self._host.emit_call_event(self, event_type, params)

    def receive_params(self) -> dict[str, Any]:
        """Inner params of ``calling.call.receive`` (§4.1)."""
        params = {**self._ids(), "call_state": self.state, "context": self.context,
                  "direction": "inbound", "device": self.device}
        if self.tag:
            params["tag"] = self.tag
        return params

    def _state_event(self, state: str, end_reason: str | None = None) -> None:
        # §4.2: end_reason only on "ended".
        params: dict[str, Any] = {**self._ids(), "call_state": state,
                                  "direction": self.direction, "device": self.device}
        if self.tag:
            params["tag"] = self.tag
        if end_reason is not None:
            params["end_reason"] = end_reason
        self.emit("calling.call.state", params)

    # -- timers owned by the call -----------------------------------------------------------

    def after(self, sim_seconds: float, callback: Callable[[], None]) -> Timer:
        """A timer that dies with the call."""
        timer = self._host.after(sim_seconds, callback)
        self._timers.append(timer)
        if len(self._timers) > 32:
            self._timers = [t for t in self._timers if not t.cancelled]
        return timer

    # -- the caller's script ----------------------------------------------------------------

    def action_started(self, kind: str, length: float | None) -> None:
        """Hook for ``hangup@play|record|collect[N]``: the N-th action of that kind counts."""
        started = self._started_kinds[kind] = self._started_kinds.get(kind, 0) + 1
        if self.caller.hangup_during != kind or started != self.caller.hangup_ordinal:
            return
        offset = self.caller.hangup_offset
        if offset is None:
            offset = length / 2 if kind == "play" and length is not None else DEFAULT_HANGUP_OFFSET
        self.after(offset, self._caller_hangs_up)

    def _caller_hangs_up(self) -> None:
        self.end("hangup")

    def next_digits(self) -> str | None:
        """The caller's next DTMF group (each collect consumes one), or ``None`` (none left,
        or ``-``: this collect gets none)."""
        if self._digits_used >= len(self.caller.digits):
            return None
        self._digits_used += 1
        keys = self.caller.digits[self._digits_used - 1]
        return None if keys == SKIP else keys

    def next_peer(self) -> tuple[str, float | None]:
        """What the next device a connect dials does (``peer:``; default: answers)."""
        if self._peers_used >= len(self.caller.peers):
            return ("answer", None)
        self._peers_used += 1
        return self.caller.peers[self._peers_used - 1]

    def next_phrase(self) -> str | None:
        """The caller's next phrase for a speech collect, or ``None``."""
        if self._say_used >= len(self.caller.say):
            return None
        self._say_used += 1
        phrase = self.caller.say[self._say_used - 1]
        return None if phrase == SKIP else phrase

    # -- lifecycle ----------------------------------------------------------------------------

    def offered(self, session: Session) -> None:
        """Sent to ``session`` as ``calling.call.receive``."""
        self._session = session
        self.protocol = session.protocol
        self.emit("calling.call.receive", self.receive_params())
        if self.caller.hangup_during == "ring" and not self._ring_timer_set:
            # A re-offer (calling.pass) keeps the first timer: the caller's patience runs
            # from when the phone first rang.
            self._ring_timer_set = True
            self.after(self.caller.hangup_offset or 0.0, self._caller_gives_up)

    def _caller_gives_up(self) -> None:
        if self.state == "created":
            self.end("hangup")

    def answer(self, params: dict[str, Any], reply: Reply) -> None:
        """``calling.answer`` (§5.2): 200, then ``calling.call.state answered``."""
        reply({"code": "200", "message": "Answered"})
        if self.state != "created" or self.direction != "inbound":
            return  # an outbound leg is answered by its callee (§5.9), not by a command
        self.answered()

    def answered(self, max_duration: float | None = None) -> None:
        """The call is up: ``answered``, and the caller's (or callee's) clock starts.
        ``max_duration`` (simulated seconds) ends it ``max_duration`` after that."""
        self.state = "answered"
        self._state_event("answered")
        if self.caller.hangup_after is not None:
            self.after(self.caller.hangup_after, self._caller_hangs_up)
        if max_duration is not None:
            self.after(max_duration, lambda: self.end("max_duration"))

    def ringing(self) -> None:
        """An outbound leg rings (``calling.call.state ringing``, §5.9)."""
        if self.state == "created":
            self.state = "ringing"
            self._state_event("ringing")

    def hangup(self, params: dict[str, Any], reply: Reply) -> None:
        """``calling.end`` (§5.2): 200, then ending → terminal action events → ended."""
        reason = params.get("reason")
        reply({"code": "200", "message": "Disconnecting call"})
        self.end(reason if reason in END_REASONS else "hangup")

    def end(self, reason: str) -> None:
        """End the call (either side). Safe to call on an ended call."""
        if self.state in ("ending", "ended"):
            return
        self.state = "ending"
        self._state_event("ending")
        # §3: terminal action events before "ended", or the SDK drops them.
        for action in list(self._actions.values()):
            action.terminate()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self.state = "ended"
        self.end_reason = reason
        self._accepted.clear()  # a repeat now gets 410, like any command for an ended call
        self._state_event("ended", reason)
        self._host.call_ended(self)
        for event in self._waiters:
            event.set()
        self._waiters.clear()
        on_end, self.on_end = self.on_end, None
        if on_end is not None:
            on_end(self)

    # -- action verbs ---------------------------------------------------------------------------

    def _control_id(self, params: dict[str, Any]) -> str:
        cid = params.get("control_id")
        if not isinstance(cid, str) or not cid:
            raise CommandError("400", "control_id is required")
        return cid

    def _repeated(self, verb: str, cid: str, reply: Reply) -> bool:
        """True when ``cid`` was already accepted for ``verb`` on this call: the same
        reply goes out again and nothing else happens (the action runs, or ran, once; its
        events are the session's, sent again on resume if they were not ACKed). The
        control_id of another verb is a 409."""
        accepted = self._accepted.get(cid)
        if accepted is None:
            return False
        if accepted[0] != verb:
            raise CommandError("409", f"control_id {cid} belongs to a {accepted[0]}")
        reply(accepted[1])
        return True

    def _action_reply(self, verb: str, message: str, cid: str, **extra: Any) -> dict[str, Any]:
        # §5.1: action verbs must answer with a non-empty 2xx result.
        result = {"code": "200", "message": message, "call_id": self.call_id,
                  "control_id": cid, **extra}
        self._accepted[cid] = (verb, result)
        return result

    def play(self, params: dict[str, Any], reply: Reply) -> None:
        """``calling.play`` (§5.3): 200 "Playing", ``playing`` … ``finished``."""
        cid = self._control_id(params)
        if self._repeated("play", cid, reply):
            return
        length = media_length(params.get("play"))
        loop = params.get("loop")
        if isinstance(loop, int) and not isinstance(loop, bool) and loop > 1:
            length *= loop
        reply(self._action_reply("play", "Playing", cid))
        PlayAction(self, cid, length).start()

    def record(self, params: dict[str, Any], reply: Reply) -> None:
        """``calling.record`` (§5.4): 200 "Recording" with url, ``recording``, then the end."""
        cid = self._control_id(params)
        if self._repeated("record", cid, reply):
            return
        record = params.get("record")
        audio_params = record.get("audio") if isinstance(record, dict) else None
        if not isinstance(audio_params, dict):
            audio_params = {}
        action = RecordAction(self, cid, audio_params)
        reply(self._action_reply("record", "Recording", cid, url=action.recording.url))
        action.start()

    def collect(self, params: dict[str, Any], reply: Reply) -> None:
        """``calling.collect`` (§5.5): digits/speech at the top level of params."""
        cid = self._control_id(params)
        if self._repeated("collect", cid, reply):
            return
        reply(self._action_reply("collect", "Collecting", cid))
        CollectAction(self, cid, "collect", params, None).start()

    def play_and_collect(self, params: dict[str, Any], reply: Reply) -> None:
        """``calling.play_and_collect`` (§5.5): the prompt, then the collect under ``collect``."""
        cid = self._control_id(params)
        if self._repeated("play_and_collect", cid, reply):
            return
        length = media_length(params.get("play"))
        cfg = params.get("collect")
        if not isinstance(cfg, dict):
            raise CommandError("400", "collect must be an object")
        reply(self._action_reply("play_and_collect", "Playing and collecting", cid))
        CollectAction(self, cid, "play_and_collect", cfg, length).start()

    def send_digits(self, params: dict[str, Any], reply: Reply) -> None:
        """``calling.send_digits``: 200, then ``calling.call.send_digits finished``."""
        digits = params.get("digits")
        if not isinstance(digits, str) or not digits:
            raise CommandError("400", "digits is required")
        if not _SEND_DIGITS_RE.match(digits):
            raise CommandError("400", "digits may hold 0-9, *, #, A-D, w and W only")
        cid = params.get("control_id") if isinstance(params.get("control_id"), str) else ""
        reply({"code": "200", "message": "Sending Digits", "call_id": self.call_id})
        done = {**self._ids(), "control_id": cid, "state": "finished"}
        length = sum(0.5 if d == "w" else 1.0 if d == "W" else DIGIT_SEND_SECONDS
                     for d in digits)
        self.after(length,
                   lambda: self.emit("calling.call.send_digits", done))

    def connect(self, params: dict[str, Any], reply: Reply) -> None:
        """``calling.connect`` (§5.7): 200 "Connecting", then ``calling.call.connect``
        connecting → connected (→ disconnected) or failed, as the caller script's ``peer:``
        says for each device dialled."""
        if self._bridge is not None and not self._bridge.done:
            raise CommandError("409", "The call is already connecting or connected")
        devices = params.get("devices")
        if not isinstance(devices, list) or not devices or not all(
                isinstance(group, list) and group and all(
                    isinstance(d, dict) and d.get("type") in _DEVICE_TYPES for d in group)
                for group in devices):
            raise CommandError("400", "devices must be a non-empty list of non-empty lists of "
                                      "devices (phone, sip, webrtc, call, queue)")
        if params.get("ringback") is not None:
            media_length(params["ringback"])  # 400 for a bad list
        tag = params.get("tag") if isinstance(params.get("tag"), str) else None
        queued = [d for group in devices for d in group if d.get("type") == "queue"]
        if queued:
            # §5.10: an agent takes the longest-waiting caller of a queue (sim/queues.py).
            if len(devices) != 1 or len(devices[0]) != 1:
                raise CommandError("400", "a queue device must be the only device")
            params_q = queued[0].get("params")
            if not isinstance(params_q, dict) or not params_q.get("queue_name"):
                raise CommandError("400", "a queue device needs params.queue_name")
            reply({"code": "200", "message": "Connecting", "call_id": self.call_id})
            self._bridge = self._host.queues.connect(self, queued[0], tag)
            return
        reply({"code": "200", "message": "Connecting", "call_id": self.call_id})
        bridge = ConnectAction(self, devices, tag)
        self._bridge = bridge
        bridge.start()

    def queue_enter(self, params: dict[str, Any], reply: Reply) -> None:
        """``calling.queue.enter`` (§5.10): see :meth:`flowengine.sim.queues.SimQueues.enter`."""
        self._host.queues.enter(self, params, reply)

    def queue_leave(self, params: dict[str, Any], reply: Reply) -> None:
        """``calling.queue.leave`` (§5.10): see :meth:`flowengine.sim.queues.SimQueues.leave`."""
        self._host.queues.leave(self, params, reply)

    def detect(self, params: dict[str, Any], reply: Reply) -> None:
        """``calling.detect`` (§5.7): 200 "Detecting", then ``calling.call.detect`` events as
        the caller script says (``machine[:N]``, ``fax``, ``digits:``…), then ``finished``."""
        cid = self._control_id(params)
        if self._repeated("detect", cid, reply):
            return
        detect = params.get("detect")
        if not isinstance(detect, dict) or detect.get("type") not in ("machine", "fax", "digit"):
            raise CommandError("400", "detect.type must be machine, fax or digit")
        inner = detect.get("params")
        reply(self._action_reply("detect", "Detecting", cid))
        DetectAction(self, cid, str(detect["type"]), inner if isinstance(inner, dict) else {},
                     _number(params.get("timeout"), DETECT_TIMEOUT)).start()

    def disconnect(self, params: dict[str, Any], reply: Reply) -> None:
        """``calling.disconnect`` (§5.7): end the bridge (or the dialling), keep the call."""
        bridge = self._bridge
        if bridge is None or bridge.done:
            raise CommandError("409", "The call is not connected")
        reply({"code": "200", "message": "Disconnecting", "call_id": self.call_id})
        bridge.stop()

    def hold(self, params: dict[str, Any], reply: Reply) -> None:
        """``calling.hold``: 200, then ``calling.call.hold`` ``state: hold``. The caller hears
        hold music (``on_hold``) until ``calling.unhold`` or the end of the call; a call on
        hold already stays so (200, no event). 409 before the call is answered."""
        if self.state != "answered":
            raise CommandError("409", "The call is not answered")
        reply({"code": "200", "message": "Holding", "call_id": self.call_id})
        if self.on_hold:
            return
        self.on_hold = True
        self.holds += 1
        self.emit("calling.call.hold", {**self._ids(), "state": "hold"})
        self.action_started("hold", None)

    def unhold(self, params: dict[str, Any], reply: Reply) -> None:
        """``calling.unhold``: 200, then ``calling.call.hold`` ``state: unhold`` (the hold
        music stops). A call not on hold: 200, no event. 409 before the call is answered."""
        if self.state != "answered":
            raise CommandError("409", "The call is not answered")
        reply({"code": "200", "message": "Unholding", "call_id": self.call_id})
        if not self.on_hold:
            return
        self.on_hold = False
        self.emit("calling.call.hold", {**self._ids(), "state": "unhold"})

    def control(self, kinds: tuple[str, ...], verb: str, params: dict[str, Any],
                reply: Reply) -> None:
        """``calling.<kind>.<verb>`` on a running action (stop/pause/resume/volume/…)."""
        cid = params.get("control_id")
        action = self._actions.get(cid) if isinstance(cid, str) else None
        if action is None or action.kind not in kinds:
            # The action already finished (a normal race) or never existed; the SDK
            # treats 404 as "gone" and returns {} (§5.1).
            reply({"code": "404", "message": f"No running {kinds[0]} with control_id {cid}"})
            return
        if verb == "stop":
            reply({"code": "200", "message": "Stopped", "control_id": cid})
            action.stop()
        elif verb == "pause":
            reply({"code": "200", "message": "Paused", "control_id": cid})
            behavior = params.get("behavior")
            action.pause(behavior if isinstance(behavior, str) else None)
        elif verb == "resume":
            reply({"code": "200", "message": "Resumed", "control_id": cid})
            action.resume()
        elif verb == "volume":
            if isinstance(params.get("volume"), bool) or not isinstance(params.get("volume"),
                                                                        (int, float)):
                raise CommandError("400", "volume must be a number")
            reply({"code": "200", "message": "Volume changed", "control_id": cid})
        elif verb == "start_input_timers":
            reply({"code": "200", "message": "Timers started", "control_id": cid})
            action.start_input_timers()
        else:  # the core only routes the verbs above
            raise CommandError("400", f"unsupported control {verb}")


class _Action(ABC):
    """A running action: one control_id, one terminal event (§5.1)."""

    kind = ""

    def __init__(self, call: SimCall, control_id: str, *, register: bool = True) -> None:
        self.call = call
        self.control_id = control_id
        self.done = False
        self._timer: Timer | None = None
        if register:
            call._actions[control_id] = self

    def _ids(self) -> dict[str, Any]:
        return {"call_id": self.call.call_id, "node_id": self.call.node_id,
                "control_id": self.control_id}

    def _schedule(self, sim_seconds: float, callback: Callable[[], None]) -> None:
        self._cancel_timer()
        self._timer = self.call.after(sim_seconds, callback)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _close(self) -> None:
        self.done = True
        self._cancel_timer()
        if self.call._actions.get(self.control_id) is self:
            del self.call._actions[self.control_id]

    def stop(self) -> None:
        """The client stopped it: send the terminal event now."""
        self.terminate()

    def pause(self, behavior: str | None) -> None:
        """Pausing is a no-op for actions that cannot pause."""

    def resume(self) -> None:
        """Resuming is a no-op for actions that cannot pause."""

    def start_input_timers(self) -> None:
        """Only collects have input timers."""

    @abstractmethod
    def terminate(self) -> None:
        """The call is ending (or the client stopped it): send the terminal event."""


class PlayAction(_Action):
    """``calling.play``: ``playing`` → (``paused`` ⇄ ``playing``) → ``finished``."""

    kind = "play"

    def __init__(self, call: SimCall, control_id: str, length: float, *, register: bool = True,
                 on_finished: Callable[[], None] | None = None) -> None:
        super().__init__(call, control_id, register=register)
        self.length = length
        self._on_finished = on_finished
        self._remaining = length   # simulated seconds left, kept while paused
        self._resumed_at = 0.0     # host time when it last started playing
        self.paused = False

    def _event(self, state: str) -> None:
        self.call.emit("calling.call.play", {**self._ids(), "state": state})

    def start(self) -> None:
        """Start playing (the reply was already sent)."""
        self._event("playing")
        self._run()
        self.call.action_started("play", self.length)

    def _run(self) -> None:
        self._resumed_at = self.call._host.now
        self._schedule(self._remaining, self._finish)

    def _finish(self) -> None:
        if self.done:
            return
        self._close()
        self._event("finished")
        if self._on_finished is not None:
            self._on_finished()

    def pause(self, behavior: str | None) -> None:
        if self.paused or self.done:
            return
        host = self.call._host
        played = (host.now - self._resumed_at) / host.time_scale
        self._remaining = max(0.0, self._remaining - played)
        self._cancel_timer()
        self.paused = True
        self._event("paused")

    def resume(self) -> None:
        if not self.paused or self.done:
            return
        self.paused = False
        self._event("playing")
        self._run()

    def terminate(self) -> None:
        # Stopped or hung up: the playback is over, "finished" (§4.3).
        self._on_finished = None
        self._finish()


class RecordAction(_Action):
    """``calling.record``: ``recording`` → (``paused`` ⇄ ``recording``) → ``finished``/``no_input``.

    The recording has its own clock (``position``, simulated seconds captured) that stops
    while paused. The caller's speech is laid on that clock: speaking from 0 to
    ``caller.speak``, then a key press or silence.
    """

    kind = "record"

    def __init__(self, call: SimCall, control_id: str, audio_params: dict[str, Any]) -> None:
        super().__init__(call, control_id)
        self.audio = dict(audio_params)
        # RELAY records mp3 unless asked for wav (the RELAY SDKs' AudioParams default).
        fmt = "wav" if self.audio.get("format") == "wav" else "mp3"
        self.recording = call._host.new_recording(call, control_id, fmt)
        self.beep = bool(self.audio.get("beep"))
        self.initial_timeout = _number(self.audio.get("initial_timeout"), RECORD_INITIAL_TIMEOUT)
        self.end_silence_timeout = _number(self.audio.get("end_silence_timeout"),
                                           RECORD_END_SILENCE_TIMEOUT)
        terminators = self.audio.get("terminators")
        self.terminators = terminators if isinstance(terminators, str) else RECORD_TERMINATORS
        # What the server echoes back under "record" (§4.4), defaults filled in.
        self.echo = {"audio": {"format": fmt, "direction": "both", "stereo": False, **self.audio}}
        self.capturing = False     # past the beep
        self.paused = False
        self._position = 0.0       # simulated seconds captured before _running_since
        self._running_since: float | None = None
        self._silence_pad = 0.0    # paused time recorded as silence (behavior "silence")
        self._paused_at = 0.0
        self._pause_behavior = "silence"
        self._speech_over = False  # the caller finished speaking (pressed a key or went quiet)

    def _paused_for(self) -> float:
        """Simulated seconds since the recording was paused."""
        host = self.call._host
        return (host.now - self._paused_at) / host.time_scale

    def _event(self, state: str, **extra: Any) -> None:
        self.call.emit("calling.call.record", {**self._ids(), "state": state, **extra})

    def start(self) -> None:
        """Start: ``recording`` now; capture starts after the beep, if any."""
        url = self.recording.url
        self._event("recording", url=url, record={**self.echo, "url": url})
        if self.beep:
            self._schedule(BEEP_SECONDS, self._capture)
        else:
            self._capture()

    def position(self) -> float:
        """Simulated seconds captured so far."""
        pos = self._position
        if self._running_since is not None:
            host = self.call._host
            pos += (host.now - self._running_since) / host.time_scale
        return pos

    def _capture(self) -> None:
        self.capturing = True
        if not self.paused:
            self._running_since = self.call._host.now
            self._plan()
        self.call.action_started("record", None)

    def _plan(self) -> None:
        """Schedule the next thing that happens on the recording clock."""
        speak = self.call.caller.speak
        pos = self.position()
        # §5.4: a timeout of 0 is disabled: only a terminator, stop or the hangup end it.
        if speak is None:
            if self.initial_timeout > 0:
                self._schedule(max(0.0, self.initial_timeout - pos), self._no_input)
        elif not self._speech_over:
            if math.isfinite(speak):
                self._schedule(max(0.0, speak - pos), self._speech_ends)
        elif self.end_silence_timeout > 0:
            self._schedule(max(0.0, speak + self.end_silence_timeout - pos), self._finished)

    def _speech_ends(self) -> None:
        self._speech_over = True
        key = self.call.caller.after_speech
        if key and key in self.terminators:
            self._finished()  # §5.4: a terminator ends the recording at once
        else:
            self._plan()      # quiet (or a key that is not a terminator): end_silence_timeout

    def _heard(self, pos: float) -> float:
        speak = self.call.caller.speak
        return 0.0 if speak is None else min(speak, pos)

    def _no_input(self) -> None:
        if self.done:
            return
        self._close()
        self._event("no_input", record=self.echo)

    def _finished(self) -> None:
        if self.done:
            return
        pos = self.position()
        if self.paused and self._pause_behavior == "silence":
            self._silence_pad += self._paused_for()
        spoken = self._heard(pos)
        if spoken <= 0:
            self._no_input()
            return
        self._close()
        rec = self.recording
        rec.duration = round(pos + self._silence_pad, 3)
        rec.spoken = round(spoken, 3)
        size_of = audio.mp3_size if rec.format == "mp3" else audio.wav_size
        rec.size = size_of(rec.duration)
        rec.finished = True
        self.call.recordings.append(rec)
        self.call._host.recording_finished(rec)
        # §4.4: url/duration/size top-level (the real server's shape), and a copy under
        # "record" for readers of params.record.url (the SDK's own example does that).
        result = {"url": rec.url, "duration": rec.duration, "size": rec.size}
        self._event("finished", **result, record={**self.echo, **result})

    def pause(self, behavior: str | None) -> None:
        if self.paused or self.done:
            return
        self._position = self.position()
        self._running_since = None
        if self.capturing:
            self._cancel_timer()  # during the beep the timer is the beep's: let it end
        self.paused = True
        self._paused_at = self.call._host.now
        self._pause_behavior = "skip" if behavior == "skip" else "silence"
        self._event("paused")

    def resume(self) -> None:
        if not self.paused or self.done:
            return
        if self._pause_behavior == "silence":
            self._silence_pad += self._paused_for()
        self.paused = False
        self._event("recording", url=self.recording.url)
        if self.capturing:
            self._running_since = self.call._host.now
            self._plan()

    def terminate(self) -> None:
        # Stopped or hung up: keep what was said (finished with the url and the length so
        # far), or no_input when the caller said nothing.
        self._finished()


class DetectAction(_Action):
    """``calling.detect``: what the caller script says the caller is, then ``finished``.

    machine: a human is heard as ``HUMAN`` (a silent caller as ``UNKNOWN`` after
    ``initial_timeout``), an answering machine as ``MACHINE`` and, with
    ``detect_message_end``, ``READY`` when its greeting ends; fax: a calling fax machine's
    ``CNG`` tone, when that is the tone asked for; digit: the caller's next ``digits:``
    group, key by key. Nothing detected in ``timeout``: just ``finished``.
    """

    kind = "detect"

    def __init__(self, call: SimCall, control_id: str, detect_type: str,
                 params: dict[str, Any], timeout: float) -> None:
        super().__init__(call, control_id)
        self.type = detect_type
        self.params = params
        self.timeout = timeout
        self._keys: list[str] = []

    def _event(self, event: str) -> None:
        self.call.emit("calling.call.detect", {**self._ids(), "detect": {
            "type": self.type, "params": {"event": event}}})

    def start(self) -> None:
        self.call.action_started("detect", None)
        caller = self.call.caller
        if self.type == "machine":
            if caller.answered_by == "machine":
                self._schedule(DETECT_MACHINE_SECONDS, self._machine)
            elif caller.answered_by == "fax":
                self._schedule(DETECT_MACHINE_SECONDS, lambda: self._then_finish("UNKNOWN"))
            elif caller.speak is None:
                wait = _number(self.params.get("initial_timeout"), DETECT_INITIAL_TIMEOUT)
                self._schedule(min(wait, self.timeout), lambda: self._then_finish("UNKNOWN"))
            else:
                self._schedule(DETECT_HUMAN_SECONDS, lambda: self._then_finish("HUMAN"))
        elif self.type == "fax" and caller.answered_by == "fax" and \
                self.params.get("tone") == "CNG":
            self._schedule(DETECT_FAX_SECONDS, lambda: self._then_finish("CNG"))
        elif self.type == "digit" and (keys := self.call.next_digits()) is not None:
            allowed = self.params.get("digits")
            allowed = allowed if isinstance(allowed, str) and allowed else DETECT_DIGITS
            self._keys = [k for k in keys if k in allowed]
            self._schedule(CALLER_REACTION_SECONDS, self._next_key)
        else:
            self._schedule(self.timeout, self.terminate)

    def _machine(self) -> None:
        self._event("MACHINE")
        if self.params.get("detect_message_end") is True:
            greeting = self.call.caller.greeting
            self._schedule(max(0.0, greeting - DETECT_MACHINE_SECONDS),
                           lambda: self._then_finish("READY"))
        else:
            self.terminate()

    def _next_key(self) -> None:
        if not self._keys:
            self.terminate()
            return
        self._event(self._keys.pop(0))
        self._schedule(CALLER_KEY_INTERVAL, self._next_key)

    def _then_finish(self, event: str) -> None:
        self._event(event)
        self.terminate()

    def terminate(self) -> None:
        # Stopped, timed out or hung up: the detector is over.
        if self.done:
            return
        self._close()
        self._event("finished")


class ConnectAction(_Action):
    """``calling.connect``: ``connecting`` → ``connected`` (→ ``disconnected``) or ``failed``.

    Serial groups are dialled one after another; the devices of a group ring in parallel
    and the first to answer wins. Each device does what the caller script's next ``peer:``
    entry says. RELAY gives connect no control_id: the action is kept under a key of its
    own, so that the end of the call still reports it (``disconnected`` before ``ended``).
    """

    kind = "connect"

    def __init__(self, call: SimCall, devices: list[list[dict[str, Any]]],
                 tag: str | None) -> None:
        super().__init__(call, f"connect:{id(self)}")
        self.devices = devices
        self.tag = tag
        self.state = "connecting"
        self._group = 0

    def _event(self, state: str, **extra: Any) -> None:
        self.state = state
        params: dict[str, Any] = {"call_id": self.call.call_id, "node_id": self.call.node_id,
                                  "connect_state": state, **extra}
        if self.tag:
            params["tag"] = self.tag
        self.call.emit("calling.call.connect", params)

    def start(self) -> None:
        self._event("connecting")
        self._dial()

    def _dial(self) -> None:
        """Ring the next group: its devices' fates are decided now, the earliest answer wins."""
        group = self.devices[self._group]
        answers: list[tuple[float, dict[str, Any], float]] = []
        failures: list[tuple[float, str]] = []
        for device in group:
            behaviour, seconds = self.call.next_peer()
            if behaviour == "answer":
                answers.append((PEER_ANSWER_SECONDS, device,
                                PEER_TALK_SECONDS if seconds is None else seconds))
            elif behaviour == "noanswer":
                p = device.get("params")
                ring = p.get("timeout") if isinstance(p, dict) else None
                failures.append((_number(ring, PEER_RING_TIMEOUT), "noAnswer"))
            else:
                wait = PEER_BUSY_SECONDS if behaviour == "busy" else PEER_DECLINE_SECONDS
                failures.append((wait, _PEER_FAILURES[behaviour]))
        if answers:
            ring, device, talk = min(answers, key=lambda a: a[0])
            self._schedule(ring, lambda: self._connected(device, talk))
        else:
            wait, reason = max(failures)
            self._schedule(wait, lambda: self._group_failed(reason))

    def _group_failed(self, reason: str) -> None:
        self._group += 1
        if self._group < len(self.devices):
            self._dial()
        else:
            self._close()
            self._event("failed", failed_reason=reason)

    def _connected(self, device: dict[str, Any], talk: float) -> None:
        peer = {"call_id": str(uuid.uuid4()), "node_id": self.call.node_id, "device": device}
        if self.tag:
            peer["tag"] = self.tag
        self._event("connected", peer=peer)
        self._schedule(talk, self._peer_hangs_up)
        self.call.action_started("connect", talk)

    def _peer_hangs_up(self) -> None:
        self._close()
        self._event("disconnected")

    def stop(self) -> None:
        """``calling.disconnect``: a bridge ends ``disconnected``, dialling ends ``failed``."""
        self.terminate()

    def terminate(self) -> None:
        if self.done:
            return
        self._close()
        if self.state == "connected":
            self._event("disconnected")
        else:
            self._event("failed", failed_reason="cancel")


class CollectAction(_Action):
    """``calling.collect`` / ``calling.play_and_collect``: one ``calling.call.collect`` result.

    For play_and_collect the prompt plays first (``calling.call.play`` events with the
    same control_id, §4.5); the caller answers after it.
    """

    def __init__(self, call: SimCall, control_id: str, kind: str, cfg: dict[str, Any],
                 prompt_length: float | None) -> None:
        super().__init__(call, control_id)
        self.kind = kind
        digits = cfg.get("digits")
        speech = cfg.get("speech")
        self.digits_cfg = digits if isinstance(digits, dict) else None
        self.speech_cfg = speech if isinstance(speech, dict) else None
        self.initial_timeout = _number(cfg.get("initial_timeout"), COLLECT_INITIAL_TIMEOUT)
        self.timers_started = cfg.get("start_input_timers") is not False
        self.collected = ""
        self._prompt = (PlayAction(call, control_id, prompt_length, register=False,
                                   on_finished=self._listen)
                        if prompt_length is not None else None)
        self._listening = False
        self._waiting_for_input = False

    def start(self) -> None:
        """Start the prompt, or listen at once."""
        if self._prompt is not None:
            self._prompt.start()
        else:
            self._listen()

    def _listen(self) -> None:
        if self.done:
            return
        self._listening = True
        self.call.action_started("collect", None)
        if self.digits_cfg is not None and (keys := self.call.next_digits()) is not None:
            for i, key in enumerate(keys):
                self.call.after(CALLER_REACTION_SECONDS + i * CALLER_KEY_INTERVAL,
                                functools.partial(self._press, key))
            return
        if self.speech_cfg is not None and (phrase := self.call.next_phrase()) is not None:
            talk = max(TTS_MIN_SECONDS, TTS_SECONDS_PER_CHAR * len(phrase))
            silence = _number(self.speech_cfg.get("end_silence_timeout"),
                              COLLECT_END_SILENCE_TIMEOUT)
            if phrase == UNINTELLIGIBLE:
                # The caller mumbles: the recognizer heard speech it cannot match (§4.5).
                self._schedule(CALLER_REACTION_SECONDS + talk + silence,
                               lambda: self._finish("no_match"))
            else:
                self._schedule(CALLER_REACTION_SECONDS + talk + silence,
                               lambda: self._finish("speech", {"text": phrase,
                                                               "confidence": 0.95}))
            return
        self._waiting_for_input = True
        if self.timers_started:
            self._schedule(self.initial_timeout, lambda: self._finish("no_input"))

    def start_input_timers(self) -> None:
        if self.timers_started or self.done:
            return
        self.timers_started = True
        if self._waiting_for_input:
            self._schedule(self.initial_timeout, lambda: self._finish("no_input"))

    def _press(self, key: str) -> None:
        if self.done:
            return
        cfg = self.digits_cfg or {}
        terminators = cfg.get("terminators")
        if isinstance(terminators, str) and key in terminators:
            self._finish("digit", {"digits": self.collected, "terminator": key})
            return
        self.collected += key
        max_digits = cfg.get("max")
        if isinstance(max_digits, bool) or not isinstance(max_digits, int) or max_digits < 1:
            max_digits = COLLECT_MAX_DIGITS
        if len(self.collected) >= max_digits:
            self._finish("digit", {"digits": self.collected, "terminator": ""})
            return
        self._schedule(_number(cfg.get("digit_timeout"), COLLECT_DIGIT_TIMEOUT),
                       lambda: self._finish("digit", {"digits": self.collected,
                                                      "terminator": ""}))

    def _finish(self, result_type: str, result_params: dict[str, Any] | None = None) -> None:
        if self.done:
            return
        self._close()
        result: dict[str, Any] = {"type": result_type}
        if result_params is not None:
            result["params"] = result_params
        state = "finished" if result_type in ("digit", "speech") else result_type
        self.call.emit("calling.call.collect",
                       {**self._ids(), "final": True, "state": state, "result": result})

    def stop(self) -> None:
        if self._prompt is not None and not self._prompt.done:
            self._prompt.terminate()
        if self.collected:
            self._finish("digit", {"digits": self.collected, "terminator": ""})
        else:
            self._finish("no_input")

    def terminate(self) -> None:
        # The call is ending: the prompt is over and nothing more can be collected.
        if self._prompt is not None and not self._prompt.done:
            self._prompt.terminate()
        self._finish("error")
