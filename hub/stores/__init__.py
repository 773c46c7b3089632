"""History stores behind one small interface, chosen by the `db` setting."""

from __future__ import annotations

from collections import Counter

from hub.settings import Settings
from hub.stores.base import CommitCallback, HistoryQuery, HistoryStore, Restored, StoreError
from hub.stores.memory import MemoryStore

__all__ = [
    "CommitCallback",
    "HistoryQuery",
    "HistoryStore",
    "MemoryStore",
    "Restored",
    "StoreError",
    "open_store",
]

MEMORY = (":memory:", "memory://", "memory:")


def open_store(settings: Settings, drops: Counter[str] | None = None) -> HistoryStore:
    """The store for `settings.db`: ":memory:" keeps history in memory, anything else is a SQLite file."""
    if settings.db in MEMORY:
        return MemoryStore()
    from hub.stores.sqlite import SQLiteStore  # the in-memory hub never loads sqlite3

    path = settings.db.removeprefix("sqlite:///").removeprefix("sqlite://")
    return SQLiteStore(path, settings, drops)
