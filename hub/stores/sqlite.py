"""SQLite history store: WAL, one writer thread off the event loop, batched commits, acks after commit.

Writes queue in memory (bounded) and a single writer thread commits them at least every
`commit_interval`. Only then does the hub ack, so an ack means stored. When writes fail (disk
full, read-only file) the batch stays queued, `problem` says why, acks stop, live views go on,
and the writer retries with back-off until the disk recovers. Beyond `store_max_pending` queued
records, new frames are not stored but recorded as gaps (reason `store_overflow`) and counted.

The writer shares the GIL with the event loop and takes it back after every C call that lets go
of it (deflating a body, an SQLite step). While the loop is busy that waits up to the switch
interval, 5 ms by default; at a few hundred calls a second the writer would spend most of its
time waiting and fall behind, so the server running the store (hub/web/server.py) shortens the
interval to its `switch_interval`, WRITER_SWITCH_INTERVAL.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from hub.core.chains import Link, Step
from hub.core.hits import SearchPage, SearchRequest
from hub.core.ingested import Ingested
from hub.core.logs import level_number
from hub.core.records import (
    AuditRecord,
    BootChange,
    EventRecord,
    LogRecord,
    MetricsSnapshot,
    Transition,
)
from hub.core.series import Point
from hub.core.silences import Silence
from hub.settings import Settings
from hub.stores.base import (
    MAX_BOOT_SEQS,
    CommitCallback,
    HistoryKind,
    HistoryQuery,
    Restored,
    SeriesInfo,
    SeriesLine,
    SeriesQuery,
    TimelineItem,
    TimelineQuery,
)
from hub.stores.chunks import INSERT_CHUNK, Frame, chunks, insert_many, verbatim
from hub.stores.links import INSERT_LINK, link_rows, read_chain, restored_links
from hub.stores.retention import retain
from hub.stores.schema import connect, export_bundle, read_audit, read_events, read_logs
from hub.stores.search_index import index_pending, search
from hub.stores.series_sql import SeriesIds, read_series, read_series_names, write_points
from hub.stores.timelines import read_timeline

__all__ = ["SQLiteStore"]

log = logging.getLogger(__name__)
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode
WRITER_SWITCH_INTERVAL = 0.001  # seconds (docs/benchmarks.md, session 5)
# Search indexing after a commit, as a share of the commit interval: while the hub is busy (its
# last batch this big) the index may lag, so that ingest keeps its speed (docs/history.md).
BUSY_BATCH = 5_000
INDEX_SHARE, INDEX_SHARE_BUSY = 0.5, 0.1


@dataclass
class _Batch:
    """Everything queued for the next commit."""

    # each frame's events: verbatim, or as records when the frame is not all one type's events
    frames: list[list[EventRecord] | Frame] = field(default_factory=list)
    events: int = 0  # in all frames
    links: list[Link] = field(default_factory=list)  # of those events that carry one
    logs: list[tuple[LogRecord, str]] = field(default_factory=list)
    gaps: list[tuple[str, str, int, int, str, float]] = field(default_factory=list)
    commits: dict[tuple[str, str], int] = field(default_factory=dict)
    boots: list[BootChange] = field(default_factory=list)
    metrics: dict[str, MetricsSnapshot] = field(default_factory=dict)
    audit: list[AuditRecord] = field(default_factory=list)
    silences: list[Silence] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)  # metric series buckets
    transitions: list[Transition] = field(default_factory=list)
    since: float | None = None  # when the oldest thing in it was queued (Unix seconds)

    @property
    def size(self) -> int:
        """Records queued (events and log lines)."""
        return self.events + len(self.logs)

    def empty(self) -> bool:
        """Nothing at all to write."""
        return not (
            self.frames
            or self.links
            or self.logs
            or self.gaps
            or self.commits
            or self.boots
            or self.metrics
            or self.audit
            or self.silences
            or self.points
            or self.transitions
        )

    def prepend(self, older: _Batch) -> None:
        """Put a batch that failed to commit back in front of this one."""
        self.frames[:0] = older.frames
        self.events += older.events
        self.links[:0] = older.links
        self.logs[:0] = older.logs
        self.gaps[:0] = older.gaps
        self.boots[:0] = older.boots
        self.audit[:0] = older.audit
        self.silences[:0] = older.silences
        self.points[:0] = older.points
        self.transitions[:0] = older.transitions
        self.since = older.since if self.since is None else min(self.since, older.since or 1e18)
        for key, seq in older.commits.items():
            self.commits[key] = max(seq, self.commits.get(key, 0))
        self.metrics = {**older.metrics, **self.metrics}


class SQLiteStore:
    """History in one SQLite file (see the module docstring for the write path)."""

    switch_interval: float | None = WRITER_SWITCH_INTERVAL  # set by the server (module docstring)

    def __init__(self, path: str, settings: Settings, drops: Counter[str] | None = None) -> None:
        self.path = path
        self.settings = settings
        self.problem: str | None = None
        self.drops: Counter[str] = drops if drops is not None else Counter()
        self.commits = 0
        self._batch = _Batch()
        self._lock = threading.Lock()  # guards _batch between the loop and the writer
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._reader: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_commit: CommitCallback | None = None
        self._writing_since: float | None = None  # the batch the writer holds, uncommitted
        self._series_ids = SeriesIds()  # the writer thread's only
        self._unindexed = True  # committed records may wait for the search index

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, on_commit: CommitCallback) -> Restored:
        """Open (or create) the file, read back the history, start the writer."""
        self._loop = asyncio.get_running_loop()
        self._on_commit = on_commit
        restored = await asyncio.to_thread(self._open)
        self._thread = threading.Thread(target=self._writer, name="engine-hub-store", daemon=True)
        self._thread.start()
        return restored

    def _open(self) -> Restored:
        self._reader = connect(self.path, self.settings.db_synchronous)
        return self._restore(self._reader)

    async def close(self) -> None:
        """Commit what is queued (within the graceful timeout), then stop."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, self.settings.graceful_timeout)
        if self._reader is not None:
            with self._read_lock:
                self._reader.close()

    @property
    def pending_since(self) -> float | None:
        """When the oldest record not yet committed was queued (None: nothing waits)."""
        with self._lock:  # the writer swaps both at once
            queued, writing = self._batch.since, self._writing_since
        if queued is None or writing is None:
            return writing if queued is None else queued
        return min(queued, writing)

    # -- writes (event loop side) -------------------------------------------------------------

    def append(self, ingested: Ingested) -> None:
        """Queue what the core changed; the engine's seq is acked once it is committed."""
        now = time.time()
        engine, boot_id = ingested.engine, ingested.boot_id
        with self._lock:
            batch = self._batch
            if batch.since is None:
                batch.since = now
            if batch.size >= self.settings.store_max_pending and (ingested.events or ingested.logs):
                seqs = [r.seq for r in ingested.events] + [r.seq for r in ingested.logs]
                self.drops["store_overflow"] += len(seqs)
                batch.gaps.append((engine, boot_id, min(seqs), max(seqs), "store_overflow", now))
            else:
                events = ingested.events
                if events:
                    text = ingested.frame
                    kept = None if text is None else verbatim(events, text, ingested.received)
                    batch.frames.append(events if kept is None else kept)
                    batch.events += len(events)
                    if ingested.links:
                        batch.links.extend(ingested.links)
                batch.logs.extend((record, boot_id) for record in ingested.logs)
            for gap in ingested.gaps:
                batch.gaps.append((gap.engine, gap.boot_id, gap.first, gap.last, gap.reason, now))
            batch.boots.extend(ingested.boots)
            batch.audit.extend(ingested.audit)
            batch.silences.extend(ingested.silences)
            if ingested.points:  # bounded by the core's Downsampler
                batch.points.extend(ingested.points)
            batch.transitions.extend(ingested.transitions)
            for snapshot in ingested.snapshots:  # the latest snapshot per engine wins
                batch.metrics[snapshot.engine] = snapshot
            if engine:
                batch.commits[(engine, boot_id)] = ingested.seq
            # An early commit once this many records wait: each commit costs the event loop a few
            # GIL hand-offs, so not too often, and not so big that one commit is a long pause.
            full = batch.size >= 20_000
        if full:
            self._wake.set()

    # -- the writer thread ---------------------------------------------------------------------

    def _writer(self) -> None:
        try:
            conn = connect(self.path, self.settings.db_synchronous)
        except Exception as exc:  # the reader opened the same file a moment ago
            self.problem = f"writer cannot open the database: {exc}"
            log.error("history store: %s", self.problem)
            return
        backoff = 0.0
        next_retention = time.monotonic() + min(5.0, self.settings.retention_interval)
        deadline: float | None = None
        try:
            while True:
                self._wake.wait(backoff or self.settings.commit_interval)
                self._wake.clear()
                with self._lock:
                    batch, self._batch = self._batch, _Batch()
                    self._writing_since = batch.since
                if batch.empty():
                    if self._stopping:
                        return
                else:
                    try:
                        self._write(conn, batch)
                    except Exception as exc:  # a bug of ours, too, must not end the writer
                        self._failed(batch, exc)  # back in the queue, `since` and all
                        self._writing_since = None
                        backoff = min(max(backoff * 2, 0.25), 5.0)
                        deadline = deadline or time.monotonic() + self.settings.graceful_timeout
                        if self._stopping and time.monotonic() > deadline:
                            log.error(
                                "giving up on %d queued records at shutdown: %s", batch.size, exc
                            )
                            return
                        continue
                    backoff, deadline, self._writing_since = 0.0, None, None
                    if self.problem is not None:
                        self.problem = None
                        log.warning("history store recovered: writing and acking again")
                    # The batch goes back to the loop with the acks: its records are freed there,
                    # among the loop's own allocations, not in bulk on this thread's core.
                    self._call(self._committed, batch)
                    self._unindexed = True
                busy = batch.size >= BUSY_BATCH
                del batch
                if self._unindexed and not self._stopping:
                    self._index(conn, busy)
                if time.monotonic() >= next_retention and not self._stopping:
                    next_retention = time.monotonic() + self.settings.retention_interval
                    self._retain(conn)
        finally:
            conn.close()

    def _failed(self, batch: _Batch, exc: Exception) -> None:
        self._series_ids.clear()  # rows it made may have been rolled back
        with self._lock:
            self._batch.prepend(batch)
        message = str(exc) if isinstance(exc, sqlite3.Error) else f"internal error: {exc!r}"
        previous, self.problem = self.problem, message
        self.drops["store_write_failed"] += 1
        if previous != message:
            log.error(
                "history store cannot write (%s): not acking until it can",
                message,
                exc_info=not isinstance(exc, sqlite3.Error),
            )

    def _call(self, fn: Any, *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(fn, *args)

    def _committed(self, batch: _Batch) -> None:
        if self._on_commit is not None:
            for (engine, boot_id), seq in batch.commits.items():
                self._on_commit(engine, boot_id, seq)

    def _write(self, conn: sqlite3.Connection, batch: _Batch) -> None:
        rows = chunks(batch.frames)  # built and deflated before the write lock is taken
        conn.execute("BEGIN IMMEDIATE")
        try:
            insert_many(conn, INSERT_CHUNK, rows)
            if batch.links:
                insert_many(conn, INSERT_LINK, link_rows(batch.links))  # one step, not one per row
            insert_many(
                conn,
                "INSERT OR IGNORE INTO logs (id, engine, boot_id, seq, ts, level, levelno, logger, message, exc, extra, received) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.id,
                        r.engine,
                        boot,
                        r.seq,
                        r.timestamp.timestamp(),
                        r.level,
                        level_number(r.level),
                        r.logger,
                        r.message,
                        r.exc,
                        _encode(r.extra),
                        r.received,
                    )
                    for r, boot in batch.logs
                ],
            )
            conn.executemany("INSERT INTO gaps VALUES (?, ?, ?, ?, ?, ?)", batch.gaps)
            conn.executemany(
                "INSERT INTO boots (engine, boot_id, pid, mode, started, ended, how, meta, seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (engine, boot_id) DO UPDATE SET pid = excluded.pid, mode = excluded.mode, "
                "started = coalesce(excluded.started, started), ended = excluded.ended, how = excluded.how, "
                "meta = excluded.meta, seen = excluded.seen",
                [
                    (
                        b.engine,
                        b.boot_id,
                        b.pid,
                        b.mode,
                        b.started,
                        b.ended,
                        b.how,
                        _encode(b.meta),
                        time.time(),
                    )
                    for b in batch.boots
                ],
            )
            conn.executemany(
                "INSERT INTO boots (engine, boot_id, last_seq) VALUES (?, ?, ?) ON CONFLICT (engine, boot_id) "
                "DO UPDATE SET last_seq = max(last_seq, excluded.last_seq)",
                [(engine, boot, seq) for (engine, boot), seq in batch.commits.items()],
            )
            conn.executemany(
                "INSERT OR REPLACE INTO metrics (engine, boot_id, series, card, updated) "
                "VALUES (?, ?, ?, ?, ?)",
                [
                    (m.engine, m.boot_id, _encode(m.series), _encode(m.card), time.time())
                    for m in batch.metrics.values()
                ],
            )
            conn.executemany(
                "INSERT INTO audit (ts, actor, action, detail, engine) VALUES (?, ?, ?, ?, ?)",
                [(a.ts, a.actor, a.action, a.detail, a.engine) for a in batch.audit],
            )
            conn.executemany(
                "INSERT OR REPLACE INTO silences (id, engine, rule, starts, ends, comment, author) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (s.id, s.engine, s.rule, s.starts, s.ends, s.comment, s.author)
                    for s in batch.silences
                ],
            )
            write_points(conn, self._series_ids, batch.points)
            conn.executemany(
                "INSERT INTO transitions (engine, at, health, previous) VALUES (?, ?, ?, ?)",
                [(t.engine, t.at, t.health, t.previous) for t in batch.transitions],
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # SQLite may already have rolled back (e.g. disk full)
                conn.execute("ROLLBACK")
            raise
        self.commits += 1

    def _index(self, conn: sqlite3.Connection, busy: bool) -> None:
        """Index committed records for search for a while, or until the next batch is due
        (hub/stores/search_index.py); a failure is logged and tried again."""
        share = INDEX_SHARE_BUSY if busy else INDEX_SHARE
        end = time.monotonic() + self.settings.commit_interval * share
        wake = self._wake

        def stop() -> bool:
            return wake.is_set() or time.monotonic() >= end

        try:
            self._unindexed = index_pending(conn, stop)
        except Exception as exc:  # searches scan what is not indexed; writes go on
            log.warning(
                "search indexing failed: %s", exc, exc_info=not isinstance(exc, sqlite3.Error)
            )

    def _retain(self, conn: sqlite3.Connection) -> None:
        """One retention pass (hub/stores/retention.py); a failed one is logged and tried again."""
        self._series_ids.clear()  # retention may delete series rows
        try:
            retain(conn, self.settings, time.time())
        except Exception as exc:  # the next pass tries again; writes go on meanwhile
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            log.warning(
                "retention pass failed: %s", exc, exc_info=not isinstance(exc, sqlite3.Error)
            )

    # -- reads -------------------------------------------------------------------------------

    def _restore(self, conn: sqlite3.Connection) -> Restored:
        restored = Restored()
        settings = self.settings
        for (kind,) in conn.execute("SELECT DISTINCT type FROM event_chunks").fetchall():
            query = HistoryQuery(settings.ring_capacity(kind), event_type=kind)
            restored.events += reversed(read_events(conn, query))
        restored.events.sort(key=lambda e: e.id)
        if restored.events:
            restored.links = restored_links(conn, restored.events[0].id)
        for (engine,) in conn.execute("SELECT DISTINCT engine FROM logs").fetchall():
            restored.logs += reversed(
                read_logs(conn, HistoryQuery(settings.log_tail_lines, engine=engine))
            )
        restored.logs.sort(key=lambda r: r.id)
        columns = (
            "engine",
            "boot_id",
            "pid",
            "mode",
            "started",
            "ended",
            "how",
            "meta",
            "last_seq",
        )
        for row in conn.execute(
            "SELECT engine, boot_id, pid, mode, started, ended, how, meta, last_seq FROM boots b "
            "WHERE rowid = (SELECT rowid FROM boots WHERE engine = b.engine ORDER BY coalesce(seen, 0) DESC LIMIT 1)"
        ):
            boot = dict(zip(columns, row, strict=True))
            boot["meta"] = _decode(boot["meta"]) if boot["meta"] else {}
            restored.boots.append(boot)
        restored.boot_seqs = {
            (engine, boot_id): last_seq
            for engine, boot_id, last_seq in conn.execute(
                "SELECT engine, boot_id, last_seq FROM boots ORDER BY coalesce(seen, 0) DESC "
                "LIMIT ?",
                (MAX_BOOT_SEQS,),
            )
        }
        for engine, boot_id, series, card in conn.execute(
            "SELECT engine, boot_id, series, card FROM metrics"
        ):
            card = _decode(card) if card else {}
            restored.metrics.append(
                {"engine": engine, "boot_id": boot_id, "series": _decode(series), "card": card}
            )
        restored.forgotten = dict(
            conn.execute(
                "SELECT engine, max(ts) FROM audit WHERE action = 'engine.forget' GROUP BY engine"
            ).fetchall()
        )
        restored.next_event_id = (
            conn.execute("SELECT max(last_id) FROM event_chunks").fetchone()[0] or 0
        ) + 1
        restored.next_log_id = (conn.execute("SELECT max(id) FROM logs").fetchone()[0] or 0) + 1
        restored.silences = [
            Silence(*row)
            for row in conn.execute(
                "SELECT id, engine, rule, starts, ends, comment, author FROM silences "
                "WHERE ends > ? ORDER BY id",
                (time.time(),),
            )
        ]
        return restored

    def _read(self, fn: Any, *args: Any) -> Any:
        assert self._reader is not None, "the store has not started"
        with self._read_lock:
            return fn(self._reader, *args)

    async def history(self, kind: HistoryKind, query: HistoryQuery) -> list[Any]:
        """Stored events, log lines or audit entries, newest first (read off the event loop)."""
        reader = {"events": read_events, "logs": read_logs, "audit": read_audit}[kind]
        return await asyncio.to_thread(self._read, reader, query)

    async def series(self, query: SeriesQuery) -> tuple[float, list[SeriesLine]]:
        """The step used and the lines of `query` (read off the event loop)."""
        return await asyncio.to_thread(self._read, read_series, query, self.settings, time.time())

    async def series_names(self, engine: str) -> list[SeriesInfo]:
        """Every series of `engine` the file holds."""
        return await asyncio.to_thread(self._read, read_series_names, engine)

    async def search(self, request: SearchRequest) -> SearchPage:
        """One page of full-text search hits, newest first (read off the event loop)."""
        page: SearchPage = await asyncio.to_thread(self._read, search, request)
        return page

    async def chain(
        self, event_id: int, seeds: Sequence[Link], limit: int
    ) -> tuple[list[Step], bool]:
        """The stored causal chain of `event_id` (hub/stores/links.py), read off the event loop."""
        return await asyncio.to_thread(self._read, read_chain, event_id, seeds, limit)

    async def timeline(self, query: TimelineQuery) -> list[TimelineItem]:
        """Markers of engines in a window, newest first (read off the event loop)."""
        return await asyncio.to_thread(self._read, read_timeline, query)

    async def export(self, engine: str, since: float, until: float) -> dict[str, Any]:
        """The incident bundle for one engine over a window."""
        return await asyncio.to_thread(
            self._read, export_bundle, engine, since, until, self.settings.export_max_records
        )
