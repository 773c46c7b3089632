"""History stores behind one small interface, chosen by the `db` setting.

`db` names a store the way broadcaster's URLs name a backend: the scheme picks the backend, whose
module is imported only when chosen. `memory://` (or `:memory:`) keeps history in memory; a path,
or `sqlite:///path`, is an SQLite file. Any other scheme is refused at startup (`check_store`).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Literal, assert_never

from hub.settings import Settings
from hub.stores.base import (
    CommitCallback,
    HistoryQuery,
    HistoryStore,
    Restored,
    StoreError,
    UnknownEngine,
)
from hub.stores.memory import MemoryStore

__all__ = [
    "check_store",
    "CommitCallback",
    "HistoryQuery",
    "HistoryStore",
    "MemoryStore",
    "Restored",
    "StoreError",
    "StoreURL",
    "UnknownEngine",
    "open_store",
    "parse_db",
]

# RFC 3986 scheme followed by a colon; two letters or more, so C:\hub.db stays a Windows path.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")
FORMS = (
    "use a file path (engine-hub.db, data/hub.db; start it with ./ if its name has a colon), "
    "sqlite:///relative/path.db, sqlite:////absolute/path.db, or memory:// (also :memory:) "
    "to keep history in memory only"
)


@dataclass(frozen=True, slots=True)
class StoreURL:
    """What a `db` setting names: a backend and, for a file, its path."""

    backend: Literal["memory", "sqlite"]
    path: str = ""


def _refuse(db: str, why: str) -> StoreError:
    return StoreError(f"setting 'db' cannot use {db!r}: {why}; {FORMS}")


def parse_db(db: str) -> StoreURL:
    """The store `db` names; a form no backend takes is a StoreError that lists the accepted ones."""
    if db == ":memory:":
        return StoreURL("memory")
    match = _SCHEME.match(db)
    if match is None:  # engine-hub.db, data/hub.db, /var/lib/hub.db, ./odd:name.db, C:\hub.db
        if not db.strip():
            raise _refuse(db, "it names no store")
        return StoreURL("sqlite", db)
    scheme, rest = match.group()[:-1].lower(), db[match.end() :]
    if scheme == "memory":
        if rest not in ("", "//"):
            raise _refuse(db, "memory:// takes nothing after it")
        return StoreURL("memory")
    if scheme == "sqlite":
        # As SQLAlchemy spells them: sqlite:///hub.db is relative, sqlite:////var/hub.db absolute.
        if not rest.startswith("///"):
            raise _refuse(db, "an sqlite URL has three slashes before its path and no host")
        path = rest[3:]
        if path == ":memory:":  # SQLite's own spelling of a database in memory: the memory store
            return StoreURL("memory")
        if not path:
            raise _refuse(db, "it names no file")
        if "?" in path:
            raise _refuse(db, "the hub takes no ?options in an sqlite URL")
        return StoreURL("sqlite", path)
    raise _refuse(db, f"the hub has no {scheme!r} history store")


def check_store(settings: Settings) -> None:
    """Check the `db` setting before serving: an unknown form, or a file the hub cannot use
    (corrupt, foreign, unwritable), stops startup with a one-line StoreError that says why."""
    url = parse_db(settings.db)
    if url.backend == "sqlite":
        from hub.stores.schema import connect

        connect(url.path, settings.db_synchronous).close()


def open_store(settings: Settings, drops: Counter[str] | None = None) -> HistoryStore:
    """The store `settings.db` names (see `parse_db`); a backend's module loads only when chosen."""
    url = parse_db(settings.db)
    if url.backend == "memory":
        return MemoryStore(export_limit=settings.export_max_records, settings=settings)
    if url.backend == "sqlite":
        from hub.stores.sqlite import SQLiteStore  # the in-memory hub never loads sqlite3

        return SQLiteStore(url.path, settings, drops)
    assert_never(url.backend)
