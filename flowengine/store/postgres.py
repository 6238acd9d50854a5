"""The shared state store: PostgreSQL through psycopg 3, for daemons on several hosts.

One :class:`PostgresStore` is one ``AsyncConnection`` (autocommit; each write is an explicit
transaction), used by one operation at a time (an ``anyio.Lock``): the daemon's writes go
through the :class:`~flowengine.store.batcher.Batcher`, one transaction per loop turn, so a
pool would only add connections that wait on the same rows. Batches use ``executemany``,
which psycopg sends in pipeline mode (one round trip for the whole batch).

Leases are measured on the database server's clock (``clock_timestamp()``), the one clock
every host sharing the store agrees on. The claims are race-free by row locks:
``SELECT … FOR UPDATE SKIP LOCKED`` inside the ``UPDATE`` that claims, so two claimers never
take the same daemon or the same ledger entry. Migrations are serialised across hosts by a
transaction-level advisory lock.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio
import orjson
import psycopg

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

__all__ = ["PostgresStore", "redact_url"]

#: The advisory lock key that serialises migrations (any constant; "flowengine" in ASCII).
_MIGRATION_LOCK = 0x666C6F77656E67

_NOW = "extract(epoch from clock_timestamp())::float8"
_CALL_COLUMNS = "call_id, daemon_id, flow_name, version_sha, step, state, updated_at"
_DAEMON_COLUMNS = ("daemon_id, host, protocol, authorization_state, lease_expires, status, "
                   "taken_by")
_LEDGER_COLUMNS = ("id, campaign, to_number, from_number, flow, payload, state, attempts, "
                   "next_attempt, owner, outcome, phase, result, created_at, updated_at")
_CAMPAIGN_COLUMNS = "id, flow, spec, state, created_at, updated_at"
_INSERT_ENTRY = ("INSERT INTO ledger (campaign, to_number, from_number, flow, payload, state, "
                 "attempts, next_attempt, owner, outcome, created_at, updated_at) "
                 "VALUES (%s, %s, %s, %s, %s, 'queued', 0, %s, NULL, NULL, %s, %s) RETURNING id")
_UPSERT_CALL = (
    f"INSERT INTO calls ({_CALL_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (call_id) DO UPDATE SET flow_name = excluded.flow_name, "
    "version_sha = excluded.version_sha, step = excluded.step, state = excluded.state, "
    "updated_at = excluded.updated_at WHERE calls.daemon_id = excluded.daemon_id")


def redact_url(url: str) -> str:
    """The URL without its password (in the user part or a ``password=`` parameter), for
    messages and logs."""
    parts = urlsplit(url)
    if parts.password is not None:
        host = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    if parts.query:
        query = [(k, "***" if k.lower() == "password" else v)
                 for k, v in parse_qsl(parts.query, keep_blank_values=True)]
        parts = parts._replace(query=urlencode(query, safe="*"))
    return urlunsplit(parts)


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


def _filters(*, campaign: str | None = None, flow: str | None = None, phase: str | None = None,
             before: int | None = None, entry_id: int | None = None
             ) -> tuple[list[str], tuple[Any, ...]]:
    """The conditions (``a = %s``) for the filters given, and their args."""
    parts: list[str] = []
    args: list[Any] = []
    for column, value, op in (("campaign", campaign, "="), ("flow", flow, "="),
                              ("phase", phase, "="), ("id", before, "<"),
                              ("id", entry_id, "=")):
        if value is not None:
            parts.append(f"{column} {op} %s")
            args.append(value)
    return parts, tuple(args)


class PostgresStore(Store):
    """The state store in a PostgreSQL database (``postgresql://user@host:port/db``)."""

    def __init__(self, url: str, *, migrations: Sequence[Migration] = MIGRATIONS,
                 connect_timeout: float = 10.0) -> None:
        check_migrations(migrations)
        self.url = url
        self.where = redact_url(url)
        self._migrations = tuple(migrations)
        self._connect_timeout = connect_timeout
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = anyio.Lock()

    def _error(self, exc: BaseException) -> StoreError:
        # psycopg's messages never carry the password; the URL we print is redacted.
        return StoreError(f"{self.where}: {str(exc).strip()}")

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        conn = self._conn
        if conn is None:
            raise StoreError(f"{self.where}: the store is not open")
        if conn.closed:
            # The server closed it (restart, failover): connect again once.
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, connect_timeout=max(1, int(self._connect_timeout)))
            except psycopg.Error as exc:
                raise self._error(exc) from exc
            self._conn = conn
        return conn

    # --- open / close -----------------------------------------------------------------------

    async def open(self) -> None:
        if self._conn is not None:
            return
        try:
            self._conn = await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, connect_timeout=max(1, int(self._connect_timeout)))
        except psycopg.Error as exc:
            raise StoreError(f"{self.where}: cannot open the state store: "
                             f"{str(exc).strip()}") from exc
        try:
            await self._migrate()
        except BaseException:
            await self.close()
            raise

    async def _migrate(self) -> None:
        async with self._lock:
            conn = await self._connection()
            try:
                async with conn.transaction():
                    # Two daemons starting at once: the second waits here, then sees the
                    # first's migrations applied.
                    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                    await conn.execute(SCHEMA_MIGRATIONS_SQL)
                    cur = await conn.execute(
                        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
                    row = await cur.fetchone()
                    found = int(row[0]) if row else 0
                    if found > len(self._migrations):
                        raise newer_schema_error(self.where, found, len(self._migrations))
                    for migration in self._migrations[found:]:
                        for statement in migration.postgres:
                            await conn.execute(statement)
                        await conn.execute(
                            "INSERT INTO schema_migrations (version, name, applied_at) "
                            "VALUES (%s, %s, %s)",
                            (migration.version, migration.name, time.time()))
            except psycopg.Error as exc:
                raise self._error(exc) from exc

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def _fetch(self, sql: str, args: Sequence[Any] | Mapping[str, Any] = ()
                     ) -> list[tuple[Any, ...]]:
        """One statement (its own transaction), its rows."""
        async with self._lock:
            conn = await self._connection()
            try:
                cur = await conn.execute(sql, args)
                return list(await cur.fetchall()) if cur.description else []
            except psycopg.Error as exc:
                raise self._error(exc) from exc

    async def _fetch_tx(self, statements: Sequence[tuple[str, Sequence[Any]]]
                        ) -> list[list[tuple[Any, ...]]]:
        """Several statements in one transaction, the rows of each."""
        async with self._lock:
            conn = await self._connection()
            try:
                results: list[list[tuple[Any, ...]]] = []
                async with conn.transaction():
                    for sql, args in statements:
                        cur = await conn.execute(sql, args)
                        results.append(list(await cur.fetchall()) if cur.description else [])
                return results
            except psycopg.Error as exc:
                raise self._error(exc) from exc

    async def schema_version(self) -> int:
        rows = await self._fetch("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        return int(rows[0][0])

    # --- sessions ---------------------------------------------------------------------------

    async def register_daemon(self, daemon_id: str, host: str, ttl: float) -> None:
        await self._fetch(
            f"INSERT INTO daemons ({_DAEMON_COLUMNS}, started_at) "
            f"VALUES (%s, %s, NULL, NULL, {_NOW} + %s, 'live', NULL, {_NOW}) "
            "ON CONFLICT (daemon_id) DO UPDATE SET host = excluded.host, "
            "lease_expires = excluded.lease_expires, status = 'live', taken_by = NULL, "
            "started_at = excluded.started_at", (daemon_id, host, float(ttl)))

    async def renew_lease(self, daemon_id: str, ttl: float) -> bool:
        rows = await self._fetch(
            f"UPDATE daemons SET lease_expires = {_NOW} + %s "
            "WHERE daemon_id = %s AND status = 'live' RETURNING daemon_id",
            (float(ttl), daemon_id))
        return len(rows) == 1

    async def claim_expired(self, new_owner: str) -> Claim | None:
        # SKIP LOCKED: a claimer that finds the row locked by another claimer passes over it
        # instead of waiting and then taking it a second time; once the first commits, the
        # row's status is 'taken' and no later claimer matches it.
        claim_sql = (
            "UPDATE daemons d SET status = 'taken', taken_by = %(new)s FROM ("
            "SELECT daemon_id FROM daemons WHERE status = 'live' "
            f"AND lease_expires <= {_NOW} AND daemon_id <> %(new)s "
            "ORDER BY lease_expires LIMIT 1 FOR UPDATE SKIP LOCKED) v "
            "WHERE d.daemon_id = v.daemon_id RETURNING "
            "d.daemon_id, d.host, d.protocol, d.authorization_state, d.lease_expires")
        async with self._lock:
            conn = await self._connection()
            try:
                async with conn.transaction():
                    cur = await conn.execute(claim_sql, {"new": new_owner})
                    row = await cur.fetchone()
                    if row is None:
                        return None
                    old = row[0]
                    cur = await conn.execute(
                        f"UPDATE calls SET daemon_id = %s WHERE daemon_id = %s "
                        f"RETURNING {_CALL_COLUMNS}", (new_owner, old))
                    calls = [CallCheckpoint.from_row(*r) for r in await cur.fetchall()]
                    cur = await conn.execute(
                        "UPDATE ledger SET owner = %s WHERE owner = %s AND state = 'claimed' "
                        "RETURNING id", (new_owner, old))
                    ids = sorted(int(r[0]) for r in await cur.fetchall())
            except psycopg.Error as exc:
                raise self._error(exc) from exc
        session = DaemonSession(daemon_id=old, host=row[1], protocol=row[2],
                                authorization_state=row[3], lease_expires=float(row[4]),
                                status="taken", taken_by=new_owner)
        return Claim(session=session, calls=sorted(calls, key=lambda c: c.call_id),
                     ledger_ids=ids)

    async def save_relay_session(self, daemon_id: str, protocol: str | None,
                                 authorization_state: str | None) -> None:
        await self._fetch("UPDATE daemons SET protocol = %s, authorization_state = %s "
                          "WHERE daemon_id = %s", (protocol, authorization_state, daemon_id))

    async def get_daemon(self, daemon_id: str) -> DaemonSession | None:
        rows = await self._fetch(f"SELECT {_DAEMON_COLUMNS} FROM daemons WHERE daemon_id = %s",
                                 (daemon_id,))
        if not rows:
            return None
        r = rows[0]
        return DaemonSession(daemon_id=r[0], host=r[1], protocol=r[2], authorization_state=r[3],
                             lease_expires=float(r[4]), status=r[5], taken_by=r[6])

    async def list_daemons(self) -> list[DaemonSession]:
        rows = await self._fetch(f"SELECT {_DAEMON_COLUMNS} FROM daemons ORDER BY daemon_id",
                                 ())
        return [DaemonSession(daemon_id=r[0], host=r[1], protocol=r[2], authorization_state=r[3],
                              lease_expires=float(r[4]), status=r[5], taken_by=r[6])
                for r in rows]

    async def retire_daemon(self, daemon_id: str) -> None:
        await self._fetch_tx([("DELETE FROM calls WHERE daemon_id = %s", (daemon_id,)),
                              ("DELETE FROM daemons WHERE daemon_id = %s", (daemon_id,))])

    # --- flow versions ----------------------------------------------------------------------

    async def put_version(self, source: str | bytes) -> str:
        raw = source.encode("utf-8") if isinstance(source, str) else bytes(source)
        sha = version_hash(raw)
        await self._fetch("INSERT INTO flow_versions (sha, source, created_at) "
                          "VALUES (%s, %s, %s) ON CONFLICT (sha) DO NOTHING",
                          (sha, raw, time.time()))
        return sha

    async def get_version(self, sha: str) -> bytes | None:
        rows = await self._fetch("SELECT source FROM flow_versions WHERE sha = %s", (sha,))
        return bytes(rows[0][0]) if rows else None

    # --- call checkpoints -------------------------------------------------------------------

    async def save_checkpoints(self, batch: Sequence[CallCheckpoint],
                               drop: Sequence[str] = ()) -> None:
        now = time.time()
        rows = [(cp.call_id, cp.daemon_id, cp.flow_name, cp.version_sha, cp.step,
                 cp.state_json().decode(), cp.updated_at or now) for cp in batch]
        drops = [(call_id,) for call_id in drop]
        if not rows and not drops:
            return
        async with self._lock:
            conn = await self._connection()
            try:
                async with conn.transaction(), conn.cursor() as cur:
                    if rows:
                        await cur.executemany(_UPSERT_CALL, rows)
                    if drops:
                        await cur.executemany("DELETE FROM calls WHERE call_id = %s", drops)
            except psycopg.Error as exc:
                raise self._error(exc) from exc

    async def load_checkpoints(self, daemon_id: str) -> list[CallCheckpoint]:
        rows = await self._fetch(f"SELECT {_CALL_COLUMNS} FROM calls WHERE daemon_id = %s "
                                 "ORDER BY call_id", (daemon_id,))
        return [CallCheckpoint.from_row(*row) for row in rows]

    async def drop_call(self, call_id: str) -> None:
        await self._fetch("DELETE FROM calls WHERE call_id = %s", (call_id,))

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
        results = await self._fetch_tx([(_INSERT_ENTRY, _entry_row(campaign, e, now))
                                        for e in entries])
        return [int(rows[0][0]) for rows in results]

    async def claim_due(self, now: float, limit: int, owner: str, *,
                        campaign: str | None = None, phase: str | None = None
                        ) -> list[LedgerEntry]:
        if limit <= 0:
            return []
        where = "" if campaign is None else "AND campaign = %(campaign)s "
        rows = await self._fetch(
            "UPDATE ledger l SET state = 'claimed', owner = %(owner)s, "
            "attempts = l.attempts + 1, phase = COALESCE(%(phase)s, l.phase), "
            "updated_at = %(wall)s FROM ("
            "SELECT id FROM ledger WHERE state = 'queued' AND next_attempt <= %(now)s "
            f"{where}ORDER BY next_attempt, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED) due "
            "WHERE l.id = due.id RETURNING "
            + ", ".join(f"l.{c.strip()}" for c in _LEDGER_COLUMNS.split(",")),
            {"owner": owner, "wall": time.time(), "now": float(now), "limit": int(limit),
             "campaign": campaign, "phase": phase})
        return sorted((_entry(r) for r in rows), key=lambda e: (e.next_attempt, e.id))

    async def finish(self, entry_id: int, outcome: str, *, retry_at: float | None = None,
                     phase: str | None = None, result: Mapping[str, Any] | None = None
                     ) -> None:
        body = _json(result)
        if retry_at is None:
            await self._fetch("UPDATE ledger SET state = 'done', outcome = %s, owner = NULL, "
                              "phase = COALESCE(%s, phase), result = COALESCE(%s, result), "
                              "updated_at = %s WHERE id = %s",
                              (outcome, phase, body, time.time(), entry_id))
        else:
            await self._fetch("UPDATE ledger SET state = 'queued', outcome = %s, owner = NULL, "
                              "next_attempt = %s, phase = COALESCE(%s, phase), "
                              "result = COALESCE(%s, result), updated_at = %s WHERE id = %s",
                              (outcome, float(retry_at), phase, body, time.time(), entry_id))

    async def update_entry(self, entry_id: int, *, phase: str | None = None,
                           result: Mapping[str, Any] | None = None) -> None:
        await self._fetch("UPDATE ledger SET phase = COALESCE(%s, phase), "
                          "result = COALESCE(%s, result), updated_at = %s WHERE id = %s",
                          (phase, _json(result), time.time(), entry_id))

    async def get_entry(self, entry_id: int) -> LedgerEntry | None:
        rows = await self._fetch(f"SELECT {_LEDGER_COLUMNS} FROM ledger WHERE id = %s",
                                 (entry_id,))
        return _entry(rows[0]) if rows else None

    async def list_entries(self, *, campaign: str | None = None, flow: str | None = None,
                           phase: str | None = None, before: int | None = None,
                           limit: int = 50) -> list[LedgerEntry]:
        parts, args = _filters(campaign=campaign, flow=flow, phase=phase, before=before)
        where = (" WHERE " + " AND ".join(parts)) if parts else ""
        rows = await self._fetch(f"SELECT {_LEDGER_COLUMNS} FROM ledger{where} "
                                 "ORDER BY id DESC LIMIT %s", (*args, int(limit)))
        return [_entry(r) for r in rows]

    async def cancel_queued(self, *, entry_id: int | None = None,
                            campaign: str | None = None) -> list[int]:
        if entry_id is None and campaign is None:
            raise ValueError("cancel_queued needs entry_id or campaign")
        parts, args = _filters(campaign=campaign, entry_id=entry_id)
        rows = await self._fetch(
            "UPDATE ledger SET state = 'done', outcome = 'canceled', phase = 'canceled', "
            f"updated_at = %s WHERE state = 'queued' AND {' AND '.join(parts)} RETURNING id",
            (time.time(), *args))
        return sorted(int(r[0]) for r in rows)

    async def claimed_entries(self) -> list[LedgerEntry]:
        rows = await self._fetch(f"SELECT {_LEDGER_COLUMNS} FROM ledger "
                                 "WHERE state = 'claimed' ORDER BY id")
        return [_entry(r) for r in rows]

    async def entry_counts(self, campaign: str) -> dict[tuple[str, str | None], int]:
        rows = await self._fetch("SELECT phase, outcome, COUNT(*) FROM ledger "
                                 "WHERE campaign = %s GROUP BY phase, outcome", (campaign,))
        return {(r[0], r[1]): int(r[2]) for r in rows}

    # --- campaigns --------------------------------------------------------------------------

    async def put_campaign(self, campaign: CampaignRecord,
                           entries: Sequence[NewEntry] = ()) -> list[int]:
        now = time.time()
        statements: list[tuple[str, Sequence[Any]]] = [(
            f"INSERT INTO campaigns ({_CAMPAIGN_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)",
            (campaign.id, campaign.flow, orjson.dumps(dict(campaign.spec)).decode(),
             campaign.state, campaign.created_at or now, now))]
        statements += [(_INSERT_ENTRY, _entry_row(campaign.id, e, now)) for e in entries]
        results = await self._fetch_tx(statements)
        return [int(rows[0][0]) for rows in results[1:]]

    async def get_campaign(self, campaign_id: str) -> CampaignRecord | None:
        rows = await self._fetch(f"SELECT {_CAMPAIGN_COLUMNS} FROM campaigns WHERE id = %s",
                                 (campaign_id,))
        return _campaign(rows[0]) if rows else None

    async def set_campaign_state(self, campaign_id: str, state: str, *,
                                 only_from: Sequence[str] = ()) -> bool:
        guard = " AND state = ANY(%s)" if only_from else ""
        args: tuple[Any, ...] = (state, time.time(), campaign_id)
        if only_from:
            args += (list(only_from),)
        rows = await self._fetch(f"UPDATE campaigns SET state = %s, updated_at = %s "
                                 f"WHERE id = %s{guard} RETURNING id", args)
        return bool(rows)

    async def list_campaigns(self, states: Sequence[str] = ()) -> list[CampaignRecord]:
        if states:
            rows = await self._fetch(f"SELECT {_CAMPAIGN_COLUMNS} FROM campaigns "
                                     "WHERE state = ANY(%s) ORDER BY created_at, id",
                                     (list(states),))
        else:
            rows = await self._fetch(f"SELECT {_CAMPAIGN_COLUMNS} FROM campaigns "
                                     "ORDER BY created_at, id")
        return [_campaign(r) for r in rows]
