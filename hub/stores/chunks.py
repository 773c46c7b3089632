"""The stored form of events: chunks of one (engine, boot, type), and how the writer makes them.

Events are stored in chunks: the events of one (engine, boot, type) in one commit, oldest first,
as a JSON array of [id, ts, seq, payload] (engine, boot and type are the chunk's columns). One
row per chunk instead of one per event is what lets the writer keep up with the hub
(docs/operations.md); ids and seqs increase within a chunk.
"""

from __future__ import annotations

import sqlite3
from itertools import chain
from operator import attrgetter
from typing import Any

import msgspec

from hub.records import EventRecord

__all__ = ["CHUNK_EVENTS", "INSERT_CHUNK", "chunk_row", "chunks", "decode_chunk", "insert_many"]

CHUNK_EVENTS = 1000  # most events in one chunk
INSERT_CHUNK = (
    "INSERT OR IGNORE INTO event_chunks (last_id, first_id, engine, boot_id, type, first_seq, "
    "last_seq, ts_min, ts_max, n, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_encode = msgspec.json.Encoder().encode
_decode_chunk = msgspec.json.Decoder(list[tuple[int, float, int, msgspec.Raw]]).decode
_id = attrgetter("id")
_ts = attrgetter("ts")
_seq = attrgetter("seq")
_payload = attrgetter("payload")
_type = attrgetter("type")


def chunk_row(events: list[EventRecord]) -> tuple[Any, ...]:
    """The `event_chunks` row of one stream's events (one engine, boot and type; oldest first)."""
    first, last = events[0], events[-1]
    times = list(map(_ts, events))
    body = list(zip(map(_id, events), times, map(_seq, events), map(_payload, events), strict=True))
    return (
        last.id,
        first.id,
        first.engine,
        first.boot_id,
        first.type,
        first.seq,
        last.seq,
        min(times),
        max(times),
        len(events),
        _encode(body),
    )


def decode_chunk(engine: str, boot_id: str, kind: str, body: bytes) -> list[EventRecord]:
    """A chunk's events, oldest first."""
    return [
        EventRecord(ident, kind, ts, engine, seq, boot_id, payload)
        for ident, ts, seq, payload in _decode_chunk(body)
    ]


def insert_many(conn: sqlite3.Connection, insert: str, rows: list[tuple[Any, ...]]) -> None:
    """Run `insert` (ending in one VALUES tuple) for all rows in as few statements as SQLite allows.

    Python's sqlite3 lets go of the GIL around every step; while the event loop is busy, taking it
    back costs up to a switch interval (5 ms). One multi-row statement is one step, not one per row.
    """
    if not rows:
        return
    head, _, values = insert.rpartition(" VALUES ")
    width = len(rows[0])
    per = max(1, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width)
    for start in range(0, len(rows), per):
        part = rows[start : start + per]
        conn.execute(f"{head} VALUES {', '.join([values] * len(part))}", list(chain(*part)))


def chunks(frames: list[list[EventRecord]]) -> list[tuple[Any, ...]]:
    """Chunk rows of queued frames: per (engine, boot, type), at most CHUNK_EVENTS each.

    Frames of one engine boot are joined first (ids and seqs increase along them); a frame's
    events usually share one type, so the split by type is a set in C for most of them.
    """
    streams: dict[tuple[str, str], list[list[EventRecord]]] = {}
    for frame in frames:
        first = frame[0]
        streams.setdefault((first.engine, first.boot_id), []).append(frame)
    rows = []
    for parts in streams.values():
        events = parts[0] if len(parts) == 1 else list(chain.from_iterable(parts))
        kinds = set(map(_type, events))
        if len(kinds) == 1:
            groups = [events]
        else:
            by_kind: dict[str, list[EventRecord]] = {kind: [] for kind in kinds}
            for event in events:
                by_kind[event.type].append(event)
            groups = list(by_kind.values())
        for group in groups:
            for start in range(0, len(group), CHUNK_EVENTS):
                rows.append(chunk_row(group[start : start + CHUNK_EVENTS]))
    return rows
