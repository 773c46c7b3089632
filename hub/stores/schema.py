"""The SQLite schema, opening checks, and the read queries shared by the store and `engine-hub export`."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import msgspec

from hub.records import EventRecord, LogRecord, utc
from hub.stores.base import HistoryQuery, StoreError, make_bundle

__all__ = ["APPLICATION_ID", "connect", "export_bundle", "read_events", "read_logs"]

APPLICATION_ID = 0x45484231  # "EHB1": marks a file as an Engine Hub database
SCHEMA_VERSION = 1
_SQLITE_MAGIC = b"SQLite format 3\x00"
_decode = msgspec.json.decode

# No index on ts: inserts stay cheap; time filters ride the (type|engine, id) indexes and the
# once-a-minute retention by age scans.
SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, engine TEXT NOT NULL, boot_id TEXT NOT NULL, seq INTEGER NOT NULL,
    type TEXT NOT NULL, ts REAL NOT NULL, payload BLOB NOT NULL, UNIQUE (engine, boot_id, seq));
CREATE INDEX IF NOT EXISTS events_type ON events (type, id);
CREATE INDEX IF NOT EXISTS events_engine ON events (engine, id);
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY, engine TEXT NOT NULL, boot_id TEXT NOT NULL, seq INTEGER NOT NULL,
    ts REAL NOT NULL, level TEXT NOT NULL, levelno INTEGER NOT NULL, logger TEXT NOT NULL,
    message TEXT NOT NULL, exc TEXT, extra BLOB NOT NULL, UNIQUE (engine, boot_id, seq));
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
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables and app_id != APPLICATION_ID:
            conn.close()
            raise StoreError(
                f"{path} is an SQLite database of some other program (it was left untouched); "
                "pass another --db"
            )
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            conn.close()
            raise StoreError(f"{path} is corrupt ({check.splitlines()[0]}); it was left untouched")
        if create and not tables:
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # before the first table exists
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        if create:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {'FULL' if synchronous == 'full' else 'NORMAL'}")
            conn.executescript(SCHEMA)
            _migrate(conn)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot open {path}: {exc}; the file was left untouched") from None
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a database made by an earlier build of schema 1 up to date (additive only)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(metrics)")}
    if "card" not in columns:
        conn.execute("ALTER TABLE metrics ADD COLUMN card BLOB")


def _event(row: tuple[Any, ...]) -> EventRecord:
    ident, engine, boot_id, seq, kind, ts, payload = row
    return EventRecord(ident, kind, ts, engine, seq, boot_id, msgspec.Raw(payload))


def _log(row: tuple[Any, ...]) -> LogRecord:
    ident, engine, seq, ts, level, logger, message, exc, extra = row
    return LogRecord(ident, engine, seq, utc(ts), level, logger, message, exc, _decode(extra))


def _where(query: HistoryQuery, type_column: bool) -> tuple[str, list[Any]]:
    clauses: list[str] = ["1"]
    args: list[Any] = []
    if query.engine is not None:
        clauses.append("engine = ?")
        args.append(query.engine)
    if type_column and query.event_type is not None:
        clauses.append("type = ?")
        args.append(query.event_type)
    if query.since is not None:
        clauses.append("ts >= ?")
        args.append(query.since)
    if query.until is not None:
        clauses.append("ts < ?")
        args.append(query.until)
    if query.before is not None:
        clauses.append("id < ?")
        args.append(query.before)
    if not type_column and query.min_level is not None:
        clauses.append("levelno >= ?")
        args.append(query.min_level)
    return " AND ".join(clauses), args


def read_events(conn: sqlite3.Connection, query: HistoryQuery) -> list[EventRecord]:
    """Events matching `query`, newest first."""
    where, args = _where(query, True)
    sql = f"SELECT id, engine, boot_id, seq, type, ts, payload FROM events WHERE {where} ORDER BY id DESC LIMIT ?"
    return [_event(row) for row in conn.execute(sql, (*args, query.limit))]


def read_logs(conn: sqlite3.Connection, query: HistoryQuery) -> list[LogRecord]:
    """Log lines matching `query`, newest first."""
    where, args = _where(query, False)
    sql = (
        "SELECT id, engine, seq, ts, level, logger, message, exc, extra FROM logs "
        f"WHERE {where} ORDER BY id DESC LIMIT ?"
    )
    return [_log(row) for row in conn.execute(sql, (*args, query.limit))]


def export_bundle(
    conn: sqlite3.Connection, engine: str, since: float, until: float, limit: int
) -> dict[str, Any]:
    """One engine's history over [since, until): the incident bundle of docs/api.md."""
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
            "AND coalesce(started, 0) < ? AND coalesce(ended, 9e18) >= ? ORDER BY started",
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
    )
