"""The simulator's RELAY server logic, without I/O (the websockets/h11 habit).

:class:`SimCore` is fed what happens on the wire — :meth:`SimCore.connection_made`,
:meth:`SimCore.receive_frame`, :meth:`SimCore.connection_lost` — and the passing of time
(:meth:`SimCore.run_due`). Its output is the frames queued on each :class:`Connection`'s
``outbox``; the driver (:mod:`flowengine.sim.server`) writes them to the socket. Nothing
here awaits, opens a socket or reads a clock other than the one it was given, so the whole
protocol can be tested with plain lists of frames.

Section numbers (``§n``) refer to docs/relay-protocol.md, the wire protocol as flowengine
speaks it.
"""

from __future__ import annotations

import functools
import hmac
import itertools
import json
import logging
import random
import re
import secrets
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

import orjson

from flowengine.sim.caller import CallerScript
from flowengine.sim.calls import CommandError, SimCall, SimRecording
from flowengine.sim.dial import SimDial, check_devices
from flowengine.sim.latency import LatencyRecorder
from flowengine.sim.noise import junk_frame
from flowengine.sim.queues import SimQueues
from flowengine.sim.timers import Timer, TimerHeap

logger = logging.getLogger("flowengine.sim")

# JSON-RPC error codes (§1, §2.2).
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
NOT_CONNECTED = -32000
AUTH_FAILED = -32002

#: How many ended calls are remembered, so that late commands get "410" instead of "404".
GONE_CALLS_KEPT = 10_000
#: How many finished recordings stay downloadable (oldest forgotten first).
RECORDINGS_KEPT = 100_000
#: How many dials are kept for tests to look at (``SimCore.dials``; oldest first out).
DIALS_KEPT = 10_000

# Call verbs → SimCall method name; controls → (action kinds, verb).
_CALL_VERBS = {
    "calling.answer": "answer",
    "calling.end": "hangup",
    "calling.play": "play",
    "calling.record": "record",
    "calling.collect": "collect",
    "calling.play_and_collect": "play_and_collect",
    "calling.send_digits": "send_digits",
    "calling.connect": "connect",
    "calling.disconnect": "disconnect",
    "calling.detect": "detect",
    "calling.hold": "hold",
    "calling.unhold": "unhold",
    "calling.queue.enter": "queue_enter",
    "calling.queue.leave": "queue_leave",
}
_CONTROLS: dict[str, tuple[tuple[str, ...], str]] = {
    "calling.play.stop": (("play",), "stop"),
    "calling.play.pause": (("play",), "pause"),
    "calling.play.resume": (("play",), "resume"),
    "calling.play.volume": (("play",), "volume"),
    "calling.record.stop": (("record",), "stop"),
    "calling.record.pause": (("record",), "pause"),
    "calling.record.resume": (("record",), "resume"),
    "calling.collect.stop": (("collect",), "stop"),
    "calling.collect.start_input_timers": (("collect", "play_and_collect"), "start_input_timers"),
    "calling.play_and_collect.stop": (("play_and_collect",), "stop"),
    "calling.play_and_collect.volume": (("play_and_collect",), "volume"),
    "calling.detect.stop": (("detect",), "stop"),
}
#: Every method the simulator answers (anything else gets -32601).
METHODS = frozenset({"signalwire.connect", "signalwire.ping", "signalwire.receive",
                     "signalwire.unreceive", "calling.pass", "calling.dial", "messaging.send",
                     *_CALL_VERBS, *_CONTROLS})
#: messaging.state progress of a delivered message: (state, simulated seconds after the
#: reply); an undelivered or failed one ends after "sent" / "queued" instead (§5.8).
MESSAGE_STEPS = (("queued", 0.1), ("initiated", 0.2), ("sent", 0.5), ("delivered", 1.0))
_MESSAGE_REASONS = {"undelivered": "the handset did not accept the message",
                    "failed": "the carrier rejected the message"}
_E164 = re.compile(r"^\+[1-9]\d{5,14}$")


def _noop() -> None:
    return None


def _dumps(frame: dict[str, Any]) -> str:
    """Compact JSON text of a frame (orjson: several times faster than json here).

    What orjson refuses goes to json: a client's request id, echoed in the reply, may hold
    a lone surrogate (``"\\ud800"``) or an integer beyond 64 bits, which json writes."""
    try:
        return orjson.dumps(frame).decode()
    except TypeError:
        return json.dumps(frame, separators=(",", ":"))


def _loads(data: str | bytes) -> Any:
    """Parse a client frame; what orjson refuses goes to json, which decides as before
    (it accepts NaN literals, for one)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


class Connection:
    """One client socket as the core sees it.

    ``outbox`` holds ``(frame, is_event)`` pairs for the driver to send, in order; the
    driver sets ``wake`` to learn that something was queued. ``close_requested`` asks the
    driver to close the socket once the outbox is sent. With latency recording on, a call
    event's ``is_event`` is its call id (a true value), for the driver to report its write
    (:class:`~flowengine.sim.latency.LatencyRecorder`).
    """

    __slots__ = ("abort_requested", "acks", "close_requested", "closed", "id", "lose_reply_to",
                 "outbox", "peer", "pending", "session", "unacked", "wake")

    def __init__(self, conn_id: int, peer: str = "") -> None:
        self.id = conn_id
        self.peer = peer
        self.session: Session | None = None
        self.outbox: deque[tuple[str, bool | str]] = deque()
        self.wake: Callable[[], None] = _noop
        self.close_requested = False
        #: Asks the driver to abort the socket (no close frame, nothing more sent).
        self.abort_requested = False
        #: The id of a request whose reply is not sent (lose_next_reply): the socket is
        #: aborted instead, so the reply is lost with it.
        self.lose_reply_to: Any = None
        self.closed = False
        #: Our own requests (pings, disconnects) waiting for the client's reply.
        self.pending: dict[str, Callable[[bool], None] | None] = {}
        #: True when the client's connect asked to ACK events (``event_acks``, §3).
        self.acks = False
        #: With ``acks``: event id → frame, for the events sent and not ACKed yet, in order.
        #: If the socket goes, they are sent again on the session's resume.
        self.unacked: dict[str, str] = {}

    def __repr__(self) -> str:
        protocol = self.session.protocol if self.session is not None else None
        return f"<Connection {self.id} {self.peer} session={protocol}>"

    def push(self, frame: str, is_event: bool | str) -> None:
        """Queue a frame for the socket."""
        self.outbox.append((frame, is_event))
        self.wake()

    def take_frames(self) -> list[str]:
        """Remove and return every queued frame (the driver, and tests without a socket)."""
        frames = [frame for frame, _ in self.outbox]
        self.outbox.clear()
        return frames


class Session:
    """A RELAY session: what a ``protocol`` names, outliving any one socket (§2.1)."""

    __slots__ = ("authorization_state", "backlog", "calls", "conn", "contexts", "expiry",
                 "protocol", "session_id", "signature")

    def __init__(self, protocol: str, session_id: str) -> None:
        self.protocol = protocol
        self.session_id = session_id
        self.authorization_state = ""
        self.signature = secrets.token_hex(16)
        self.contexts: list[str] = []
        self.conn: Connection | None = None
        #: Events to deliver on resume, as (id, frame): those never ACKed on the socket that
        #: went, then those that happened while no socket was attached.
        self.backlog: deque[tuple[str, str]] = deque()
        self.calls: dict[str, SimCall] = {}
        self.expiry: Timer | None = None

    def __repr__(self) -> str:
        connected = self.conn is not None
        return f"<Session {self.protocol} contexts={self.contexts} connected={connected}>"


def _contexts(params: dict[str, Any]) -> list[str] | None:
    """``contexts`` (a list) or a single ``context`` (§2.4); None when neither is valid."""
    value = params.get("contexts")
    if value is None and isinstance(params.get("context"), str):
        value = [params["context"]]
    if not isinstance(value, list) or not all(isinstance(c, str) and c for c in value):
        return None
    return list(dict.fromkeys(value))


class SimCore:
    """Sessions, calls and the answers to every request; see the module docstring.

    Args:
        project, token: the accepted credentials (``jwt_token`` is accepted when it equals
            ``token``).
        time_scale: simulated seconds → real seconds (0.001 makes a 30 s call take 30 ms).
        http_url: where recordings are served (``http://host:port``, no trailing slash).
        resume_window: real seconds a session without a socket keeps its calls.
        clock: a monotonic clock in seconds (tests inject a fake one).
        wallclock: epoch seconds for event timestamps.
        record_latency: measure the time from each call event to the client's next command
            for that call (:attr:`latency`; off by default).
    """

    def __init__(self, *, project: str = "sim-project", token: str = "sim-token",
                 time_scale: float = 1.0, http_url: str = "http://127.0.0.1",
                 resume_window: float = 30.0, clock: Callable[[], float] = time.monotonic,
                 wallclock: Callable[[], float] = time.time,
                 record_latency: bool = False) -> None:
        if not time_scale > 0:
            raise ValueError("time_scale must be a positive number")
        self.project = project
        self._token = token
        #: Accept whatever credentials a client presents (``flowengine simulator`` without
        #: ``--project``/``--token``): a local test server a user points a client at
        #: should not need a secret. Off by default, so tests see SignalWire's refusals.
        self.accept_any_credentials = False
        self.time_scale = float(time_scale)
        self.http_url = http_url
        self.resume_window = resume_window
        self.timers = TimerHeap()
        self._clock = clock
        self._wallclock = wallclock
        self._now = clock()
        self.node_id = f"sim-node-{uuid.uuid4().hex[:12]}"
        self.space_id = str(uuid.uuid4())
        self._master_node_id = f"sim-master-{uuid.uuid4().hex[:12]}"
        self._ids = itertools.count(1)
        self._id_prefix = uuid.uuid4().hex[:8]
        self._conn_ids = itertools.count(1)
        self.connections: set[Connection] = set()
        self._sessions: dict[str, Session] = {}
        self._subscribers: dict[str, list[Session]] = {}
        self._round_robin: dict[str, int] = {}
        self._waiting: dict[str, deque[SimCall]] = {}   # offered, no session took them yet
        self._active: dict[str, SimCall] = {}
        self._gone: OrderedDict[str, SimCall] = OrderedDict()
        self._recordings: OrderedDict[str, SimRecording] = OrderedDict()
        self._delays: dict[str | None, float] = {}
        #: inject_noise: (rate, random source), or None.
        self._noise: tuple[float, random.Random] | None = None
        #: The call queues (calling.queue.enter, a connect's queue device; §5.10).
        self.queues = SimQueues()
        #: Every message sent with messaging.send (its first messaging.state params).
        self.messages_sent: list[dict[str, Any]] = []
        self._failures: dict[str, deque[tuple[str, str]]] = {}
        #: lose_next_reply: method → how many of its next replies are lost with the socket.
        self._lost_replies: dict[str, int] = {}
        self._offered = 0
        #: Outbound legs placed by calling.dial (§5.9).
        self._dialed = 0
        #: Outbound legs up now, and the most that were up at once (``dialed_peak``).
        self._dialed_up = 0
        self._dialed_peak = 0
        #: The callee script of each number a dial may ring (set_callee), and of the others.
        self._callees: dict[str, CallerScript] = {}
        self.default_callee = CallerScript()
        #: The latest dials, oldest first (for tests to look at).
        self.dials: deque[SimDial] = deque(maxlen=DIALS_KEPT)
        #: Junk frames sent by inject_noise.
        self.noise_sent = 0
        self._ended = 0
        self._leaked = 0
        self._by_reason: dict[str, int] = {}
        #: Called when no call is in flight any more (after the last one ended).
        self.on_idle: Callable[[], None] = _noop
        self._debug = logger.isEnabledFor(logging.DEBUG)
        #: Event-to-command latency (``record_latency``); ``None`` when off.
        self.latency: LatencyRecorder | None = (
            LatencyRecorder(clock) if record_latency else None)

    # -- time ---------------------------------------------------------------------------------

    @property
    def now(self) -> float:
        """The core's current instant (real seconds on ``clock``).

        While a timer runs this is its deadline, not the moment it actually ran, so a
        caller's script plays out the same way however busy the event loop is.
        """
        return self._now

    def after(self, sim_seconds: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` after ``sim_seconds`` of simulated time."""
        return self.timers.call_at(self._now + sim_seconds * self.time_scale, callback)

    def after_real(self, seconds: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` after ``seconds`` of real time (resume window, reply delays)."""
        return self.timers.call_at(self._now + seconds, callback)

    def next_deadline(self) -> float | None:
        """When :meth:`run_due` next has something to do (``clock`` seconds), or ``None``."""
        return self.timers.next_deadline()

    def run_due(self, now: float | None = None) -> None:
        """Run every timer due at ``now`` (default: the clock), earliest first."""
        if now is None:
            now = self._clock()
        while (timer := self.timers.pop_due(now)) is not None:
            self._now = max(self._now, timer.deadline)
            callback = timer.callback
            timer.cancel()
            try:
                callback()
            except Exception:  # one broken timer must not stop the simulator
                logger.exception("simulator timer failed")
        self._now = max(self._now, now)

    def _tick(self) -> None:
        # Every input first catches up with time, so that a timer that is already due
        # (say, the caller hanging up) happens before a frame that arrived after it.
        self.run_due(self._clock())

    # -- connections ------------------------------------------------------------------------

    def connection_made(self, peer: str = "") -> Connection:
        """A client socket opened."""
        conn = Connection(next(self._conn_ids), peer)
        self.connections.add(conn)
        return conn

    def connection_lost(self, conn: Connection) -> None:
        """The socket is gone (closed cleanly or not). Its session waits for a resume."""
        if conn.closed:
            return
        self._tick()
        conn.closed = True
        self.connections.discard(conn)
        for callback in conn.pending.values():
            if callback is not None:
                callback(False)
        conn.pending.clear()
        self._detach(conn)
        conn.outbox.clear()

    def _detach(self, conn: Connection) -> None:
        session = conn.session
        if session is None:
            return
        conn.session = None
        # Events not known to have arrived go back to the session, in order: with ACKs, every
        # event not ACKed (written or not); without, those never written.
        if conn.acks:
            unsent = list(conn.unacked.items())
        else:
            unsent = [("", frame) for frame, is_event in conn.outbox if is_event]
        conn.unacked.clear()
        conn.outbox = deque(item for item in conn.outbox if not item[1])
        if session.conn is conn:
            session.conn = None
            session.backlog.extendleft(reversed(unsent))
            session.expiry = self.after_real(self.resume_window, lambda: self._expire(session))

    def _expire(self, session: Session) -> None:
        """The resume window passed: end the session's calls so nothing leaks."""
        session.expiry = None
        if session.conn is not None:
            return
        for call in list(session.calls.values()):
            call.end("error")
        self._sessions.pop(session.protocol, None)
        for context in session.contexts:
            subs = self._subscribers.get(context)
            if subs and session in subs:
                subs.remove(session)
        session.backlog.clear()
        if self._debug:
            logger.debug("= session %s expired", session.protocol)

    # -- frames in ------------------------------------------------------------------------------

    def receive_frame(self, conn: Connection, data: str | bytes) -> None:
        """Process one text frame from ``conn``. Never raises: bad input gets an error reply."""
        self._tick()
        if conn.closed:
            return
        try:
            msg = _loads(data)
        except (ValueError, RecursionError):  # UnicodeDecodeError; nesting json cannot take
            self._send_error(conn, None, PARSE_ERROR, "Parse error")
            return
        if not isinstance(msg, dict):
            self._send_error(conn, None, INVALID_REQUEST, "Invalid Request")
            return
        req_id = msg.get("id")
        if req_id is not None and (isinstance(req_id, bool) or not isinstance(req_id, (str, int))):
            self._send_error(conn, None, INVALID_REQUEST, "Invalid Request")
            return
        method = msg.get("method")
        if method is None:
            if "result" in msg or "error" in msg:
                self._receive_response(conn, req_id)
            else:
                self._send_error(conn, req_id, INVALID_REQUEST, "Invalid Request")
            return
        if not isinstance(method, str):
            self._send_error(conn, req_id, INVALID_REQUEST, "Invalid Request")
            return
        if self._debug:
            logger.debug("< %s %s", method,
                         "(credentials masked)" if method == "signalwire.connect" else data)
        if req_id is None:
            # A JSON-RPC notification cannot be answered; RELAY clients never send them.
            return
        params = msg.get("params", {})
        if not isinstance(params, dict):
            self._send_error(conn, req_id, INVALID_PARAMS, "Invalid params")
            return
        lose = self._lost_replies.get(method)
        if lose:
            self._lost_replies[method] = lose - 1
            conn.lose_reply_to = req_id
        delay = self._delays.get(method, self._delays.get(None))
        if delay:
            self.after_real(delay, lambda: self._dispatch(conn, req_id, method, params))
        else:
            self._dispatch(conn, req_id, method, params)

    def _receive_response(self, conn: Connection, req_id: Any) -> None:
        # §3: the client ACKs every event with {"id","result":{}}: it arrived. Replies to
        # our own pings and disconnects resolve their waiters.
        if conn.unacked.pop(req_id, None) is not None:
            return
        if isinstance(req_id, str) and req_id in conn.pending:
            callback = conn.pending.pop(req_id)
            if callback is not None:
                callback(True)

    def _dispatch(self, conn: Connection, req_id: str | int, method: str,
                  params: dict[str, Any]) -> None:
        if conn.closed:
            return
        try:
            if method == "signalwire.connect":
                self._connect(conn, req_id, params)
            elif conn.session is None:
                self._send_error(conn, req_id, NOT_CONNECTED,
                                 "Not connected: send signalwire.connect first")
            elif method not in METHODS:
                self._send_error(conn, req_id, METHOD_NOT_FOUND, "Method not found")
            elif method == "messaging.send":
                self._send_message(conn, req_id, params)
            elif method == "calling.dial":
                self._dial(conn, req_id, params)
            elif method.startswith("calling."):
                self._calling(conn, req_id, method, params)
            elif (failure := self._take_failure(method)) is not None:
                self._send_error(conn, req_id, _int_code(failure[0]), failure[1])
            elif method == "signalwire.ping":
                self._send_result(conn, req_id, {})  # §2.5: any result will do
            elif method == "signalwire.receive":
                self._receive(conn, req_id, params, subscribe=True)
            else:
                self._receive(conn, req_id, params, subscribe=False)
        except Exception:
            logger.exception("simulator failed on %s", method)
            self._send_error(conn, req_id, INTERNAL_ERROR, "Internal error")

    # -- frames out ------------------------------------------------------------------------------

    def _new_id(self) -> str:
        return f"{self._id_prefix}-{next(self._ids)}"

    def _push(self, conn: Connection, frame: dict[str, Any],
              is_event: bool | str = False) -> None:
        text = _dumps(frame)
        if self._debug:
            logger.debug("> %s", text)
        conn.push(text, is_event)

    def _send_result(self, conn: Connection, req_id: Any, result: dict[str, Any]) -> None:
        if conn.lose_reply_to is not None and conn.lose_reply_to == req_id:
            conn.lose_reply_to = None
            conn.abort_requested = True  # done, but the reply goes down with the socket
            conn.wake()
            return
        self._push(conn, {"jsonrpc": "2.0", "id": req_id, "result": result})

    def _send_error(self, conn: Connection, req_id: Any, code: int, message: str) -> None:
        self._push(conn, {"jsonrpc": "2.0", "id": req_id,
                          "error": {"code": code, "message": message}})

    def _send_event(self, session: Session, event_type: str, params: dict[str, Any]) -> None:
        # §3: the envelope, with an id so the client ACKs it.
        event_id = self._new_id()
        frame = {"jsonrpc": "2.0", "id": event_id, "method": "signalwire.event",
                 "params": {"event_type": event_type, "timestamp": self._wallclock(),
                            "event_channel": session.protocol, "project_id": self.project,
                            "space_id": self.space_id, "params": params}}
        conn = session.conn
        if conn is not None:
            if self._noise is not None:
                self._add_noise(conn, self._noise, event_type, params)
            tag: bool | str = True
            if self.latency is not None:
                # The driver reports the write of a call event that may prompt a command.
                call_id = params.get("call_id")
                if isinstance(call_id, str) and params.get("call_state") != "ended":
                    tag = call_id
            text = _dumps(frame)
            if self._debug:
                logger.debug("> %s", text)
            if conn.acks and event_type != "signalwire.authorization.state":
                # (Each connect sends a fresh authorization state: an old one sent again
                # would make the client resume with a stale blob next time.)
                conn.unacked[event_id] = text
            conn.push(text, tag)
        else:
            session.backlog.append((event_id, _dumps(frame)))

    def emit_call_event(self, call: SimCall, event_type: str, params: dict[str, Any]) -> None:
        """Send a call's event to the session that owns the call (CallHost)."""
        session = call._session
        if session is not None:
            self._send_event(session, event_type, params)

    # -- session methods -----------------------------------------------------------------------

    def _authenticate(self, auth: Any) -> bool:
        if not isinstance(auth, dict):
            return False
        if self.accept_any_credentials:
            return True
        jwt = auth.get("jwt_token")
        if isinstance(jwt, str) and jwt:
            return hmac.compare_digest(jwt.encode(), self._token.encode())
        project, token = auth.get("project"), auth.get("token")
        return (isinstance(project, str) and isinstance(token, str)
                and hmac.compare_digest(project.encode(), self.project.encode())
                and hmac.compare_digest(token.encode(), self._token.encode()))

    def _connect(self, conn: Connection, req_id: Any, params: dict[str, Any]) -> None:
        """``signalwire.connect`` (§2.1–2.3): a new session, or the resume of a known one."""
        if not self._authenticate(params.get("authentication")):
            # §2.2; the message never repeats what was sent.
            self._send_error(conn, req_id, AUTH_FAILED, "Authentication failed")
            return
        session: Session | None = None
        protocol = params.get("protocol")
        if isinstance(protocol, str):
            session = self._sessions.get(protocol)
            blob = params.get("authorization_state")
            stale = isinstance(blob, str) and session is not None and (
                blob != session.authorization_state)
            if stale:
                session = None  # a stale or foreign blob: start afresh rather than hijack
        if conn.session is not None and conn.session is not session:
            self._detach(conn)  # a second connect on one socket switches sessions
        restored = session is not None
        if session is None:
            session = Session(f"signalwire_{uuid.uuid4().hex}", str(uuid.uuid4()))
            self._sessions[session.protocol] = session
        else:
            old = session.conn
            if old is not None and old is not conn:
                # The client came back on a new socket before we noticed the old one die.
                self._detach(old)
                old.close_requested = True
                old.wake()
            if session.expiry is not None:
                session.expiry.cancel()
                session.expiry = None
        session.conn = conn
        conn.session = session
        conn.acks = params.get("event_acks") is True
        contexts = _contexts(params) or []
        self._subscribe(session, contexts)
        session.authorization_state = secrets.token_urlsafe(24)
        self._send_result(conn, req_id, {
            "identity": f"{self.project}@{self.node_id}",
            "protocol": session.protocol,
            "sessionid": session.session_id,
            "nodeid": self.node_id,
            "master_nodeid": self._master_node_id,
            "session_restored": restored,
            "authorization": {"project": self.project, "scopes": ["calling", "messaging"],
                              "signature": session.signature},
        })
        self._send_event(session, "signalwire.authorization.state",
                         {"authorization_state": session.authorization_state})
        # Resume: what happened while the socket was gone, in order.
        while session.backlog:
            event_id, text = session.backlog.popleft()
            if conn.acks and event_id:
                conn.unacked[event_id] = text
            conn.push(text, True)
        for context in session.contexts:
            self._route(context)
        if self._debug:
            logger.debug("= session %s %s contexts=%s", session.protocol,
                         "resumed" if restored else "started", session.contexts)

    def _subscribe(self, session: Session, contexts: list[str]) -> None:
        for context in contexts:
            if context not in session.contexts:
                session.contexts.append(context)
                self._subscribers.setdefault(context, []).append(session)

    def _receive(self, conn: Connection, req_id: Any, params: dict[str, Any], *,
                 subscribe: bool) -> None:
        """``signalwire.receive`` / ``signalwire.unreceive`` (§2.4)."""
        session = conn.session
        assert session is not None
        contexts = _contexts(params)
        if not contexts:
            self._send_result(conn, req_id, {"code": "400",
                                             "message": "contexts must be a list of names"})
            return
        if subscribe:
            self._subscribe(session, contexts)
            self._send_result(conn, req_id, {
                "code": "200",
                "message": "Receiving all inbound related to the requested relay contexts"})
            for context in contexts:
                self._route(context)
        else:
            for context in contexts:
                if context in session.contexts:
                    session.contexts.remove(context)
                    self._subscribers[context].remove(session)
            self._send_result(conn, req_id, {
                "code": "200",
                "message": "No longer receiving inbound related to the requested relay contexts"})

    # -- calls ---------------------------------------------------------------------------------

    def offer_call(self, context: str = "default", from_number: str = "+15551230000",
                   to_number: str = "+15559870000", caller: str | CallerScript | None = None,
                   *, tag: str | None = None, misrouted: bool = False) -> SimCall:
        """A new inbound call on ``context``, offered at once if a session takes that
        context (round-robin between sessions), else as soon as one subscribes.

        ``misrouted`` (a fault, for tests): offered at once to a connected session that did
        not subscribe to ``context``, as a server that routes badly would (RuntimeError if
        there is none).
        """
        script = CallerScript.coerce(caller)
        self._tick()
        target = None
        if misrouted:
            target = next((s for s in self._sessions.values()
                           if s.conn is not None and context not in s.contexts), None)
            if target is None:
                raise RuntimeError(f"no connected session without context {context!r} "
                                   "to misroute a call to")
        call = SimCall(self, call_id=str(uuid.uuid4()), node_id=self.node_id, context=context,
                       from_number=from_number, to_number=to_number, caller=script, tag=tag)
        self._active[call.call_id] = call
        self._offered += 1
        if target is not None:
            target.calls[call.call_id] = call
            call.offered(target)
            return call
        self._waiting.setdefault(context, deque()).append(call)
        self._route(context)
        return call

    def set_callee(self, number: str | None, script: str | CallerScript | None) -> None:
        """What ``number`` does when a ``calling.dial`` rings it (a callee script, §5.9);
        ``number=None`` sets the default for every number without one of its own.
        ``script=None`` is the default callee (answers after 3 s, then speaks like the
        default caller).

        Raises:
            CallerScriptError: the script does not parse.
        """
        callee = CallerScript.coerce(script)
        if number is None:
            self.default_callee = callee
        else:
            self._callees[number] = callee

    def callee(self, number: str) -> CallerScript:
        """The callee script a dial to ``number`` follows."""
        return self._callees.get(number, self.default_callee)

    def _dial(self, conn: Connection, req_id: Any, params: dict[str, Any]) -> None:
        """``calling.dial`` (§5.9): 200 "Dialing" (no call_id), then the legs' states and
        ``calling.call.dial`` events by ``tag`` (``flowengine.sim.dial``)."""
        session = conn.session
        assert session is not None
        failure = self._take_failure("calling.dial")
        if failure is not None:
            self._send_result(conn, req_id, {"code": failure[0], "message": failure[1]})
            return
        try:
            devices = check_devices(params.get("devices"))
        except CommandError as exc:
            self._send_result(conn, req_id, {"code": exc.code, "message": exc.message})
            return
        tag = params.get("tag")
        if not isinstance(tag, str) or not tag:
            tag = str(uuid.uuid4())  # the SDK always sends one; the events carry ours
        max_duration = params.get("max_duration")
        if isinstance(max_duration, bool) or not isinstance(max_duration, (int, float)) \
                or max_duration <= 0:
            max_duration = None
        self._send_result(conn, req_id, {"code": "200", "message": "Dialing"})
        dial = SimDial(self, session, tag, devices, max_duration, self.callee)
        self.dials.append(dial)
        dial.start()

    def leg_created(self, session: Session, leg: SimCall) -> None:
        """An outbound leg of a dial exists: it is the dialling session's call."""
        leg._session = session
        leg.protocol = session.protocol
        session.calls[leg.call_id] = leg
        self._active[leg.call_id] = leg
        self._dialed += 1
        self._dialed_up += 1
        self._dialed_peak = max(self._dialed_peak, self._dialed_up)

    def emit_dial_event(self, session: Session, params: dict[str, Any]) -> None:
        """``calling.call.dial`` to the dialling session (§4.9)."""
        self._send_event(session, "calling.call.dial", params)

    def _route(self, context: str) -> None:
        """Hand waiting calls of ``context`` to connected subscribers, round-robin (§4.1)."""
        queue = self._waiting.get(context)
        if not queue:
            return
        live = [s for s in self._subscribers.get(context, ()) if s.conn is not None]
        if not live:
            return
        skipped: deque[SimCall] = deque()
        while queue:
            call = queue.popleft()
            eligible = ([s for s in live if s.protocol not in call._passed_by]
                        if call._passed_by else live)
            if not eligible:
                skipped.append(call)  # every live session passed on it: wait for another
                continue
            turn = self._round_robin.get(context, 0)
            self._round_robin[context] = turn + 1
            session = eligible[turn % len(eligible)]
            session.calls[call.call_id] = call
            call.offered(session)
        if skipped:
            self._waiting[context] = skipped
        else:
            del self._waiting[context]

    def _calling(self, conn: Connection, req_id: Any, method: str,
                 params: dict[str, Any]) -> None:
        """A ``calling.*`` command: find the call, then let it answer (§5)."""
        session = conn.session
        assert session is not None
        replied = False

        def reply(result: dict[str, Any]) -> None:
            nonlocal replied
            replied = True
            self._send_result(conn, req_id, result)

        call_id = params.get("call_id")
        call = self._active.get(call_id) if isinstance(call_id, str) else None
        if call is None or call._session is not session:
            gone = self._gone.get(call_id) if isinstance(call_id, str) else None
            if gone is not None and gone.protocol == session.protocol:
                gone.commands.append(method)
                reply({"code": "410", "message": "Call has ended"})  # §7
            else:
                reply({"code": "404", "message": "Call not found"})  # §7
            return
        call.commands.append(method)
        if self.latency is not None:
            self.latency.command(call.call_id, method)
        failure = self._take_failure(method)
        if failure is not None:
            reply({"code": failure[0], "message": failure[1]})
            return
        try:
            if method == "calling.pass":
                self._pass(call, reply)
            elif method in _CALL_VERBS:
                getattr(call, _CALL_VERBS[method])(params, reply)
            else:
                kinds, verb = _CONTROLS[method]
                call.control(kinds, verb, params, reply)
        except CommandError as exc:
            if not replied:
                reply({"code": exc.code, "message": exc.message})

    def _send_message(self, conn: Connection, req_id: Any, params: dict[str, Any]) -> None:
        """``messaging.send`` (§5.8): 200 with a ``message_id``, then ``messaging.state``
        events to the sending session. A message to the number of a call in progress ends
        as that caller's script says (``sms:``); any other is delivered."""
        failure = self._take_failure("messaging.send")
        if failure is not None:
            self._send_result(conn, req_id, {"code": failure[0], "message": failure[1]})
            return
        to, sender = params.get("to_number"), params.get("from_number")
        body, media = params.get("body"), params.get("media")
        problem = None
        if not isinstance(to, str) or not _E164.match(to):
            problem = "to_number must be a phone number (+ and digits)"
        elif not isinstance(sender, str) or not _E164.match(sender):
            problem = "from_number must be a phone number (+ and digits)"
        elif not (isinstance(body, str) and body) and not (isinstance(media, list) and media):
            problem = "a message needs a body or media"
        if problem is not None:
            self._send_result(conn, req_id, {"code": "400", "message": problem})
            return
        message_id = str(uuid.uuid4())
        self._send_result(conn, req_id, {"code": "200", "message": "Message accepted",
                                         "message_id": message_id})
        ending = next((c.caller.sms for c in self._active.values() if c.from_number == to),
                      "delivered")
        session = conn.session
        assert session is not None
        event = {"message_id": message_id, "context": params.get("context") or "",
                 "direction": "outbound", "from_number": sender, "to_number": to,
                 "body": body or "", "media": media or [], "segments": 1,
                 "tags": params.get("tags") or []}
        steps = [step for step in MESSAGE_STEPS if step[0] != "delivered"]
        if ending == "failed":
            steps = steps[:1]
        if ending != "sent":
            steps.append((ending, MESSAGE_STEPS[-1][1]))
        self.messages_sent.append(dict(event))
        for state, at in steps:
            extra = {"reason": _MESSAGE_REASONS[state]} if state in _MESSAGE_REASONS else {}
            self.after(at, functools.partial(self._send_event, session, "messaging.state",
                                             {**event, "message_state": state, **extra}))

    def _pass(self, call: SimCall, reply: Callable[[dict[str, Any]], None]) -> None:
        """``calling.pass`` (§5.2): back to routing, offered to another session."""
        if call.state != "created" or call.direction != "inbound":
            raise CommandError("409", "Only an unanswered inbound call can be passed")
        reply({"code": "200", "message": "Passing call"})
        session = call._session
        assert session is not None
        session.calls.pop(call.call_id, None)
        call._passed_by.add(session.protocol)
        call._session = None
        call.protocol = None
        self._waiting.setdefault(call.context, deque()).append(call)
        self._route(call.context)

    def call_ended(self, call: SimCall) -> None:
        """Bookkeeping once a call sent ``ended`` (CallHost)."""
        if self._active.pop(call.call_id, None) is not None and call.direction == "outbound":
            self._dialed_up -= 1
        session = call._session
        if session is not None:
            session.calls.pop(call.call_id, None)
        else:
            queue = self._waiting.get(call.context)
            if queue is not None and call in queue:
                queue.remove(call)
        if call.leaked:
            self._leaked += 1
        else:
            self._ended += 1
            reason = call.end_reason or "hangup"
            self._by_reason[reason] = self._by_reason.get(reason, 0) + 1
        self._gone[call.call_id] = call
        if len(self._gone) > GONE_CALLS_KEPT:
            self._gone.popitem(last=False)
        if not self._active:
            self.on_idle()

    @property
    def active_calls(self) -> int:
        """Calls offered and not ended yet (waiting for a session included)."""
        return len(self._active)

    # -- recordings ----------------------------------------------------------------------------

    def new_recording(self, call: SimCall, control_id: str, fmt: str) -> SimRecording:
        """A recording id and its URL on the simulator's HTTP side (CallHost)."""
        rec_id = uuid.uuid4().hex
        return SimRecording(id=rec_id, url=f"{self.http_url}/recordings/{rec_id}.{fmt}",
                            format=fmt, call_id=call.call_id, control_id=control_id)

    def recording_finished(self, recording: SimRecording) -> None:
        """Make a finished recording downloadable (CallHost)."""
        self._recordings[recording.id] = recording
        if len(self._recordings) > RECORDINGS_KEPT:
            self._recordings.popitem(last=False)

    def recording(self, rec_id: str) -> SimRecording | None:
        """A finished recording by id, or ``None``."""
        return self._recordings.get(rec_id)

    # -- server requests and fault injection ---------------------------------------------------

    def send_ping(self, conn: Connection,
                  on_reply: Callable[[bool], None] | None = None) -> str:
        """Server ``signalwire.ping`` (§2.5); ``on_reply(answered)`` when it is settled."""
        return self._server_request(conn, "signalwire.ping",
                                    {"timestamp": self._wallclock()}, on_reply)

    def send_disconnect(self, conn: Connection, restart: bool = False,
                        on_reply: Callable[[bool], None] | None = None) -> str:
        """Server ``signalwire.disconnect`` (§2.7). The driver closes the socket after it."""
        return self._server_request(conn, "signalwire.disconnect", {"restart": bool(restart)},
                                    on_reply)

    def _server_request(self, conn: Connection, method: str, params: dict[str, Any],
                        on_reply: Callable[[bool], None] | None) -> str:
        self._tick()
        rid = self._new_id()
        conn.pending[rid] = on_reply
        self._push(conn, {"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        return rid

    def inject_noise(self, rate: float, *, seed: int | None = None) -> None:
        """Before each event, with probability ``rate`` (0 to 1), send a junk frame about
        the same call that a real server never would (``flowengine.sim.noise``): not JSON,
        malformed envelopes, impossible states, events for unknown calls, replies nobody
        asked for, unknown server methods. None of them is a valid event, so a client that
        drops them sees every call through. ``rate`` 0 stops it; ``seed`` repeats a run."""
        if not 0 <= rate <= 1:
            raise ValueError(f"noise rate must be between 0 and 1, not {rate}")
        self._noise = (float(rate), random.Random(seed)) if rate > 0 else None

    def _add_noise(self, conn: Connection, noise: tuple[float, random.Random],
                   event_type: str, params: dict[str, Any]) -> None:
        rate, rng = noise
        if rng.random() >= rate:
            return
        call_id = params.get("call_id")
        control_id = params.get("control_id")
        frame = junk_frame(rng, call_id if isinstance(call_id, str) else "none",
                           control_id if isinstance(control_id, str) else None,
                           event_type, self._new_id)
        self.noise_sent += 1
        conn.push(frame, False)

    def delay_replies(self, seconds: float, method: str | None = None) -> None:
        """Handle requests (of ``method``, or all) ``seconds`` of real time late; 0 undoes it."""
        if seconds > 0:
            self._delays[method] = float(seconds)
        else:
            self._delays.pop(method, None)

    def fail_next(self, method: str, code: str = "500", message: str = "Internal error") -> None:
        """The next request of ``method`` fails: ``result {"code": code}`` for ``calling.*``,
        a JSON-RPC ``error`` (integer code) for ``signalwire.*``. Calls stack up."""
        self._failures.setdefault(method, deque()).append((str(code), message))

    def lose_next_reply(self, method: str) -> None:
        """The next ``method`` request is carried out, but its reply is never sent: the
        socket is aborted instead (a link that drops between the two, §2.8). Calls stack."""
        self._lost_replies[method] = self._lost_replies.get(method, 0) + 1

    def send_large_event(self, size: int) -> int:
        """An event of about ``size`` bytes (an unknown ``sim.padding`` type) to every
        connected session; returns how many got it. A client whose frame limit is lower
        cannot read it, so it is never ACKed and goes again on every resume (§3), as a
        real server would do."""
        self._tick()
        sent = 0
        for session in list(self._sessions.values()):
            if session.conn is not None and not session.conn.closed:
                self._send_event(session, "sim.padding", {"padding": "x" * max(0, size)})
                sent += 1
        return sent

    def _take_failure(self, method: str) -> tuple[str, str] | None:
        queue = self._failures.get(method)
        if not queue:
            return None
        failure = queue.popleft()
        if not queue:
            del self._failures[method]
        return failure

    # -- the end --------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """``{"offered", "ended", "by_end_reason", "leaked", "active"}``: ``ended`` and
        ``by_end_reason`` count calls that ended on their own; ``leaked`` those still up at
        shutdown; ``active`` those in flight now. With ``record_latency`` also
        ``latency`` (see :meth:`LatencyRecorder.summary`); with noise, ``noise_frames``
        (the junk frames sent); once a client dialled, ``dialed`` (the outbound legs
        placed, §5.9), which ``ended``, ``leaked`` and ``active`` count too, and
        ``dialed_peak`` (the most of them up at once, ringing or answered)."""
        summary: dict[str, Any] = {
            "offered": self._offered, "ended": self._ended,
            "by_end_reason": dict(sorted(self._by_reason.items())),
            "leaked": self._leaked, "active": len(self._active)}
        if self._dialed:
            summary["dialed"] = self._dialed
            summary["dialed_peak"] = self._dialed_peak
        if self._noise is not None or self.noise_sent:
            summary["noise_frames"] = self.noise_sent
        if self.latency is not None:
            summary["latency"] = self.latency.summary()
        return summary

    def shutdown(self) -> int:
        """Count every call still up as leaked, then end it (its client sees ``ended``)."""
        self._tick()
        leaked = list(self._active.values())
        for call in leaked:  # all first: ending one leg of a dial ends its other legs
            call.leaked = True
        for call in leaked:
            call.end("error")
        return len(leaked)


def _int_code(code: str) -> int:
    try:
        return int(code)
    except ValueError:
        return INTERNAL_ERROR
