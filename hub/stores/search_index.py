"""Full-text search in SQLite: the writer's indexing behind its commits, and the search reads.

Two contentless FTS5 tables (schema.py, block `#18 search`) hold only the index; the text stays
where it is. `log_text` indexes each log line's message, logger and exception (full detail:
phrases are answered by FTS5). `event_text` indexes each event chunk's body as one document
(no positions): a chunk that matches the query loosely is decoded and its events are matched
exactly, one by one. Indexing whole chunks costs the writer one FTS5 insert per chunk and never
decodes a verbatim frame; it runs after commits, in slices, so it never delays an ack
(docs/history.md). `search_marks` holds the highest id indexed per table; rows above it (the
last moments, or an upgraded file still being backfilled) are searched by scanning them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

from hub.core.hits import SearchHit, SearchPage, SearchRequest, event_hit, merge, payload_text
from hub.core.records import EventRecord
from hub.stores.chunks import CHUNK_COLUMNS, decode_chunk

__all__ = ["index_pending", "search"]

LOG_SLICE = 5_000  # log lines indexed per transaction
CHUNK_SLICE = 8  # event chunks per transaction (each up to 256 KiB of text)
TAIL_LOGS = 100_000  # unindexed log lines a search scans at most (then the page is partial)
TAIL_CHUNKS = 200  # unindexed chunks likewise
MAX_CHUNKS = 2_000  # chunks a search decodes at most

_LOG_COLUMNS = "l.id, l.engine, l.seq, l.ts, l.level, l.logger, l.message, l.exc, l.received"


def _mark(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT upto FROM search_marks WHERE name = ?", (name,)).fetchone()
    return int(row[0]) if row else 0


def _index_slice(
    conn: sqlite3.Connection, name: str, table: str, key: str, size: int, insert: str
) -> bool:
    """Index the next `size` rows of `table` above the mark; whether there may be more."""
    mark = _mark(conn, name)
    [(upper, count)] = conn.execute(
        f"SELECT max({key}), count(*) FROM (SELECT {key} FROM {table} WHERE {key} > ? "
        f"ORDER BY {key} LIMIT ?)",
        (mark, size),
    )
    if not count:
        return False
    conn.execute(insert, (mark, upper))
    conn.execute("UPDATE search_marks SET upto = ? WHERE name = ?", (upper, name))
    return bool(count == size)


def index_pending(conn: sqlite3.Connection, stop: Callable[[], bool]) -> bool:
    """Index what the writer committed since, slice by slice until `stop()`; whether more is left."""
    more = True
    while more and not stop():
        conn.execute("BEGIN IMMEDIATE")
        try:
            logs = _index_slice(
                conn,
                "logs",
                "logs",
                "id",
                LOG_SLICE,
                "INSERT INTO log_text (rowid, message, logger, exc) SELECT id, message, logger, exc "
                "FROM logs WHERE id > ? AND id <= ?",
            )
            events = _index_slice(
                conn,
                "events",
                "event_chunks",
                "last_id",
                CHUNK_SLICE,
                "INSERT INTO event_text (rowid, body) SELECT last_id, "
                "CAST(sqlar_uncompress(body, size) AS TEXT) FROM event_chunks "
                "WHERE last_id > ? AND last_id <= ?",
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        more = logs or events
    return more


def _filters(request: SearchRequest, *conds: tuple[str, Any]) -> tuple[str, list[Any]]:
    given = [(c, v) for c, v in conds if v is not None]
    return " AND ".join(["1"] + [c for c, _ in given]), [v for _, v in given]


def _search_logs(conn: sqlite3.Connection, request: SearchRequest) -> tuple[list[SearchHit], bool]:
    mark, limit, query = _mark(conn, "logs"), request.limit + 1, request.query
    where, args = _filters(
        request,
        ("l.engine = ?", request.engine),
        ("l.levelno >= ?", request.min_level),
        ("l.ts >= ?", request.since),
        ("l.ts < ?", request.until),
        ("l.id < ?", request.cursor.logs),
    )
    hits: list[SearchHit] = []
    scanned = 0
    tail = conn.execute(
        f"SELECT {_LOG_COLUMNS} FROM logs l WHERE l.id > ? AND {where} ORDER BY l.id DESC LIMIT ?",
        (mark, *args, TAIL_LOGS),
    )
    for ident, engine, _seq, ts, level, logger, message, exc, _received in tail:
        scanned += 1
        if query.matches((message, logger, exc or "")):
            hits.append(SearchHit("log", ident, engine, ts, level, message, logger, exc))
            if len(hits) >= limit:
                return hits, False
    indexed = conn.execute(
        f"SELECT {_LOG_COLUMNS} FROM log_text JOIN logs l ON l.id = log_text.rowid "
        f"WHERE log_text MATCH ? AND log_text.rowid <= ? AND {where} "
        "ORDER BY log_text.rowid DESC LIMIT ?",
        (query.fts(), mark, *args, limit - len(hits)),
    )
    for ident, engine, _seq, ts, level, logger, message, exc, _received in indexed:
        hits.append(SearchHit("log", ident, engine, ts, level, message, logger, exc))
    return hits, scanned >= TAIL_LOGS


def _candidate_chunks(
    conn: sqlite3.Connection, request: SearchRequest
) -> Iterator[tuple[Any, ...]]:
    """Chunks that may hold a matching event, newest first: unindexed ones, then FTS5's."""
    mark = _mark(conn, "events")
    where, args = _filters(
        request,
        ("c.engine = ?", request.engine),
        ("c.type = ?", request.event_type),
        ("c.ts_max >= ?", request.since),
        ("c.ts_min < ?", request.until),
        ("c.first_id < ?", request.cursor.events),
    )
    columns = ", ".join(f"c.{c.strip()}" for c in CHUNK_COLUMNS.split(","))
    yield from conn.execute(
        f"SELECT {columns} FROM event_chunks c WHERE c.last_id > ? AND {where} "
        "ORDER BY c.last_id DESC LIMIT ?",
        (mark, *args, TAIL_CHUNKS),
    )
    yield from conn.execute(
        f"SELECT {columns} FROM event_text JOIN event_chunks c ON c.last_id = event_text.rowid "
        f"WHERE event_text MATCH ? AND event_text.rowid <= ? AND {where} "
        "ORDER BY event_text.rowid DESC",
        (request.query.fts_loose(), mark, *args),
    )


def _search_events(
    conn: sqlite3.Connection, request: SearchRequest
) -> tuple[list[SearchHit], bool]:
    limit, query = request.limit + 1, request.query  # one more: is there a next page
    found: list[EventRecord] = []
    for scanned, (last_id, *chunk) in enumerate(_candidate_chunks(conn, request)):
        if len(found) >= limit:
            found.sort(key=lambda e: e.id, reverse=True)
            del found[limit:]
            if last_id < found[-1].id:
                break
        if scanned >= MAX_CHUNKS:
            return [event_hit(e) for e in found], True
        found += [
            e
            for e in decode_chunk(*chunk)
            if query.matches_text(payload_text(e)) and request.event_ok(e)
        ]
    found.sort(key=lambda e: e.id, reverse=True)
    return [event_hit(e) for e in found[:limit]], False


def search(conn: sqlite3.Connection, request: SearchRequest) -> SearchPage:
    """One page of hits, newest first (hub/core/hits.py merges the two sources)."""
    logs, partial_logs = _search_logs(conn, request) if request.wants_logs else ([], False)
    events, partial_events = _search_events(conn, request) if request.wants_events else ([], False)
    return merge(request, logs, events, partial_logs or partial_events)
