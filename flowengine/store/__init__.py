"""The state store: what a daemon keeps so that its calls outlive the process (docs/store.md).

``open_store("var/state")`` opens the embedded SQLite store (one file in that directory);
``open_store("postgresql://user@host/db")`` the shared PostgreSQL one. Both implement
:class:`Store`; :class:`Batcher` writes the hot path's checkpoints, one transaction per loop
turn. This package imports nothing of flowengine above it.
"""

from __future__ import annotations

from pathlib import Path

from .base import (
    CallCheckpoint,
    CampaignRecord,
    CheckpointError,
    Claim,
    DaemonSession,
    Deadlines,
    LedgerEntry,
    Migration,
    NewEntry,
    PendingAction,
    Recording,
    Store,
    StoreError,
    StoreSchemaError,
    SubflowFrame,
    version_hash,
)
from .batcher import Batcher

__all__ = [
    "Batcher", "CallCheckpoint", "CampaignRecord", "CheckpointError", "Claim", "DaemonSession",
    "Deadlines",
    "LedgerEntry", "Migration", "NewEntry", "PendingAction", "Recording", "Store", "StoreError",
    "StoreSchemaError", "SubflowFrame", "is_postgres_url", "open_store", "store_for",
    "version_hash",
]


def is_postgres_url(target: str | Path) -> bool:
    """Whether ``target`` names a PostgreSQL database rather than a state directory."""
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def store_for(target: str | Path) -> Store:
    """The store ``target`` names, not yet open: a ``postgresql://…`` URL → PostgreSQL,
    anything else is a state directory → SQLite."""
    if is_postgres_url(target):
        try:
            from .postgres import PostgresStore
        except ImportError as exc:  # psycopg is an optional dependency
            raise StoreError(
                "a postgresql:// store needs psycopg: pip install 'flowengine[postgres]' "
                f"({exc})") from None
        return PostgresStore(str(target))
    from .sqlite import SQLiteStore
    return SQLiteStore(target)


async def open_store(target: str | Path) -> Store:
    """:func:`store_for`, opened (migrations applied); close it with ``await store.close()``
    or use ``async with store_for(target) as store:``."""
    store = store_for(target)
    await store.open()
    return store
