"""The state store's interface: what a daemon keeps so that its calls outlive the process.

Everything here is plain data (dataclasses, JSON-able trees) and one abstract class,
:class:`Store`, with two implementations: :mod:`flowengine.store.sqlite` (the embedded
default, one file in a state directory) and :mod:`flowengine.store.postgres` (several hosts
sharing one database). The package imports nothing of flowengine above it: the engine and
the daemon translate their objects to these records, the store only keeps them.

Times are wall-clock seconds since the epoch (``time.time()``): a deadline written by one
process must mean the same moment to the process that resumes the call, on this host or
another. Leases are the exception where two hosts must agree: PostgreSQL measures them on
the database server's clock (see :meth:`Store.renew_lease`).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = [
    "CallCheckpoint", "CampaignRecord", "CheckpointError", "Claim", "DaemonSession", "Deadlines",
    "LedgerEntry", "Migration", "NewEntry", "PendingAction", "Recording", "Store", "StoreError",
    "StoreSchemaError", "SubflowFrame", "version_hash",
]


class StoreError(Exception):
    """The store cannot do what was asked (unreachable, unwritable, a record it cannot keep)."""


class StoreSchemaError(StoreError):
    """The store's schema is one this code does not know (written by a newer flowengine)."""


class CheckpointError(StoreError):
    """One checkpoint cannot be kept as it is (not JSON-able, a NUL in a name): the caller's
    bug, named by ``call_id``, raised before anything of its batch is written."""

    def __init__(self, call_id: str, message: str) -> None:
        super().__init__(f"call {call_id!r}: checkpoint not kept: {message}")
        self.call_id = call_id


def version_hash(source: str | bytes) -> str:
    """The content address of a flow file: sha256 of its bytes, hex — the same value as
    ``FlowVersion.version``, so a call's ``version_sha`` finds its text in the store."""
    raw = source.encode("utf-8") if isinstance(source, str) else source
    return hashlib.sha256(raw).hexdigest()


# --- what is stored per call ----------------------------------------------------------------

@dataclass(frozen=True)
class PendingAction:
    """The RELAY action a call is waiting on. ``control_id`` is chosen by us, so the
    checkpoint naming it is written before the command that starts it is sent: a daemon that
    takes the call over knows which action's events to wait for."""

    kind: str                      # "play", "record", "prompt", "connect", …
    control_id: str
    step: str                      # the step that started it
    started_at: float              # wall clock


@dataclass(frozen=True)
class Recording:
    """A background recording (``record_call``) still running on the call."""

    control_id: str
    step: str
    started_at: float
    url: str | None = None


@dataclass(frozen=True)
class Deadlines:
    """Wall-clock deadlines of a call: ``max_duration`` for the whole call, ``step`` for the
    current step's ``timeout:`` (None where there is none)."""

    max_duration: float | None = None
    step: float | None = None


@dataclass(frozen=True)
class SubflowFrame:
    """One caller on the subflow stack: the flow that ran a ``call`` step, waiting for its
    subflow to return (outermost first in :attr:`CallCheckpoint.subflow_stack`)."""

    flow_name: str
    version_sha: str
    step: str                      # the ``call`` step waiting
    steps: Mapping[str, Any] = field(default_factory=dict)
    vars: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    visits: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CallCheckpoint:
    """Everything needed to resume one call where it was: written at each step boundary and
    at each action's start. ``steps``, ``vars`` and the frames' trees must be JSON-able
    (str keys; str, int, float, bool, None, lists and dicts)."""

    call_id: str
    daemon_id: str                 # the daemon that owns the call
    flow_name: str
    version_sha: str               # see version_hash(); the text is kept by put_version()
    step: str | None               # the current step (None: the flow has ended)
    steps: Mapping[str, Any] = field(default_factory=dict)
    vars: Mapping[str, Any] = field(default_factory=dict)
    subflow_stack: Sequence[SubflowFrame] = ()
    pending: PendingAction | None = None
    recordings: Sequence[Recording] = ()
    deadlines: Deadlines = Deadlines()
    visits: Mapping[str, int] = field(default_factory=dict)
    #: Anything else the engine needs (RELAY node id, call context, …), kept as given.
    extra: Mapping[str, Any] = field(default_factory=dict)
    updated_at: float = 0.0

    def state_json(self) -> bytes:
        """The fields kept as one JSON document (the rest are columns); CheckpointError
        when it cannot be kept."""
        for name in ("call_id", "daemon_id", "flow_name", "version_sha", "step"):
            value = getattr(self, name)
            # PostgreSQL's text refuses NUL; refused on both backends so they keep the same.
            if value is not None and (not isinstance(value, str) or "\x00" in value):
                raise CheckpointError(str(self.call_id), f"{name} must be text without NUL")
        try:
            return orjson.dumps({
                "steps": self.steps, "vars": self.vars,
                "subflow_stack": [_frame_dict(f) for f in self.subflow_stack],
                "pending": None if self.pending is None else _pending_dict(self.pending),
                "recordings": [_recording_dict(r) for r in self.recordings],
                "deadlines": {"max_duration": self.deadlines.max_duration,
                              "step": self.deadlines.step},
                "visits": self.visits, "extra": self.extra,
            })
        except TypeError as exc:
            # Name the call: the engine's bug (a non-JSON result) must be findable.
            raise CheckpointError(self.call_id, f"not JSON-able: {exc}") from None

    @classmethod
    def from_row(cls, call_id: str, daemon_id: str, flow_name: str, version_sha: str,
                 step: str | None, state: bytes | str, updated_at: float) -> CallCheckpoint:
        """Rebuild a checkpoint from its columns and its JSON document."""
        doc = orjson.loads(state)
        pending = doc.get("pending")
        deadlines = doc.get("deadlines") or {}
        return cls(
            call_id=call_id, daemon_id=daemon_id, flow_name=flow_name,
            version_sha=version_sha, step=step,
            steps=doc.get("steps") or {}, vars=doc.get("vars") or {},
            subflow_stack=tuple(SubflowFrame(**f) for f in doc.get("subflow_stack") or ()),
            pending=None if pending is None else PendingAction(**pending),
            recordings=tuple(Recording(**r) for r in doc.get("recordings") or ()),
            deadlines=Deadlines(max_duration=deadlines.get("max_duration"),
                                step=deadlines.get("step")),
            visits=doc.get("visits") or {}, extra=doc.get("extra") or {},
            updated_at=float(updated_at))


def _frame_dict(frame: SubflowFrame) -> dict[str, Any]:
    return {"flow_name": frame.flow_name, "version_sha": frame.version_sha,
            "step": frame.step, "steps": frame.steps, "vars": frame.vars,
            "params": frame.params, "visits": frame.visits}


def _pending_dict(pending: PendingAction) -> dict[str, Any]:
    return {"kind": pending.kind, "control_id": pending.control_id, "step": pending.step,
            "started_at": pending.started_at}


def _recording_dict(rec: Recording) -> dict[str, Any]:
    return {"control_id": rec.control_id, "step": rec.step, "started_at": rec.started_at,
            "url": rec.url}


# --- what is stored per daemon --------------------------------------------------------------

@dataclass(frozen=True)
class DaemonSession:
    """One daemon's RELAY session and lease."""

    daemon_id: str
    host: str
    protocol: str | None           # RELAY's session protocol, to resume it (§2.8)
    authorization_state: str | None
    lease_expires: float           # seconds since the epoch, on the store's clock
    status: str                    # "live" or "taken"
    taken_by: str | None = None


@dataclass(frozen=True)
class Claim:
    """What :meth:`Store.claim_expired` hands the daemon that won a dead daemon's session:
    its RELAY session, its calls (now owned by the winner) and the ids of the outbound
    ledger entries it had claimed (now the winner's)."""

    session: DaemonSession
    calls: list[CallCheckpoint]
    ledger_ids: list[int]


# --- the outbound ledger --------------------------------------------------------------------

@dataclass(frozen=True)
class LedgerEntry:
    """One outbound call to place (a queued call or a campaign's contact).

    ``state``: ``queued`` (waiting for ``next_attempt``), ``claimed`` (a daemon is placing
    it), ``done`` (finished for good, ``outcome`` says how). ``phase`` is what the call API
    shows (``queued``, ``dialing``, ``in_progress``, ``completed``, ``failed``,
    ``canceled``), ``result`` the JSON document of what happened (dial outcome, path, steps,
    timestamps, the attempts); both are the API's, the store only keeps them."""

    id: int
    campaign: str
    to_number: str
    from_number: str | None
    flow: str | None
    payload: Mapping[str, Any]
    state: str
    attempts: int
    next_attempt: float
    owner: str | None
    outcome: str | None
    phase: str = "queued"
    result: Mapping[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True)
class NewEntry:
    """One entry for :meth:`Store.enqueue_many` (a campaign's contact)."""

    to_number: str
    from_number: str | None = None
    flow: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)
    not_before: float = 0.0


@dataclass(frozen=True)
class CampaignRecord:
    """A campaign: its flow, its settings as given (``spec``: caller id, pacing, retries,
    quiet hours, status URL — the API's to read) and its ``state`` (``running``,
    ``paused``, ``canceled``, ``completed``)."""

    id: str
    flow: str
    spec: Mapping[str, Any]
    state: str
    created_at: float = 0.0
    updated_at: float = 0.0


# --- migrations -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Migration:
    """One numbered schema change: statements per dialect, applied in one transaction and
    recorded in ``schema_migrations``. Numbers start at 1 and never change once released;
    a change to the schema is a new migration at the end of the list."""

    version: int
    name: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]


def check_migrations(migrations: Sequence[Migration]) -> None:
    """Refuse a list whose numbers are not 1, 2, 3, … (a programming error)."""
    for index, migration in enumerate(migrations, start=1):
        if migration.version != index:
            raise ValueError(f"migration {migration.name!r} has number {migration.version}, "
                             f"expected {index}")


def newer_schema_error(where: str, found: int, known: int) -> StoreSchemaError:
    """The clear refusal for a store written by a newer flowengine."""
    return StoreSchemaError(
        f"{where}: the state store has schema version {found}, but this flowengine knows "
        f"versions up to {known}: it was written by a newer flowengine. Run that version, "
        f"or open another store.")


# --- the interface --------------------------------------------------------------------------

class Store(ABC):
    """The state store. Every method is async and never blocks the event loop; open() before
    use (or ``async with``), close() at the end. One instance is one connection: the
    :class:`~flowengine.store.batcher.Batcher` serialises the hot path's writes through it."""

    #: Where it is, for messages (a directory, or the URL without its password).
    where: str

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @abstractmethod
    async def open(self) -> None:
        """Connect, apply the migrations this store lacks (StoreSchemaError when its schema
        is newer than this code's)."""

    @abstractmethod
    async def close(self) -> None:
        """Close the connection (idempotent)."""

    @abstractmethod
    async def schema_version(self) -> int:
        """The highest migration applied."""

    # sessions
    @abstractmethod
    async def register_daemon(self, daemon_id: str, host: str, ttl: float) -> None:
        """Record a live daemon with a lease of ``ttl`` seconds (replaces a record of the
        same id: a daemon restarted under its old id takes its own session back)."""

    @abstractmethod
    async def renew_lease(self, daemon_id: str, ttl: float) -> bool:
        """Extend the lease to ``ttl`` seconds from now (the heartbeat). False when the
        daemon's session has been taken over (or was never registered): it must stop
        acting on its calls. A ttl <= 0 lets the lease expire at once."""

    @abstractmethod
    async def claim_expired(self, new_owner: str) -> Claim | None:
        """Take over one daemon whose lease has expired: mark it taken by ``new_owner`` and
        move its calls and claimed ledger entries to ``new_owner``, in one transaction.
        Several claimers at once: each expired daemon goes to exactly one of them. None when
        no lease has expired."""

    @abstractmethod
    async def save_relay_session(self, daemon_id: str, protocol: str | None,
                                 authorization_state: str | None) -> None:
        """Keep the daemon's RELAY protocol and its last ``authorization_state``."""

    @abstractmethod
    async def get_daemon(self, daemon_id: str) -> DaemonSession | None:
        """The daemon's record, or None."""

    @abstractmethod
    async def list_daemons(self) -> list[DaemonSession]:
        """Every daemon's record, by id (``flowengine state``)."""

    @abstractmethod
    async def retire_daemon(self, daemon_id: str) -> None:
        """Forget a daemon that ended cleanly (its calls with it)."""

    # flow versions
    @abstractmethod
    async def put_version(self, source: str | bytes) -> str:
        """Keep a flow file's text under its sha256 (stored once however often put);
        returns the hash."""

    @abstractmethod
    async def get_version(self, sha: str) -> bytes | None:
        """The bytes kept under ``sha``, or None."""

    # call checkpoints
    @abstractmethod
    async def save_checkpoints(self, batch: Sequence[CallCheckpoint],
                               drop: Sequence[str] = ()) -> None:
        """Write a batch of checkpoints (each replacing the call's previous one) and delete
        the calls in ``drop``, in one transaction: all of it is kept, or none. A checkpoint
        for a call now owned by another daemon (taken over) is ignored."""

    @abstractmethod
    async def load_checkpoints(self, daemon_id: str) -> list[CallCheckpoint]:
        """The calls of one daemon, by call id."""

    @abstractmethod
    async def drop_call(self, call_id: str) -> None:
        """Forget a call that has ended."""

    # the outbound ledger
    @abstractmethod
    async def enqueue(self, campaign: str, to_number: str, *, from_number: str | None = None,
                      flow: str | None = None, payload: Mapping[str, Any] | None = None,
                      not_before: float = 0.0) -> int:
        """Queue an outbound call, due at ``not_before`` (wall clock); returns its id."""

    @abstractmethod
    async def enqueue_many(self, campaign: str, entries: Sequence[NewEntry]) -> list[int]:
        """Queue many outbound calls in one transaction (all or none); their ids, in order."""

    @abstractmethod
    async def claim_due(self, now: float, limit: int, owner: str, *,
                        campaign: str | None = None, phase: str | None = None
                        ) -> list[LedgerEntry]:
        """Claim up to ``limit`` queued entries due at ``now`` (of one ``campaign`` when
        given), earliest ``next_attempt`` first (then by id), counting an attempt each (and
        setting their ``phase`` when given). No entry is claimed twice, however many
        daemons claim at once."""

    @abstractmethod
    async def finish(self, entry_id: int, outcome: str, *, retry_at: float | None = None,
                     phase: str | None = None, result: Mapping[str, Any] | None = None
                     ) -> None:
        """Record an attempt's outcome: done for good, or (``retry_at``) queued again; with
        ``phase``/``result``, those too, in the same transaction."""

    @abstractmethod
    async def update_entry(self, entry_id: int, *, phase: str | None = None,
                           result: Mapping[str, Any] | None = None) -> None:
        """Set an entry's ``phase`` and/or ``result`` (a call dialling, then answered)."""

    @abstractmethod
    async def get_entry(self, entry_id: int) -> LedgerEntry | None:
        """One ledger entry, or None."""

    @abstractmethod
    async def list_entries(self, *, campaign: str | None = None, flow: str | None = None,
                           phase: str | None = None, before: int | None = None,
                           limit: int = 50) -> list[LedgerEntry]:
        """Entries newest first (by id, below ``before`` when given: keyset pagination),
        filtered by campaign, flow and phase."""

    @abstractmethod
    async def cancel_queued(self, *, entry_id: int | None = None,
                            campaign: str | None = None) -> list[int]:
        """Cancel the queued (not claimed) entries of one id or of one campaign: they are
        done with outcome and phase ``canceled``. The ids canceled (none when the entry was
        already claimed or done)."""

    @abstractmethod
    async def claimed_entries(self) -> list[LedgerEntry]:
        """Every entry in state ``claimed`` (a dial in flight; at start, one a dead process
        left), by id."""

    @abstractmethod
    async def entry_counts(self, campaign: str) -> dict[tuple[str, str | None], int]:
        """A campaign's entries counted by (phase, outcome)."""

    # campaigns
    @abstractmethod
    async def put_campaign(self, campaign: CampaignRecord,
                           entries: Sequence[NewEntry] = ()) -> list[int]:
        """Create a campaign and queue its contacts in one transaction; their ids."""

    @abstractmethod
    async def get_campaign(self, campaign_id: str) -> CampaignRecord | None:
        """One campaign, or None."""

    @abstractmethod
    async def set_campaign_state(self, campaign_id: str, state: str, *,
                                 only_from: Sequence[str] = ()) -> bool:
        """Set a campaign's state (only if it is one of ``only_from``, when given); False
        when there is no such campaign or its state was not one of them."""

    @abstractmethod
    async def list_campaigns(self, states: Sequence[str] = ()) -> list[CampaignRecord]:
        """The campaigns (in one of ``states`` when given), oldest first."""
