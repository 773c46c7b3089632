"""The SQLite history store: its write path and reads, and an in-process hub that keeps history in it."""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

import hub.stores.chunks as chunk_store
import hub.stores.retention as retention
import hub.stores.sqlite as sqlite_store
from hub.core.engines import EngineRecord
from hub.core.ingested import Gap, Ingested
from hub.core.records import EventRecord, LogRecord, Transition
from hub.settings import Settings
from hub.stores import HistoryQuery, MemoryStore
from hub.stores.base import StoreError, TimelineQuery
from hub.stores.chunks import VERBATIM_MIN_EVENTS as VERBATIM
from hub.stores.chunks import chunk_row, frames_row, unpack, verbatim
from hub.stores.schema import APPLICATION_ID, SCHEMA_VERSION, connect
from hub.stores.sqlite import SQLiteStore
from tests.conftest import (
    WAIT,
    connect_engine,
    database,
    running_hub,
    unique,
)
from tests.test_store_contract import BOOT, event, log_line

# -- helpers ---------------------------------------------------------------------------------


def store_settings(tmp_path: Path, **changes: Any) -> Settings:
    """Settings for a store under test: fast commits, a short graceful timeout."""
    return Settings(
        db=str(tmp_path / "hub.db"), commit_interval=0.05, graceful_timeout=2.0
    ).replace(**changes)


def rows(db: str | Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Run one read query against `db`."""
    with database(db) as conn:
        return conn.execute(sql, args).fetchall()


def when(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def frame(
    engine: EngineRecord,
    events: Sequence[EventRecord] = (),
    logs: Sequence[LogRecord] = (),
    gaps: Sequence[Gap] = (),
) -> Ingested:
    """What one frame of `engine` changed; moves the engine's hwm to the highest seq in it."""
    seqs = [r.seq for r in events] + [r.seq for r in logs] + [g.last + 1 for g in gaps]
    engine.hwm = max([engine.hwm, *seqs])
    ingested = Ingested(engine.name, engine.boot_id, engine.hwm)
    ingested.events, ingested.logs, ingested.gaps = list(events), list(logs), list(gaps)
    return ingested


def sent(events: Sequence[EventRecord], received: float) -> bytes:
    """The batch frame an engine sent for `events`: no ts where it is the time it was received."""
    return msgspec.json.encode(
        [
            {"kind": "event", "seq": e.seq, "type": e.type, "payload": e.payload}
            | ({} if e.ts == received else {"ts": e.ts})
            for e in events
        ]
    )


class Commits:
    """The on_commit callback: records calls and what a fresh connection could read at that moment."""

    def __init__(self, db: str | None = None) -> None:
        self.db = db
        self.calls: list[tuple[str, str, int]] = []
        self.visible: list[int] = []  # event + log rows another connection saw at each call
        self._changed = asyncio.Event()

    def __call__(self, engine: str, boot_id: str, seq: int) -> None:
        self.calls.append((engine, boot_id, seq))
        if self.db is not None:
            [(count,)] = rows(
                self.db, "SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM logs)"
            )
            self.visible.append(count)
        self._changed.set()

    def seq(self, engine: str = "alpha") -> int:
        """The highest seq of `engine` reported as committed."""
        return max((seq for name, _, seq in self.calls if name == engine), default=0)

    async def wait(self, seq: int, engine: str = "alpha") -> None:
        """Wait until the store reported everything of `engine` up to `seq` as committed."""
        async with asyncio.timeout(WAIT):
            while self.seq(engine) < seq:
                self._changed.clear()
                await self._changed.wait()


class LogLines(logging.Handler):
    """Collects the store's log messages (emitted on its writer thread) so a test can wait for one."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.loop = asyncio.get_running_loop()
        self.messages: list[str] = []
        self._changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.loop.call_soon_threadsafe(self._add, self.format(record))

    def _add(self, message: str) -> None:
        self.messages.append(message)
        self._changed.set()

    async def wait_for(self, text: str) -> str:
        """The first message containing `text`, waiting for it if needed."""
        async with asyncio.timeout(WAIT):
            while True:
                for message in self.messages:
                    if text in message:
                        return message
                self._changed.clear()
                await self._changed.wait()


class Drops(Counter[str]):
    """The store's drop counter, which a test can wait on."""

    # The writer counts a failed write right after setting `problem` (its log line comes before).

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()

    def __setitem__(self, key: str, value: int) -> None:
        super().__setitem__(key, value)
        self.loop.call_soon_threadsafe(self._changed.set)

    async def wait_for(self, reason: str) -> None:
        """Wait until `reason` was counted at least once."""
        async with asyncio.timeout(WAIT):
            while not self[reason]:
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
async def store_log() -> AsyncIterator[LogLines]:
    """What `hub.stores.sqlite` logs during the test."""
    logger = logging.getLogger("hub.stores.sqlite")
    handler, level = LogLines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
def quick_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Store connections give up on a lock after 20 ms instead of 10 s (so a held lock fails writes fast)."""
    real = sqlite_store.connect

    def connect(path: str, synchronous: str = "normal", create: bool = True) -> sqlite3.Connection:
        conn = real(path, synchronous, create)
        conn.execute("PRAGMA busy_timeout = 20")
        return conn

    monkeypatch.setattr(sqlite_store, "connect", connect)


@asynccontextmanager
async def started(store: SQLiteStore, commits: Commits) -> AsyncIterator[SQLiteStore]:
    await store.start(commits)
    try:
        yield store
    finally:
        await store.close()


# -- the store itself ---------------------------------------------------------------------------


@pytest.mark.parametrize("existing", ["missing", "empty file"])
async def test_start_creates_the_schema_with_the_application_id(
    tmp_path: Path, existing: str
) -> None:
    """Starting on a missing or empty file creates an Engine Hub database: application_id, WAL, tables."""
    settings = store_settings(tmp_path)
    if existing == "empty file":
        Path(settings.db).touch()
    async with started(SQLiteStore(settings.db, settings), Commits()) as store:
        assert store.problem is None
    with database(settings.db) as conn:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = dict(conn.execute("SELECT name, type FROM sqlite_master"))
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert {"event_chunks", "logs", "boots", "gaps", "metrics"} <= {
        name for name, kind in tables.items() if kind == "table"
    }
    assert tables["events"] == "view"  # one row per event, unpacked from the chunks


async def test_commit_calls_on_commit_with_the_hwm_only_once_rows_are_durable(
    tmp_path: Path,
) -> None:
    """on_commit gets (engine, boot_id, hwm) after the commit: another connection already sees the rows."""
    settings = store_settings(tmp_path)
    commits = Commits(settings.db)
    alpha = EngineRecord("alpha", time.time(), boot_id=BOOT)
    now = time.time()
    async with started(SQLiteStore(settings.db, settings), commits) as store:
        store.append(frame(alpha, [event(1, 1, now), event(2, 2, now)], [log_line(1, 3, now)]))
        store.append(frame(alpha, [event(3, 4, now)]))
        assert commits.calls == []  # nothing is acked from append itself
        await commits.wait(4)
        assert store.problem is None and store.commits >= 1
    assert commits.calls[-1] == ("alpha", BOOT, 4)
    # Rows up to seq N are N rows here (seq 3 is the log line): each call saw all it reported.
    assert commits.visible == [seq for _, _, seq in commits.calls]
    assert rows(settings.db, "SELECT last_seq FROM boots WHERE engine = 'alpha'") == [(4,)]


async def test_failed_write_sets_problem_and_holds_acks_until_it_succeeds(
    tmp_path: Path, quick_busy: None, store_log: LogLines
) -> None:
    """A write that fails (database locked) sets `problem` and calls no on_commit until a retry commits."""
    settings = store_settings(tmp_path)
    commits, drops = Commits(), Drops()
    alpha = EngineRecord("alpha", time.time(), boot_id=BOOT)
    now = time.time()
    async with started(SQLiteStore(settings.db, settings, drops), commits) as store:
        store.append(frame(alpha, [event(1, 1, now)]))
        await commits.wait(1)
        with closing(sqlite3.connect(settings.db, isolation_level=None)) as locker:
            locker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
            try:
                store.append(frame(alpha, [event(2, 2, now), event(3, 3, now)]))
                await drops.wait_for("store_write_failed")
                assert store.problem == "database is locked"
                assert "database is locked" in await store_log.wait_for("cannot write")
                assert commits.seq() == 1  # not acked while it is not stored
            finally:
                locker.execute("ROLLBACK")
        await store_log.wait_for("recovered")
        await commits.wait(3)
        assert store.problem is None
    assert rows(settings.db, "SELECT seq FROM events ORDER BY seq") == [(1,), (2,), (3,)]


async def test_pending_since_is_when_the_oldest_uncommitted_record_was_queued(
    tmp_path: Path,
) -> None:
    """`pending_since` is None with everything committed, the oldest waiting record's queue time
    while another connection holds the write lock, and None again once that commits."""
    settings = store_settings(tmp_path)
    commits = Commits()
    alpha = EngineRecord("alpha", time.time(), boot_id=BOOT)
    now = time.time()
    async with started(SQLiteStore(settings.db, settings), commits) as store:
        store.append(frame(alpha, [event(1, 1, now)]))
        await commits.wait(1)
        assert store.pending_since is None
        with closing(sqlite3.connect(settings.db, isolation_level=None)) as locker:
            locker.execute("BEGIN IMMEDIATE")
            try:
                before = time.time()
                store.append(frame(alpha, [event(2, 2, now)]))
                since = store.pending_since
                assert since is not None and before <= since <= time.time()
                store.append(frame(alpha, [event(3, 3, now)]))
                assert store.pending_since == since  # the oldest, not the newest
                assert commits.seq() == 1
            finally:
                locker.execute("ROLLBACK")
        await commits.wait(3)
        assert store.pending_since is None


async def test_an_unexpected_error_in_the_writer_is_shown_and_retried_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_log: LogLines
) -> None:
    """A bug of ours while writing (not an SQLite error) does not end the writer thread: the
    problem is shown, acks wait, and the batch is written once the write works again; the same
    for a retention pass, which writes go on past."""
    settings = store_settings(tmp_path, retention_interval=0.05)
    commits, drops = Commits(), Drops()
    alpha = EngineRecord("alpha", time.time(), boot_id=BOOT)
    now = time.time()
    broken = threading.Event()
    broken.set()
    real_chunks = sqlite_store.chunks

    def chunks(frames: Any) -> Any:
        if broken.is_set():
            raise KeyError("a bug")
        return real_chunks(frames)

    def retain_type(*args: Any) -> None:
        raise ValueError("another bug")

    monkeypatch.setattr(sqlite_store, "chunks", chunks)
    monkeypatch.setattr(retention, "retain_type", retain_type)
    async with started(SQLiteStore(settings.db, settings, drops), commits) as store:
        store.append(frame(alpha, [event(1, 1, now)]))
        await drops.wait_for("store_write_failed")
        assert store.problem == "internal error: KeyError('a bug')"
        assert "Traceback" in await store_log.wait_for("cannot write")
        assert commits.seq() == 0
        broken.clear()
        await commits.wait(1)
        assert "another bug" in await store_log.wait_for("retention pass failed")
        store.append(frame(alpha, [event(2, 2, now)]))
        await commits.wait(2)
        assert store.problem is None
    assert rows(settings.db, "SELECT seq FROM events ORDER BY seq") == [(1,), (2,)]


class PageLimited:
    """The writer's connection on a "full disk": SQLite's max_page_count pinned until `full` is cleared."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.full = True

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "BEGIN IMMEDIATE":  # runs on the writer thread, like every use of this connection
            pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
            self._conn.execute(f"PRAGMA max_page_count = {pages if self.full else 1_073_741_823}")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


async def test_disk_full_problem_says_the_disk_is_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the disk is full, `problem` says so (not a follow-up error); acks resume once there is room."""
    settings = store_settings(tmp_path)
    real, writers = sqlite_store.connect, []

    def connect(path: str, synchronous: str = "normal", create: bool = True) -> Any:
        conn = real(path, synchronous, create)
        if threading.current_thread().name != "engine-hub-store":
            return conn
        writers.append(PageLimited(conn))
        return writers[-1]

    monkeypatch.setattr(sqlite_store, "connect", connect)
    commits, drops = Commits(), Drops()
    alpha = EngineRecord("alpha", time.time(), boot_id=BOOT)
    async with started(SQLiteStore(settings.db, settings, drops), commits) as store:
        try:
            noise = random.Random(3)  # hex of random bytes: deflated, still several pages
            big = [event(n, n, time.time(), pad=noise.randbytes(50_000).hex()) for n in (1, 2, 3)]
            store.append(frame(alpha, big))
            await drops.wait_for("store_write_failed")
            assert commits.seq() == 0
            assert store.problem is not None and "full" in store.problem, store.problem
            writers[0].full = False
            await commits.wait(3)
            assert store.problem is None
        finally:
            writers[0].full = False  # let close() flush instead of giving up


async def test_overflow_beyond_store_max_pending_records_a_gap(tmp_path: Path) -> None:
    """Beyond store_max_pending queued records, frames are not stored but kept as store_overflow gaps."""
    # An hour between commits: nothing is written before close(), so the queue only grows.
    settings = store_settings(tmp_path, store_max_pending=5, commit_interval=3600)
    alpha = EngineRecord("alpha", time.time(), boot_id=BOOT)
    now = time.time()
    store = SQLiteStore(settings.db, settings)
    async with started(store, Commits()):
        store.append(frame(alpha, [event(n, n, now) for n in range(1, 6)]))
        store.append(frame(alpha, [event(n, n, now) for n in range(6, 9)]))
        store.append(frame(alpha, logs=[log_line(1, 9, now)]))
        assert store.drops == {"store_overflow": 4}
        store.settings = settings.replace(commit_interval=0.05)  # close() then returns promptly
    assert rows(settings.db, "SELECT seq FROM events ORDER BY seq") == [(n,) for n in range(1, 6)]
    assert rows(settings.db, "SELECT count(*) FROM logs") == [(0,)]
    assert rows(
        settings.db,
        "SELECT engine, boot_id, first_seq, last_seq, reason FROM gaps ORDER BY first_seq",
    ) == [("alpha", BOOT, 6, 8, "store_overflow"), ("alpha", BOOT, 9, 9, "store_overflow")]


async def test_history_walks_chunks_like_the_memory_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many small chunks of mixed engines, types and unordered times, of records and of frames
    kept as sent: every query answers as MemoryStore does."""
    monkeypatch.setattr(chunk_store, "CHUNK_EVENTS", 7)
    monkeypatch.setattr(chunk_store, "CHUNK_BYTES", 6000)  # rows of one frame and of several
    rng = random.Random(5)
    t0 = float(int(time.time()) - 600)
    settings = store_settings(tmp_path)
    commits, memory = Commits(), MemoryStore()
    await memory.start(lambda *_: None)
    engines = [EngineRecord(name, t0, boot_id=BOOT) for name in ("alpha", "beta", "gamma")]
    kinds = ["cycle", "signal_event", "order_event", "error"]
    ids = iter(range(1, 10**6))
    async with started(SQLiteStore(settings.db, settings), commits) as store:
        for _wave in range(4):  # several commits: chunks of one stream across commits
            for _ in range(40):
                engine = rng.choice(engines)
                events = []
                size = rng.choice([1, 1, 3, 20, VERBATIM])
                verbatim = size >= VERBATIM and rng.random() < 0.6
                kind, received = rng.choice(kinds), t0 + rng.uniform(0, 300)
                for _ in range(size):
                    seq = engine.hwm + len(events) + 1
                    ts = received if verbatim and rng.random() < 0.3 else t0 + rng.uniform(0, 300)
                    kind = kind if verbatim else rng.choice(kinds)
                    events.append(
                        event(next(ids), seq, ts, engine.name, kind, received=received, n=seq)
                    )
                ingested = frame(engine, events)
                if verbatim:  # as the decoder leaves it: the text, when the hub got it
                    ingested.frame, ingested.received = sent(events, received), received
                store.append(ingested)
                memory.append(ingested)
            for engine in engines:
                await commits.wait(engine.hwm, engine.name)
        [(chunks,)] = rows(settings.db, "SELECT count(*) FROM event_chunks")
        total = len(await memory.history("events", HistoryQuery(10**6)))
        assert total // 7 < chunks < total  # chunked, and not one row per event
        kept = rows(settings.db, "SELECT json_array_length(frames) FROM event_chunks")
        assert {1, 2} <= {n for (n,) in kept if n} and None in {n for (n,) in kept}
        for _ in range(300):
            since = t0 + rng.uniform(-10, 300)
            query = HistoryQuery(
                rng.choice([1, 2, 10, 100, 10**6]),
                engine=rng.choice([None, "alpha", "gamma"]),
                event_type=rng.choice([None, None, *kinds]),
                since=rng.choice([None, since]),
                until=rng.choice([None, since + rng.uniform(0, 100)]),
                before=rng.choice([None, rng.randrange(1, total + 2)]),
            )
            assert await store.history("events", query) == await memory.history("events", query), (
                query
            )


async def test_a_schema_1_database_is_upgraded_in_place(tmp_path: Path) -> None:
    """A database of the first schema (a row per event) opens with every event intact to the
    microsecond, now in chunks, and the `events` view reads them back."""
    db = tmp_path / "hub.db"
    stored = [(n, "alpha", BOOT, n, "cycle", 1_763_736_090.123456 + n) for n in range(1, 6)]
    with closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("PRAGMA user_version = 1")
        conn.executescript(SCHEMA_1)
        conn.executemany(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(*row, b'{"n": %d}' % row[0]) for row in stored],
        )
        conn.execute(
            "INSERT INTO boots (engine, boot_id, last_seq) VALUES ('alpha', ?, 5)", (BOOT,)
        )
    settings = store_settings(tmp_path)
    store = SQLiteStore(settings.db, settings)
    restored = await store.start(Commits())
    try:
        assert [(e.id, e.seq, e.ts, e.data()) for e in restored.events] == [
            (n, n, ts, {"n": n}) for n, _, _, _, _, ts in stored
        ]
        assert restored.next_event_id == 6
        [boot] = restored.boots
        assert boot["last_seq"] == 5
    finally:
        await store.close()
    assert rows(db, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert rows(db, "SELECT type FROM sqlite_master WHERE name = 'events'") == [("view",)]
    assert rows(db, "SELECT count(*), sum(n) FROM event_chunks") == [(1, 5)]
    assert rows(db, "SELECT id, engine, boot_id, seq, type, ts, payload FROM events") == [
        (*row, f'{{"n":{row[0]}}}')
        for row in stored  # json_extract minifies the payload
    ]


@pytest.mark.parametrize("version", [2, 3])
async def test_an_older_chunked_database_is_upgraded_in_place(tmp_path: Path, version: int) -> None:
    """A database of schema 2 (chunks of records) or 3 (also chunks of frames as sent), none of
    its bodies deflated, opens with its events intact and deflates what it stores from then on;
    the `events` view reads both."""
    db = tmp_path / "hub.db"
    stored = [event(n, n, 1_763_736_090.5 + n, n=n) for n in range(1, 4)]
    old_rows = [chunk_row(stored)]
    if version == 3:
        framed = [
            event(n, n, 1_763_736_090.5 + n, received=0.0, n=n) for n in range(4, 4 + VERBATIM)
        ]
        kept = verbatim(framed, sent(framed, 0.0), 0.0)
        assert kept is not None
        old_rows.append(frames_row([kept]))
        stored += framed
    with closing(connect(str(db))) as conn:  # today's schema, taken back to an older one
        conn.execute("DROP VIEW events")
        for trigger in ("event_text_delete", "event_text_rewrite"):  # #18 search: they read size
            conn.execute(f"DROP TRIGGER {trigger}")
        conn.execute("ALTER TABLE event_chunks DROP COLUMN size")
        if version == 2:
            conn.execute("ALTER TABLE event_chunks DROP COLUMN frames")
        for *head, body, frames, size in old_rows:
            values = [*head, unpack(body, size), *([frames] if version == 3 else [])]
            conn.execute(
                f"INSERT INTO event_chunks VALUES ({', '.join('?' * len(values))})", values
            )
        conn.execute(f"PRAGMA user_version = {version}")
    settings = store_settings(tmp_path)
    commits = Commits()
    engine = EngineRecord("alpha", 0.0, boot_id=BOOT)
    engine.hwm = stored[-1].seq
    async with started(SQLiteStore(settings.db, settings), commits) as store:
        first = engine.hwm + 1
        more = [
            event(n, n, 1_763_736_090.5 + n, received=0.0, n=n)
            for n in range(first, first + VERBATIM)
        ]
        ingested = frame(engine, more)
        ingested.frame, ingested.received = sent(more, 0.0), 0.0
        store.append(ingested)
        await commits.wait(engine.hwm)
        assert await store.history("events", HistoryQuery(100)) == [*reversed(stored + more)]
    assert rows(db, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert rows(
        db, "SELECT frames IS NULL, size IS NULL, length(body) < size FROM event_chunks"
    ) == [(1, 1, None), *([(0, 1, None)] if version == 3 else []), (0, 0, 1)]
    assert rows(db, "SELECT id, seq, ts, payload FROM events ORDER BY id") == [
        (e.id, e.seq, e.ts, f'{{"n":{e.seq}}}') for e in stored + more
    ]


async def test_a_schema_5_database_is_upgraded_in_place_its_old_records_received_none(
    tmp_path: Path,
) -> None:
    """A database of schema 5 (no receive times: records of [id, ts, seq, payload], logs without
    the column) opens with its events and lines intact, `received` None; what is stored from then
    on keeps the hub's receive time, and the `events` view shows both."""
    db = tmp_path / "hub.db"
    ts = 1_763_736_090.5
    with closing(connect(str(db))) as conn:  # today's schema, taken back to schema 5
        conn.execute("DROP VIEW events")
        conn.execute("ALTER TABLE logs DROP COLUMN received")
        body = msgspec.json.encode([[1, ts, 1, {"n": 1}]])
        conn.execute(
            "INSERT INTO event_chunks VALUES (1, 1, 'alpha', ?, 'cycle', 1, 1, ?, ?, 1, ?, NULL, ?)",
            (BOOT, ts, ts, body, len(body)),
        )
        conn.execute(
            "INSERT INTO logs VALUES (1, 'alpha', ?, 2, ?, 'INFO', 20, 'x', 'old', NULL, '{}')",
            (BOOT, ts),
        )
        conn.execute("PRAGMA user_version = 5")
    settings = store_settings(tmp_path)
    commits = Commits()
    engine = EngineRecord("alpha", 0.0, boot_id=BOOT)
    engine.hwm = 2
    received = ts + 7.25
    new_event = event(2, 3, ts + 1, received=received, n=3)
    new_line = log_line(2, 4, ts + 1, received=received)
    async with started(SQLiteStore(settings.db, settings), commits) as store:
        store.append(frame(engine, [new_event], [new_line]))
        await commits.wait(engine.hwm)
        events = await store.history("events", HistoryQuery(10))
        lines = await store.history("logs", HistoryQuery(10))
    assert [(e.id, e.received) for e in events] == [(2, received), (1, None)]
    assert [(r.message, r.received) for r in lines] == [("line 2", received), ("old", None)]
    assert events[0] == new_event and lines[0] == new_line
    assert rows(db, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert rows(db, "SELECT id, ts, received FROM events ORDER BY id") == [
        (1, ts, None),
        (2, ts + 1, received),
    ]


async def test_bodies_are_deflated_unless_that_does_not_shrink_them(tmp_path: Path) -> None:
    """Chunk bodies are stored deflated, as sqlar stores files, or as they are when deflating
    would not make them smaller (zlib's header and checksum outweigh what it saves on a tiny
    one); the store and the `events` view read both."""
    settings = store_settings(tmp_path)
    commits = Commits()
    engine = EngineRecord("alpha", 0.0, boot_id=BOOT)
    tiny = [event(1, 1, 1_763_736_091.5, n=1)]
    wordy = [event(n, n, 1_763_736_090.5 + n, text="same words " * 40) for n in range(2, 12)]
    async with started(SQLiteStore(settings.db, settings), commits) as store:
        for part in (tiny, wordy):
            store.append(frame(engine, part))
            await commits.wait(engine.hwm)
        assert await store.history("events", HistoryQuery(20)) == (tiny + wordy)[::-1]
    [(raw, raw_size), (deflated, size)] = rows(
        settings.db, "SELECT length(body), size FROM event_chunks ORDER BY last_id"
    )
    assert raw == raw_size
    assert deflated * 10 < size
    assert rows(settings.db, "SELECT seq, payload FROM events ORDER BY id") == [
        (e.seq, bytes(e.payload).decode()) for e in tiny + wordy
    ]


async def test_a_frame_whose_ids_are_not_consecutive_is_stored_as_records(tmp_path: Path) -> None:
    """Frames as sent store only their first id; a frame that breaks that (it cannot come from the
    hub's own ingest) is stored from its records instead, ids intact."""
    settings = store_settings(tmp_path)
    commits = Commits()
    engine = EngineRecord("alpha", 0.0, boot_id=BOOT)
    events = [event(2 * n, n, 1_763_736_090.5 + n, n=n) for n in range(1, VERBATIM + 1)]
    async with started(SQLiteStore(settings.db, settings), commits) as store:
        ingested = frame(engine, events)
        ingested.frame, ingested.received = sent(events, 0.0), 0.0
        store.append(ingested)
        await commits.wait(engine.hwm)
        assert await store.history("events", HistoryQuery(100)) == events[::-1]
    assert rows(settings.db, "SELECT count(*) FROM event_chunks WHERE frames IS NULL") == [(1,)]


def test_a_database_of_a_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    """A file written by a newer Engine Hub is not read (or changed) by this one."""
    db = tmp_path / "hub.db"
    with closing(sqlite3.connect(db)) as conn:
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.execute("CREATE TABLE future (x)")
        conn.commit()
    before = db.read_bytes()
    with pytest.raises(StoreError, match=r"newer Engine Hub .*left untouched"):
        connect(str(db))
    assert db.read_bytes() == before


# The first schema's events table, as engine-hub 0.1 created it.
SCHEMA_1 = """
CREATE TABLE events (
    id INTEGER PRIMARY KEY, engine TEXT NOT NULL, boot_id TEXT NOT NULL, seq INTEGER NOT NULL,
    type TEXT NOT NULL, ts REAL NOT NULL, payload BLOB NOT NULL, UNIQUE (engine, boot_id, seq));
CREATE INDEX events_type ON events (type, id);
CREATE INDEX events_engine ON events (engine, id);
CREATE TABLE boots (
    engine TEXT NOT NULL, boot_id TEXT NOT NULL, pid INTEGER, mode TEXT, started REAL,
    ended REAL, how TEXT, meta BLOB, last_seq INTEGER NOT NULL DEFAULT 0, seen REAL,
    PRIMARY KEY (engine, boot_id));
CREATE TABLE metrics (
    engine TEXT PRIMARY KEY, boot_id TEXT NOT NULL, series BLOB NOT NULL, updated REAL NOT NULL);
"""


# -- an in-process hub on SQLite --------------------------------------------------------------------


def cycle(n: int, **extra: Any) -> dict[str, Any]:
    return {"kind": "event", "type": "cycle", "payload": {"n": n}, **extra}


async def test_batches_are_stored_as_sent_and_read_back_the_same(tmp_path: Path) -> None:
    """Batches of one type are kept as the frame's text; batches that are not (a rejected message,
    mixed types, ISO-8601 times) as records. Both read back as they were live, after a restart and
    in the `events` view, and chunks of either kind in one commit never hide one another."""
    db = str(tmp_path / "hub.db")
    name = unique("verbatim")
    t0 = time.time() - 60

    def stamped(n: int, kind: str = "cycle", iso: bool = False) -> dict[str, Any]:
        """ts in seconds, as ISO-8601 with an offset, or none (the hub's receive time)."""
        payload = {"n": n, "é": "✓", "esc": '\\"\u2028', "big": 2**62, "deep": [[{"x": 1e-300}]]}
        message: dict[str, Any] = {"kind": "event", "type": kind, "payload": payload}
        if iso:
            message["ts"] = datetime.fromtimestamp(t0 + n, UTC).astimezone().isoformat()
        elif n % 2:
            message["ts"] = t0 + n / 7
        return message

    async with running_hub(db=db, commit_interval=0.05) as first:
        engine = await connect_engine(first, name, boot_id="b1")
        await engine.send(*(stamped(n) for n in range(1, 21)), batch=True)
        rejected = [stamped(n) for n in range(21, 41)]
        rejected[5]["payload"] = [1]  # refused: the rest of its batch is stored as records
        await engine.send(*rejected, batch=True)
        await engine.send(*(stamped(n, "signal_event") for n in range(41, 61)), batch=True)
        mixed = (stamped(n, ("cycle", "order_event")[n % 2]) for n in range(61, 81))
        await engine.send(*mixed, batch=True)
        await engine.send(*(stamped(n, iso=True) for n in range(81, 101)), batch=True)
        await engine.send(stamped(101))  # a lone message
        await engine.wait_acked(101)
        assert [e["seq"] for e in engine.errors] == [26]
        await engine.close()
        live = (await first.get("/api/telemetry/events", limit=1000))["events"]
    live = [e for e in live if e["engine"] == name]
    assert sorted(e["seq"] for e in live) == [n for n in range(1, 102) if n != 26]
    assert rows(db, "SELECT count(*) FROM event_chunks WHERE frames IS NOT NULL") == [(2,)]
    view = rows(db, "SELECT id, seq, type, ts, payload FROM events ORDER BY id DESC")
    assert [(e["id"], e["seq"], e["type"], e["payload"]) for e in live] == [
        (ident, seq, kind, msgspec.json.decode(payload)) for ident, seq, kind, _, payload in view
    ]
    assert [datetime.fromisoformat(e["timestamp"]) for e in live] == [when(v[3]) for v in view]
    async with running_hub(db=db, commit_interval=0.05) as second:
        restored = (await second.get("/api/telemetry/events", limit=1000))["events"]
        assert [e for e in restored if e["engine"] == name] == live


async def test_welcome_counts_only_committed_messages(
    tmp_path: Path, quick_busy: None, store_log: LogLines
) -> None:
    """While the store cannot write, a reconnecting engine is welcomed with the last committed seq."""
    db = str(tmp_path / "hub.db")
    name = unique("welcome")
    async with running_hub(db=db, commit_interval=0.05) as running:
        engine = await connect_engine(running, name, boot_id="b1")
        await engine.send(*(cycle(n) for n in range(1, 4)), batch=True)
        await engine.wait_acked(3)
        with closing(sqlite3.connect(db, isolation_level=None)) as locker:
            locker.execute("BEGIN EXCLUSIVE")
            try:
                await engine.send(*(cycle(n) for n in range(4, 7)), batch=True)
                await store_log.wait_for("cannot write")
                await engine.close()
                again = await connect_engine(running, name, boot_id="b1")
                assert again.welcome["last_seq"] == 3
            finally:
                locker.execute("ROLLBACK")
        await again.send(*(cycle(n, seq=n) for n in range(4, 7)), batch=True)
        await again.wait_acked(6)
        await again.close()
    assert rows(db, "SELECT seq FROM events WHERE engine = ? ORDER BY seq", name) == [
        (n,) for n in range(1, 7)
    ]


WAVES = 4


async def test_retention_keeps_the_database_bounded(tmp_path: Path) -> None:
    """Waves far beyond retention_events/retention_logs leave at most the newest rows; the file stops growing."""
    db = str(tmp_path / "hub.db")
    limits = {"retention_events": 40, "retention_logs": 25, "retention_days": 1.0}
    names = [unique("keep"), unique("keep")]

    def counts() -> tuple[dict[str, int], dict[str, int]]:
        with database(db) as conn:
            events = dict(
                conn.execute("SELECT type, count(*) FROM events GROUP BY type").fetchall()
            )
            logs = dict(
                conn.execute("SELECT engine, count(*) FROM logs GROUP BY engine").fetchall()
            )
        return events, logs

    def within() -> bool:
        events, logs = counts()
        return (
            "ancient" not in events  # aged out, not only trimmed by count
            and all(c <= limits["retention_events"] for c in events.values())
            and all(c <= limits["retention_logs"] for c in logs.values())
        )

    def logical_size() -> int:
        """The database's size as SQLite sees it through the WAL: what the file is once checkpointed."""
        with database(db) as conn:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            return int(pages * conn.execute("PRAGMA page_size").fetchone()[0])

    sizes: list[int] = []
    async with running_hub(
        db=db, commit_interval=0.05, retention_interval=0.1, **limits
    ) as running:
        engines = [await connect_engine(running, name) for name in names]
        for wave in range(WAVES):
            for engine in engines:
                old = time.time() - 3 * 86_400  # older than retention_days
                await engine.send(
                    *(cycle(wave * 1000 + n) for n in range(150)),
                    *(
                        {"kind": "event", "type": "signal_event", "payload": {"n": n}}
                        for n in range(100)
                    ),
                    *({"kind": "log", "message": f"{wave}-{n}"} for n in range(100)),
                    {"kind": "event", "type": "ancient", "ts": old, "payload": {}},
                    batch=True,
                )
                await engine.wait_acked()
            # Retention runs on the writer after commits; each ack here is one more commit.
            async with asyncio.timeout(WAIT + 5):
                while not within():
                    await engines[0].send({"kind": "heartbeat", "loop_tick": 1})
                    await engines[0].wait_acked()
            sizes.append(logical_size())
        events, logs = counts()
        assert events == {"cycle": 40, "signal_event": 40}  # "ancient" is gone by age
        assert logs == dict.fromkeys(names, 25)
        newest = rows(
            db, "SELECT payload FROM events WHERE type = 'cycle' ORDER BY id DESC LIMIT 1"
        )
        assert [msgspec.json.decode(p) for (p,) in newest] == [{"n": (WAVES - 1) * 1000 + 149}]
        # The hub still answers for the retained window.
        page = await running.get("/api/telemetry/events", event_type="cycle", limit=1000)
        assert page["count"] >= 40
    # Bounded, the size moves within a band (free pages come and go, seen within 1.6x); without
    # retention each wave adds ~100 KB, so four waves would span about 3x.
    assert max(sizes) < 2 * min(sizes), sizes


async def test_events_and_logs_page_beyond_the_rings(tmp_path: Path) -> None:
    """With small rings and tails, the API pages through stored history exactly once, with filters."""
    db = str(tmp_path / "hub.db")
    name = unique("pages")
    t0 = float(int(time.time()) - 100)  # whole seconds: no rounding at window edges
    overrides = {"ring_capacities": {"cycle": 5}, "log_tail_lines": 4, "commit_interval": 0.05}
    async with running_hub(db=db, **overrides) as running:
        engine = await connect_engine(running, name)
        await engine.send(
            *(cycle(n, ts=t0 + n) for n in range(30)),
            *(
                {
                    "kind": "log",
                    "ts": t0 + n,
                    "level": "ERROR" if n % 2 else "INFO",
                    "message": str(n),
                }
                for n in range(30)
            ),
            batch=True,
        )
        await engine.wait_acked()
        seen: list[int] = []
        before: int | None = None
        while True:
            params: dict[str, Any] = {"engine": name, "event_type": "cycle", "limit": 7}
            if before is not None:
                params["before"] = before
            page = await running.get("/api/telemetry/events", **params)
            seen += [e["payload"]["n"] for e in page["events"]]
            before = page["next_before"]
            if before is None:
                break
        assert seen == list(range(29, -1, -1))
        window = await running.get(
            "/api/telemetry/events", engine=name, since=t0 + 10, until=t0 + 20, limit=100
        )
        assert [e["payload"]["n"] for e in window["events"]] == list(range(19, 9, -1))
        lines = await running.get(
            "/api/telemetry/engine_logs", engine=name, lines=100, level="ERROR"
        )
        assert [line["message"] for line in lines["lines"]] == [str(n) for n in range(1, 30, 2)]
        lines = await running.get(
            "/api/telemetry/engine_logs", engine=name, lines=100, since=t0 + 5, until=t0 + 9
        )
        assert [line["message"] for line in lines["lines"]] == ["5", "6", "7", "8"]
        await engine.close()


# -- #18 timeline ------------------------------------------------------------------------------


async def test_a_schema_7_database_is_upgraded_in_place_with_a_transitions_table(
    tmp_path: Path,
) -> None:
    """A database of schema 7 (no transitions table) opens at schema 8 with its history intact:
    its alerts (audit rows) show on the timeline next to transitions stored from then on."""
    db = tmp_path / "hub.db"
    ts = 1_763_736_090.5
    with closing(connect(str(db))) as conn:  # today's schema, taken back to schema 7
        conn.execute("DROP TABLE transitions")
        conn.execute(
            "INSERT INTO audit (ts, actor, action, detail, engine) VALUES "
            "(?, 'hub', 'alert.firing', 'offline: gone', 'alpha')",
            (ts,),
        )
        conn.execute("PRAGMA user_version = 7")
    settings = store_settings(tmp_path)
    commits = Commits()
    engine = EngineRecord("alpha", 0.0, boot_id=BOOT)
    async with started(SQLiteStore(settings.db, settings), commits) as store:
        changes = frame(engine, [event(1, 1, ts + 2, kind="signal_event")])
        changes.transitions = [Transition("alpha", ts + 1, "offline", "ok")]
        store.append(changes)
        await commits.wait(engine.hwm)
        items = await store.timeline(TimelineQuery(ts - 60, ts + 60, 10))
    assert rows(db, "PRAGMA user_version") == [(SCHEMA_VERSION,)] == [(8,)]
    assert [(i.kind.value, i.label) for i in items] == [
        ("event", "signal"),
        ("health", "ok → offline"),
        ("alert", "alert.firing"),
    ]
    assert rows(db, "SELECT engine, at, health, previous FROM transitions") == [
        ("alpha", ts + 1, "offline", "ok")
    ]


async def test_the_timeline_finds_events_of_chunks_that_straddle_its_window(
    tmp_path: Path,
) -> None:
    """A chunk reaching past both ends of the window, one reaching past its end and one within
    it: their events inside the window are found, newest first, and `limit` keeps the newest."""
    settings = store_settings(tmp_path)
    commits = Commits()
    engine = EngineRecord("alpha", 0.0, boot_id=BOOT)
    t = 1_763_736_090.0
    spans = [
        [t - 500, t + 10, t + 500],  # both ends
        [t + 20, t + 900],  # the end
        [t + 30, t + 40],  # within
    ]
    seq = 0
    async with started(SQLiteStore(settings.db, settings), commits) as store:
        for times in spans:  # one frame, so one chunk, each
            records = []
            for ts in times:
                seq += 1
                records.append(event(seq, seq, ts, kind="signal_event"))
            store.append(frame(engine, records))
            await commits.wait(engine.hwm)
        found = await store.timeline(TimelineQuery(t, t + 100, 10))
        newest = await store.timeline(TimelineQuery(t, t + 100, 2))
    assert [i.ts - t for i in found] == [40, 30, 20, 10]
    assert [i.ts - t for i in newest] == [40, 30]
    assert rows(settings.db, "SELECT count(*) FROM event_chunks") == [(3,)]
