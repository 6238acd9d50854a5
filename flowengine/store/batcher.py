"""Group commit for the hot path: the checkpoints of one loop turn, in one transaction.

A call writes its checkpoint with :meth:`Batcher.put` — a dict assignment, no await — at
each step boundary. The batcher's task wakes on the next turn of the event loop, takes
everything put since its last flush (the latest checkpoint of each call; a call that ended
is dropped instead) and writes it with one :meth:`Store.save_checkpoints`. While that
transaction runs, the next turns' checkpoints pile up for the next one, so the disk sees one
transaction per flush however many calls are running, and no call waits for it.

Where the order matters — a checkpoint naming the control id of an action must be committed
before the command is sent — the call awaits :meth:`Batcher.commit`: it returns once the
flush holding that checkpoint has committed. Calls doing so in the same turn share that one
transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from types import TracebackType

import anyio
from anyio.abc import TaskGroup

from .base import CallCheckpoint, CheckpointError, Store, StoreError

__all__ = ["Batcher"]

log = logging.getLogger("flowengine.store")


class _Flush:
    """One transaction's fate, for the calls that await it."""

    __slots__ = ("done", "error", "rejected")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.error: BaseException | None = None
        #: Checkpoints left out of the flush because they cannot be kept: call id → why.
        self.rejected: dict[str, CheckpointError] = {}


class Batcher:
    """Collects checkpoints and flushes them, one transaction per loop turn.

    ``async with Batcher(store) as batcher:`` runs its flushing task; leaving the block
    flushes what is left. A failed flush is logged and retried (its records stay queued
    unless newer ones replaced them), after ``retry_delay`` seconds, doubling up to
    ``max_retry_delay``; whoever awaited :meth:`commit` on it gets the :class:`StoreError`.
    """

    def __init__(self, store: Store, *, retry_delay: float = 0.2,
                 max_retry_delay: float = 5.0) -> None:
        self.store = store
        self._retry_delay = retry_delay
        self._max_retry_delay = max_retry_delay
        self._pending: dict[str, CallCheckpoint] = {}
        self._drops: set[str] = set()
        self._wake = anyio.Event()
        self._next = _Flush()               # the flush that will write what is queued
        self._inflight: _Flush | None = None  # the flush being written
        self._tg: TaskGroup | None = None
        self._closing = False
        #: Counters, for metrics and tests.
        self.flushes = 0
        self.written = 0
        self.failures = 0

    async def __aenter__(self) -> Batcher:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._run)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> bool | None:
        assert self._tg is not None
        self._closing = True
        self._wake.set()
        try:
            return await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            self._tg = None

    # --- the hot path -----------------------------------------------------------------------

    def put(self, checkpoint: CallCheckpoint) -> None:
        """Queue a call's checkpoint (replacing one not yet written); never waits."""
        self._drops.discard(checkpoint.call_id)
        self._pending[checkpoint.call_id] = checkpoint
        self._wake.set()

    def drop(self, call_id: str) -> None:
        """Forget a call that ended (its queued checkpoint too); never waits."""
        self._pending.pop(call_id, None)
        self._drops.add(call_id)
        self._wake.set()

    async def commit(self, checkpoint: CallCheckpoint) -> None:
        """Queue a checkpoint and return once it is committed (StoreError if that flush
        failed, CheckpointError if this checkpoint cannot be kept). Calls awaiting in the
        same turn share one transaction."""
        self.put(checkpoint)
        flush = self._next
        await self.flushed()
        rejected = flush.rejected.get(checkpoint.call_id)
        if rejected is not None:
            raise rejected

    async def flushed(self) -> None:
        """Return once everything queued so far is committed."""
        flush = self._next if (self._pending or self._drops) else self._inflight
        if flush is None:
            return
        await flush.done.wait()
        if flush.error is not None:
            raise StoreError(f"{self.store.where}: checkpoint not written: {flush.error}")

    @property
    def queued(self) -> int:
        """Checkpoints and drops waiting for the next flush."""
        return len(self._pending) + len(self._drops)

    # --- the flushing task ------------------------------------------------------------------

    async def _run(self) -> None:
        delay = self._retry_delay
        while True:
            if not self._pending and not self._drops:
                if self._closing:
                    return
                await self._wake.wait()
                self._wake = anyio.Event()
                # Let the rest of this loop turn put its checkpoints in the same batch.
                await anyio.sleep(0)
                continue
            # What was put while the last flush was being written goes at once: that
            # flush took at least a loop turn, the batch is as full as it gets.
            if await self._flush_once():
                delay = self._retry_delay
                continue
            if self._closing:
                return                      # logged: nothing more we can do on the way out
            await anyio.sleep(delay)
            delay = min(self._max_retry_delay, delay * 2)

    async def _flush_once(self) -> bool:
        batch: Sequence[CallCheckpoint] = list(self._pending.values())
        self._pending = {}
        drops, self._drops = sorted(self._drops), set()
        flush, self._next = self._next, _Flush()
        self._inflight = flush
        try:
            # Shielded: a flush under way finishes even if the batcher is being cancelled,
            # so the store never sees half a batch abandoned by us.
            with anyio.CancelScope(shield=True):
                while True:
                    try:
                        await self.store.save_checkpoints(batch, drops)
                        break
                    except CheckpointError as exc:
                        # One bad record must not hold back every call's checkpoints (or be
                        # retried forever): leave it out, keep its call's last good one.
                        log.error("state store: %s", exc)
                        self.failures += 1
                        flush.rejected[exc.call_id] = exc
                        kept = [cp for cp in batch if cp.call_id != exc.call_id]
                        if len(kept) == len(batch):
                            raise
                        batch = kept
        except Exception as exc:
            self.failures += 1
            log.error("state store: writing %d checkpoints failed: %s", len(batch), exc)
            # Put back what was not replaced meanwhile, so the next flush writes it.
            for cp in batch:
                self._pending.setdefault(cp.call_id, cp)
            for call_id in drops:
                if call_id not in self._pending:
                    self._drops.add(call_id)
            flush.error = exc
            return False
        finally:
            self._inflight = None
            flush.done.set()
        self.flushes += 1
        self.written += len(batch)
        return True
