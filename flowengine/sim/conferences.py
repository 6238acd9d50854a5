"""Conferences across simulated calls (``calling.join_conference``, §5.11, §10).

A conference is created by its first participant and lives until it ends: when a
participant with ``end_on_exit`` leaves (everyone else is taken out, reason ``ended``), or
when the last one leaves. It *starts* (audio is mixed) once a participant with
``start_on_enter`` (the default) is in; until then everyone hears the wait media and no
one. Who hears whom, once started:

- a muted participant is heard by nobody;
- a coach (``coach: <call_id>``) is heard only by the participant it coaches;
- everyone else is heard by every other participant;
- a participant alone, or in a conference not started yet, hears the wait media
  (``wait_url``, or the simulator's hold music).

Every change (join, leave, start, end) appends a snapshot of that to the conference's
:attr:`SimConference.trace`, which tests assert on; ``SimCore.conferences`` keeps the
conferences by name (live) and the ended ones (``ended``).

Events (§4.10): each participant's own ``calling.conference`` (``participant-join`` /
``participant-leave`` with its ``call_id`` and, on leave, ``reason``) goes to the session
that owns the call; the conference's (``conference-start`` / ``conference-end``, no
``call_id``) goes once to each session with a participant in it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from flowengine.sim.calls import CommandError, Reply, SimCall, SimRecording, _Action

if TYPE_CHECKING:
    from flowengine.sim.core import Session

#: What a participant hears while it waits, when its join gave no ``wait_url``.
HOLD_MUSIC = "hold-music"
#: ``beep`` values RELAY takes (as text), and when each beeps.
BEEPS = {"true": ("enter", "exit"), "false": (), "onEnter": ("enter",), "onExit": ("exit",)}
RECORD_VALUES = ("record-from-start", "do-not-record")
#: The default (and largest) ``max_participants``.
MAX_PARTICIPANTS = 100_000
#: What ``calling.conference`` statuses a participant's events carry.
JOIN, LEAVE = "participant-join", "participant-leave"
START, END = "conference-start", "conference-end"


class ConferenceHost(Protocol):
    """What conferences need from the simulator core."""

    time_scale: float

    @property
    def now(self) -> float: ...
    def send_session_event(self, session: Session, event_type: str,
                           params: dict[str, Any]) -> None: ...
    def new_recording(self, call: SimCall, control_id: str, fmt: str) -> SimRecording: ...
    def recording_finished(self, recording: SimRecording) -> None: ...


@dataclass(eq=False, slots=True)
class Participant:
    """One call in a conference, as it joined."""

    call: SimCall
    muted: bool = False
    coach: str | None = None
    start_on_enter: bool = True
    end_on_exit: bool = False
    beep: str = "true"
    wait_url: str | None = None
    #: Simulated seconds since the conference was created.
    joined_at: float = 0.0


class _Membership(_Action):
    """The call's stay in a conference, kept with its actions: when the call ends, the
    participant leaves (reason ``hangup``) before the call's ``ended`` (§3)."""

    kind = "conference"

    def __init__(self, call: SimCall, conference: SimConference) -> None:
        super().__init__(call, f"conference:{conference.conference_id}")
        self.conference = conference

    def terminate(self) -> None:
        if not self.done:
            self.conference.remove(self.call.call_id, "hangup")


@dataclass(eq=False)
class SimConference:
    """One conference: its participants, what each hears, and its trace."""

    host: ConferenceHost
    name: str
    max_participants: int = MAX_PARTICIPANTS
    record: bool = False
    conference_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    #: call_id → Participant, in the order they joined.
    participants: dict[str, Participant] = field(default_factory=dict)
    started: bool = False
    ended: bool = False
    recording: SimRecording | None = None
    #: One entry per change: ``{"at", "event", "call_id", "hears", "wait_media", "beep",
    #: "participants"}`` (see :meth:`snapshot`).
    trace: list[dict[str, Any]] = field(default_factory=list)
    #: Every conference-level event's params, in order.
    events: list[dict[str, Any]] = field(default_factory=list)
    #: Called once it has ended (the registry forgets it).
    on_end: Callable[[SimConference], None] | None = None
    _created: float = 0.0
    _memberships: dict[str, _Membership] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._created = self.host.now

    # -- what tests read ----------------------------------------------------------------

    def elapsed(self) -> float:
        """Simulated seconds since the conference was created."""
        return (self.host.now - self._created) / self.host.time_scale

    def hears(self) -> dict[str, list[str]]:
        """call_id → the call_ids it hears now (join order)."""
        out: dict[str, list[str]] = {}
        for listener in self.participants:
            out[listener] = [cid for cid, p in self.participants.items()
                             if self._heard(p, listener)] if self.started else []
        return out

    def wait_media(self) -> dict[str, str]:
        """call_id → what it hears instead of the others: its ``wait_url`` (or
        :data:`HOLD_MUSIC`), for a participant alone or in a conference not started."""
        alone = len(self.participants) == 1
        return {cid: p.wait_url or HOLD_MUSIC for cid, p in self.participants.items()
                if not self.started or alone}

    def snapshot(self, event: str, call_id: str | None, beep: bool = False) -> dict[str, Any]:
        """One trace entry: what changed and, after it, who hears whom."""
        return {"at": round(self.elapsed(), 6), "event": event, "call_id": call_id,
                "participants": list(self.participants), "hears": self.hears(),
                "wait_media": self.wait_media(), "beep": beep}

    @staticmethod
    def _heard(speaker: Participant, listener: str) -> bool:
        if speaker.call.call_id == listener or speaker.muted:
            return False
        return speaker.coach is None or speaker.coach == listener

    # -- changes ------------------------------------------------------------------------

    def _common(self) -> dict[str, Any]:
        params: dict[str, Any] = {"conference_id": self.conference_id, "name": self.name,
                                  "participants": len(self.participants)}
        if self.recording is not None:
            params["recording_url"] = self.recording.url
        return params

    def _participant_event(self, call: SimCall, status: str, **extra: Any) -> None:
        call.emit("calling.conference", {**self._common(), "call_id": call.call_id,
                                         "node_id": call.node_id, "status": status, **extra})

    def _conference_event(self, status: str, calls: list[SimCall]) -> None:
        params = {**self._common(), "status": status}
        self.events.append(params)
        sessions: list[Session] = []
        for call in calls:
            session = call._session
            if session is not None and session not in sessions and not call.ended:
                sessions.append(session)
        for session in sessions:
            self.host.send_session_event(session, "calling.conference", dict(params))

    def add(self, participant: Participant) -> None:
        """A participant comes in (the join was accepted and there is room)."""
        call = participant.call
        participant.joined_at = self.elapsed()
        self.participants[call.call_id] = participant
        self._memberships[call.call_id] = _Membership(call, self)
        extra: dict[str, Any] = {"muted": participant.muted}
        if participant.coach is not None:
            extra["coach"] = participant.coach
        self._participant_event(call, JOIN, **extra)
        beep = "enter" in BEEPS.get(participant.beep, ()) and len(self.participants) > 1
        self.trace.append(self.snapshot("join", call.call_id, beep))
        if self.record and self.recording is None and (self.started
                                                       or participant.start_on_enter):
            self.recording = self.host.new_recording(call, self.conference_id, "mp3")
        if not self.started and participant.start_on_enter:
            self.started = True
            self.trace.append(self.snapshot("start", None))
            self._conference_event(START, [p.call for p in self.participants.values()])
        call.action_started("conference", None)

    def remove(self, call_id: str, reason: str) -> None:
        """A participant leaves: ``left`` (leave_conference), ``hangup`` (its call ended),
        ``kicked``. A moderator's leaving (end_on_exit) or the last one's ends it."""
        participant = self.participants.pop(call_id, None)
        if participant is None:
            return
        membership = self._memberships.pop(call_id, None)
        if membership is not None:
            membership._close()
        self._participant_event(participant.call, LEAVE, reason=reason,
                                time_in=round(self.elapsed() - participant.joined_at, 6))
        beep = "exit" in BEEPS.get(participant.beep, ()) and bool(self.participants)
        self.trace.append(self.snapshot("leave", call_id, beep))
        if participant.end_on_exit or not self.participants:
            self.end(participant.call)

    def end(self, last: SimCall | None = None) -> None:
        """End it for all: everyone left is taken out (``ended``), then ``conference-end``
        (to their sessions and that of ``last``, the participant whose leaving ended it)."""
        if self.ended:
            return
        self.ended = True
        remaining = [p.call for p in self.participants.values()]
        for call in remaining:
            participant = self.participants.pop(call.call_id)
            membership = self._memberships.pop(call.call_id, None)
            if membership is not None:
                membership._close()
            self._participant_event(call, LEAVE, reason="ended",
                                    time_in=round(self.elapsed() - participant.joined_at, 6))
        if self.recording is not None:
            self.recording.duration = self.elapsed()
            self.recording.finished = True
            self.host.recording_finished(self.recording)
        self.trace.append(self.snapshot("end", None))
        self._conference_event(END, [*remaining, *([last] if last is not None else [])])
        if self.on_end is not None:
            self.on_end(self)


class Conferences:
    """The simulator's conferences by name (``SimCore.conferences``)."""

    def __init__(self, host: ConferenceHost) -> None:
        self._host = host
        #: name → the live conference of that name.
        self.live: dict[str, SimConference] = {}
        #: Every conference that has ended, oldest first (for tests).
        self.ended: list[SimConference] = []
        #: The conferences by id, live or ended.
        self.by_id: dict[str, SimConference] = {}

    def __getitem__(self, name: str) -> SimConference:
        """The live conference ``name``, else the latest ended one of that name."""
        if name in self.live:
            return self.live[name]
        for conf in reversed(self.ended):
            if conf.name == name:
                return conf
        raise KeyError(name)

    def _ended(self, conf: SimConference) -> None:
        if self.live.get(conf.name) is conf:
            del self.live[conf.name]
        self.ended.append(conf)
        if len(self.ended) > 1000:
            gone = self.ended.pop(0)
            self.by_id.pop(gone.conference_id, None)

    def join(self, call: SimCall, params: dict[str, Any], reply: Reply) -> None:
        """``calling.join_conference``: 200 with the ``conference_id``, then the
        participant's ``participant-join`` (and ``conference-start`` when it starts it);
        or, when the conference is full, ``participant-leave`` reason ``full``. 400 for a
        bad parameter, 409 for a call not answered or already in a conference."""
        if call.state != "answered":
            raise CommandError("409", "The call is not answered")
        name = params.get("name")
        if not isinstance(name, str) or not name.strip():
            raise CommandError("400", "name is required")
        beep = params.get("beep", "true")
        if isinstance(beep, bool):
            beep = "true" if beep else "false"
        if beep not in BEEPS:
            raise CommandError("400", "beep must be true, false, onEnter or onExit")
        record = params.get("record", "do-not-record")
        if record not in RECORD_VALUES:
            raise CommandError("400", "record must be record-from-start or do-not-record")
        limit = params.get("max_participants")
        if limit is not None and (type(limit) is not int or not 2 <= limit <= MAX_PARTICIPANTS):
            raise CommandError("400", f"max_participants must be 2 to {MAX_PARTICIPANTS}")
        flags = {}
        for key in ("muted", "start_on_enter", "end_on_exit"):
            value = params.get(key)
            if value is not None and not isinstance(value, bool):
                raise CommandError("400", f"{key} must be true or false")
            flags[key] = value
        coach = params.get("coach")
        if coach is not None and (not isinstance(coach, str) or not coach):
            raise CommandError("400", "coach must be the call_id of a participant")
        wait_url = params.get("wait_url")
        if wait_url is not None and not isinstance(wait_url, str):
            raise CommandError("400", "wait_url must be a URL")
        if any(isinstance(a, _Membership) for a in call._actions.values()):
            raise CommandError("409", "The call is already in a conference")
        conf = self.live.get(name)
        if conf is None:
            conf = SimConference(self._host, name, limit or MAX_PARTICIPANTS,
                                 record == "record-from-start", on_end=self._ended)
            self.live[name] = conf
            self.by_id[conf.conference_id] = conf
        elif limit is not None and conf.max_participants == MAX_PARTICIPANTS:
            conf.max_participants = limit  # the first to give one sets it
        if record == "record-from-start":
            # Any participant may ask: the recording runs from the conference's start.
            conf.record = True
        reply({"code": "200", "message": "Joining conference", "call_id": call.call_id,
               "conference_id": conf.conference_id})
        if len(conf.participants) >= conf.max_participants:
            conf._participant_event(call, LEAVE, reason="full")
            conf.trace.append(conf.snapshot("full", call.call_id))
            return
        conf.add(Participant(
            call, muted=bool(flags["muted"]), coach=coach,
            start_on_enter=flags["start_on_enter"] is not False,
            end_on_exit=flags["end_on_exit"] is True, beep=beep, wait_url=wait_url))

    def leave(self, call: SimCall, params: dict[str, Any], reply: Reply) -> None:
        """``calling.leave_conference``: 200, then ``participant-leave`` reason ``left``.
        409 for a conference the call is not in."""
        cid = params.get("conference_id")
        conf = self.by_id.get(cid) if isinstance(cid, str) else None
        if conf is None or call.call_id not in conf.participants:
            raise CommandError("409", "The call is not in that conference")
        reply({"code": "200", "message": "Leaving conference", "call_id": call.call_id})
        conf.remove(call.call_id, "left")
