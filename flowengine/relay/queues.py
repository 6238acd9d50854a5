"""Queues as the client sees them (§5.10): one caller's wait, and the figures of each queue.

:class:`QueueWait` is what :meth:`flowengine.relay.Call.queue_enter` returns: it follows
the ``calling.call.queue`` events of its ``control_id`` (status, position, size) and ends
when the caller was taken by an agent (``dequeued``) or left (``left``, or the call ended).
:class:`QueueBoard` (``RelayClient.queues``) keeps, per queue name, the latest size any of
this client's calls was told and a moving average of recent waits, for templates
(``queue_size('support')``) and ``/metrics``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowengine.relay.call import Action

#: ``calling.call.queue`` statuses that end a wait.
QUEUE_TERMINAL = frozenset({"dequeued", "left"})
#: How many of the latest waits the expected wait is the average of.
WAITS_AVERAGED = 20


@dataclass(slots=True)
class QueueFigures:
    """What this client knows of one queue."""

    name: str
    #: The size the latest ``calling.call.queue`` event gave (callers waiting in it, all
    #: clients' together), 0 before any.
    size: int = 0
    #: This client's calls waiting in it now.
    waiting: int = 0
    #: Callers taken by an agent, and callers who left (gave up, timed out, hung up).
    taken: int = 0
    left: int = 0
    _waits: deque[float] = field(default_factory=lambda: deque(maxlen=WAITS_AVERAGED))

    @property
    def expected_wait(self) -> float | None:
        """The average of the latest waits of callers taken by an agent (seconds), None
        before the first."""
        return sum(self._waits) / len(self._waits) if self._waits else None


class QueueBoard:
    """Per queue name, the :class:`QueueFigures` of this client (read by templates and
    metrics; fed by the calls' queue events and by whoever measures a wait)."""

    def __init__(self) -> None:
        self._queues: dict[str, QueueFigures] = {}

    def get(self, name: str) -> QueueFigures:
        """The figures of ``name`` (zeros for a queue never seen)."""
        figures = self._queues.get(name)
        if figures is None:
            figures = self._queues[name] = QueueFigures(name)
        return figures

    def peek(self, name: str) -> QueueFigures | None:
        """The figures of ``name`` without creating them."""
        return self._queues.get(name)

    def all(self) -> Mapping[str, QueueFigures]:
        """Every queue seen, by name."""
        return self._queues

    def record_wait(self, name: str, seconds: float) -> None:
        """A caller of ``name`` was taken after waiting ``seconds``."""
        self.get(name)._waits.append(max(0.0, seconds))


class QueueWait:
    """One call waiting in a queue: the terminal rule of its action and its latest place.

    Attributes:
        name: the queue's name; ``queue_id`` RELAY's id for it (from the reply or events).
        action: the :class:`~flowengine.relay.Action` of the enter (see below).
        status: the latest ``status`` (``enqueued``, ``updated``, ``dequeued``, ``left``).
        position: 1 for the head of the queue; ``position_at_entry`` the first one given.
        size: callers waiting in the queue.
        entered: the event loop's clock (``loop.time()``) when the reply came — the
            monotonic clock, or a test's virtual one.
    """

    __slots__ = ("_board", "_changed", "action", "entered", "name", "position",
                 "position_at_entry", "queue_id", "size", "status")

    def __init__(self, name: str, board: QueueBoard | None) -> None:
        self.name = name
        self.queue_id = ""
        self.status = ""
        self.position = 0
        self.position_at_entry = 0
        self.size = 0
        self.entered = asyncio.get_running_loop().time()
        self._board = board
        self._changed: asyncio.Event | None = None
        #: The action of the ``calling.queue.enter``: its result's state is ``dequeued``
        #: (an agent took the call: ``call.bridge`` follows), ``left`` or ``hangup``.
        self.action: Action | None = None

    def __repr__(self) -> str:
        return f"<QueueWait {self.name} {self.status} {self.position}/{self.size}>"

    def __call__(self, event_type: str, params: Mapping[str, Any]) -> str | None:
        """Apply one ``calling.call.queue`` event; the terminal status, or None."""
        if event_type != "calling.call.queue":
            return None
        status = params.get("status")
        if not isinstance(status, str):
            return None
        before = self.status
        self.status = status
        position, size = params.get("position"), params.get("size")
        if type(position) is int:
            self.position = position
            if not self.position_at_entry:
                self.position_at_entry = position
        if type(size) is int:
            self.size = size
        queue_id = params.get("id")
        if isinstance(queue_id, str) and queue_id:
            self.queue_id = queue_id
        board = self._board
        if board is not None:
            figures = board.get(self.name)
            figures.size = self.size
            if not before and status not in QUEUE_TERMINAL:
                figures.waiting += 1
            elif status in QUEUE_TERMINAL and before and before not in QUEUE_TERMINAL:
                figures.waiting -= 1
                if status == "dequeued":
                    figures.taken += 1
                else:
                    figures.left += 1
        if self._changed is not None:
            self._changed.set()
        return status if status in QUEUE_TERMINAL else None

    def gone(self) -> None:
        """The call ended without a terminal event: it no longer waits here."""
        board = self._board
        if board is not None and self.status and self.status not in QUEUE_TERMINAL:
            figures = board.get(self.name)
            figures.waiting -= 1
            figures.left += 1
        self.status = "left"

    async def changed(self) -> None:
        """Wait for the next event of this wait."""
        if self._changed is None:
            self._changed = asyncio.Event()
        self._changed.clear()
        await self._changed.wait()

