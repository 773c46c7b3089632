"""History stores behind one small interface, chosen by the `db` setting."""

from __future__ import annotations

from collections import Counter

from hub.settings import Settings
from hub.stores.base import CommitCallback, HistoryQuery, HistoryStore, Restored, StoreError
from hub.stores.memory import MemoryStore

__all__ = [
    "check_store",
    "CommitCallback",
    "HistoryQuery",
    "HistoryStore",
    "MemoryStore",
    "Restored",
    "StoreError",
    "open_store",
]

MEMORY = (":memory:", "memory://", "memory:")


def check_store(settings: Settings) -> None:
    """Open the configured history file once, so a bad one stops startup with a clear StoreError."""
    if settings.db not in MEMORY:
        from hub.stores.schema import connect

        connect(_path(settings.db), settings.db_synchronous).close()


def _path(db: str) -> str:
    return db.removeprefix("sqlite:///").removeprefix("sqlite://")


def open_store(settings: Settings, drops: Counter[str] | None = None) -> HistoryStore:
    """The store for `settings.db`: ":memory:" keeps history in memory, anything else is a SQLite file."""
    if settings.db in MEMORY:
        return MemoryStore()
    from hub.stores.sqlite import SQLiteStore  # the in-memory hub never loads sqlite3

    return SQLiteStore(_path(settings.db), settings, drops)
