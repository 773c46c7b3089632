"""The stored form of events: chunks of one (engine, boot, type), and how the writer makes them.

Events are stored in chunks, one row per chunk instead of one per event, which is what lets the
writer keep up with the hub (docs/operations.md). Engine, boot and type are the chunk's columns;
ids and seqs increase within a chunk. A chunk's body is one of:

- frames as sent (`frames` holds [first id, received] per frame): the text of batches whose
  messages were all accepted events of one type, byte for byte, one frame or a JSON array of
  them. The hub never touches their events to store them; ids are consecutive within a frame.
- records (`frames` is NULL): a JSON array of [id, ts, seq, payload, received], for everything
  else (`received` is when the hub received the event's frame; rows of schema 5 and before end
  at payload, and read as received None).

Bodies are deflated (zlib) on the writer thread, as SQLite's archive format (sqlar) does it:
`size` is the body's length before; a body whose deflated form is no smaller is stored as is,
with `size` equal to its length (NULL in rows of schema 3 and before, which are never deflated).
Deflating costs the writer a fraction of what writing the bytes it saves would (docs/benchmarks.md).
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Sequence
from itertools import chain, groupby
from operator import attrgetter
from typing import Any

import msgspec

from hub.core.messages import Event, epoch
from hub.core.records import EventRecord

__all__ = [
    "CHUNK_COLUMNS",
    "CHUNK_EVENTS",
    "INSERT_CHUNK",
    "Frame",
    "VERBATIM_MIN_EVENTS",
    "chunk_row",
    "chunks",
    "decode_chunk",
    "insert_many",
    "pack",
    "unpack",
    "verbatim",
]

CHUNK_EVENTS = 1000  # most events in one chunk of records
# Frames kept verbatim are joined up to this size. Each row is deflated in one call, after which
# the writer must take the GIL back (hub/stores/sqlite.py): rows of 32 KiB made it fall behind.
CHUNK_BYTES = 262_144
# Batches of at least this many events are kept as their frame's text: no per-event work on the
# writer. Smaller frames are stored from their records, which costs the event loop less than
# making a `Frame` of them.
VERBATIM_MIN_EVENTS = 16
COMPRESS_LEVEL = 1  # zlib's fastest: event JSON deflates about 7x at ~500 MB/s per core here
# a chunk's id, then decode_chunk's arguments
CHUNK_COLUMNS = "last_id, engine, boot_id, type, body, frames, size"
INSERT_CHUNK = (
    "INSERT OR IGNORE INTO event_chunks (last_id, first_id, engine, boot_id, type, first_seq, "
    "last_seq, ts_min, ts_max, n, body, frames, size) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_encode = msgspec.json.Encoder().encode
_decode_chunk = msgspec.json.Decoder(list[tuple[int, float, int, msgspec.Raw, float | None]]).decode
_decode_old_chunk = msgspec.json.Decoder(list[tuple[int, float, int, msgspec.Raw]]).decode
_decode_frame = msgspec.json.Decoder(Event | list[Event]).decode
_decode_frames = msgspec.json.Decoder(list[Event | list[Event]]).decode
_decode_index = msgspec.json.Decoder(list[tuple[int, float]]).decode


class Frame(msgspec.Struct, gc=False):
    """A frame kept verbatim: its events are all of its messages, of one type, ids consecutive."""

    engine: str
    boot_id: str
    type: str
    first_id: int
    last_id: int
    first_seq: int
    last_seq: int
    ts_min: float
    ts_max: float
    received: float  # when the hub received it: the ts of events that carry none
    text: bytes  # a JSON array of event messages, or one event message


def pack(body: bytes) -> tuple[bytes, int]:
    """A body as stored, and its `size`: deflated, or as is if deflating does not shrink it."""
    packed = zlib.compress(body, COMPRESS_LEVEL)
    return (packed if len(packed) < len(body) else body), len(body)


def unpack(stored: bytes, size: int | None) -> bytes:
    """A stored body as it was packed; SQLite's `sqlar_uncompress(body, size)` does the same."""
    return stored if not size or size == len(stored) else zlib.decompress(stored, bufsize=size)


_id = attrgetter("id")
_ts = attrgetter("ts")
_seq = attrgetter("seq")
_payload = attrgetter("payload")
_received = attrgetter("received")
_type = attrgetter("type")


def chunk_row(events: list[EventRecord]) -> tuple[Any, ...]:
    """The `event_chunks` row of one stream's events (one engine, boot and type; oldest first)."""
    first, last = events[0], events[-1]
    times = list(map(_ts, events))
    body = list(
        zip(
            map(_id, events),
            times,
            map(_seq, events),
            map(_payload, events),
            map(_received, events),
            strict=True,
        )
    )
    stored, size = pack(_encode(body))
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
        stored,
        None,
        size,
    )


def verbatim(events: list[EventRecord], text: bytes, received: float) -> Frame | None:
    """`events` (all of the frame `text`, of one type) as a Frame, if they may be stored so."""
    first, last = events[0], events[-1]
    if len(events) < VERBATIM_MIN_EVENTS or last.id - first.id != len(events) - 1:
        return None  # small, or ids that are not consecutive, which only the first id would say
    times = list(map(_ts, events))
    return Frame(
        first.engine,
        first.boot_id,
        first.type,
        first.id,
        last.id,
        first.seq,
        last.seq,
        min(times),
        max(times),
        received,
        text,
    )


def frames_row(frames: list[Frame]) -> tuple[Any, ...]:
    """The `event_chunks` row of verbatim frames of one stream (oldest first)."""
    first, last = frames[0], frames[-1]
    if len(frames) == 1:
        body = first.text
    else:
        texts = [b"["]
        for frame in frames:
            texts += (frame.text, b",")
        texts[-1] = b"]"
        body = b"".join(texts)
    stored, size = pack(body)
    return (
        last.last_id,
        first.first_id,
        first.engine,
        first.boot_id,
        first.type,
        first.first_seq,
        last.last_seq,
        min(f.ts_min for f in frames),
        max(f.ts_max for f in frames),
        sum(f.last_id - f.first_id + 1 for f in frames),
        stored,
        _encode([(f.first_id, f.received) for f in frames]),
        size,
    )


def decode_chunk(
    engine: str, boot_id: str, kind: str, stored: bytes, frames: bytes | None, size: int | None
) -> list[EventRecord]:
    """A chunk's events, oldest first."""
    body = unpack(stored, size)
    if frames is None:
        try:
            rows = _decode_chunk(body)
        except msgspec.ValidationError:  # a chunk of schema 5 or before: no receive times
            return [
                EventRecord(ident, kind, ts, engine, seq, boot_id, payload)
                for ident, ts, seq, payload in _decode_old_chunk(body)
            ]
        return [
            EventRecord(ident, kind, ts, engine, seq, boot_id, payload, received)
            for ident, ts, seq, payload, received in rows
        ]
    out = []
    index = _decode_index(frames)
    texts = [_decode_frame(body)] if len(index) == 1 else _decode_frames(body)
    for (first_id, received), text in zip(index, texts, strict=True):
        messages = [text] if isinstance(text, Event) else text
        for ident, msg in enumerate(messages, first_id):
            ts = received if msg.ts is None else epoch(msg.ts)  # ISO-8601 is never kept verbatim
            out.append(
                EventRecord(ident, kind, ts, engine, msg.seq, boot_id, msg.payload, received)
            )
    return out


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


def _run_key(frame: list[EventRecord] | Frame) -> str | None:
    return frame.type if isinstance(frame, Frame) else None


def chunks(frames: Sequence[list[EventRecord] | Frame]) -> list[tuple[Any, ...]]:
    """Chunk rows of queued frames: per (engine, boot, type), at most CHUNK_EVENTS each.

    Frames of one engine boot are taken in order, in runs: verbatim frames of one type, or
    records. A run of records is joined (ids and seqs increase along it) and split by type, which
    is a set in C for most of them. Seq ranges of one type's chunks never overlap.
    """
    streams: dict[tuple[str, str], list[list[EventRecord] | Frame]] = {}
    for frame in frames:
        first = frame if isinstance(frame, Frame) else frame[0]
        streams.setdefault((first.engine, first.boot_id), []).append(frame)
    rows = []
    for parts in streams.values():
        for kind, run in groupby(parts, _run_key):
            if kind is None:
                rows += _record_rows(list(run))  # type: ignore[arg-type]
            else:
                rows += _frame_rows(list(run))  # type: ignore[arg-type]
    return rows


def _frame_rows(frames: list[Frame]) -> list[tuple[Any, ...]]:
    """Rows of CHUNK_BYTES or so: a frame that big is a row on its own, smaller ones are joined."""
    rows, start, size = [], 0, 0
    for end, frame in enumerate(frames):
        grown = size + len(frame.text)
        if grown > CHUNK_BYTES and end > start:
            rows.append(frames_row(frames[start:end]))
            start, grown = end, len(frame.text)
        size = grown
    rows.append(frames_row(frames[start:]))
    return rows


def _record_rows(parts: list[list[EventRecord]]) -> list[tuple[Any, ...]]:
    rows = []
    if parts:
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
