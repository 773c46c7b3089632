"""History stores behind one small interface, chosen by the `db` setting."""

from __future__ import annotations

from hub.stores.base import CommitCallback, HistoryStore
from hub.stores.memory import MemoryStore

__all__ = ["CommitCallback", "HistoryStore", "MemoryStore", "open_store"]


def open_store(db: str) -> HistoryStore:
    """The store for the `db` setting: ":memory:" (or "memory://") keeps history in memory."""
    if db in (":memory:", "memory://", "memory:"):
        return MemoryStore()
    raise ValueError(
        f"db {db!r} is not supported yet: only the in-memory store exists in this version; "
        'use --db ":memory:"'
    )
