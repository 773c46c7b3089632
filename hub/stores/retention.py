"""Retention: what the writer deletes so the database stays bounded (docs/operations.md)."""

from __future__ import annotations

import sqlite3

from hub.core.records import EventRecord
from hub.settings import Settings
from hub.stores.chunks import CHUNK_COLUMNS, INSERT_CHUNK, chunk_row, decode_chunk
from hub.stores.series_sql import retain_series

__all__ = ["retain", "retain_type"]


def retain(conn: sqlite3.Connection, settings: Settings, now: float) -> None:
    """One pass, in one transaction: per-type and per-engine counts, age limits (series too).

    Raises what SQLite (or a bug) raises, inside the transaction; the caller rolls back.
    """
    cutoff = now - settings.retention_days * 86_400
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("DELETE FROM event_chunks WHERE ts_max < ?", (cutoff,))
    for last_id, *chunk in conn.execute(
        f"SELECT {CHUNK_COLUMNS} FROM event_chunks WHERE ts_min < ?", (cutoff,)
    ).fetchall():
        _rewrite(conn, last_id, [e for e in decode_chunk(*chunk) if e.ts >= cutoff])
    conn.execute("DELETE FROM logs WHERE ts < ?", (cutoff,))
    conn.execute("DELETE FROM links WHERE ts < ?", (cutoff,))
    conn.execute("DELETE FROM gaps WHERE at < ?", (cutoff,))
    conn.execute("DELETE FROM audit WHERE ts < ?", (cutoff,))
    conn.execute("DELETE FROM silences WHERE ends < ?", (cutoff,))
    retain_series(conn, settings, now)  # fine buckets after series_fine_days, coarse after this
    conn.execute("DELETE FROM transitions WHERE at < ?", (cutoff,))
    conn.execute(  # a flapping engine must not fill the disk: its newest transitions are kept
        "DELETE FROM transitions WHERE id <= (SELECT id FROM transitions ORDER BY id DESC "
        "LIMIT 1 OFFSET ?)",
        (settings.retention_events,),
    )
    for (kind,) in conn.execute("SELECT DISTINCT type FROM event_chunks").fetchall():
        retain_type(conn, kind, settings.retention_events)
    # Links older than every stored event go with them (younger ones whose event a per-type
    # limit removed read as "no longer stored" until their age passes).
    conn.execute("DELETE FROM links WHERE event_id < (SELECT min(first_id) FROM event_chunks)")
    for (engine,) in conn.execute("SELECT DISTINCT engine FROM logs").fetchall():
        conn.execute(
            "DELETE FROM logs WHERE engine = ? AND id <= (SELECT id FROM logs WHERE engine = ? "
            "ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (engine, engine, settings.retention_logs),
        )
    conn.execute("COMMIT")
    conn.execute("PRAGMA incremental_vacuum")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def retain_type(conn: sqlite3.Connection, kind: str, keep: int) -> None:
    """Keep the newest `keep` events of a type: whole chunks go, the oldest kept one is cut."""
    conn.execute(
        "DELETE FROM event_chunks WHERE last_id IN (SELECT last_id FROM (SELECT last_id, "
        "sum(n) OVER (ORDER BY last_id DESC) - n AS newer FROM event_chunks WHERE type = ?) "
        "WHERE newer >= ?)",
        (kind, keep),
    )
    [(total,)] = conn.execute("SELECT sum(n) FROM event_chunks WHERE type = ?", (kind,))
    if total and total > keep:
        [(last_id, *chunk)] = conn.execute(
            f"SELECT {CHUNK_COLUMNS} FROM event_chunks WHERE type = ? ORDER BY last_id LIMIT 1",
            (kind,),
        )
        _rewrite(conn, last_id, decode_chunk(*chunk)[total - keep :])


def _rewrite(conn: sqlite3.Connection, last_id: int, kept: list[EventRecord]) -> None:
    """Replace a chunk by the part of it that is kept (nothing: drop it)."""
    conn.execute("DELETE FROM event_chunks WHERE last_id = ?", (last_id,))
    if kept:
        conn.execute(INSERT_CHUNK, chunk_row(kept))
