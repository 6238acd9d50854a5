"""The state store's behaviour, the same suite on both backends: SQLite in a temporary state
directory, and PostgreSQL on a throwaway cluster (tests/pgcluster.py) with a fresh database
per test. No mocks: every test talks to a real database."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from flowengine.store import (
    Batcher,
    CallCheckpoint,
    CheckpointError,
    Deadlines,
    Migration,
    PendingAction,
    Recording,
    Store,
    StoreError,
    StoreSchemaError,
    SubflowFrame,
    open_store,
    store_for,
    version_hash,
)
from flowengine.store.schema import MIGRATIONS
from flowengine.store.sqlite import DB_FILENAME, SQLiteStore
from tests.pgcluster import PgCluster, pg_unavailable

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    reason = pg_unavailable()
    if reason:
        pytest.skip(f"PostgreSQL half skipped: {reason}")
    with PgCluster() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a store lives: a state directory, or the URL of a new database."""
    if request.param == "sqlite":
        return str(tmp_path / "state")
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database()


def _rows(target: str, sql: str) -> list[tuple[Any, ...]]:
    """Read the database behind the store directly, with its own driver."""
    if target.startswith("postgresql://"):
        import psycopg
        with psycopg.connect(target) as conn:
            return list(conn.execute(sql).fetchall())
    with sqlite3.connect(Path(target) / DB_FILENAME) as conn:
        return conn.execute(sql).fetchall()


def full_checkpoint(call_id: str = "call-1", daemon_id: str = "d1", **over: Any) -> CallCheckpoint:
    """A checkpoint with every field set to something other than its default."""
    fields: dict[str, Any] = dict(
        call_id=call_id, daemon_id=daemon_id, flow_name="voicemail",
        version_sha=version_hash("name: voicemail\n"), step="record",
        steps={"greet": {"outcome": "finished", "played": 1.5},
               "menu": {"digits": "12#", "nested": [1, None, True, {"x": "ü"}]}},
        vars={"caller": "+15550100", "tries": 2, "ratio": 0.25, "flags": [True, False]},
        subflow_stack=(SubflowFrame(flow_name="main", version_sha="ab" * 32, step="ask",
                                    steps={"a": {"outcome": "ok"}}, vars={"v": 1},
                                    params={"p": "q"}, visits={"a": 3}),),
        pending=PendingAction(kind="record", control_id="ctl-7f3a", step="record",
                              started_at=1_790_000_000.125),
        recordings=(Recording(control_id="rec-1", step="start_rec",
                              started_at=1_790_000_001.5, url=None),
                    Recording(control_id="rec-0", step="old", started_at=1.0,
                              url="https://example.test/r.wav")),
        deadlines=Deadlines(max_duration=1_790_000_600.0, step=1_790_000_030.5),
        visits={"menu": 2, "record": 1}, extra={"node_id": "n-1", "context": "office"},
        updated_at=1_790_000_002.75)
    fields.update(over)
    return CallCheckpoint(**fields)


async def test_checkpoint_round_trip_keeps_every_field(target: str) -> None:
    cp = full_checkpoint()
    async with store_for(target) as store:
        await store.save_checkpoints([cp])
    async with store_for(target) as store:      # a new process would open it like this
        loaded = await store.load_checkpoints("d1")
    assert loaded == [cp]


async def test_list_daemons_gives_every_session_by_id(target: str) -> None:
    async with store_for(target) as store:
        await store.register_daemon("d2", "host-b", ttl=30)
        await store.register_daemon("d1", "host-a", ttl=30)
        await store.save_relay_session("d1", "proto-1", "blob")
        daemons = await store.list_daemons()
    assert [(d.daemon_id, d.host, d.protocol, d.status) for d in daemons] == [
        ("d1", "host-a", "proto-1", "live"), ("d2", "host-b", None, "live")]


async def test_a_checkpoint_replaces_the_previous_and_drop_forgets(target: str) -> None:
    async with store_for(target) as store:
        await store.save_checkpoints([full_checkpoint(step="greet"), full_checkpoint("call-2")])
        await store.save_checkpoints([full_checkpoint(step="menu", pending=None)],
                                     drop=["call-2"])
        loaded = await store.load_checkpoints("d1")
        assert [(c.call_id, c.step, c.pending) for c in loaded] == [("call-1", "menu", None)]
        await store.drop_call("call-1")
        assert await store.load_checkpoints("d1") == []


async def test_a_record_that_is_not_json_is_refused_and_nothing_is_written(target: str) -> None:
    async with store_for(target) as store:
        bad = full_checkpoint("call-bad", vars={"when": object()})
        with pytest.raises(StoreError, match="call-bad"):
            await store.save_checkpoints([full_checkpoint("call-ok"), bad])
        assert await store.load_checkpoints("d1") == []


async def test_versions_are_content_addressed_and_stored_once(target: str) -> None:
    text = "name: greet\nsteps:\n  hello: {play: 'say:hi'}\n"
    async with store_for(target) as store:
        first = await store.put_version(text)
        again = await store.put_version(text.encode())
        other = await store.put_version(text + "# changed\n")
        assert first == again == hashlib.sha256(text.encode()).hexdigest()
        assert other != first
        assert await store.get_version(first) == text.encode()
        assert await store.get_version("0" * 64) is None
    assert _rows(target, "SELECT COUNT(*) FROM flow_versions") == [(2,)]


async def test_the_batcher_writes_one_loop_turn_in_one_flush(target: str) -> None:
    async with store_for(target) as store:
        async with Batcher(store) as batcher:
            # One loop turn: no await between the puts.
            for i in range(300):
                batcher.put(full_checkpoint(f"c{i:03}", step="greet"))
            batcher.put(full_checkpoint("c000", step="menu"))    # replaces the queued one
            batcher.drop("c299")
            assert batcher.queued == 300
            await batcher.flushed()
            assert (batcher.flushes, batcher.written) == (1, 299)
            # Many calls awaiting commit() in the same turn share one transaction.
            async with anyio.create_task_group() as tg:
                for i in range(50):
                    tg.start_soon(batcher.commit, full_checkpoint(f"c{i:03}", step="done"))
            assert batcher.flushes == 2
        loaded = {cp.call_id: cp.step for cp in await store.load_checkpoints("d1")}
    assert len(loaded) == 299 and "c299" not in loaded
    assert loaded["c000"] == "done" and loaded["c060"] == "greet"


async def test_a_checkpoint_that_cannot_be_kept_does_not_hold_back_the_others(
        target: str) -> None:
    async with store_for(target) as store:
        async with Batcher(store) as batcher:
            batcher.put(full_checkpoint("good", step="greet"))
            with pytest.raises(CheckpointError, match=r"'bad'.*JSON"):
                await batcher.commit(full_checkpoint("bad", vars={"when": object()}))
            await batcher.commit(full_checkpoint("good", step="menu"))
            with pytest.raises(CheckpointError, match="NUL"):
                await batcher.commit(full_checkpoint("nul", step="a\x00b"))
            batcher.put(full_checkpoint("later"))
        assert {cp.call_id: cp.step for cp in await store.load_checkpoints("d1")} == {
            "good": "menu", "later": "record"}


async def test_leaving_the_batcher_flushes_what_is_queued(target: str) -> None:
    async with store_for(target) as store:
        async with Batcher(store) as batcher:
            batcher.put(full_checkpoint("last"))
        assert [cp.call_id for cp in await store.load_checkpoints("d1")] == ["last"]


async def test_an_expired_lease_is_claimed_by_exactly_one_of_many(target: str) -> None:
    async with store_for(target) as dead:
        await dead.register_daemon("dead", "host-a", ttl=60)
        await dead.save_relay_session("dead", "proto-123", "auth-state-xyz")
        await dead.save_checkpoints([full_checkpoint("c1", "dead"), full_checkpoint("c2", "dead")])
        entry = await dead.enqueue("spring", "+15550101")
        assert [e.id for e in await dead.claim_due(time.time(), 10, "dead")] == [entry]
        live = store_for(target)
        await live.open()
        await live.register_daemon("alive", "host-b", ttl=60)
        assert await live.claim_expired("x") is None           # nobody has expired yet
        assert await dead.renew_lease("dead", ttl=0)           # the heartbeat stops

        claimers = [store_for(target) for _ in range(8)]
        results: dict[str, Any] = {}

        async def claim(i: int, store: Store) -> None:
            await store.open()
            results[f"h{i}"] = await store.claim_expired(f"h{i}")

        async with anyio.create_task_group() as tg:
            for i, store in enumerate(claimers):
                tg.start_soon(claim, i, store)
        winners = {name: c for name, c in results.items() if c is not None}
        assert len(results) == 8 and len(winners) == 1
        (winner, won), = winners.items()
        assert won.session.daemon_id == "dead"
        assert (won.session.protocol, won.session.authorization_state) == ("proto-123",
                                                                           "auth-state-xyz")
        assert [c.call_id for c in won.calls] == ["c1", "c2"]
        assert all(c.daemon_id == winner for c in won.calls)
        assert won.ledger_ids == [entry]
        assert [c.call_id for c in await live.load_checkpoints(winner)] == ["c1", "c2"]
        assert (await dead.get_daemon("dead")).taken_by == winner  # type: ignore[union-attr]
        # The old daemon learns it lost its session, and its late writes are ignored.
        assert not await dead.renew_lease("dead", ttl=60)
        await dead.save_checkpoints([full_checkpoint("c1", "dead", step="stale")])
        assert {c.step for c in await live.load_checkpoints(winner)} == {"record"}
        # The live daemon was not taken.
        assert (await live.get_daemon("alive")).status == "live"  # type: ignore[union-attr]
        for store in (*claimers, live):
            await store.close()


async def test_a_lease_not_renewed_expires_on_its_own(target: str) -> None:
    async with store_for(target) as store:
        await store.register_daemon("short", "host", ttl=0.05)
        claim = None
        deadline = time.monotonic() + 10          # only a hang bound
        while claim is None and time.monotonic() < deadline:
            await anyio.sleep(0.05)
            claim = await store.claim_expired("heir")
        assert claim is not None and claim.session.daemon_id == "short"
        assert await store.claim_expired("other") is None


async def test_the_ledger_claims_due_entries_in_order_and_never_twice(target: str) -> None:
    async with store_for(target) as store:
        now = time.time()
        late = await store.enqueue("c", "+1003", not_before=now + 3600)
        second = await store.enqueue("c", "+1002", not_before=now - 10)
        first = await store.enqueue("c", "+1001", not_before=now - 20,
                                    payload={"name": "Ann"}, flow="survey", from_number="+1999")
        third = await store.enqueue("c", "+1004", not_before=now - 10)
        got = await store.claim_due(now, 2, "d1")
        assert [e.id for e in got] == [first, second]
        assert got[0].payload == {"name": "Ann"} and got[0].flow == "survey"
        assert (got[0].state, got[0].owner, got[0].attempts) == ("claimed", "d1", 1)
        assert [e.id for e in await store.claim_due(now, 10, "d2")] == [third]
        assert await store.claim_due(now, 10, "d3") == []       # `late` is not due
        await store.finish(first, "busy", retry_at=now - 1)
        await store.finish(second, "answered")
        again = await store.claim_due(now, 10, "d1")
        assert [(e.id, e.attempts, e.outcome) for e in again] == [(first, 2, "busy")]
        done = await store.get_entry(second)
        assert done is not None and (done.state, done.outcome, done.owner) == ("done",
                                                                               "answered", None)
        assert (await store.get_entry(late)).state == "queued"  # type: ignore[union-attr]

        # Several daemons claiming at once: every due entry goes to exactly one of them.
        ids = {await store.enqueue("burst", f"+2{i:03}", not_before=now - 1) for i in range(40)}
        claimers = [store_for(target) for _ in range(4)]
        taken: list[int] = []

        async def claim(store: Store, owner: str) -> None:
            await store.open()
            while batch := await store.claim_due(now, 3, owner):
                taken.extend(e.id for e in batch)

        async with anyio.create_task_group() as tg:
            for i, other in enumerate(claimers):
                tg.start_soon(claim, other, f"o{i}")
        for other in claimers:
            await other.close()
    assert sorted(taken) == sorted(ids)


async def test_the_api_ledger_keeps_campaigns_phases_and_results(target: str) -> None:
    from flowengine.store import CampaignRecord, NewEntry

    async with store_for(target) as store:
        now = time.time()
        spec = {"from": "+15550000000", "max_concurrent": 2, "retry": {"busy": {"count": 1}}}
        ids = await store.put_campaign(
            CampaignRecord(id="cmp_1", flow="reminder", spec=spec, state="running"),
            [NewEntry(to_number=f"+1555000{i:04}", flow="reminder", payload={"vars": {"i": i}},
                      not_before=now - 1) for i in range(5)])
        assert len(ids) == 5 and ids == sorted(ids)
        single = await store.enqueue("", "+15559999999", flow="survey", not_before=now - 1)
        campaign = await store.get_campaign("cmp_1")
        assert campaign is not None and (campaign.flow, campaign.state) == ("reminder", "running")
        assert campaign.spec == spec
        # Claims can be limited to one campaign: pacing is per campaign.
        got = await store.claim_due(now, 10, "d1", campaign="cmp_1", phase="dialing")
        assert [e.id for e in got] == ids and all(e.campaign == "cmp_1" for e in got)
        assert {e.phase for e in got} == {"dialing"}
        await store.update_entry(ids[0], phase="dialing", result={"attempts": [{"at": 1.0}]})
        entry = await store.get_entry(ids[0])
        assert entry is not None and entry.phase == "dialing"
        assert entry.result == {"attempts": [{"at": 1.0}]}
        await store.finish(ids[0], "answered", phase="completed", result={"path": ["a", "b"]})
        await store.finish(ids[1], "busy", retry_at=now - 1, phase="queued")
        entry = await store.get_entry(ids[0])
        assert entry is not None and (entry.state, entry.phase, entry.outcome) == (
            "done", "completed", "answered")
        assert entry.result == {"path": ["a", "b"]}
        # Still claimed: a dial in flight (what a restart finds after a crash).
        assert [e.id for e in await store.claimed_entries()] == ids[2:]
        # Cancel takes only what is queued: the single call, not the claimed contacts.
        assert await store.cancel_queued(campaign="cmp_1") == [ids[1]]
        assert await store.cancel_queued(entry_id=ids[2]) == []
        assert await store.cancel_queued(entry_id=single) == [single]
        assert await store.cancel_queued(entry_id=single) == []
        counts = await store.entry_counts("cmp_1")
        assert counts == {("completed", "answered"): 1, ("canceled", "canceled"): 1,
                          ("dialing", None): 3}
        # Newest first, keyset pages, filters.
        page = await store.list_entries(limit=4)
        assert [e.id for e in page] == [single, ids[4], ids[3], ids[2]]
        rest = await store.list_entries(limit=4, before=page[-1].id)
        assert [e.id for e in rest] == [ids[1], ids[0]]
        assert [e.id for e in await store.list_entries(flow="survey")] == [single]
        assert [e.id for e in await store.list_entries(phase="completed")] == [ids[0]]
        assert await store.set_campaign_state("cmp_1", "paused", only_from=["running"])
        assert not await store.set_campaign_state("cmp_1", "paused", only_from=["running"])
        assert not await store.set_campaign_state("nope", "paused")
        assert [c.id for c in await store.list_campaigns(["paused"])] == ["cmp_1"]
        assert await store.list_campaigns(["running"]) == []


async def test_migrations_are_applied_once_and_a_newer_schema_is_refused(target: str) -> None:
    async with store_for(target) as store:
        assert await store.schema_version() == len(MIGRATIONS)
    applied = _rows(target, "SELECT version, applied_at FROM schema_migrations")
    async with store_for(target) as store:
        assert await store.schema_version() == len(MIGRATIONS)
    assert _rows(target, "SELECT version, applied_at FROM schema_migrations") == applied

    # A migration that fails half-way leaves nothing of itself behind.
    broken = (*MIGRATIONS, Migration(len(MIGRATIONS) + 1, "broken",
                                     sqlite=("CREATE TABLE half (x INTEGER)", "NOT SQL"),
                                     postgres=("CREATE TABLE half (x INTEGER)", "NOT SQL")))
    with pytest.raises(StoreError):
        await _open_with(target, broken)
    async with store_for(target) as store:
        assert await store.schema_version() == len(MIGRATIONS)
    with pytest.raises(Exception, match=r"(?i)half"):  # no such table: either driver's error
        _rows(target, "SELECT * FROM half")

    # A newer flowengine adds a migration: applied once, on its first open.
    newer = (*MIGRATIONS, Migration(len(MIGRATIONS) + 1, "extra table",
                                    sqlite=("CREATE TABLE extra (x INTEGER)",),
                                    postgres=("CREATE TABLE extra (x INTEGER)",)))
    for _ in range(2):
        store = await _open_with(target, newer)
        assert await store.schema_version() == len(newer)
        await store.close()
    assert len(_rows(target, "SELECT * FROM schema_migrations")) == len(newer)
    # … and this code, older than the store now, refuses it instead of guessing.
    with pytest.raises(StoreSchemaError, match=rf"schema version {len(newer)}.*up to "
                                              rf"{len(MIGRATIONS)}"):
        await open_store(target)


async def test_daemons_starting_together_apply_the_migrations_once(target: str) -> None:
    stores = [store_for(target) for _ in range(4)]
    async with anyio.create_task_group() as tg:
        for store in stores:
            tg.start_soon(store.open)
    for store in stores:
        assert await store.schema_version() == len(MIGRATIONS)
        await store.close()
    assert _rows(target, "SELECT COUNT(*) FROM schema_migrations") == [(len(MIGRATIONS),)]


async def _open_with(target: str, migrations: tuple[Migration, ...]) -> Store:
    store: Store
    if target.startswith("postgresql://"):
        from flowengine.store.postgres import PostgresStore
        store = PostgresStore(target, migrations=migrations)
    else:
        store = SQLiteStore(target, migrations=migrations)
    await store.open()
    return store


async def test_postgres_opens_its_connection_again_after_the_server_drops_it(
        pg_cluster: PgCluster) -> None:
    import psycopg
    url = pg_cluster.create_database()
    async with store_for(url) as store:
        await store.put_version("before")
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        with pytest.raises(StoreError):     # the operation under way when it dropped
            await store.get_version(version_hash("before"))
        assert await store.get_version(version_hash("before")) == b"before"


async def test_open_store_chooses_the_backend(tmp_path: Path) -> None:
    from flowengine.store.postgres import PostgresStore
    assert isinstance(store_for("postgresql://u@127.0.0.1:1/db"), PostgresStore)
    store = await open_store(tmp_path / "state")
    assert isinstance(store, SQLiteStore) and (tmp_path / "state" / DB_FILENAME).is_file()
    await store.register_daemon("d1", "h", ttl=5)
    assert _rows(str(tmp_path / "state"), "PRAGMA journal_mode") == [("wal",)]
    # It keeps RELAY's authorization_state: for the daemon's user only, WAL included.
    for name in (DB_FILENAME, DB_FILENAME + "-wal"):
        assert (tmp_path / "state" / name).stat().st_mode & 0o777 == 0o600, name
    await store.close()


async def test_an_unreachable_database_is_a_clear_error_without_the_password() -> None:
    with pytest.raises(StoreError) as caught:
        await open_store("postgresql://flow:s3cret-pw@127.0.0.1:1/db")
    message = str(caught.value)
    assert "cannot open the state store" in message and "127.0.0.1" in message
    assert "s3cret-pw" not in message and "flow:***@" in message
    with pytest.raises(StoreError) as caught:
        await open_store("postgresql://127.0.0.1:1/db?user=flow&password=s3cret-pw")
    assert "s3cret-pw" not in str(caught.value) and "password=***" in str(caught.value)


async def test_an_unwritable_state_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot open the state store"):
        await open_store(blocker / "state")


_WRITER = textwrap.dedent("""
    import sys, time, anyio
    from flowengine.store import open_store
    from flowengine.store.sqlite import _UPSERT_CALL, _checkpoint_row
    from tests.test_store import full_checkpoint

    def batch(n):
        return [full_checkpoint(f"c{i:04}", vars={"batch": n, "pad": "x" * 200})
                for i in range(400)]

    async def main() -> None:
        store = await open_store(sys.argv[1])
        for n in range(1, 4):
            await store.save_checkpoints(batch(n))
            print("committed", n, flush=True)
        # Batch 4 through the store's own transaction, stopped half-way: half its rows are
        # written, the transaction is open, and the process is killed there.
        rows = [_checkpoint_row(cp, time.time()) for cp in batch(4)]
        def half_then_hang(conn):
            conn.executemany(_UPSERT_CALL, rows[:200])
            print("inside", 4, flush=True)
            time.sleep(60)
        await store._tx(half_then_hang)

    anyio.run(main)
""")


def test_sqlite_a_kill_mid_batch_leaves_the_last_committed_batch_whole(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(state)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        # Bounded by the writer: it prints four lines, then hangs until killed.
        while not seen or not seen[-1].startswith("inside"):
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"the writer stopped: {proc.stderr.read() if proc.stderr else ''}")
            seen.append(line.strip())
        os.kill(proc.pid, signal.SIGKILL)     # inside batch 4's transaction
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert seen == ["committed 1", "committed 2", "committed 3", "inside 4"]

    async def reopen() -> list[CallCheckpoint]:
        async with store_for(state) as store:
            return await store.load_checkpoints("d1")
    # Reopening recovers the WAL: every call is at batch 3, nothing of batch 4.
    loaded = anyio.run(reopen)
    assert len(loaded) == 400
    assert {cp.vars["batch"] for cp in loaded} == {3}
    assert _rows(str(state), "PRAGMA integrity_check") == [("ok",)]


def test_the_store_imports_nothing_of_flowengine_above_it() -> None:
    code = ("import sys, flowengine.store, flowengine.store.sqlite, flowengine.store.postgres\n"
            "print(sorted(m for m in sys.modules if m.startswith('flowengine.')\n"
            "             and not m.startswith('flowengine.store')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert out.strip() == "[]"
