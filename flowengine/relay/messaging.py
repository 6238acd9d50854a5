"""Messages sent with ``messaging.send`` and followed through ``messaging.state`` (§5.8).

RELAY answers ``messaging.send`` with a ``message_id``; the message's progress arrives as
``messaging.state`` events on the same socket (queued → initiated → sent → delivered, or
undelivered / failed), routed by the client to the :class:`Message` with that id.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import anyio

__all__ = ["MESSAGE_FINAL_STATES", "Message"]

#: §5.8: the states after which nothing more happens to a message.
MESSAGE_FINAL_STATES = frozenset({"delivered", "undelivered", "failed"})


class Message:
    """One outbound message.

    Attributes:
        message_id: RELAY's id for it.
        state: the latest ``message_state`` (``queued`` until an event says otherwise).
        reason: why it was not delivered, when RELAY says (``reason``), else None.
    """

    __slots__ = ("_changed", "message_id", "reason", "state")

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self.state = "queued"
        self.reason: str | None = None
        self._changed: anyio.Event | None = None

    def __repr__(self) -> str:
        return f"<Message {self.message_id} {self.state}>"

    @property
    def done(self) -> bool:
        """True once the message is delivered, undelivered or failed."""
        return self.state in MESSAGE_FINAL_STATES

    async def wait(self, states: Collection[str] = MESSAGE_FINAL_STATES) -> str:
        """Wait until the state is one of ``states`` (default: a final one) or final; the
        state. There is no deadline: a carrier may never confirm delivery, so bound the
        wait (``anyio.fail_after``) when that matters."""
        while self.state not in states and not self.done:
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()
        return self.state

    def _update(self, params: Mapping[str, Any]) -> None:
        state = params.get("message_state")
        if not isinstance(state, str) or not state or self.done:
            return
        reason = params.get("reason")
        if isinstance(reason, str) and reason:
            self.reason = reason
        self.state = state
        if self._changed is not None:
            self._changed.set()
            self._changed = None
