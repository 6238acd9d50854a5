"""FIFO call queues across the simulator's calls (``calling.queue.enter`` / ``.leave``, §5.10).

A caller's call enters a named queue (created on first use) and waits there, hearing the
queue's hold media, until an agent's ``calling.connect`` with a ``queue`` device takes the
longest-waiting caller and bridges the two calls, until the caller leaves
(``calling.queue.leave``), or until its call ends. Every waiting call is told its place:
a ``calling.call.queue`` event (``status``, ``position``, ``size``) whenever its position
or the queue's size changes, so a caller who hangs up moves everyone behind them up.

Everything here is synchronous and free of I/O, like :mod:`flowengine.sim.calls`; the
host's clock gives the waits. Each caller is taken at most once: the head is removed from
its queue in the same step that bridges it.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flowengine.sim.calls import CommandError, Reply, _Action

if TYPE_CHECKING:
    from flowengine.sim.calls import SimCall

#: ``calling.call.queue`` statuses: a caller entered; their position or the size changed;
#: an agent took them (the bridge follows); they left (queue.leave, or their call ended).
ENQUEUED, UPDATED, DEQUEUED, LEFT = "enqueued", "updated", "dequeued", "left"
#: The ``failed_reason`` of an agent's connect to a queue nobody waits in.
QUEUE_EMPTY = "queue_empty"


@dataclass(frozen=True, slots=True)
class Taken:
    """One caller an agent took (:attr:`SimQueues.taken`): for tests to check the order."""

    queue: str
    caller: str       # the caller's call id
    agent: str        # the agent's call id
    waited: float     # simulated seconds the caller waited
    position_at_entry: int


class QueueEntry(_Action):
    """A call waiting in a queue: one control_id, terminal status ``dequeued`` or ``left``."""

    kind = "queue"

    def __init__(self, queue: SimQueue, call: SimCall, control_id: str,
                 wait_url: str | None) -> None:
        super().__init__(call, control_id)
        self.queue = queue
        self.wait_url = wait_url
        self.entered_at = call._host.now
        self.position = 0
        self.position_at_entry = 0
        self._told: tuple[int, int] | None = None

    def tell(self, status: str) -> None:
        """Send ``calling.call.queue`` with this entry's position and the queue's size;
        ``updated`` only when one of them changed."""
        size = len(self.queue.waiting)
        if status == UPDATED and self._told == (self.position, size):
            return
        self._told = (self.position, size)
        self.call.emit("calling.call.queue", {
            **self._ids(), "status": status, "id": self.queue.id, "name": self.queue.name,
            "position": self.position, "size": size})

    def waited(self) -> float:
        """Simulated seconds since the call entered."""
        host = self.call._host
        return (host.now - self.entered_at) / host.time_scale

    def terminate(self) -> None:
        """The call is ending (or left): out of the queue, those behind move up."""
        if self.done:
            return
        self._close()
        self.queue.remove(self, LEFT)


class SimQueue:
    """One named FIFO queue: its waiting calls, longest-waiting first."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.id = str(uuid.uuid4())
        self.waiting: deque[QueueEntry] = deque()

    def __repr__(self) -> str:
        return f"<SimQueue {self.name} waiting={len(self.waiting)}>"

    def add(self, entry: QueueEntry) -> None:
        """A caller at the back: they learn their place, everyone else the new size."""
        self.waiting.append(entry)
        entry.position = entry.position_at_entry = len(self.waiting)
        entry.tell(ENQUEUED)
        self._renumber(len(self.waiting) - 1)

    def remove(self, entry: QueueEntry, status: str) -> None:
        """Take ``entry`` out (``dequeued`` or ``left``): it is told first, with the new
        size; then those behind it move up."""
        try:
            index = self.waiting.index(entry)
        except ValueError:
            return
        del self.waiting[index]
        entry.tell(status)
        self._renumber(len(self.waiting))

    def _renumber(self, skip: int) -> None:
        # Positions are 1-based; the entry at index ``skip`` (a newcomer) was told already.
        for i, waiting in enumerate(self.waiting):
            if i == skip:
                continue
            waiting.position = i + 1
            waiting.tell(UPDATED)


class SimQueues:
    """Every queue of one simulator, by name (:attr:`flowengine.sim.core.SimCore.queues`)."""

    def __init__(self) -> None:
        self.queues: dict[str, SimQueue] = {}
        #: Every caller an agent took, in the order they were taken.
        self.taken: list[Taken] = []
        #: (queue name, call id) of every entry, in the order the calls entered.
        self.entered: list[tuple[str, str]] = []

    def get(self, name: str) -> SimQueue:
        """The queue called ``name`` (created empty when it does not exist yet)."""
        queue = self.queues.get(name)
        if queue is None:
            queue = self.queues[name] = SimQueue(name)
        return queue

    def size(self, name: str) -> int:
        """How many calls wait in ``name`` now."""
        queue = self.queues.get(name)
        return 0 if queue is None else len(queue.waiting)

    def entry_of(self, call: SimCall) -> QueueEntry | None:
        """The queue entry ``call`` waits in, if any."""
        for action in call._actions.values():
            if isinstance(action, QueueEntry):
                return action
        return None

    # -- the verbs --------------------------------------------------------------------------

    def enter(self, call: SimCall, params: dict[str, Any], reply: Reply) -> None:
        """``calling.queue.enter``: 200 "Enqueued", then ``calling.call.queue enqueued``
        with the caller's position and the size. 400 without a ``queue_name``; 409 before
        the call is answered, or while it waits in a queue already."""
        cid = call._control_id(params)
        if call._repeated("queue.enter", cid, reply):
            return
        name = params.get("queue_name")
        if not isinstance(name, str) or not name.strip():
            raise CommandError("400", "queue_name is required")
        if call.state != "answered":
            raise CommandError("409", "The call is not answered")
        if self.entry_of(call) is not None:
            raise CommandError("409", "The call is in a queue already")
        if call._bridge is not None and not call._bridge.done:
            raise CommandError("409", "The call is connected")
        queue = self.get(name)
        wait_url = params.get("wait_url")
        reply(call._action_reply("queue.enter", "Enqueued", cid, queue_id=queue.id))
        entry = QueueEntry(queue, call, cid, wait_url if isinstance(wait_url, str) else None)
        self.entered.append((name, call.call_id))
        queue.add(entry)
        call.action_started("queue", None)

    def leave(self, call: SimCall, params: dict[str, Any], reply: Reply) -> None:
        """``calling.queue.leave``: 200, then ``calling.call.queue left`` for the entry; the
        callers behind move up. 404 when the call does not wait in that queue."""
        name = params.get("queue_name")
        entry = self.entry_of(call)
        queue_id = params.get("queue_id")
        if entry is None or entry.queue.name != name or (
                isinstance(queue_id, str) and queue_id and queue_id != entry.queue.id):
            reply({"code": "404", "message": f"The call is not in queue {name}"})
            return
        reply({"code": "200", "message": "Left the queue", "call_id": call.call_id,
               "control_id": entry.control_id})
        entry.terminate()

    def connect(self, agent: SimCall, device: dict[str, Any], tag: str | None) -> _Action | None:
        """An agent's ``calling.connect`` to ``{"type": "queue", "params": {"queue_name"}}``:
        ``connecting``, then the longest-waiting caller is taken (``dequeued``) and both
        calls get ``connected`` with the other as ``peer``; ``failed`` (reason
        ``queue_empty``) when nobody waits. Returns the agent's side of the bridge."""
        params = device.get("params")
        name = params.get("queue_name") if isinstance(params, dict) else None
        if not isinstance(name, str) or not name:
            raise CommandError("400", "a queue device needs params.queue_name")
        _connect_event(agent, tag, "connecting")
        queue = self.queues.get(name)
        if queue is None or not queue.waiting:
            _connect_event(agent, tag, "failed", failed_reason=QUEUE_EMPTY)
            return None
        entry = queue.waiting[0]
        caller = entry.call
        self.taken.append(Taken(name, caller.call_id, agent.call_id, entry.waited(),
                                entry.position_at_entry))
        # Out of the queue before anything else is sent: nobody can take them again.
        entry._close()
        queue.remove(entry, DEQUEUED)
        bridge = SimBridge(agent, caller, tag)
        caller._bridge = bridge.caller_side
        bridge.start()
        return bridge.agent_side


def _connect_event(call: SimCall, tag: str | None, state: str, **extra: Any) -> None:
    params: dict[str, Any] = {"call_id": call.call_id, "node_id": call.node_id,
                              "connect_state": state, **extra}
    if tag:
        params["tag"] = tag
    call.emit("calling.call.connect", params)


class _BridgeSide(_Action):
    """One call's half of a queue bridge: it ends the whole bridge when its call ends or
    disconnects (``disconnected`` on both calls, this one's first)."""

    kind = "connect"

    def __init__(self, bridge: SimBridge, call: SimCall, tag: str | None) -> None:
        super().__init__(call, f"connect:{id(self)}")
        self.bridge = bridge
        self.tag = tag

    def terminate(self) -> None:
        self.bridge.end(self)


class SimBridge:
    """An agent's call bridged with the caller it took from a queue."""

    def __init__(self, agent: SimCall, caller: SimCall, tag: str | None) -> None:
        self.agent_side = _BridgeSide(self, agent, tag)
        self.caller_side = _BridgeSide(self, caller, None)
        self.done = False

    def start(self) -> None:
        """Both calls learn they are connected, each with the other as ``peer``."""
        agent, caller = self.agent_side.call, self.caller_side.call
        _connect_event(caller, None, "connected", peer=_peer(agent, None))
        _connect_event(agent, self.agent_side.tag, "connected",
                       peer=_peer(caller, self.agent_side.tag))
        agent.action_started("connect", None)
        caller.action_started("connect", None)

    def end(self, first: _BridgeSide) -> None:
        """Either side hung up or disconnected: ``disconnected`` on both calls."""
        if self.done:
            return
        self.done = True
        other = self.caller_side if first is self.agent_side else self.agent_side
        for side in (first, other):
            side._close()
            if not side.call.ended:
                _connect_event(side.call, side.tag, "disconnected")


def _peer(call: SimCall, tag: str | None) -> dict[str, Any]:
    peer: dict[str, Any] = {"call_id": call.call_id, "node_id": call.node_id,
                            "device": call.device}
    if tag:
        peer["tag"] = tag
    return peer
