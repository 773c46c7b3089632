"""The links table of causal chains in SQLite: rows the writer adds, and the chain reads.

One row per event that carried a chain link (hub/core/chains.py); the chain's events are read
back from their chunks by id, so a chain from history shows the events as they were stored.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from hub.core.chains import CHAIN_CAPACITY, Link, Step, walk
from hub.core.records import EventRecord
from hub.stores.chunks import CHUNK_COLUMNS, decode_chunk

__all__ = ["INSERT_LINK", "SQLiteLinks", "link_rows", "read_chain", "restored_links"]

INSERT_LINK = (
    "INSERT OR IGNORE INTO links (event_id, engine, boot_id, type, ts, ref, parent, cycle) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_COLUMNS = "event_id, engine, boot_id, type, ts, ref, parent, cycle"


def link_rows(links: Iterable[Link]) -> list[tuple[Any, ...]]:
    """The rows of `links` for INSERT_LINK."""
    return [
        (k.event_id, k.engine, k.boot_id, k.type, k.ts, k.ref, k.parent, k.cycle) for k in links
    ]


class SQLiteLinks:
    """The links table as a `LinkSource` (each lookup one indexed query)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def _select(self, where: str, args: tuple[Any, ...], limit: int) -> list[Link]:
        sql = f"SELECT {_COLUMNS} FROM links WHERE {where} ORDER BY event_id LIMIT ?"
        return [Link(*row) for row in self._conn.execute(sql, (*args, limit))]

    def link(self, event_id: int) -> Link | None:
        """The link of that event, if it carried one."""
        found = self._select("event_id = ?", (event_id,), 1)
        return found[0] if found else None

    def by_ref(self, engine: str, boot_id: str, ref: int, limit: int) -> list[Link]:
        """Events whose own ref is `ref`."""
        return self._select("engine = ? AND boot_id = ? AND ref = ?", (engine, boot_id, ref), limit)

    def children(self, engine: str, boot_id: str, ref: int, limit: int) -> list[Link]:
        """Events whose parent is `ref`."""
        where = "engine = ? AND boot_id = ? AND parent = ?"
        return self._select(where, (engine, boot_id, ref), limit)

    def cycle(self, engine: str, boot_id: str, cycle: str, limit: int) -> list[Link]:
        """Events of cycle `cycle`."""
        where = "engine = ? AND boot_id = ? AND cycle = ?"
        return self._select(where, (engine, boot_id, cycle), limit)


def _events(conn: sqlite3.Connection, links: Sequence[Link]) -> dict[int, EventRecord]:
    """The stored events of `links`, by id (one chunk read per chunk they sit in)."""
    wanted = {k.event_id for k in links}
    found: dict[int, EventRecord] = {}
    for link in sorted(links, key=lambda k: k.event_id):
        if link.event_id in found:
            continue
        # Chunks of one engine and type do not overlap in ids: the first one ending at or
        # after the id holds it, if any does.
        row = conn.execute(
            f"SELECT first_id, {CHUNK_COLUMNS} FROM event_chunks WHERE engine = ? AND type = ? "
            "AND last_id >= ? ORDER BY last_id LIMIT 1",
            (link.engine, link.type, link.event_id),
        ).fetchone()
        if row is None or row[0] > link.event_id:
            continue  # retention removed it
        found.update((e.id, e) for e in decode_chunk(*row[2:]) if e.id in wanted)
    return found


def read_chain(
    conn: sqlite3.Connection, event_id: int, seeds: Sequence[Link], limit: int
) -> tuple[list[Step], bool]:
    """The chain of `event_id` (joined to `seeds`, links the caller already knows) and whether
    it was cut at `limit`; empty when history holds no link of it."""
    source = SQLiteLinks(conn)
    start = source.link(event_id)
    if start is None and not seeds:
        return [], False
    links, cut = walk(source, [*([start] if start else []), *seeds], limit)
    events = _events(conn, links)
    return [Step(k, events.get(k.event_id)) for k in links], cut


def restored_links(conn: sqlite3.Connection, first_id: int) -> list[Link]:
    """The newest links from event `first_id` on (what a restarted hub's rings hold), oldest first."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM links WHERE event_id >= ? ORDER BY event_id DESC LIMIT ?",
        (first_id, CHAIN_CAPACITY),
    ).fetchall()
    return [Link(*row) for row in reversed(rows)]
