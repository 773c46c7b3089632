"""The SQLite schema, opening checks, and the read queries shared by the store and `engine-hub export`."""

from __future__ import annotations

import math
import sqlite3
from operator import attrgetter
from pathlib import Path
from typing import Any

import msgspec

from hub.core.records import AuditRecord, EventRecord, LogRecord, utc
from hub.stores.base import HistoryQuery, StoreError, UnknownEngine, make_bundle
from hub.stores.chunks import (
    CHUNK_COLUMNS,
    INSERT_CHUNK,
    chunks,
    decode_chunk,
    insert_many,
    unpack,
)
from hub.stores.series_sql import export_series, sketch_merge

__all__ = [
    "APPLICATION_ID",
    "connect",
    "export_bundle",
    "read_audit",
    "read_events",
    "read_logs",
]

APPLICATION_ID = 0x45484231  # "EHB1": marks a file as an Engine Hub database
# 8: #18 series (series, series_points), search (full-text indexes), chain (links) and timeline
# (transitions); 7: alert silences; 6: receive times; 5: audit; 4: deflated bodies; 3: chunks of
# verbatim frames; 2: chunks;
# 1: row per event
SCHEMA_VERSION = 8
_SQLITE_MAGIC = b"SQLite format 3\x00"
_decode = msgspec.json.decode
_id = attrgetter("id")

# Events are stored in chunks (hub/stores/chunks.py).
# The `events` view unpacks chunks into one row per event for ad-hoc SQL (it is not fast). It
# inflates bodies with sqlar_uncompress(), which the sqlite3 shell has and `connect` defines;
# other programs define it first (docs/operations.md).
# History queries prune chunks by ts_min/ts_max while walking an id index; only the timeline
# walks by time (the event_chunks_ts index, schema 8).
SCHEMA = """
CREATE TABLE IF NOT EXISTS event_chunks (
    last_id INTEGER PRIMARY KEY, first_id INTEGER NOT NULL, engine TEXT NOT NULL,
    boot_id TEXT NOT NULL, type TEXT NOT NULL, first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL, ts_min REAL NOT NULL, ts_max REAL NOT NULL, n INTEGER NOT NULL,
    body BLOB NOT NULL, frames BLOB, size INTEGER, UNIQUE (engine, boot_id, type, first_seq));
-- Nothing stored twice: a chunk whose seqs overlap a stored chunk of its stream is ignored (the
-- hub already drops seqs at or below what it committed; this holds even if it did not).
CREATE TRIGGER IF NOT EXISTS event_chunks_once BEFORE INSERT ON event_chunks
WHEN (SELECT last_seq FROM event_chunks WHERE engine = NEW.engine AND boot_id = NEW.boot_id
      AND type = NEW.type AND first_seq <= NEW.last_seq ORDER BY first_seq DESC LIMIT 1)
     >= NEW.first_seq
BEGIN SELECT RAISE(IGNORE); END;
CREATE INDEX IF NOT EXISTS event_chunks_type ON event_chunks (type, last_id);
CREATE INDEX IF NOT EXISTS event_chunks_engine ON event_chunks (engine, last_id);
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY, engine TEXT NOT NULL, boot_id TEXT NOT NULL, seq INTEGER NOT NULL,
    ts REAL NOT NULL, level TEXT NOT NULL, levelno INTEGER NOT NULL, logger TEXT NOT NULL,
    message TEXT NOT NULL, exc TEXT, extra BLOB NOT NULL, received REAL,
    UNIQUE (engine, boot_id, seq));
CREATE INDEX IF NOT EXISTS logs_engine ON logs (engine, id);
CREATE TABLE IF NOT EXISTS boots (
    engine TEXT NOT NULL, boot_id TEXT NOT NULL, pid INTEGER, mode TEXT, started REAL,
    ended REAL, how TEXT, meta BLOB, last_seq INTEGER NOT NULL DEFAULT 0, seen REAL,
    PRIMARY KEY (engine, boot_id));
CREATE TABLE IF NOT EXISTS gaps (
    engine TEXT NOT NULL, boot_id TEXT NOT NULL, first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL, reason TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS gaps_engine ON gaps (engine, at);
CREATE TABLE IF NOT EXISTS metrics (
    engine TEXT PRIMARY KEY, boot_id TEXT NOT NULL, series BLOB NOT NULL, card BLOB,
    updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    detail TEXT NOT NULL, engine TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_ts ON audit (ts);
-- Alert silences (hub/core/silences.py): kept so they survive a restart; an ended one stays
-- with its end time (retention drops it with the audit trail).
CREATE TABLE IF NOT EXISTS silences (
    id INTEGER PRIMARY KEY, engine TEXT NOT NULL, rule TEXT NOT NULL, starts REAL NOT NULL,
    ends REAL NOT NULL, comment TEXT NOT NULL, author TEXT NOT NULL);
-- #18 series: metric time series (hub/core/series.py, hub/stores/series_sql.py). A series per
-- (engine, name, tags as canonical JSON); its buckets per tier (0 fine, 1 coarse) by start;
-- a histogram's also hold its sketch and p50/p95/p99 (NULL once a merge made them stale).
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY, engine TEXT NOT NULL, name TEXT NOT NULL, tags TEXT NOT NULL,
    kind TEXT NOT NULL, UNIQUE (engine, name, tags));
CREATE TABLE IF NOT EXISTS series_points (
    series INTEGER NOT NULL, tier INTEGER NOT NULL, start REAL NOT NULL, n INTEGER NOT NULL,
    total REAL NOT NULL, low REAL NOT NULL, high REAL NOT NULL, last REAL NOT NULL, sketch BLOB,
    p50 REAL, p95 REAL, p99 REAL, PRIMARY KEY (series, tier, start)) WITHOUT ROWID;
-- #18 series end
-- #18 search: contentless FTS5 indexes of log lines and of event chunks (one document per
-- chunk, no positions: the search decodes a matching chunk and matches its events exactly).
-- The writer indexes behind its commits (hub/stores/search_index.py); `upto` is the highest
-- id indexed, so an upgraded file starts at 0 and is backfilled in the background. Deletes of
-- indexed rows (retention) remove them from the index; a chunk retention rewrites is indexed
-- again. A contentless 'delete' needs the text as indexed, hence sqlar_uncompress here.
CREATE TABLE IF NOT EXISTS search_marks (name TEXT PRIMARY KEY, upto INTEGER NOT NULL);
INSERT OR IGNORE INTO search_marks VALUES ('logs', 0), ('events', 0);
CREATE VIRTUAL TABLE IF NOT EXISTS log_text USING fts5(message, logger, exc, content='');
CREATE VIRTUAL TABLE IF NOT EXISTS event_text
USING fts5(body, content='', detail=none, columnsize=0);
CREATE TRIGGER IF NOT EXISTS log_text_delete AFTER DELETE ON logs
WHEN OLD.id <= (SELECT upto FROM search_marks WHERE name = 'logs')
BEGIN INSERT INTO log_text (log_text, rowid, message, logger, exc)
      VALUES ('delete', OLD.id, OLD.message, OLD.logger, OLD.exc); END;
CREATE TRIGGER IF NOT EXISTS event_text_delete AFTER DELETE ON event_chunks
WHEN OLD.last_id <= (SELECT upto FROM search_marks WHERE name = 'events')
BEGIN INSERT INTO event_text (event_text, rowid, body)
      VALUES ('delete', OLD.last_id, CAST(sqlar_uncompress(OLD.body, OLD.size) AS TEXT)); END;
CREATE TRIGGER IF NOT EXISTS event_text_rewrite AFTER INSERT ON event_chunks
WHEN NEW.last_id <= (SELECT upto FROM search_marks WHERE name = 'events')
BEGIN INSERT INTO event_text (rowid, body)
      VALUES (NEW.last_id, CAST(sqlar_uncompress(NEW.body, NEW.size) AS TEXT)); END;
-- end #18 search
-- #18 chain: one row per event that carried a chain link (hub/core/chains.py), written by the
-- writer with its event; refs are per (engine, boot). A new table: nothing to backfill.
CREATE TABLE IF NOT EXISTS links (
    event_id INTEGER PRIMARY KEY, engine TEXT NOT NULL, boot_id TEXT NOT NULL,
    type TEXT NOT NULL, ts REAL NOT NULL, ref INTEGER, parent INTEGER, cycle TEXT);
CREATE INDEX IF NOT EXISTS links_ref ON links (engine, boot_id, ref) WHERE ref IS NOT NULL;
CREATE INDEX IF NOT EXISTS links_parent ON links (engine, boot_id, parent)
    WHERE parent IS NOT NULL;
CREATE INDEX IF NOT EXISTS links_cycle ON links (engine, boot_id, cycle) WHERE cycle IS NOT NULL;
-- #18 chain end
-- #18 timeline: health transitions the hub derived (hub/core/engines.py), for the timeline;
-- nothing to backfill (schema 7 never kept them). Alerts come from the audit table.
CREATE TABLE IF NOT EXISTS transitions (
    id INTEGER PRIMARY KEY, engine TEXT NOT NULL, at REAL NOT NULL, health TEXT NOT NULL,
    previous TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS transitions_at ON transitions (at);
-- The timeline walks each marker type's chunks newest end first and stops early, and finds
-- chunks straddling a window's end from the index alone (hub/stores/timelines.py); one entry
-- per chunk, not per event. Made once for an existing database when it upgrades.
CREATE INDEX IF NOT EXISTS event_chunks_ts ON event_chunks (type, ts_max, ts_min);
-- #18 timeline: end
"""
EVENTS_VIEW = """
CREATE VIEW IF NOT EXISTS events (id, engine, boot_id, seq, type, ts, payload, received) AS
WITH c AS (SELECT engine, boot_id, type, frames,
                  CAST(sqlar_uncompress(body, size) AS TEXT) AS body FROM event_chunks)
SELECT json_extract(e.value, '$[0]'), c.engine, c.boot_id, json_extract(e.value, '$[2]'), c.type,
       json_extract(e.value, '$[1]'), json_extract(e.value, '$[3]'), json_extract(e.value, '$[4]')
FROM c, json_each(c.body) AS e WHERE c.frames IS NULL
UNION ALL
SELECT json_extract(c.frames, '$[' || f.key || '][0]') + e.key, c.engine, c.boot_id,
       json_extract(e.value, '$.seq'), c.type,
       coalesce(json_extract(e.value, '$.ts'), json_extract(c.frames, '$[' || f.key || '][1]')),
       json_extract(e.value, '$.payload'), json_extract(c.frames, '$[' || f.key || '][1]')
FROM c,
     json_each(CASE json_array_length(c.frames) WHEN 1 THEN json_array(json(c.body))
               ELSE c.body END) AS f,
     json_each(CASE json_type(f.value) WHEN 'object' THEN json_array(json(f.value))
               ELSE f.value END) AS e
WHERE c.frames IS NOT NULL
"""


def connect(path: str, synchronous: str = "normal", create: bool = True) -> sqlite3.Connection:
    """Open `path` as an Engine Hub database; refuse (never overwrite) anything else."""
    file = Path(path)
    if file.exists() and file.stat().st_size > 0:
        with file.open("rb") as fh:
            if fh.read(16) != _SQLITE_MAGIC:
                raise StoreError(
                    f"{path} exists but is not an SQLite database; it was left untouched. "
                    "Move it away or pass another --db"
                )
    elif not create:
        raise StoreError(f"{path} does not exist")
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        conn.create_function("sqlar_uncompress", 2, unpack, deterministic=True)
        conn.create_function("sketch_merge", 2, sketch_merge, deterministic=True)
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables and app_id != APPLICATION_ID:
            conn.close()
            raise StoreError(
                f"{path} is an SQLite database of some other program (it was left untouched); "
                "pass another --db"
            )
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            conn.close()
            raise StoreError(
                f"{path} was written by a newer Engine Hub (schema {version}, this one reads up "
                f"to {SCHEMA_VERSION}); it was left untouched"
            )
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            conn.close()
            raise StoreError(f"{path} is corrupt ({check.splitlines()[0]}); it was left untouched")
        if create and not tables:
            # Before the first table exists. Chunks are large: bigger pages than the 4 KiB
            # default make their writes cheaper (docs/benchmarks.md); a small commit still writes
            # whole pages to the WAL, which is why not bigger still.
            conn.execute("PRAGMA page_size = 16384")
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        if create:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {'FULL' if synchronous == 'full' else 'NORMAL'}")
        if create or version < SCHEMA_VERSION:
            conn.executescript(f"BEGIN; {SCHEMA} COMMIT;")  # one transaction, not one per table
            _migrate(conn)
            conn.executescript(EVENTS_VIEW)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot open {path}: {exc}; the file was left untouched") from None
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a database made by an earlier build up to date, in one transaction."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(metrics)")}
    chunk_columns = {row[1] for row in conn.execute("PRAGMA table_info(event_chunks)")}
    log_columns = {row[1] for row in conn.execute("PRAGMA table_info(logs)")}
    kinds = dict(conn.execute("SELECT name, type FROM sqlite_master WHERE name = 'events'"))
    conn.execute("BEGIN IMMEDIATE")
    if "received" not in log_columns:  # schema 5 and before: old lines read received None
        conn.execute("ALTER TABLE logs ADD COLUMN received REAL")
        if kinds.get("events") == "view":  # made again with its received column
            conn.execute("DROP VIEW events")
    if "card" not in columns:
        conn.execute("ALTER TABLE metrics ADD COLUMN card BLOB")
    if "frames" not in chunk_columns:  # schema 2
        conn.execute("ALTER TABLE event_chunks ADD COLUMN frames BLOB")
    if "size" not in chunk_columns:  # schema 2 or 3: the view is made again for the new columns
        conn.execute("ALTER TABLE event_chunks ADD COLUMN size INTEGER")
        conn.execute("DROP VIEW IF EXISTS events")
    if kinds.get("events") == "table":  # schema 1: a row per event
        # Chunked here, not in SQL: json_array() would round ts to 15 digits (10 µs).
        rows = conn.execute(
            "SELECT id, type, ts, engine, seq, boot_id, payload FROM events ORDER BY id"
        )
        while part := rows.fetchmany(100_000):
            frames = [
                [EventRecord(ident, kind, ts, engine, seq, boot_id, msgspec.Raw(payload))]
                for ident, kind, ts, engine, seq, boot_id, payload in part
            ]
            insert_many(conn, INSERT_CHUNK, chunks(frames))
        conn.execute("DROP TABLE events")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    conn.execute("COMMIT")


def _log(row: tuple[Any, ...]) -> LogRecord:
    ident, engine, seq, ts, level, logger, message, exc, extra, received = row
    return LogRecord(
        ident, engine, seq, utc(ts), level, logger, message, exc, _decode(extra), received
    )


def _where(*conditions: tuple[str, Any]) -> tuple[str, list[Any]]:
    """An SQL condition of the clauses whose value is given, and their arguments."""
    given = [(clause, value) for clause, value in conditions if value is not None]
    return " AND ".join(["1"] + [clause for clause, _ in given]), [value for _, value in given]


def read_events(conn: sqlite3.Connection, query: HistoryQuery) -> list[EventRecord]:
    """Events matching `query`, newest first.

    Walks chunks newest first (by their last id), pruned by engine, type and time, and stops once
    no further chunk can hold an event newer than the `limit`-th found.
    """
    where, args = _where(
        ("engine = ?", query.engine),
        ("type = ?", query.event_type),
        ("ts_max >= ?", query.since),
        ("ts_min < ?", query.until),
        ("first_id < ?", query.before),
    )
    since = query.since if query.since is not None else -math.inf
    until = query.until if query.until is not None else math.inf
    before = query.before if query.before is not None else math.inf
    exact = query.since is None and query.until is None and query.before is None
    limit = query.limit
    found: list[EventRecord] = []
    sql = f"SELECT {CHUNK_COLUMNS} FROM event_chunks WHERE {where} ORDER BY last_id DESC"
    for last_id, *chunk in conn.execute(sql, args):
        if len(found) >= limit:
            found.sort(key=_id, reverse=True)
            del found[limit:]
            if last_id < found[-1].id:
                break
        events = decode_chunk(*chunk)
        if exact:
            found += events[-limit:]
        else:
            found += [e for e in events if since <= e.ts < until and e.id < before]
    found.sort(key=_id, reverse=True)
    return found[:limit]


def read_logs(conn: sqlite3.Connection, query: HistoryQuery) -> list[LogRecord]:
    """Log lines matching `query`, newest first."""
    where, args = _where(
        ("engine = ?", query.engine),
        ("ts >= ?", query.since),
        ("ts < ?", query.until),
        ("id < ?", query.before),
        ("levelno >= ?", query.min_level),
    )
    sql = (
        "SELECT id, engine, seq, ts, level, logger, message, exc, extra, received FROM logs "
        f"WHERE {where} ORDER BY id DESC LIMIT ?"
    )
    return [_log(row) for row in conn.execute(sql, (*args, query.limit))]


def read_audit(
    conn: sqlite3.Connection, query: HistoryQuery, hub_wide: bool = False
) -> list[AuditRecord]:
    """Audit entries in `query`'s window, newest first: about its engine (and the hub as a whole,
    if `hub_wide`), or all of them when it names none."""
    where, args = _where(("ts >= ?", query.since), ("ts < ?", query.until))
    if query.engine is not None:
        where += " AND (engine = ? OR engine = '')" if hub_wide else " AND engine = ?"
        args.append(query.engine)
    sql = (
        f"SELECT ts, actor, action, detail, engine FROM audit WHERE {where} "
        "ORDER BY id DESC LIMIT ?"
    )
    return [AuditRecord(*row) for row in conn.execute(sql, (*args, query.limit))]


def _holds(conn: sqlite3.Connection, engine: str) -> bool:
    """Whether anything of `engine` is stored (every table here is indexed by engine first)."""
    [(found,)] = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM boots WHERE engine = ?1) "
        "OR EXISTS (SELECT 1 FROM metrics WHERE engine = ?1) "
        "OR EXISTS (SELECT 1 FROM event_chunks WHERE engine = ?1) "
        "OR EXISTS (SELECT 1 FROM logs WHERE engine = ?1) "
        "OR EXISTS (SELECT 1 FROM series WHERE engine = ?1)",
        (engine,),
    )
    return bool(found)


def export_bundle(
    conn: sqlite3.Connection, engine: str, since: float, until: float, limit: int
) -> dict[str, Any]:
    """One engine's history over [since, until): the incident bundle of docs/api.md.

    Raises UnknownEngine when the file holds nothing of `engine` at all.
    """
    if not _holds(conn, engine):
        known = conn.execute("SELECT engine FROM boots UNION SELECT engine FROM metrics")
        raise UnknownEngine(engine, [name for (name,) in known])
    window = HistoryQuery(limit, engine=engine, since=since, until=until)
    events = read_events(conn, window)
    boots = [
        {
            "boot_id": b,
            "pid": pid,
            "mode": mode,
            "started": started,
            "ended": ended,
            "how": how,
            "last_seq": last,
        }
        for b, pid, mode, started, ended, how, last in conn.execute(
            "SELECT boot_id, pid, mode, started, ended, how, last_seq FROM boots WHERE engine = ? "
            "AND coalesce(started, 0) < ? AND coalesce(ended, 9e18) >= ? ORDER BY started, boot_id",
            (engine, until, since),
        )
    ]
    gaps = [
        {"boot_id": b, "first_seq": f, "last_seq": la, "reason": r, "at": at}
        for b, f, la, r, at in conn.execute(
            "SELECT boot_id, first_seq, last_seq, reason, at FROM gaps WHERE engine = ? AND at >= ? AND at < ?",
            (engine, since, until),
        )
    ]
    metrics = conn.execute(
        "SELECT series, updated FROM metrics WHERE engine = ?", (engine,)
    ).fetchone()
    return make_bundle(
        engine,
        since,
        until,
        boots,
        list(reversed(events)),
        list(reversed(read_logs(conn, window))),
        gaps,
        {"series": _decode(metrics[0]), "updated": utc(metrics[1])} if metrics else None,
        len(events) >= limit,
        list(reversed(read_audit(conn, window, hub_wide=True))),
        export_series(conn, engine, since, until, limit),
        [
            {"at": utc(at), "health": health, "previous": previous}
            for at, health, previous in conn.execute(
                "SELECT at, health, previous FROM (SELECT id, at, health, previous FROM transitions "
                "WHERE engine = ? AND at >= ? AND at < ? ORDER BY id DESC LIMIT ?) ORDER BY id",
                (engine, since, until, limit),
            )
        ],
    )
