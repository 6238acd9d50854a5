"""The embedded state store: one SQLite file in the state directory, in WAL mode.

sqlite3 blocks, so every statement runs in a worker thread (``anyio.to_thread`` with a
limiter of one: the connection is used by one thread at a time, in order) and the event loop
only awaits the result. Each write is one transaction opened with ``BEGIN IMMEDIATE``, which
takes SQLite's write lock at once: two processes on the same file (a daemon and its
replacement) serialise on it, which is what makes :meth:`SQLiteStore.claim_expired` and
:meth:`SQLiteStore.claim_due` race-free.

WAL with ``synchronous=NORMAL``: a committed transaction survives the process being killed
(it is in the WAL file when COMMIT returns); on a power loss the last transactions may be
lost but the file is never corrupted. ``synchronous="FULL"`` makes each commit wait for the
disk as well.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio
import orjson

from .base import (
    CallCheckpoint,
    CampaignRecord,
    Claim,
    DaemonSession,
    LedgerEntry,
    Migration,
    NewEntry,
    Store,
    StoreError,
    check_migrations,
    newer_schema_error,
    version_hash,
)
from .schema import MIGRATIONS, SCHEMA_MIGRATIONS_SQL

__all__ = ["DB_FILENAME", "SQLiteStore"]

#: The file in the state directory.
DB_FILENAME = "flowengine.db"

T = TypeVar("T")

_CALL_COLUMNS = "call_id, daemon_id, flow_name, version_sha, step, state, updated_at"
_DAEMON_COLUMNS = ("daemon_id, host, protocol, authorization_state, lease_expires, status, "
                   "taken_by")
_LEDGER_COLUMNS = ("id, campaign, to_number, from_number, flow, payload, state, attempts, "
                   "next_attempt, owner, outcome, phase, result, created_at, updated_at")
_CAMPAIGN_COLUMNS = "id, flow, spec, state, created_at, updated_at"
_INSERT_ENTRY = ("INSERT INTO ledger (campaign, to_number, from_number, flow, payload, state, "
                 "attempts, next_attempt, owner, outcome, created_at, updated_at) "
                 "VALUES (?, ?, ?, ?, ?, 'queued', 0, ?, NULL, NULL, ?, ?)")
# A checkpoint replaces the call's last one, unless the call has been taken over by another
# daemon since: the old owner's late writes must not overwrite the new owner's.
_UPSERT_CALL = (
    f"INSERT INTO calls ({_CALL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (call_id) DO UPDATE SET flow_name = excluded.flow_name, "
    "version_sha = excluded.version_sha, step = excluded.step, state = excluded.state, "
    "updated_at = excluded.updated_at WHERE calls.daemon_id = excluded.daemon_id")


def _entry(row: Sequence[Any]) -> LedgerEntry:
    return LedgerEntry(id=int(row[0]), campaign=row[1], to_number=row[2], from_number=row[3],
                       flow=row[4], payload=orjson.loads(row[5]), state=row[6],
                       attempts=int(row[7]), next_attempt=float(row[8]), owner=row[9],
                       outcome=row[10], phase=row[11], result=orjson.loads(row[12]),
                       created_at=float(row[13]), updated_at=float(row[14]))


def _campaign(row: Sequence[Any]) -> CampaignRecord:
    return CampaignRecord(id=row[0], flow=row[1], spec=orjson.loads(row[2]), state=row[3],
                          created_at=float(row[4]), updated_at=float(row[5]))


def _entry_row(campaign: str, entry: NewEntry, now: float) -> tuple[Any, ...]:
    return (campaign, entry.to_number, entry.from_number, entry.flow,
            orjson.dumps(dict(entry.payload)).decode(), float(entry.not_before), now, now)


def _json(tree: Mapping[str, Any] | None) -> str | None:
    return None if tree is None else orjson.dumps(dict(tree)).decode()


def _session(row: Sequence[Any]) -> DaemonSession:
    return DaemonSession(daemon_id=row[0], host=row[1], protocol=row[2],
                         authorization_state=row[3], lease_expires=float(row[4]),
                         status=row[5], taken_by=row[6])


def _checkpoint_row(cp: CallCheckpoint, now: float) -> tuple[Any, ...]:
    return (cp.call_id, cp.daemon_id, cp.flow_name, cp.version_sha, cp.step,
            cp.state_json().decode(), cp.updated_at or now)


class SQLiteStore(Store):
    """The state store in ``<state_dir>/flowengine.db``."""

    def __init__(self, state_dir: str | Path, *, migrations: Sequence[Migration] = MIGRATIONS,
                 synchronous: str = "NORMAL") -> None:
        check_migrations(migrations)
        if synchronous.upper() not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / DB_FILENAME
        self.where = str(self.path)
        self._migrations = tuple(migrations)
        self._synchronous = synchronous.upper()
        self._conn: sqlite3.Connection | None = None
        self._limiter = anyio.CapacityLimiter(1)

    # --- plumbing ---------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in the store's worker thread."""
        conn = self._conn
        if conn is None:
            raise StoreError(f"{self.where}: the store is not open")
        try:
            return await anyio.to_thread.run_sync(fn, conn, *args, limiter=self._limiter)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.where}: {exc}") from exc

    @staticmethod
    def _write(conn: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
        """One write transaction: all of ``fn`` or nothing."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn, *args)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    async def _tx(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._run(self._write, fn, *args)

    # --- open / close -----------------------------------------------------------------------

    async def open(self) -> None:
        if self._conn is not None:
            return
        try:
            await anyio.to_thread.run_sync(self._connect, limiter=self._limiter)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{self.where}: cannot open the state store: {exc}") from exc
        try:
            await self._tx(self._migrate)
        except BaseException:
            await self.close()
            raise

    def _connect(self) -> None:
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # The file holds RELAY's authorization_state and the calls' data: readable by the
        # daemon's user only. SQLite gives its -wal and -shm files the same permissions.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        # isolation_level=None: we issue BEGIN/COMMIT ourselves; check_same_thread=False
        # because the worker thread may differ between calls (the limiter serialises them).
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=30.0)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.where}: cannot use WAL mode (got {mode})")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute(SCHEMA_MIGRATIONS_SQL)
        found = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations"
                             ).fetchone()[0]
        if found > len(self._migrations):
            raise newer_schema_error(self.where, found, len(self._migrations))
        for migration in self._migrations[found:]:
            for statement in migration.sqlite:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations (version, name, applied_at) "
                         "VALUES (?, ?, ?)", (migration.version, migration.name, time.time()))

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await anyio.to_thread.run_sync(conn.close, limiter=self._limiter)

    async def schema_version(self) -> int:
        return await self._run(lambda c: c.execute(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0])

    # --- sessions ---------------------------------------------------------------------------

    async def register_daemon(self, daemon_id: str, host: str, ttl: float) -> None:
        def write(conn: sqlite3.Connection) -> None:
            now = time.time()
            conn.execute(
                f"INSERT INTO daemons ({_DAEMON_COLUMNS}, started_at) "
                "VALUES (?, ?, NULL, NULL, ?, 'live', NULL, ?) ON CONFLICT (daemon_id) DO "
                "UPDATE SET host = excluded.host, lease_expires = excluded.lease_expires, "
                "status = 'live', taken_by = NULL, started_at = excluded.started_at",
                (daemon_id, host, now + ttl, now))
        await self._tx(write)

    async def renew_lease(self, daemon_id: str, ttl: float) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("UPDATE daemons SET lease_expires = ? "
                               "WHERE daemon_id = ? AND status = 'live'",
                               (time.time() + ttl, daemon_id))
            return cur.rowcount == 1
        return await self._tx(write)

    async def claim_expired(self, new_owner: str) -> Claim | None:
        return await self._tx(self._claim_write(new_owner))

    def _claim_write(self, new_owner: str) -> Callable[[sqlite3.Connection], Claim | None]:
        def write(conn: sqlite3.Connection) -> Claim | None:
            # BEGIN IMMEDIATE holds the write lock from here to COMMIT: no other claimer can
            # read this row as still live in between.
            row = conn.execute(
                f"SELECT {_DAEMON_COLUMNS} FROM daemons WHERE status = 'live' "
                "AND lease_expires <= ? AND daemon_id <> ? ORDER BY lease_expires LIMIT 1",
                (time.time(), new_owner)).fetchone()
            if row is None:
                return None
            old = row[0]
            conn.execute("UPDATE daemons SET status = 'taken', taken_by = ? "
                         "WHERE daemon_id = ?", (new_owner, old))
            rows = conn.execute(
                f"UPDATE calls SET daemon_id = ? WHERE daemon_id = ? RETURNING {_CALL_COLUMNS}",
                (new_owner, old)).fetchall()
            ids = [r[0] for r in conn.execute(
                "UPDATE ledger SET owner = ? WHERE owner = ? AND state = 'claimed' "
                "RETURNING id", (new_owner, old)).fetchall()]
            session = DaemonSession(daemon_id=old, host=row[1], protocol=row[2],
                                    authorization_state=row[3], lease_expires=float(row[4]),
                                    status="taken", taken_by=new_owner)
            calls = sorted((CallCheckpoint.from_row(*r) for r in rows), key=lambda c: c.call_id)
            return Claim(session=session, calls=calls, ledger_ids=sorted(ids))
        return write

    async def save_relay_session(self, daemon_id: str, protocol: str | None,
                                 authorization_state: str | None) -> None:
        await self._tx(lambda c: c.execute(
            "UPDATE daemons SET protocol = ?, authorization_state = ? WHERE daemon_id = ?",
            (protocol, authorization_state, daemon_id)))

    async def get_daemon(self, daemon_id: str) -> DaemonSession | None:
        row = await self._run(lambda c: c.execute(
            f"SELECT {_DAEMON_COLUMNS} FROM daemons WHERE daemon_id = ?",
            (daemon_id,)).fetchone())
        return None if row is None else _session(row)

    async def list_daemons(self) -> list[DaemonSession]:
        rows = await self._run(lambda c: c.execute(
            f"SELECT {_DAEMON_COLUMNS} FROM daemons ORDER BY daemon_id").fetchall())
        return [_session(row) for row in rows]

    async def retire_daemon(self, daemon_id: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM calls WHERE daemon_id = ?", (daemon_id,))
            conn.execute("DELETE FROM daemons WHERE daemon_id = ?", (daemon_id,))
        await self._tx(write)

    # --- flow versions ----------------------------------------------------------------------

    async def put_version(self, source: str | bytes) -> str:
        raw = source.encode("utf-8") if isinstance(source, str) else bytes(source)
        sha = version_hash(raw)
        await self._tx(lambda c: c.execute(
            "INSERT INTO flow_versions (sha, source, created_at) VALUES (?, ?, ?) "
            "ON CONFLICT (sha) DO NOTHING", (sha, raw, time.time())))
        return sha

    async def get_version(self, sha: str) -> bytes | None:
        row = await self._run(lambda c: c.execute(
            "SELECT source FROM flow_versions WHERE sha = ?", (sha,)).fetchone())
        return None if row is None else bytes(row[0])

    # --- call checkpoints -------------------------------------------------------------------

    async def save_checkpoints(self, batch: Sequence[CallCheckpoint],
                               drop: Sequence[str] = ()) -> None:
        # Serialised here, on the loop, so that a record that is not JSON-able fails the
        # caller before anything is written (and the JSON work is off the worker thread's
        # lock, which the next batch may be waiting for).
        now = time.time()
        rows = [_checkpoint_row(cp, now) for cp in batch]
        drops = [(call_id,) for call_id in drop]

        def write(conn: sqlite3.Connection) -> None:
            if rows:
                conn.executemany(_UPSERT_CALL, rows)
            if drops:
                conn.executemany("DELETE FROM calls WHERE call_id = ?", drops)
        if rows or drops:
            await self._tx(write)

    async def load_checkpoints(self, daemon_id: str) -> list[CallCheckpoint]:
        rows = await self._run(lambda c: c.execute(
            f"SELECT {_CALL_COLUMNS} FROM calls WHERE daemon_id = ? ORDER BY call_id",
            (daemon_id,)).fetchall())
        return [CallCheckpoint.from_row(*row) for row in rows]

    async def drop_call(self, call_id: str) -> None:
        await self._tx(lambda c: c.execute("DELETE FROM calls WHERE call_id = ?", (call_id,)))

    # --- the outbound ledger ----------------------------------------------------------------

    async def enqueue(self, campaign: str, to_number: str, *, from_number: str | None = None,
                      flow: str | None = None, payload: Mapping[str, Any] | None = None,
                      not_before: float = 0.0) -> int:
        ids = await self.enqueue_many(campaign, [NewEntry(
            to_number=to_number, from_number=from_number, flow=flow, payload=payload or {},
            not_before=not_before)])
        return ids[0]

    async def enqueue_many(self, campaign: str, entries: Sequence[NewEntry]) -> list[int]:
        now = time.time()
        rows = [_entry_row(campaign, e, now) for e in entries]
        return await self._tx(lambda c: self._insert_entries(c, rows))

    @staticmethod
    def _insert_entries(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> list[int]:
        ids: list[int] = []
        for row in rows:
            ids.append(int(conn.execute(_INSERT_ENTRY, row).lastrowid or 0))
        return ids

    async def claim_due(self, now: float, limit: int, owner: str, *,
                        campaign: str | None = None, phase: str | None = None
                        ) -> list[LedgerEntry]:
        where = "" if campaign is None else "AND campaign = ? "
        extra: tuple[Any, ...] = () if campaign is None else (campaign,)

        def write(conn: sqlite3.Connection) -> list[LedgerEntry]:
            rows = conn.execute(
                "UPDATE ledger SET state = 'claimed', owner = ?, attempts = attempts + 1, "
                "phase = COALESCE(?, phase), updated_at = ? WHERE id IN (SELECT id FROM "
                f"ledger WHERE state = 'queued' AND next_attempt <= ? {where}"
                f"ORDER BY next_attempt, id LIMIT ?) RETURNING {_LEDGER_COLUMNS}",
                (owner, phase, time.time(), now, *extra, limit)).fetchall()
            return sorted((_entry(r) for r in rows), key=lambda e: (e.next_attempt, e.id))
        if limit <= 0:
            return []
        return await self._tx(write)

    async def finish(self, entry_id: int, outcome: str, *, retry_at: float | None = None,
                     phase: str | None = None, result: Mapping[str, Any] | None = None
                     ) -> None:
        body = _json(result)
        if retry_at is None:
            sql = ("UPDATE ledger SET state = 'done', outcome = ?, owner = NULL, "
                   "phase = COALESCE(?, phase), result = COALESCE(?, result), "
                   "updated_at = ? WHERE id = ?")
            args: tuple[Any, ...] = (outcome, phase, body, time.time(), entry_id)
        else:
            sql = ("UPDATE ledger SET state = 'queued', outcome = ?, owner = NULL, "
                   "next_attempt = ?, phase = COALESCE(?, phase), "
                   "result = COALESCE(?, result), updated_at = ? WHERE id = ?")
            args = (outcome, retry_at, phase, body, time.time(), entry_id)
        await self._tx(lambda c: c.execute(sql, args))

    async def update_entry(self, entry_id: int, *, phase: str | None = None,
                           result: Mapping[str, Any] | None = None) -> None:
        args = (phase, _json(result), time.time(), entry_id)
        await self._tx(lambda c: c.execute(
            "UPDATE ledger SET phase = COALESCE(?, phase), result = COALESCE(?, result), "
            "updated_at = ? WHERE id = ?", args))

    async def get_entry(self, entry_id: int) -> LedgerEntry | None:
        row = await self._run(lambda c: c.execute(
            f"SELECT {_LEDGER_COLUMNS} FROM ledger WHERE id = ?", (entry_id,)).fetchone())
        return None if row is None else _entry(row)

    async def list_entries(self, *, campaign: str | None = None, flow: str | None = None,
                           phase: str | None = None, before: int | None = None,
                           limit: int = 50) -> list[LedgerEntry]:
        clauses, args = _filters(campaign=campaign, flow=flow, phase=phase, before=before)
        sql = (f"SELECT {_LEDGER_COLUMNS} FROM ledger{clauses} ORDER BY id DESC LIMIT ?")
        rows = await self._run(lambda c: c.execute(sql, (*args, int(limit))).fetchall())
        return [_entry(r) for r in rows]

    async def cancel_queued(self, *, entry_id: int | None = None,
                            campaign: str | None = None) -> list[int]:
        if entry_id is None and campaign is None:
            raise ValueError("cancel_queued needs entry_id or campaign")
        clauses, args = _filters(campaign=campaign, entry_id=entry_id)

        def write(conn: sqlite3.Connection) -> list[int]:
            rows = conn.execute(
                "UPDATE ledger SET state = 'done', outcome = 'canceled', phase = 'canceled', "
                f"updated_at = ? WHERE state = 'queued' AND {clauses[len(' WHERE '):]} "
                "RETURNING id", (time.time(), *args)).fetchall()
            return sorted(int(r[0]) for r in rows)
        return await self._tx(write)

    async def claimed_entries(self) -> list[LedgerEntry]:
        rows = await self._run(lambda c: c.execute(
            f"SELECT {_LEDGER_COLUMNS} FROM ledger WHERE state = 'claimed' ORDER BY id"
        ).fetchall())
        return [_entry(r) for r in rows]

    async def entry_counts(self, campaign: str) -> dict[tuple[str, str | None], int]:
        rows = await self._run(lambda c: c.execute(
            "SELECT phase, outcome, COUNT(*) FROM ledger WHERE campaign = ? "
            "GROUP BY phase, outcome", (campaign,)).fetchall())
        return {(r[0], r[1]): int(r[2]) for r in rows}

    # --- campaigns --------------------------------------------------------------------------

    async def put_campaign(self, campaign: CampaignRecord,
                           entries: Sequence[NewEntry] = ()) -> list[int]:
        now = time.time()
        row = (campaign.id, campaign.flow, orjson.dumps(dict(campaign.spec)).decode(),
               campaign.state, campaign.created_at or now, now)
        rows = [_entry_row(campaign.id, e, now) for e in entries]

        def write(conn: sqlite3.Connection) -> list[int]:
            conn.execute(f"INSERT INTO campaigns ({_CAMPAIGN_COLUMNS}) "
                         "VALUES (?, ?, ?, ?, ?, ?)", row)
            return self._insert_entries(conn, rows)
        return await self._tx(write)

    async def get_campaign(self, campaign_id: str) -> CampaignRecord | None:
        row = await self._run(lambda c: c.execute(
            f"SELECT {_CAMPAIGN_COLUMNS} FROM campaigns WHERE id = ?",
            (campaign_id,)).fetchone())
        return None if row is None else _campaign(row)

    async def set_campaign_state(self, campaign_id: str, state: str, *,
                                 only_from: Sequence[str] = ()) -> bool:
        guard = (f" AND state IN ({', '.join('?' for _ in only_from)})" if only_from else "")
        args = (state, time.time(), campaign_id, *only_from)
        return await self._tx(lambda c: c.execute(
            f"UPDATE campaigns SET state = ?, updated_at = ? WHERE id = ?{guard}",
            args).rowcount == 1)

    async def list_campaigns(self, states: Sequence[str] = ()) -> list[CampaignRecord]:
        where = f" WHERE state IN ({', '.join('?' for _ in states)})" if states else ""
        rows = await self._run(lambda c: c.execute(
            f"SELECT {_CAMPAIGN_COLUMNS} FROM campaigns{where} ORDER BY created_at, id",
            tuple(states)).fetchall())
        return [_campaign(r) for r in rows]


def _filters(*, campaign: str | None = None, flow: str | None = None, phase: str | None = None,
             before: int | None = None, entry_id: int | None = None
             ) -> tuple[str, tuple[Any, ...]]:
    """`` WHERE a = ? AND …`` for the filters given (empty without any), and its args."""
    parts: list[str] = []
    args: list[Any] = []
    for column, value, op in (("campaign", campaign, "="), ("flow", flow, "="),
                              ("phase", phase, "="), ("id", before, "<"),
                              ("id", entry_id, "=")):
        if value is not None:
            parts.append(f"{column} {op} ?")
            args.append(value)
    return (" WHERE " + " AND ".join(parts)) if parts else "", tuple(args)
