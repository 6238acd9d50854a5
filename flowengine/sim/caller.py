"""Scripted callers: what the person on the other end of a simulated call does.

A script is a comma-separated list of clauses (the grammar is documented in
``docs/simulator.md``)::

    speak:3              speaks 3 s into each recording, then presses #
    speak:3:quiet        speaks 3 s, then goes quiet (end_silence_timeout ends the recording)
    speak:3:*            speaks 3 s, then presses * (a terminator ends the recording at once)
    silent               says nothing (recordings end no_input, collects no_input)
    hangup:20            hangs up 20 s after the call is answered
    hangup@play          hangs up halfway through the first play
    hangup@record:2      hangs up 2 s into the first recording
    hangup@play2         hangs up halfway through the second play
    hangup@ring:2        hangs up 2 s after the call is offered, unless it was answered by then
    hangup@collect:1     hangs up 1 s into the first collect
    digits:12#/3         presses 1 2 # in the first collect, 3 in the second
    say:sales/billing    says "sales" in the first speech collect, "billing" in the second
    say:?/sales          mumbles in the first (the recognizer answers no_match), then "sales"
    digits:-/1           gives nothing in the first collect (no_input), presses 1 in the second
    machine:6            an answering machine takes the call: a detect hears MACHINE, and
                         its greeting ends (the beep) after 6 s
    fax                  a fax machine calls: a fax detect for CNG hears it
    sms:undelivered      text messages to the caller's number end undelivered (also:
                         delivered, failed, sent: delivery is never confirmed)
    peer:busy/answer:20  the first device a connect dials is busy; the next answers and
                         talks 20 s, then hangs up (also: noanswer, decline)
    hangup@connect:5     hangs up 5 s after a connect bridged the call
    hangup@hold:10       hangs up 10 s after the call was put on hold (calling.hold)
    hangup@queue:30      hangs up 30 s after the call entered a queue (calling.queue.enter)

Callee scripts (what the number a ``calling.dial`` rings does) use the same grammar, plus
how the callee picks up; these clauses mean nothing to an inbound caller::

    answer               answers after ringing 3 s (the default)
    answer:8             answers after ringing 8 s (no_answer if the device's ring timeout
                         is shorter)
    busy                 the line is busy (ends ``busy`` after 1 s, without ringing)
    noanswer             rings until the device's ring timeout (ends ``noAnswer``)
    decline              rings 2 s, then rejects the call (ends ``decline``)
    fail                 the call cannot be placed (ends ``error`` after 0.5 s)
    machine:6            (as above) an answering machine answers after ringing

Parsing is pure; the simulator core decides when each part happens.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

#: Seconds of speech in each recording when the script does not say.
DEFAULT_SPEAK = 3.0
#: How far into a record or collect ``hangup@record`` / ``hangup@collect`` hangs up
#: when no offset is given (a play defaults to halfway through instead).
DEFAULT_HANGUP_OFFSET = 1.0

_DTMF = "0123456789*#ABCD"
#: A ``digits:`` group or ``say:`` phrase that gives nothing: that collect hears no input.
SKIP = "-"
_NUMBER = r"(\d+(?:\.\d+)?|\.\d+)"
_HANGUP_KINDS = ("ring", "play", "record", "collect", "connect", "detect", "hold", "queue")
#: Seconds an answering machine's greeting lasts when ``machine`` does not say.
DEFAULT_GREETING = 4.0
#: Seconds a callee rings before it answers when ``answer`` does not say.
DEFAULT_RING = 3.0
#: What the far end of a connect does, device after device (``peer:``).
PEER_BEHAVIOURS = ("answer", "busy", "noanswer", "decline")
#: How a callee (a number rung by ``calling.dial``) picks up: ``answer[:RING]``, or one
#: of the others.
PICKUPS = ("answer", "busy", "noanswer", "decline", "fail")

_SPEAK_RE = re.compile(rf"speak:{_NUMBER}(?::(quiet|[{re.escape(_DTMF)}]))?")
_HANGUP_AFTER_RE = re.compile(rf"hangup:{_NUMBER}")
_HANGUP_DURING_RE = re.compile(
    rf"hangup@({'|'.join(_HANGUP_KINDS)})([1-9]\d*)?(?::{_NUMBER})?")
_KEYS = rf"(?:[{re.escape(_DTMF)}]+|{SKIP})"
_DIGITS_RE = re.compile(rf"digits:({_KEYS}(?:/{_KEYS})*)")
_SAY_RE = re.compile(r"say:(.+)")
_ANSWER_RE = re.compile(rf"answer(?::{_NUMBER})?")
_MACHINE_RE = re.compile(rf"machine(?::{_NUMBER})?")
#: How text messages to the caller's number end (``sms:``).
SMS_ENDINGS = ("delivered", "undelivered", "failed", "sent")
_PEER_RE = re.compile(rf"peer:((?:{'|'.join(PEER_BEHAVIOURS)})(?::{_NUMBER})?"
                      rf"(?:/(?:{'|'.join(PEER_BEHAVIOURS)})(?::{_NUMBER})?)*)")

GRAMMAR = (
    "speak:N[:quiet|:KEY] | silent | hangup:N | hangup@ring[:N] | "
    "hangup@play|record|collect|connect|detect|hold|queue[ORDINAL][:N] | machine[:N] | fax | "
    "sms:delivered|undelivered|failed|sent | "
    "digits:KEYS|-[/KEYS|-…] | say:TEXT|-[/TEXT|-…] | "
    "peer:answer[:N]|busy|noanswer|decline[/…] | "
    "(callee only) answer[:RING]|busy|noanswer|decline|fail, joined with commas"
)


class CallerScriptError(ValueError):
    """Raised when a caller script does not follow the grammar; the message names the clause."""


@dataclass(frozen=True, slots=True)
class CallerScript:
    """What a simulated caller does. Build one directly or with :meth:`parse`.

    Durations are simulated seconds (the simulator multiplies them by its ``time_scale``).
    """

    #: Seconds spoken into each recording; ``None`` = silent; ``math.inf`` = talks until
    #: hanging up (the default when the script hangs up during a recording and says
    #: nothing about speaking).
    speak: float | None = DEFAULT_SPEAK
    #: DTMF key pressed after speaking ("" = goes quiet instead).
    after_speech: str = "#"
    #: Hang up this many seconds after the call is answered.
    hangup_after: float | None = None
    #: Hang up during the first action of this kind: "play", "record" or "collect"; or
    #: "ring": while the call is offered and not answered yet.
    hangup_during: str | None = None
    #: Seconds into that action; ``None`` = halfway through a play, 1 s into the others.
    hangup_offset: float | None = None
    #: Which action of that kind: 1 = the first (``hangup@play``), 2 = the second
    #: (``hangup@play2``), …
    hangup_ordinal: int = 1
    #: DTMF groups, one consumed by each collect that accepts digits.
    digits: tuple[str, ...] = ()
    #: Phrases, one consumed by each collect that accepts speech.
    say: tuple[str, ...] = ()
    #: What the far end of a connect does, one entry per device dialled, in order:
    #: (behaviour, seconds): ``("answer", 20)`` answers and talks 20 s (None: the default
    #: length), ``("busy", None)``, ``("noanswer", None)``, ``("decline", None)``.
    peers: tuple[tuple[str, float | None], ...] = ()
    #: Who is calling, for detectors: ``human``, ``machine`` (an answering machine) or
    #: ``fax``.
    answered_by: str = "human"
    #: Seconds an answering machine's greeting lasts (``machine:N``).
    greeting: float = DEFAULT_GREETING
    #: How text messages to the caller's number end (``sms:``).
    sms: str = "delivered"
    #: Callee scripts only: how the number a ``calling.dial`` rings picks up: ``answer``
    #: (after ``ring`` seconds), ``busy``, ``noanswer``, ``decline`` or ``fail``.
    pickup: str = "answer"
    #: Callee scripts only: seconds it rings before answering (``answer:N``); ``None``:
    #: the default (``DEFAULT_RING``).
    ring: float | None = None
    #: The text this script was parsed from ("" when built directly).
    source: str = field(default="", compare=False)

    @classmethod
    def parse(cls, text: str | None) -> CallerScript:
        """Parse a script such as ``"speak:3,hangup:20"``.

        Raises:
            CallerScriptError: a clause does not match the grammar; nothing is guessed.
        """
        text = (text or "").strip()
        speak: float | None = DEFAULT_SPEAK
        after = "#"
        speak_given = False
        hangup_after: float | None = None
        hangup_during: str | None = None
        hangup_offset: float | None = None
        hangup_ordinal = 1
        digits: list[str] = []
        say: list[str] = []
        peers: list[tuple[str, float | None]] = []
        answered_by, greeting = "human", DEFAULT_GREETING
        sms = "delivered"
        pickup: str | None = None
        ring: float | None = None
        for raw in text.split(",") if text else ():
            clause = raw.strip()
            if not clause:
                raise CallerScriptError(
                    f"empty clause in caller script {text!r}; grammar: {GRAMMAR}")
            if clause == "silent":
                speak, after, speak_given = None, "", True
            elif m := _SPEAK_RE.fullmatch(clause):
                speak, speak_given = float(m[1]), True
                after = "" if m[2] == "quiet" else (m[2] or "#")
            elif m := _HANGUP_AFTER_RE.fullmatch(clause):
                hangup_after = float(m[1])
            elif m := _HANGUP_DURING_RE.fullmatch(clause):
                hangup_during = m[1]
                hangup_ordinal = int(m[2]) if m[2] is not None else 1
                hangup_offset = float(m[3]) if m[3] is not None else None
            elif m := _DIGITS_RE.fullmatch(clause):
                digits.extend(m[1].split("/"))
            elif clause.startswith("digits:"):
                raise CallerScriptError(f"bad digit group in {clause!r} (keys 0-9 * # A-D, or "
                                        f"{SKIP} for none); grammar: {GRAMMAR}")
            elif m := _MACHINE_RE.fullmatch(clause):
                answered_by = "machine"
                greeting = float(m[1]) if m[1] is not None else DEFAULT_GREETING
            elif m := _ANSWER_RE.fullmatch(clause):
                pickup = _one_pickup(pickup, "answer", clause, text)
                ring = float(m[1]) if m[1] is not None else None
            elif clause in PICKUPS:
                pickup = _one_pickup(pickup, clause, clause, text)
            elif clause == "fax":
                answered_by = "fax"
            elif clause.startswith("sms:"):
                sms = clause[4:]
                if sms not in SMS_ENDINGS:
                    raise CallerScriptError(f"unknown sms ending in {clause!r} (one of "
                                            f"{', '.join(SMS_ENDINGS)}); grammar: {GRAMMAR}")
            elif m := _PEER_RE.fullmatch(clause):
                for part in m[1].split("/"):
                    kind, _, seconds = part.partition(":")
                    if seconds and kind != "answer":
                        raise CallerScriptError(f"only answer takes a length, in {clause!r}; "
                                                f"grammar: {GRAMMAR}")
                    peers.append((kind, float(seconds) if seconds else None))
            elif clause.startswith("peer:"):
                raise CallerScriptError(f"unknown peer behaviour in {clause!r} (one of "
                                        f"{', '.join(PEER_BEHAVIOURS)}); grammar: {GRAMMAR}")
            elif m := _SAY_RE.fullmatch(clause):
                phrases = [p.strip() for p in m[1].split("/")]
                if any(not p for p in phrases):
                    raise CallerScriptError(f"empty phrase in {clause!r}; grammar: {GRAMMAR}")
                say.extend(phrases)
            else:
                raise CallerScriptError(
                    f"unknown caller clause {clause!r} in {text!r}; grammar: {GRAMMAR}")
        if hangup_during == "record" and not speak_given:
            # "hangup@record:2" reads as "talks, and hangs up 2 s in": a caller who stopped
            # talking first would end the recording before the hang-up it asks for.
            speak, after = math.inf, ""
        return cls(speak=speak, after_speech=after, hangup_after=hangup_after,
                   hangup_during=hangup_during, hangup_offset=hangup_offset,
                   hangup_ordinal=hangup_ordinal,
                   digits=tuple(digits), say=tuple(say), peers=tuple(peers),
                   answered_by=answered_by, greeting=greeting, sms=sms,
                   pickup=pickup or "answer", ring=ring, source=text)

    @classmethod
    def coerce(cls, value: str | CallerScript | None) -> CallerScript:
        """A script from a string, an existing script, or ``None`` (the default caller)."""
        if isinstance(value, CallerScript):
            return value
        return cls.parse(value)

    def __str__(self) -> str:
        if self.source:
            return self.source
        parts: list[str] = []
        if self.speak is None:
            parts.append("silent")
        elif math.isfinite(self.speak):
            tail = ":quiet" if not self.after_speech else (
                "" if self.after_speech == "#" else f":{self.after_speech}")
            parts.append(f"speak:{self.speak:g}{tail}")
        if self.hangup_after is not None:
            parts.append(f"hangup:{self.hangup_after:g}")
        if self.hangup_during:
            offset = "" if self.hangup_offset is None else f":{self.hangup_offset:g}"
            ordinal = "" if self.hangup_ordinal == 1 else str(self.hangup_ordinal)
            parts.append(f"hangup@{self.hangup_during}{ordinal}{offset}")
        if self.digits:
            parts.append("digits:" + "/".join(self.digits))
        if self.say:
            parts.append("say:" + "/".join(self.say))
        if self.answered_by == "machine":
            parts.append(f"machine:{self.greeting:g}")
        elif self.answered_by == "fax":
            parts.append("fax")
        if self.sms != "delivered":
            parts.append(f"sms:{self.sms}")
        if self.peers:
            parts.append("peer:" + "/".join(
                kind if seconds is None else f"{kind}:{seconds:g}" for kind, seconds in self.peers))
        if self.pickup != "answer":
            parts.append(self.pickup)
        elif self.ring is not None:
            parts.append(f"answer:{self.ring:g}")
        return ",".join(parts)


def _one_pickup(previous: str | None, pickup: str, clause: str, text: str) -> str:
    """A callee picks up one way: a second pickup clause is an error, not a guess."""
    if previous is not None:
        raise CallerScriptError(f"{clause!r} contradicts {previous!r} in {text!r}: a callee "
                                f"picks up one way ({', '.join(PICKUPS)})")
    return pickup
