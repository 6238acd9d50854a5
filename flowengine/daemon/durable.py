"""The daemon's state store: its RELAY session, its lease, and a checkpoint per call in
flight, so that a restarted ``flowengine serve`` continues its calls (docs/store.md).

``serve --state-dir DIR`` (SQLite, one host) or ``--store postgresql://…`` gives the daemon
a :class:`Durable`. It

* registers the daemon (``--daemon-id``, default the host name) and renews its lease by
  heartbeat; on SQLite it also holds a lock file, so two daemons never share a state dir;
* keeps the RELAY ``protocol`` and ``authorization_state`` whenever they change;
* keeps the text of every flow version it serves, content-addressed (``put_version``);
* writes each call's checkpoint at every step boundary through the :class:`Batcher` (no
  call waits for the disk), and, before an action's verb is sent, the checkpoint naming
  its control id (``commit``: that one waits for its transaction); drops it when the call
  ends.

On start it reads what the previous process of the same daemon id left: its session and
its calls. :meth:`Durable.attach` makes the RELAY client resume that session and re-attach
the calls (and their pending actions, by control id) before it connects; once connected,
:meth:`Durable.resume` starts a :class:`~flowengine.engine.checkpoint.ResumedSession` per
call, on the flow version it started with (from the store, even if the file changed). When
RELAY does not resume the session, those calls are logged and counted as lost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from flowengine.engine.checkpoint import ResumedSession, checkpoint_of
from flowengine.engine.machine import FlowRuntime
from flowengine.flow.compiler import compile_flow
from flowengine.store import (
    Batcher,
    CallCheckpoint,
    DaemonSession,
    PendingAction,
    Store,
    StoreError,
    is_postgres_url,
    store_for,
    version_hash,
)

from .reload import run_in_daemon_thread
from .routing import FlowEntry

if TYPE_CHECKING:
    from flowengine.engine import Session
    from flowengine.relay import Call, RelayClient

    from .routing import Registry

__all__ = ["DEFAULT_LEASE", "Durable", "StateDirInUse", "default_state_dir"]

logger = logging.getLogger("flowengine.daemon")

#: Seconds a lease lasts without a heartbeat; the heartbeat renews it every third of that.
DEFAULT_LEASE = 15.0
LOCK_FILENAME = "serve.lock"


def default_state_dir(environ: Mapping[str, str] = os.environ) -> str:
    """Where ``serve`` keeps its state (checkpoints with ``--state-dir`` alone, and the call
    API's ledger) when no directory is given: ``$FLOWENGINE_STATE_DIR``, else
    ``$XDG_STATE_HOME/flowengine``, else ``~/.local/state/flowengine``."""
    if environ.get("FLOWENGINE_STATE_DIR"):
        return environ["FLOWENGINE_STATE_DIR"]
    base = environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                         "state")
    return os.path.join(base, "flowengine")


class _DurableCollector(Collector):
    """``/metrics``: calls resumed and lost on restart, checkpoints written and failed."""

    def __init__(self, durable: Durable) -> None:
        self._durable = durable

    def describe(self) -> Iterator[Metric]:
        return self.collect()

    def collect(self) -> Iterator[Metric]:
        d = self._durable
        batcher = d.batcher
        yield CounterMetricFamily("flowengine_calls_resumed",
                                  "Calls of a previous process continued from their checkpoint",
                                  value=d.resumed)
        yield CounterMetricFamily("flowengine_calls_lost",
                                  "Calls of a previous process that could not be resumed",
                                  value=d.lost)
        yield CounterMetricFamily("flowengine_store_flush_failures",
                                  "State store transactions that failed (retried)",
                                  value=batcher.failures if batcher is not None else 0)


class StateDirInUse(StoreError):
    """Another ``flowengine serve`` holds this state directory."""


@dataclass(slots=True)
class _Tracked:
    session: Session
    version_sha: str


class Durable:
    """One daemon's use of the state store (see the module's docstring).

    Args:
        target: a state directory (SQLite) or a ``postgresql://`` URL.
        daemon_id: this daemon's id in the store: a daemon restarted under the same id
            resumes its previous session and calls (default: the host name).
        lease: seconds the lease lasts without a heartbeat.
    """

    def __init__(self, target: str, daemon_id: str | None = None, *,
                 lease: float = DEFAULT_LEASE) -> None:
        self.target = target
        self.host = socket.gethostname()
        self.daemon_id = daemon_id or self.host
        self.lease = lease
        self.store: Store = store_for(target)
        self.batcher: Batcher | None = None
        #: The previous process's session and calls (read at open()).
        self.previous: DaemonSession | None = None
        self.to_resume: list[CallCheckpoint] = []
        #: Counters: calls resumed from a checkpoint, calls that could not be.
        self.resumed = 0
        self.lost = 0
        #: False after a heartbeat found the session taken over by another daemon.
        self.owned = True
        self._calls: dict[str, _Tracked] = {}
        self._stored: set[str] = set()
        self._relay: RelayClient | None = None
        self._session_changed = anyio.Event()
        self._lock_fd: int | None = None
        self._adopted: dict[str, Call] = {}
        self._to_drop: list[str] = []
        #: What /metrics shows of it (the daemon registers it).
        self.collector = _DurableCollector(self)
        #: Set after a clean drain: close() forgets the session.
        self.retire_on_close = False

    @property
    def where(self) -> str:
        """The store, for messages (never a password)."""
        return self.store.where

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Open the store (migrations applied), read what the previous process of this
        daemon id left, and register this one.

        Raises:
            StateDirInUse: another serve holds the state directory.
            StoreError: the store cannot be opened (unreachable, newer schema, corrupt).
        """
        if not is_postgres_url(self.target):
            await anyio.to_thread.run_sync(self._lock)
        try:
            await self.store.open()
        except StoreError:
            raise
        except Exception as exc:  # sqlite3.DatabaseError on a corrupt file, and the like
            raise StoreError(f"{self.where}: cannot open the state store: {exc}") from None
        self.previous = await self.store.get_daemon(self.daemon_id)
        if self.previous is not None:
            self.to_resume = await self.store.load_checkpoints(self.daemon_id)
        await self.store.register_daemon(self.daemon_id, self.host, self.lease)

    def _lock(self) -> None:
        import fcntl

        path = Path(self.target)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path / LOCK_FILENAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            # Released by the kernel when the process dies, kill -9 included: a restart
            # right after a crash takes it at once.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StateDirInUse(f"{path}: another flowengine serve is using this state "
                                "directory") from None
        self._lock_fd = fd

    async def close(self, *, retire: bool = False) -> None:
        """Close the store; ``retire``: the daemon stopped cleanly (drained), forget its
        session."""
        with anyio.CancelScope(shield=True):
            if retire:
                try:
                    await self.store.retire_daemon(self.daemon_id)
                except StoreError as exc:
                    logger.warning("state store: retiring the session failed: %s", exc)
            await self.store.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The batcher, the heartbeat and the session saver, until cancelled."""
        async with Batcher(self.store) as batcher, anyio.create_task_group() as tg:
            self.batcher = batcher
            tg.start_soon(self._heartbeat, name="state store heartbeat")
            tg.start_soon(self._save_session, name="state store: RELAY session")
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                tg.cancel_scope.cancel()
                self.batcher = None

    async def _heartbeat(self) -> None:
        while True:
            await anyio.sleep(self.lease / 3)
            try:
                if not await self.store.renew_lease(self.daemon_id, self.lease):
                    if self.owned:
                        logger.error("state store: this daemon's session (%s) was taken over "
                                     "by another daemon", self.daemon_id)
                    self.owned = False
            except StoreError as exc:
                logger.warning("state store: lease not renewed: %s", exc)

    async def _save_session(self) -> None:
        while True:
            await self._session_changed.wait()
            self._session_changed = anyio.Event()
            relay = self._relay
            if relay is None or relay.protocol is None:
                continue
            try:
                await self.store.save_relay_session(self.daemon_id, relay.protocol,
                                                    relay.authorization_state)
            except StoreError as exc:
                logger.warning("state store: RELAY session not saved: %s", exc)
                await anyio.sleep(1.0)
                self._session_changed.set()

    # ------------------------------------------------------------ flow versions

    async def store_versions(self, registry: Registry) -> None:
        """Keep the text of every flow version being served (once each)."""
        for entry in registry.flows.values():
            flow = entry.flow
            if flow.version in self._stored:
                continue
            try:
                data = await anyio.to_thread.run_sync(Path(flow.file).read_bytes)
            except OSError as exc:
                logger.warning("state store: %s not kept (%s): its calls cannot be resumed "
                               "after a restart", flow.file, exc)
                continue
            if version_hash(data) != flow.version:
                # Changed since it was compiled: the next rescan compiles and keeps it.
                continue
            try:
                await self.store.put_version(data)
            except StoreError as exc:
                logger.warning("state store: flow version %s not kept: %s",
                               flow.short_version, exc)
                continue
            self._stored.add(flow.version)

    # ------------------------------------------------------------- the hot path

    def attach(self, relay: RelayClient) -> None:
        """Hook the RELAY client (before it connects): its session changes are kept, each
        action's checkpoint is committed before its verb; the previous session is resumed
        and its calls re-attached."""
        self._relay = relay
        relay.on_session_change = self._session_changed.set
        relay.before_action = self._before_action
        prev = self.previous
        if prev is None or not self.to_resume:
            return
        if not prev.protocol:
            self._lose(self.to_resume, "the previous process never had a RELAY session")
            self.to_resume = []
            return
        relay.restore_session(prev.protocol, prev.authorization_state or "")
        for cp in self.to_resume:
            params = cp.extra.get("call")
            if not isinstance(params, dict):
                continue
            call = relay.adopt_call(params)
            if cp.pending is not None:
                try:
                    call.reattach(cp.pending.kind, cp.pending.control_id)
                except ValueError:
                    # Not one we can take over: the step runs again and starts it anew.
                    logger.info("call %s: %s action %s is started again on resume",
                                cp.call_id, cp.pending.kind, cp.pending.control_id)
            self._adopted[cp.call_id] = call

    def call_started(self, call: Call, entry: FlowEntry, session: Session) -> None:
        """A call began (or was resumed) on ``entry``: checkpoint it from now on."""
        self._calls[call.call_id] = _Tracked(session, entry.flow.version)
        self.step(call.call_id)

    def step(self, call_id: str) -> None:
        """A step boundary: queue the call's checkpoint (never waits)."""
        tracked = self._calls.get(call_id)
        batcher = self.batcher
        if tracked is None or batcher is None or not self.owned:
            return
        batcher.put(checkpoint_of(tracked.session, self.daemon_id,
                                  version_sha=tracked.version_sha))

    def call_ended(self, call_id: str) -> None:
        """The call's flow ended: forget its checkpoint."""
        if self._calls.pop(call_id, None) is not None and self.batcher is not None:
            self.batcher.drop(call_id)

    async def _before_action(self, call: Call, kind: str, control_id: str) -> None:
        tracked = self._calls.get(call.call_id)
        batcher = self.batcher
        if tracked is None or batcher is None or not self.owned:
            return
        session = tracked.session
        pending = PendingAction(kind=kind, control_id=control_id, step=session.state,
                                started_at=time.time())
        try:
            await batcher.commit(checkpoint_of(session, self.daemon_id,
                                               version_sha=tracked.version_sha,
                                               pending=pending))
        except StoreError as exc:
            # The store is down: the call goes on in memory (it cannot be resumed from
            # this action if the process dies before the store is back).
            logger.warning("call %s: checkpoint before %s not written: %s", call.call_id,
                           kind, exc, extra={"call_id": call.call_id})

    # ------------------------------------------------------------------- resume

    async def resume(self, relay: RelayClient, registry: Registry,
                     start: Callable[[Call, FlowEntry, Session], None],
                     **session_args: Any) -> None:
        """After connecting: continue each call of the previous process from its
        checkpoint (``start(call, entry, session)`` runs it), or, when RELAY started a new
        session instead of resuming it, log and count them as lost."""
        checkpoints, self.to_resume = self.to_resume, []
        prev = self.previous
        if checkpoints and (prev is None or relay.protocol != prev.protocol):
            self._lose(checkpoints, "RELAY did not resume the previous session")
            checkpoints = []
        entries: dict[str, FlowEntry | None] = {}
        for cp in checkpoints:
            call = self._adopted.pop(cp.call_id, None)
            if call is None:
                self._lose([cp], "its checkpoint has no call record")
                continue
            if call.ended and cp.step is None:
                await self.store.drop_call(cp.call_id)
                continue
            if cp.version_sha not in entries:
                entries[cp.version_sha] = await self._entry_for(cp, registry)
            entry = entries[cp.version_sha]
            if entry is None:
                self._lose([cp], f"flow version {cp.version_sha[:12]} is not in the store")
                with contextlib.suppress(Exception):
                    await call.hangup("error")
                continue
            session = ResumedSession(entry.runtime, call, cp, **session_args)
            self.resumed += 1
            logger.info("call %s resumed at step %s of %s@%s%s", cp.call_id, cp.step,
                        cp.flow_name, entry.flow.short_version,
                        f" (re-attached to its {cp.pending.kind} {cp.pending.control_id})"
                        if cp.pending is not None else "",
                        extra={"call_id": cp.call_id, "event": "call_resumed",
                               "flow": cp.flow_name, "flow_version": cp.version_sha,
                               "step": cp.step})
            start(call, entry, session)
        drops, self._to_drop = self._to_drop, []
        for call_id in drops:
            try:
                await self.store.drop_call(call_id)
            except StoreError as exc:
                logger.warning("state store: lost call %s not dropped: %s", call_id, exc)

    async def _entry_for(self, cp: CallCheckpoint, registry: Registry) -> FlowEntry | None:
        current = registry.flows.get(cp.flow_name)
        if current is not None and current.flow.version == cp.version_sha:
            return current
        source = await self.store.get_version(cp.version_sha)
        if source is None:
            return None
        file = str(cp.extra.get("file") or f"<{cp.flow_name}@{cp.version_sha[:12]}>")

        def build() -> FlowEntry | None:
            result = compile_flow(source, file)
            if result.version is None:
                return None
            return FlowEntry(result.version, FlowRuntime(result.version), time.time())

        entry = await run_in_daemon_thread(build)
        if entry is not None:
            self._stored.add(cp.version_sha)
        return entry

    def _lose(self, checkpoints: list[CallCheckpoint], why: str) -> None:
        for cp in checkpoints:
            self.lost += 1
            logger.error("call %s lost on restart (%s): it was at step %s of %s", cp.call_id,
                         why, cp.step, cp.flow_name,
                         extra={"call_id": cp.call_id, "event": "call_lost",
                                "flow": cp.flow_name, "step": cp.step})
            self._to_drop.append(cp.call_id)
