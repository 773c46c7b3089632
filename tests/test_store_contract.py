"""The contract every history store keeps, whichever backend `db` names: ingest, dedupe, history
queries, export bundles and restart. A new backend is one more entry in BACKENDS."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from operator import attrgetter
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hub.core.chains import MAX_CHAIN, Link
from hub.core.engines import EngineRecord
from hub.core.hits import Cursor, SearchRequest
from hub.core.ingested import Gap, Ingested
from hub.core.logs import level_number
from hub.core.metrics import MetricKind
from hub.core.records import (
    AuditRecord,
    BootChange,
    EventRecord,
    LogRecord,
    MetricsSnapshot,
    Transition,
    utc,
)
from hub.core.searches import parse_query
from hub.core.series import Bucket, Point, Tier
from hub.settings import Settings
from hub.stores import HistoryQuery, HistoryStore, Restored, open_store
from hub.stores.base import SeriesQuery, TimelineKind, TimelineQuery
from hub.stores.schema import SCHEMA_VERSION
from hub.stores.sqlite import SQLiteStore
from hub.web.admin import forget_engine
from tests.conftest import (
    WAIT,
    Engine,
    RunningHub,
    connect_engine,
    database,
    run_cli,
    running_hub,
    unique,
)


@dataclass(frozen=True)
class Backend:
    """A history store under contract: how `db` names it and what it promises beyond one run."""

    name: str
    url: str  # the `db` setting; "{dir}" is a directory of the test's own
    persistent: bool  # a store closed and opened again gives its history back
    file: bool  # `engine-hub export --db` reads it without a hub

    def db(self, where: Path) -> str:
        """The `db` setting of this backend's store in `where`."""
        return self.url.format(dir=where)


BACKENDS = [
    Backend("memory", "memory://", persistent=False, file=False),
    Backend("sqlite", "sqlite:///{dir}/hub.db", persistent=True, file=True),
]
SQLITE = next(b for b in BACKENDS if b.name == "sqlite")


@pytest.fixture(params=BACKENDS, ids=attrgetter("name"))
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each backend in turn."""
    backend: Backend = request.param
    return backend


# -- driving a store directly -----------------------------------------------------------------

BOOT = "boot-1"


def hand(
    store: HistoryStore,
    engine: EngineRecord,
    events: Sequence[EventRecord] = (),
    logs: Sequence[LogRecord] = (),
    gaps: Sequence[Gap] = (),
    notes: Sequence[BootChange | MetricsSnapshot] = (),
    audit: Sequence[AuditRecord] = (),
) -> None:
    """Hand `store` boot changes or metric snapshots and one frame of `engine` (its records and
    gaps; the engine's hwm moves to the frame's last seq), in one `Ingested` as the core does.
    The only place this module calls `append`."""
    seqs = [r.seq for r in events] + [r.seq for r in logs] + [g.last + 1 for g in gaps]
    engine.hwm = max([engine.hwm, *seqs])
    ingested = Ingested(engine.name, engine.boot_id, engine.hwm) if seqs else Ingested()
    ingested.events, ingested.logs, ingested.gaps = list(events), list(logs), list(gaps)
    ingested.boots = [c for c in notes if isinstance(c, BootChange)]
    ingested.snapshots = [c for c in notes if isinstance(c, MetricsSnapshot)]
    ingested.audit = list(audit)
    store.append(ingested)


class Commits:
    """The on_commit callback: the highest seq each engine has durable, and a way to wait for one."""

    def __init__(self) -> None:
        self.seqs: dict[str, int] = {}
        self._changed = asyncio.Event()

    def __call__(self, engine: str, boot_id: str, seq: int) -> None:
        self.seqs[engine] = max(seq, self.seqs.get(engine, 0))
        self._changed.set()

    async def wait(self, engine: EngineRecord) -> None:
        """Wait until everything `engine` handed the store up to its hwm is durable."""
        async with asyncio.timeout(WAIT):
            while self.seqs.get(engine.name, 0) < engine.hwm:
                self._changed.clear()
                await self._changed.wait()


@dataclass
class Opened:
    """A started store, what it restored, and its commits."""

    store: HistoryStore
    restored: Restored
    commits: Commits


@asynccontextmanager
async def opened(db: str, **changes: Any) -> AsyncIterator[Opened]:
    """The store `db` names, chosen by `open_store` as the hub chooses it, started; closed after."""
    settings = Settings(db=db, commit_interval=0.05, graceful_timeout=2.0).replace(**changes)
    store, commits = open_store(settings), Commits()
    restored = await store.start(commits)
    try:
        yield Opened(store, restored, commits)
    finally:
        await store.close()


def event(
    ident: int,
    seq: int,
    ts: float,
    engine: str = "alpha",
    kind: str = "cycle",
    boot_id: str = BOOT,
    received: float | None = None,
    **payload: Any,
) -> EventRecord:
    raw = msgspec.Raw(msgspec.json.encode(payload))
    return EventRecord(ident, kind, ts, engine, seq, boot_id, raw, received)


def log_line(
    ident: int,
    seq: int,
    ts: float,
    engine: str = "alpha",
    level: str = "INFO",
    message: str = "",
    received: float | None = None,
) -> LogRecord:
    when = datetime.fromtimestamp(ts, UTC)
    text = message or f"line {ident}"
    return LogRecord(ident, engine, seq, when, level, f"engine.{engine}", text, received=received)


def as_json(value: Any) -> Any:
    """What a reader of the API gets for `value`."""
    return msgspec.json.decode(msgspec.json.encode(value))


# -- driving a store through a hub ------------------------------------------------------------


def cycle(n: int, **extra: Any) -> dict[str, Any]:
    return {"kind": "event", "type": "cycle", "payload": {"n": n}, **extra}


async def kept(running: RunningHub, name: str) -> list[tuple[int, Any]]:
    """(seq, payload n) of every event of `name` the hub's store holds, oldest first."""
    events = await running.hub.store.history("events", HistoryQuery(10_000, engine=name))
    return [(e.seq, e.data()["n"]) for e in reversed(events)]


async def engine_names(running: RunningHub) -> set[str]:
    """The engines a hub lists."""
    return {e["name"] for e in (await running.get("/api/telemetry/engines"))["engines"]}


async def connected(running: RunningHub) -> set[str]:
    """The engines a hub lists as connected."""
    engines = (await running.get("/api/telemetry/engines"))["engines"]
    return {e["name"] for e in engines if e["connected"]}


# -- ingest and dedupe ------------------------------------------------------------------------


async def test_what_a_hub_ingests_reads_back_as_it_showed_it_live(
    backend: Backend, tmp_path: Path
) -> None:
    """Events (batches of one type, mixed batches, lone messages, ISO times, odd payloads) and log
    lines an engine sends come back from the store exactly as the hub showed them live, the
    hub's receive time beside the engine's time included."""
    name = unique("ingest")
    t0 = time.time() - 60
    payload = {"é": "✓", "esc": '\\"\u2028', "big": 2**62, "deep": [[{"x": 1e-300}]]}
    async with running_hub(db=backend.db(tmp_path), commit_interval=0.05) as running:
        engine = await connect_engine(running, name, boot_id="b1")
        await engine.send(*(cycle(n, ts=t0 + n) for n in range(20)), batch=True)
        await engine.send(
            *(
                {"kind": "event", "type": kind, "payload": {**payload, "n": n}}
                for n, kind in enumerate(["signal_event", "order_event", "error"] * 4)
            ),
            batch=True,
        )
        iso = datetime.fromtimestamp(t0 + 0.5, UTC).astimezone().isoformat()
        await engine.send({"kind": "event", "type": "cycle", "ts": iso, "payload": {"n": -1}})
        await engine.send(
            {"kind": "log", "level": "INFO", "logger": "x", "message": "hello"},
            {"kind": "log", "level": "ERROR", "message": "boom", "exc": "trace", "extra": payload},
            batch=True,
        )
        await engine.wait_acked()  # an ack means stored
        await engine.close()
        live = await running.get("/api/telemetry/events", engine=name, limit=1000)
        tail = await running.get("/api/telemetry/engine_logs", engine=name, lines=1000)
        events = await running.hub.store.history("events", HistoryQuery(1000, engine=name))
        logs = await running.hub.store.history("logs", HistoryQuery(1000, engine=name))
    assert live["count"] == 33
    assert as_json([e.view() for e in events]) == live["events"]
    assert as_json([line.view() for line in logs[::-1]]) == tail["lines"]
    # The engine said its events happened a minute ago; the hub says when it got them.
    shown = live["events"] + tail["lines"]
    received = [datetime.fromisoformat(r["received"]).timestamp() for r in shown]
    assert min(received) > t0 + 30
    assert all(r["timestamp"] != r["received"] for r in live["events"] if r["type"] == "cycle")
    assert [line["extra"] for line in tail["lines"]] == [{}, payload]


async def test_a_replay_is_kept_once_across_reconnect_and_restart(
    backend: Backend, tmp_path: Path
) -> None:
    """The same (engine, boot_id, seq) sent again after a reconnect is kept once, the first copy;
    after a restart too where the backend is persistent. One that is not starts the restarted hub
    empty: the welcome says 0 and the store holds nothing."""
    db = backend.db(tmp_path)
    name = unique("replay")
    async with running_hub(db=db, commit_interval=0.05) as first:
        engine = await connect_engine(first, name, boot_id="b1")
        await engine.send(*(cycle(n) for n in range(1, 6)), batch=True)
        await engine.wait_acked(5)
        await engine.close()
        again = await connect_engine(first, name, boot_id="b1")
        assert again.welcome["last_seq"] == 5
        # An at-least-once client replays 3..5 (with whatever it thinks they held) and goes on.
        replay = [cycle(-n, seq=n) for n in (3, 4, 5)] + [cycle(n, seq=n) for n in (6, 7, 8)]
        await again.send(*replay, batch=True)
        await again.wait_acked(8)
        assert (await first.get("/api/telemetry/stats"))["drops"]["duplicate"] == 3
        await again.close()
        assert await kept(first, name) == [(n, n) for n in range(1, 9)]
    async with running_hub(db=db, commit_interval=0.05) as second:
        engine = await connect_engine(second, name, boot_id="b1")
        if backend.persistent:
            assert engine.welcome["last_seq"] == 8
            assert await kept(second, name) == [(n, n) for n in range(1, 9)]
            await engine.send(*[cycle(-n, seq=n) for n in (6, 7, 8)], cycle(9, seq=9), batch=True)
            await engine.wait_acked(9)
            assert (await second.get("/api/telemetry/stats"))["drops"]["duplicate"] == 3
            assert await kept(second, name) == [(n, n) for n in range(1, 10)]
        else:
            assert engine.welcome["last_seq"] == 0
            assert await kept(second, name) == []
        await engine.close()


# -- history queries --------------------------------------------------------------------------


def history_fixture(t0: float) -> list[tuple[EngineRecord, EventRecord, LogRecord]]:
    """Two engines' events and log lines over ten seconds, one of each per frame."""
    alpha = EngineRecord("alpha", t0, boot_id=BOOT)
    beta = EngineRecord("beta", t0, boot_id=BOOT)
    levels = ["DEBUG", "INFO", "WARN", "ERROR", "CRITICAL"]
    frames = []
    for i in range(10):
        engine = alpha if i % 3 else beta
        kind = "signal_event" if i % 2 else "cycle"
        seq = 2 * sum(1 for e, _, _ in frames if e is engine) + 1
        frames.append(
            (
                engine,
                event(i + 1, seq, t0 + i, engine.name, kind, i=i),
                log_line(i + 1, seq + 1, t0 + i, engine.name, levels[i % 5]),
            )
        )
    return frames


def selected(records: Sequence[EventRecord | LogRecord], query: HistoryQuery) -> list[Any]:
    """What `query` selects from `records` (oldest first), newest first: the contract spelled out.
    Events ignore `min_level`; log lines ignore `event_type`."""

    def ts(record: EventRecord | LogRecord) -> float:
        return record.ts if isinstance(record, EventRecord) else record.timestamp.timestamp()

    hits = [
        r
        for r in reversed(records)
        if (query.engine is None or r.engine == query.engine)
        and (
            query.event_type is None or not isinstance(r, EventRecord) or r.type == query.event_type
        )
        and (query.since is None or ts(r) >= query.since)
        and (query.until is None or ts(r) < query.until)
        and (query.before is None or r.id < query.before)
        and (
            query.min_level is None
            or isinstance(r, EventRecord)
            or level_number(r.level) >= query.min_level
        )
    ]
    return hits[: query.limit]


async def test_history_filters_by_engine_type_time_cursor_and_level(
    backend: Backend, tmp_path: Path
) -> None:
    """history() filters by engine, type, since (inclusive) / until (exclusive), the `before` id
    cursor and a minimum level, newest first, up to `limit`."""
    t0 = float(int(time.time()) - 60)  # whole seconds: no rounding at window edges
    frames = history_fixture(t0)
    queries = [
        HistoryQuery(100),
        HistoryQuery(3),
        HistoryQuery(100, engine="beta"),
        HistoryQuery(100, event_type="signal_event"),
        HistoryQuery(100, engine="alpha", event_type="cycle"),
        HistoryQuery(100, since=t0 + 3, until=t0 + 6),
        HistoryQuery(2, before=6),
        HistoryQuery(100, engine="alpha", since=t0 + 2, before=9),
        HistoryQuery(100, min_level=level_number("WARNING")),
        HistoryQuery(100, engine="alpha", min_level=level_number("ERROR"), until=t0 + 9),
        HistoryQuery(100, engine="nobody"),
    ]
    async with opened(backend.db(tmp_path)) as opened_store:
        store = opened_store.store
        for engine, record, line in frames:
            hand(store, engine, [record], [line])
        for engine in {e.name: e for e, _, _ in frames}.values():
            await opened_store.commits.wait(engine)
        events = [record for _, record, _ in frames]
        logs = [line for _, _, line in frames]
        for query in queries:
            assert await store.history("events", query) == selected(events, query), query
            assert await store.history("logs", query) == selected(logs, query), query
        window = await store.history("events", HistoryQuery(100, since=t0 + 3, until=t0 + 6))
        assert [e.id for e in window] == [6, 5, 4]
        paged = await store.history("events", HistoryQuery(2, before=6))
        assert [e.id for e in paged] == [5, 4]
        loud = await store.history("logs", HistoryQuery(100, min_level=level_number("WARNING")))
        assert [(r.id, r.level) for r in loud] == [
            (10, "CRITICAL"),
            (9, "ERROR"),
            (8, "WARN"),
            (5, "CRITICAL"),
            (4, "ERROR"),
            (3, "WARN"),
        ]
        assert await store.history("events", HistoryQuery(100, engine="nobody")) == []


# -- restart ----------------------------------------------------------------------------------


async def test_a_reopened_store_gives_back_its_history_if_persistent(
    backend: Backend, tmp_path: Path
) -> None:
    """Closed and opened again, a persistent store restores events, log lines, the latest boot
    and metrics and continues the ids after its own; a store that is not restores nothing."""
    db = backend.db(tmp_path)
    now = float(int(time.time()))
    alpha = EngineRecord("alpha", now, boot_id=BOOT)
    events = [event(n, n, now - 10 + n, kind=("cycle", "error")[n % 2], n=n) for n in (1, 2, 3)]
    series = [{"name": "orders", "kind": "counter", "lifetime": 3.0}]
    async with opened(db) as first:
        boot = BootChange("alpha", BOOT, 11, "live", now - 300, None, None, {"v": 1})
        snapshot = MetricsSnapshot("alpha", BOOT, series, {"loop_tick": 7})
        hand(first.store, alpha, notes=[boot, snapshot])
        hand(first.store, alpha, events, [log_line(1, 4, now - 1, level="ERROR")])
        await first.commits.wait(alpha)
    async with opened(db) as second:
        restored = second.restored
        history = await second.store.history("events", HistoryQuery(100))
    if not backend.persistent:
        assert restored == Restored() and history == []
        return
    assert restored.events == events
    assert history == events[::-1]
    assert [(r.id, r.seq, r.level) for r in restored.logs] == [(1, 4, "ERROR")]
    [boot_row] = restored.boots
    assert (boot_row["boot_id"], boot_row["pid"], boot_row["last_seq"]) == (BOOT, 11, 4)
    assert restored.metrics == [
        {"engine": "alpha", "boot_id": BOOT, "series": series, "card": {"loop_tick": 7}}
    ]
    assert (restored.next_event_id, restored.next_log_id) == (4, 2)


async def test_the_audit_trail_is_kept_filtered_exported_and_restored(
    backend: Backend, tmp_path: Path
) -> None:
    """Audit entries read back newest first, by engine and window; an engine's export holds the
    hub-wide entries and its own in the window, oldest first; a persistent store keeps them."""
    db = backend.db(tmp_path)
    now = float(int(time.time()))
    alpha = EngineRecord("alpha", now, boot_id=BOOT)
    trail = [
        AuditRecord(now - 7200, "alice", "sign_in"),  # before the window
        AuditRecord(now - 30, "alice", "sign_in", "from 127.0.0.1"),
        AuditRecord(now - 20, "bob", "engine_forgotten", "retired", engine="alpha"),
        AuditRecord(now - 10, "bob", "silence_added", "1h", engine="beta"),
    ]
    async with opened(db) as first:
        hand(first.store, alpha, [event(1, 1, now - 5)], audit=trail)
        await first.commits.wait(alpha)
        newest = await first.store.history("audit", HistoryQuery(100))
        about_alpha = await first.store.history("audit", HistoryQuery(100, engine="alpha"))
        recent = await first.store.history("audit", HistoryQuery(2, since=now - 3600))
        bundle = await first.store.export("alpha", now - 3600, now + 60)
    assert newest == trail[::-1]
    assert about_alpha == [trail[2]]
    assert recent == [trail[3], trail[2]]
    assert [(a["actor"], a["action"], a["engine"]) for a in as_json(bundle["audit"])] == [
        ("alice", "sign_in", None),
        ("bob", "engine_forgotten", "alpha"),
    ]
    async with opened(db) as second:
        again = await second.store.history("audit", HistoryQuery(100))
    assert again == (trail[::-1] if backend.persistent else [])


async def snapshot(running: RunningHub, names: list[str]) -> dict[str, Any]:
    """What a user sees of `names`: events, engine cards, log tails and metrics."""
    events = (await running.get("/api/telemetry/events", limit=1000))["events"]
    cards = {e["name"]: e for e in (await running.get("/api/telemetry/engines"))["engines"]}
    return {
        "events": [e for e in events if e["engine"] in names],
        "cards": {name: cards[name] for name in names},
        "logs": {
            name: (await running.get("/api/telemetry/engine_logs", engine=name, lines=1000))[
                "lines"
            ]
            for name in names
        },
        "metrics": {
            name: (await running.get("/api/telemetry/metrics", engine=name))["engines"][name]
            for name in names
        },
    }


CARD_FIELDS = (
    "mode",
    "pid",
    "status",
    "started_at",
    "health",
    "connected",
    "boot_id",
    "seq",
    "meta",
)


async def record_history(running: RunningHub, crashed: str, stopped: str) -> dict[str, Any]:
    """Two engines report everything; `stopped` says bye, `crashed` just goes away. Returns the snapshot."""
    engines: list[Engine] = []
    for name in (crashed, stopped):
        engine = await connect_engine(running, name, boot_id=f"{name}-b1", meta={"strategy": "mr"})
        await engine.send(
            {"kind": "heartbeat", "status": "running", "loop_tick": 7},
            {"kind": "event", "type": "signal_event", "payload": {"symbol": "NIFTY"}},
            {"kind": "event", "type": "error", "payload": {"message": "timeout"}},
            cycle(1),
            {"kind": "log", "level": "INFO", "logger": "x", "message": "hello"},
            {"kind": "log", "level": "ERROR", "logger": "x", "message": "boom", "exc": "trace"},
            {"kind": "metric", "op": "inc", "name": "orders", "value": 2},
            {"kind": "metric", "op": "set", "name": "equity", "value": 1000.5},
            {"kind": "metric", "op": "observe", "name": "latency", "value": 0.25},
            batch=True,
        )
        await engine.wait_acked()
        engines.append(engine)
    await engines[1].send({"kind": "bye", "status": "stopped"})
    await engines[1].wait_acked()
    for engine in engines:
        await engine.close()
    async with asyncio.timeout(WAIT):  # the hub notices the closed sockets on its next receive
        while (before := await snapshot(running, [crashed, stopped]))["cards"][crashed][
            "connected"
        ] or before["cards"][stopped]["connected"]:
            pass
    return before


async def test_restart_shows_the_same_history_before_engines_reconnect(
    backend: Backend, tmp_path: Path
) -> None:
    """After a restart on a persistent store, events, engine cards, log tails and metrics are back
    before any engine reconnects, and lifetime metrics go on; on one that is not, none of it is."""
    db = backend.db(tmp_path)
    crashed, stopped = unique("crashed"), unique("stopped")
    async with running_hub(db=db, commit_interval=0.05) as first:
        before = await record_history(first, crashed, stopped)
    assert {n: before["cards"][n]["health"] for n in (crashed, stopped)} == {
        crashed: "offline",
        stopped: "stopped",
    }
    async with running_hub(db=db, commit_interval=0.05) as second:
        if not backend.persistent:
            assert {crashed, stopped}.isdisjoint(await engine_names(second))
            assert (await second.get("/api/telemetry/events", limit=1000))["events"] == []
            return
        after = await snapshot(second, [crashed, stopped])
        assert after["events"] == before["events"]
        assert after["logs"] == before["logs"]
        assert after["metrics"] == before["metrics"]
        for name in (crashed, stopped):
            card_before, card_after = before["cards"][name], after["cards"][name]
            assert {k: card_after[k] for k in CARD_FIELDS} == {
                k: card_before[k] for k in CARD_FIELDS
            }
            assert (card_after["events"], card_after["errors"]) == (3, 1)
        # A new boot: session values start over, lifetime values go on.
        engine = await connect_engine(second, crashed, boot_id=f"{crashed}-b2")
        await engine.send({"kind": "metric", "op": "inc", "name": "orders", "value": 1})
        await engine.wait_acked()
        [orders] = (await second.get("/api/telemetry/metrics", engine=crashed))["engines"][crashed][
            "counters"
        ]
        assert (orders["session"], orders["lifetime"]) == (1, 3)
        await engine.close()


async def test_restart_keeps_what_the_engine_card_showed(backend: Backend, tmp_path: Path) -> None:
    """After a restart on a persistent store an offline engine's card still shows its last
    heartbeat, loop tick, last error and log count; on one that is not, there is no card."""
    db = backend.db(tmp_path)
    crashed, stopped = unique("crashed"), unique("stopped")
    fields = ("last_heartbeat", "loop_tick", "last_error", "logs")
    async with running_hub(db=db, commit_interval=0.05) as first:
        before = await record_history(first, crashed, stopped)
    async with running_hub(db=db, commit_interval=0.05) as second:
        if not backend.persistent:
            assert {crashed, stopped}.isdisjoint(await engine_names(second))
            return
        after = await snapshot(second, [crashed, stopped])
    for name in (crashed, stopped):
        assert {k: after["cards"][name][k] for k in fields} == {
            k: before["cards"][name][k] for k in fields
        }


async def test_restart_keeps_a_forgotten_engine_forgotten_and_error_times(
    backend: Backend, tmp_path: Path
) -> None:
    """After a restart on a persistent store an engine an admin forgot stays out of the live
    state (its history still answers), and a remembered engine's card keeps when its last error
    came; a new boot of the forgotten engine is registered as usual."""
    db = backend.db(tmp_path)
    crashed, stopped = unique("crashed"), unique("stopped")
    async with running_hub(db=db, commit_interval=0.05) as first:
        await record_history(first, crashed, stopped)
        forget_engine(first.hub, stopped, "ops")  # what the admin route and form do
        error_at = first.hub.state.engines[crashed].error_at
        assert error_at is not None
    async with running_hub(db=db, commit_interval=0.05) as second:
        if not backend.persistent:
            return
        state = second.hub.state
        assert stopped not in state.engines and crashed in state.engines
        assert state.engines[crashed].error_at == error_at
        assert all(r.engine != stopped for r in state.rings.recent(1000))
        assert stopped not in state.logs.tails and stopped not in state.metrics.engines
        kept = await second.hub.store.history("events", HistoryQuery(100, engine=stopped))
        assert len(kept) == 3  # its history stays
        engine = await connect_engine(second, stopped, boot_id=f"{stopped}-b2")
        await engine.close()
        assert stopped in state.engines


# -- export -----------------------------------------------------------------------------------


async def test_export_bundle_keeps_one_engine_within_the_window(
    backend: Backend, tmp_path: Path
) -> None:
    """The export holds one engine's events, errors, logs, gaps, overlapping boots and metrics in
    [since, until), oldest first; past `export_max_records` events it keeps the newest and says
    it was truncated."""
    now = float(int(time.time()))  # whole seconds: no rounding at window edges
    since, until = now - 600, now + 60
    bundles = []
    for cap in (100_000, 2):
        (where := tmp_path / f"cap-{cap}").mkdir()
        async with opened(backend.db(where), export_max_records=cap) as opened_store:
            store, commits = opened_store.store, opened_store.commits
            alpha = EngineRecord("alpha", now, boot_id=BOOT)
            beta = EngineRecord("beta", now, boot_id=BOOT)
            series = [{"name": "orders", "kind": "counter", "lifetime": 3.0}]
            boots = [
                BootChange("alpha", "boot-0", 10, "paper", now - 5000, now - 4000, "bye:stopped"),
                BootChange("alpha", BOOT, 11, "live", now - 300, None, None, {"v": 1}),
                BootChange("alpha", "boot-later", 12, "live", until + 10, None, None),
            ]
            hand(store, alpha, notes=[*boots, MetricsSnapshot("alpha", BOOT, series)])
            events = [
                event(1, 1, since - 1, kind="cycle", n=1),  # before the window
                event(2, 2, since, kind="signal_event", n=2),  # since is inclusive
                event(3, 3, now - 10, kind="error", n=3),
                event(4, 4, until - 0.001, kind="order_event", n=4),
                event(5, 5, until, kind="cycle", n=5),  # until is exclusive
            ]
            logs = [
                log_line(1, 6, since - 5),
                log_line(2, 7, now - 5, level="ERROR"),
                log_line(3, 8, until + 1),
            ]
            hand(store, alpha, events, logs)
            hand(store, alpha, [event(6, 12, now)], gaps=[Gap("alpha", BOOT, 9, 11)])
            hand(store, beta, [event(7, 1, now, engine="beta", kind="error")])
            await commits.wait(alpha)
            await commits.wait(beta)
            bundles.append(await store.export("alpha", since, until))
    bundle, capped = bundles
    assert bundle["format"] == "engine-hub-export/1" and bundle["engine"] == "alpha"
    assert [e.seq for e in bundle["events"]] == [2, 3, 4, 12]  # oldest first
    assert all(e.engine == "alpha" for e in bundle["events"])
    assert [e.seq for e in bundle["errors"]] == [3]
    assert [(r.seq, r.level) for r in bundle["logs"]] == [(7, "ERROR")]
    assert [(g["boot_id"], g["first_seq"], g["last_seq"], g["reason"]) for g in bundle["gaps"]] == [
        (BOOT, 9, 11, "client_dropped")
    ]
    assert [(b["boot_id"], b["pid"], b["mode"], b["last_seq"]) for b in bundle["boots"]] == [
        (BOOT, 11, "live", 12)
    ]
    assert bundle["metrics"]["series"] == [{"name": "orders", "kind": "counter", "lifetime": 3.0}]
    assert bundle["truncated"] is False
    assert capped["truncated"] is True and [e.seq for e in capped["events"]] == [4, 12]


KEYS = ["format", "engine", "since", "until", "boots", "events", "errors", "logs", "gaps"]
KEYS += [
    "metrics",
    "audit",
    "series",
    "transitions",
    "truncated",
    "hub",
    "generated_at",
]  # docs/api.md, in this order


def essence(bundle: dict[str, Any]) -> dict[str, Any]:
    """The parts of an export that do not depend on how or when it was made."""
    return {key: bundle[key] for key in KEYS if key not in ("truncated", "hub", "generated_at")}


def shape(value: Any) -> Any:
    """A JSON value with every leaf replaced by its type: keys (in order) and nesting stay."""
    if isinstance(value, dict):
        return [(key, shape(item)) for key, item in value.items()]
    if isinstance(value, list):
        return [shape(item) for item in value]
    return type(value).__name__


NAME, OTHER = "export", "other"


@dataclass(frozen=True)
class Window:
    """The window an incident is exported over, around `now` (whole seconds: no rounding at its
    edges)."""

    now: float

    @property
    def since(self) -> float:
        return self.now - 600

    @property
    def until(self) -> float:
        return self.now + 120

    @property
    def args(self) -> tuple[str, ...]:
        """The window as `engine-hub export` arguments."""
        return ("--engine", NAME, "--since", str(self.since), "--until", str(self.until))


async def export_every_way(
    running: RunningHub, backend: Backend, db: str, window: Window
) -> dict[str, Any]:
    """NAME's bundle from the API, `engine-hub export --url`, and `--db` where the backend has a
    file; a 404 from the API becomes its JSON body under "api"."""
    bundles: dict[str, Any] = {}
    params = {"engine": NAME, "since": window.since, "until": window.until}
    response = await running.http.get("/api/telemetry/export", params=params)
    assert response.status_code in (200, 404), response.text
    bundles["api"] = response.json()
    if response.status_code == 404:
        return bundles
    url = f"http://127.0.0.1:{running.port}"
    code, out, err = await run_cli("export", *window.args, "--url", url)
    assert code == 0, err
    bundles["url"] = json.loads(out)
    if backend.file:
        code, out, err = await run_cli("export", *window.args, "--db", db)
        assert code == 0, err
        bundles["db"] = json.loads(out)
    return bundles


async def record_an_incident(running: RunningHub, window: Window) -> None:
    """NAME reports in and around the window (a gap among it) and goes away; OTHER reports too.
    Returns once everything of NAME is in the store."""
    now, since, until = window.now, window.since, window.until
    engine = await connect_engine(running, NAME, boot_id="b1", started_at=now - 60)
    await engine.send(
        {"kind": "event", "type": "cycle", "ts": since - 1, "payload": {"n": "before"}},
        {"kind": "event", "type": "signal_event", "ts": since, "payload": {"n": "first"}},
        {"kind": "event", "type": "error", "ts": now - 30, "payload": {"message": "timeout"}},
        {"kind": "log", "ts": now - 700, "level": "INFO", "message": "too old"},
        {"kind": "log", "ts": now - 20, "level": "ERROR", "message": "order rejected"},
        {"kind": "metric", "op": "inc", "name": "orders", "value": 3},
        batch=True,
    )
    engine.seq += 2  # the client dropped two messages: a gap
    await engine.send(
        {"kind": "event", "type": "order_event", "ts": now, "payload": {"n": "last"}},
        {"kind": "event", "type": "cycle", "ts": until + 1, "payload": {"n": "after"}},
        batch=True,
    )
    await engine.wait_acked()
    await engine.close()
    async with asyncio.timeout(WAIT):  # the hub notices the closed socket on its next receive
        while NAME in await connected(running):
            pass
    # The closed socket's boot end went to the store with it; metric snapshots go on the hub's
    # ticks: here, now, with every open series bucket (as at shutdown, so a restart adds none).
    # OTHER's acked message then proves that what was handed before is durable.
    running.hub.save_snapshots(final=True)
    intruder = await connect_engine(running, OTHER)
    await intruder.send(
        {"kind": "event", "type": "error", "ts": now, "payload": {"message": "not mine"}}
    )
    await intruder.wait_acked()
    await intruder.close()


@dataclass
class Exports:
    """Per backend, one incident's bundle every way there is, by way: live ("api", "url", "db")
    and from the same `db` after a restart ("restarted_api", ...)."""

    window: Window
    bundles: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
async def exports(tmp_path_factory: pytest.TempPathFactory) -> Exports:
    """One incident recorded on a hub of each backend and exported every way, live and after a
    restart on the same `db`."""
    found = Exports(Window(float(int(time.time()))), {})
    for backend in BACKENDS:
        db = backend.db(tmp_path_factory.mktemp(backend.name))
        async with running_hub(db=db, commit_interval=0.05) as first:
            await record_an_incident(first, found.window)
            live = await export_every_way(first, backend, db, found.window)
        async with running_hub(db=db, commit_interval=0.05) as second:
            again = await export_every_way(second, backend, db, found.window)
        found.bundles[backend.name] = live | {f"restarted_{w}": b for w, b in again.items()}
    return found


async def test_export_is_one_bundle_via_the_api_and_the_cli(
    backend: Backend, exports: Exports
) -> None:
    """The API, `engine-hub export --url` and `--db` give the same bundle, with the same keys:
    one engine, only [since, until). A restarted hub on a persistent store gives it again; on
    one that is not, it has no such engine (404)."""
    bundles, now = exports.bundles[backend.name], exports.window.now
    live = [way for way in ("api", "url", "db") if way in bundles]
    assert live == (["api", "url", "db"] if backend.file else ["api", "url"])
    via_api = bundles["api"]
    for way in live:
        assert essence(bundles[way]) == essence(via_api), way
        assert list(bundles[way]) == list(via_api), way
    if backend.persistent:
        for way in live:
            assert essence(bundles[f"restarted_{way}"]) == essence(via_api), way
    else:
        assert bundles["restarted_api"]["error"] == "not_found"
    assert via_api["truncated"] is False
    assert [(e["type"], e["payload"]) for e in via_api["events"]] == [
        ("signal_event", {"n": "first"}),
        ("error", {"message": "timeout"}),
        ("order_event", {"n": "last"}),
    ]
    assert {e["engine"] for e in via_api["events"]} == {NAME}
    assert [e["payload"] for e in via_api["errors"]] == [{"message": "timeout"}]
    assert [(line["level"], line["message"]) for line in via_api["logs"]] == [
        ("ERROR", "order rejected")
    ]
    assert [(g["first_seq"], g["last_seq"], g["reason"]) for g in via_api["gaps"]] == [
        (7, 8, "client_dropped")
    ]
    # The counter's buckets, fine and coarse, each holding its one increment of 3.
    series = [(s["name"], s["kind"], s["tier"], s["points"]) for s in via_api["series"]]
    assert [(n, k, t, [p[1:3] for p in pts]) for n, k, t, pts in series] == [
        ("orders", "counter", "fine", [[1, 3.0]]),
        ("orders", "counter", "coarse", [[1, 3.0]]),
    ]
    [boot] = via_api["boots"]
    assert (boot["boot_id"], boot["pid"], boot["mode"], boot["last_seq"]) == (
        "b1",
        4242,
        "paper",
        10,
    )
    assert boot["started"] == pytest.approx(now - 60)
    assert boot["how"] == "disconnected" and boot["ended"] >= now
    [orders] = [s for s in via_api["metrics"]["series"] if s["name"] == "orders"]
    assert orders["lifetime"] == 3


def as_sent(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records without the hub's receive time (each backend's hub received them at its own)."""
    assert all("received" in r for r in records)
    return [{k: v for k, v in r.items() if k != "received"} for r in records]


async def test_export_bundles_have_one_shape_whatever_the_backend_or_path(
    exports: Exports,
) -> None:
    """Every bundle of the same incident, whichever backend kept it and whichever way it was
    asked for, has the same keys in the same order, the same record shapes and counts, events
    and logs oldest first; what was sent (events, errors, logs) is the same in all of them."""
    bundles = {
        (backend, way): bundle
        for backend, ways in exports.bundles.items()
        for way, bundle in ways.items()
        if "error" not in bundle
    }
    assert {backend for backend, _ in bundles} == {b.name for b in BACKENDS}
    first = next(iter(bundles.values()))
    assert list(first) == KEYS
    for where, bundle in bundles.items():
        assert shape(bundle) == shape(first), where
        ids = [e["id"] for e in bundle["events"]]
        assert ids == sorted(ids) and [e["id"] for e in bundle["errors"]] == [
            e["id"] for e in bundle["events"] if e["type"] == "error"
        ]
        assert [line["id"] for line in bundle["logs"]] == sorted(
            line["id"] for line in bundle["logs"]
        )
        sent = {key: as_sent(bundle[key]) for key in ("events", "errors", "logs")}
        assert sent == {key: as_sent(first[key]) for key in ("events", "errors", "logs")}, where


async def test_exporting_an_unknown_engine_is_an_error_not_an_empty_bundle(
    backend: Backend, tmp_path: Path
) -> None:
    """An engine the store never saw: the API answers 404 with the hub's JSON error naming the
    engines it has, and `engine-hub export` (--url, and --db where there is a file) exits 1 with
    that one line and writes no bundle."""
    db = backend.db(tmp_path)
    name = unique("known")
    window = ("--engine", "nobody", "--since", "1h")
    async with running_hub(db=db, commit_interval=0.05) as running:
        engine = await connect_engine(running, name)
        await engine.send(cycle(1))
        await engine.wait_acked()
        known = await running.http.get("/api/telemetry/export", params={"engine": name})
        assert known.status_code == 200 and len(known.json()["events"]) == 1
        response = await running.http.get("/api/telemetry/export", params={"engine": "nobody"})
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert list(body) == ["error", "detail"] and body["error"] == "not_found"
        assert "'nobody'" in body["detail"] and name in body["detail"]
        url = f"http://127.0.0.1:{running.port}"
        results = [await run_cli("export", *window, "--url", url)]
        if backend.file:
            results.append(await run_cli("export", *window, "--db", db))
        await engine.close()
    for code, out, err in results:
        assert (code, out) == (1, "")
        assert err == f"engine-hub export: {body['detail']}\n"


async def test_export_of_a_connected_engine_with_nothing_stored_yet_is_empty(
    tmp_path: Path,
) -> None:
    """An engine the hub has (connected) but whose hello the store has not committed yet gets an
    empty bundle, not a 404: it is not unknown, it has no history yet."""
    db = SQLITE.db(tmp_path)
    name = unique("early")
    async with running_hub(db=db, commit_interval=3600) as running:  # nothing commits till close
        engine = await connect_engine(running, name)
        response = await running.http.get("/api/telemetry/export", params={"engine": name})
        await engine.close()
        store = running.hub.store
        assert isinstance(store, SQLiteStore)
        store.settings = store.settings.replace(commit_interval=0.05)  # close() returns promptly
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert (bundle["engine"], bundle["events"], bundle["boots"], bundle["metrics"]) == (
        name,
        [],
        [],
        None,
    )


# -- #18 series: metric time series (hub/core/series.py, HistoryStore.series) ----------------


def series_point(
    name: str, kind: MetricKind, tier: Tier, start: float, values: Sequence[float], **tags: str
) -> Point:
    """A bucket of `values` as the downsampler hands it out."""
    bucket = Bucket(start, kind is MetricKind.HISTOGRAM)
    for value in values:
        bucket.add(value)
    return Point("alpha", name, tuple(sorted(tags.items())), kind, tier, bucket)


def hand_points(store: HistoryStore, engine: EngineRecord, points: list[Point]) -> None:
    """Points in one Ingested with a commit key, so that `Commits.wait` sees them durable."""
    engine.hwm += 1
    ingested = Ingested(engine.name, engine.boot_id, engine.hwm)
    ingested.points = points
    store.append(ingested)


async def read_lines(store: HistoryStore, query: SeriesQuery) -> tuple[float, list[Any]]:
    """The step and (stat, tags, points) of every line, as plain values."""
    step, lines = await store.series(query)
    return step, [(line.stat, line.tags, line.points) for line in lines]


async def test_series_are_listed_and_read_back_by_step_the_same_by_every_store(
    backend: Backend, tmp_path: Path
) -> None:
    """Stored buckets come back re-bucketed to the step, filtered by tags, None where a step has
    none; a bucket written twice (a partial one at shutdown) is merged; the engine's series are
    listed; a persistent store answers the same after reopening."""
    db = backend.db(tmp_path)
    t0 = float(int(time.time() // 300 * 300 - 3600))
    alpha = EngineRecord("alpha", t0, boot_id=BOOT)
    C, G, H = MetricKind.COUNTER, MetricKind.GAUGE, MetricKind.HISTOGRAM
    fine, coarse = Tier.FINE, Tier.COARSE
    points = [
        series_point("orders", C, fine, t0, [1, 1], venue="nse"),
        series_point("orders", C, fine, t0 + 10, [4], venue="nse"),
        series_point("orders", C, fine, t0 + 30, [6], venue="nse"),
        series_point("orders", C, coarse, t0, [1, 1, 4, 6], venue="nse"),
        series_point("orders", C, fine, t0, [1], venue="bse"),
        series_point("depth", G, fine, t0 + 10, [3, 1, 2]),
        series_point("latency", H, fine, t0, [0.1, 0.2, 0.3]),
    ]
    again = [  # the rest of partial buckets
        series_point("orders", C, fine, t0 + 30, [1], venue="nse"),
        series_point("latency", H, fine, t0, [0.4, 0.5]),
    ]
    nse = SeriesQuery("alpha", "orders", t0, t0 + 60, 20, (("venue", "nse"),))
    want_nse = (20.0, [("rate", {"venue": "nse"}, [(t0, 0.3), (t0 + 20, 0.35), (t0 + 40, None)])])
    async with opened(db) as first:
        hand_points(first.store, alpha, points)
        hand_points(first.store, alpha, again)
        await first.commits.wait(alpha)
        assert await read_lines(first.store, nse) == want_nse
        every = await read_lines(first.store, SeriesQuery("alpha", "orders", t0, t0 + 10, 10))
        assert every == (10.0, [("rate", {"venue": "bse"}, [(t0, 0.1)]),
                                ("rate", {"venue": "nse"}, [(t0, 0.2)])])  # fmt: skip
        by_coarse = await read_lines(first.store, SeriesQuery("alpha", "orders", t0, t0 + 300, 300))
        assert by_coarse == (300.0, [("rate", {"venue": "bse"}, [(t0, None)]),
                                     ("rate", {"venue": "nse"}, [(t0, 12 / 300)])])  # fmt: skip
        _, gauge = await read_lines(first.store, SeriesQuery("alpha", "depth", t0, t0 + 20, 10))
        assert gauge == [
            (stat, {}, [(t0, None), (t0 + 10, value)])
            for stat, value in (("value", 2.0), ("min", 1.0), ("max", 3.0), ("mean", 2.0))
        ]
        _, hist = await read_lines(first.store, SeriesQuery("alpha", "latency", t0, t0 + 10, 10))
        got = {stat: points[0][1] for stat, _, points in hist}
        assert got["count"] == 5 and got["sum"] == pytest.approx(1.5)
        assert got["p50"] == pytest.approx(0.3, rel=0.02)
        assert got["p99"] == pytest.approx(0.4, rel=0.02)  # rank floor(0.99 * 4)
        listed = [(s.name, s.tags, s.kind) for s in await first.store.series_names("alpha")]
        assert listed == [
            ("depth", {}, "gauge"),
            ("latency", {}, "histogram"),
            ("orders", {"venue": "bse"}, "counter"),
            ("orders", {"venue": "nse"}, "counter"),
        ]
        assert await first.store.series_names("beta") == []
    async with opened(db) as second:
        if backend.persistent:
            assert await read_lines(second.store, nse) == want_nse
        else:
            assert await second.store.series_names("alpha") == []


# -- #18 search: full-text search over what the store holds --------------------------------------


def search_reference(
    events: Sequence[EventRecord], logs: Sequence[LogRecord], request: SearchRequest
) -> set[tuple[str, int]]:
    """What a search selects, spelled out: filters and the query over message, logger, exc or
    the payload's JSON text."""
    found = set()
    if request.event_type is None:
        found |= {
            ("log", r.id)
            for r in logs
            if request.log_ok(r) and request.query.matches((r.message, r.logger, r.exc or ""))
        }
    if request.min_level is None:
        found |= {
            ("event", e.id)
            for e in events
            if request.event_ok(e) and request.query.matches((bytes(e.payload).decode(),))
        }
    return found


async def test_search_filters_and_pages_return_each_hit_once(
    backend: Backend, tmp_path: Path
) -> None:
    """search() answers words, phrases, prefixes, OR and exclusions with engine, level, type and
    time filters; paging by its cursor returns each hit exactly once, newest first per kind."""
    t0 = float(int(time.time()) - 600)
    words = ["order", "rejected", "filled", "timeout", "broker", "margin"]
    engines = {n: EngineRecord(n, t0, boot_id=BOOT) for n in ("alpha", "beta")}
    events, logs = [], []
    levels = ["DEBUG", "INFO", "WARNING", "ERROR"]
    for i in range(1, 91):
        engine = engines["alpha" if i % 4 else "beta"]
        text = f"{words[i % 6]} {words[(i * 5) % 6]} by {words[(i // 6) % 6]}"
        kind = ("order_event", "signal_event", "cycle")[i % 3]
        events.append(event(i, 2 * i, t0 + i, engine.name, kind, note=text))
        logs.append(log_line(i, 2 * i + 1, t0 + 90 - i, engine.name, levels[i % 4], text))
    requests = [
        SearchRequest(parse_query("rejected"), 7),
        SearchRequest(parse_query('"filled by"'), 4),
        SearchRequest(parse_query("ord* -timeout"), 5),
        SearchRequest(parse_query("broker OR margin"), 6, engine="beta"),
        SearchRequest(parse_query("order"), 3, min_level=level_number("WARNING")),
        SearchRequest(
            parse_query("note"), 8, event_type="signal_event", since=t0 + 20, until=t0 + 60
        ),
        SearchRequest(parse_query("rejected"), 5, since=t0 + 30, until=t0 + 50),
        SearchRequest(parse_query("nothinglikethis"), 5),
    ]
    async with opened(backend.db(tmp_path)) as opened_store:
        store = opened_store.store
        for i in range(0, 90, 10):  # frames of ten, so chunks hold several events
            engine = engines["alpha"]
            hand(
                store,
                engine,
                [e for e in events[i : i + 10] if e.engine == "alpha"],
                [r for r in logs[i : i + 10] if r.engine == "alpha"],
            )
            beta = engines["beta"]
            hand(
                store,
                beta,
                [e for e in events[i : i + 10] if e.engine == "beta"],
                [r for r in logs[i : i + 10] if r.engine == "beta"],
            )
        for engine in engines.values():
            await opened_store.commits.wait(engine)
        found: list[int] = []
        for request in requests:
            seen: list[tuple[str, int]] = []
            cursor: Cursor | None = Cursor()
            while cursor is not None:
                page = await store.search(replace(request, cursor=cursor))
                assert len(page.hits) <= request.limit
                assert page.hits or cursor == Cursor(), "a next page promised and empty"
                for kind in ("log", "event"):
                    ids = [h.id for h in page.hits if h.kind == kind]
                    assert ids == sorted(ids, reverse=True)
                seen += [(h.kind, h.id) for h in page.hits]
                cursor = page.next
            assert len(seen) == len(set(seen)), request
            assert set(seen) == search_reference(events, logs, request), request
            found.append(len(seen))
    assert all(found[:-1]) and found[-1] == 0, found  # every request but the last finds some
    assert max(found) > 3 * 7  # and some take several pages


# -- #18 chain: causal chains (hub/core/chains.py) ------------------------------------------------


def chained(
    store: HistoryStore, engine: EngineRecord, links: Sequence[tuple[EventRecord, Link | None]]
) -> None:
    """Hand `store` one frame of events, some with chain links, as the core does."""
    events = [e for e, _ in links]
    engine.hwm = max(engine.hwm, *(e.seq for e in events))
    ingested = Ingested(engine.name, engine.boot_id, engine.hwm)
    ingested.events = events
    ingested.links = [link for _, link in links if link is not None]
    store.append(ingested)


def chain_link(
    record: EventRecord, ref: int | None, parent: int | None = None, cycle: str | None = None
) -> Link:
    return Link(
        record.id, record.engine, record.boot_id, record.type, record.ts, ref, parent, cycle
    )


async def test_a_chain_reads_back_whole_from_any_member(backend: Backend, tmp_path: Path) -> None:
    """signal -> decision -> order -> fill from any member, in time order with their events; refs
    of another boot and unchained events stay out; unknown ids give nothing; reopened, the same."""
    db, now = backend.db(tmp_path), float(int(time.time()))
    alpha = EngineRecord("alpha", now, boot_id=BOOT)
    signal = event(1, 1, now - 5.0, kind="signal_event", symbol="X")
    noise = event(2, 2, now - 4.9, kind="cycle")
    decision = event(3, 3, now - 4.8, kind="decision_trace")
    order = event(4, 4, now - 4.7, kind="order_event", status="create")
    fill = event(5, 5, now - 4.58, kind="order_event", status="fill")
    mate = event(6, 6, now - 4.5, kind="position_event")  # joined by the cycle id alone
    members = [signal, decision, order, fill, mate]
    frame = [
        (signal, chain_link(signal, 1, cycle="c-1")),
        (noise, None),
        (decision, chain_link(decision, 2, 1)),
        (order, chain_link(order, 3, 2)),
        (fill, chain_link(fill, 4, 3)),
        (mate, chain_link(mate, None, None, "c-1")),
    ]
    other = EngineRecord("alpha", now, boot_id="boot-2")  # same refs, another boot
    stranger = event(7, 1, now - 4.0, kind="order_event", boot_id="boot-2")
    async with opened(db) as first:
        chained(first.store, alpha, frame)
        chained(first.store, other, [(stranger, chain_link(stranger, 4, 3))])
        await first.commits.wait(alpha)
        await first.commits.wait(other)
        for member in members:
            steps, cut = await first.store.chain(member.id, [], MAX_CHAIN)
            assert [s.event for s in steps] == members and not cut
        assert [s.link.ref for s in steps] == [1, 2, 3, 4, None]
        assert await first.store.chain(noise.id, [], MAX_CHAIN) == ([], False)
        assert await first.store.chain(999, [], MAX_CHAIN) == ([], False)
        steps, _ = await first.store.chain(stranger.id, [], MAX_CHAIN)
        assert [s.event for s in steps] == [stranger]
    if backend.persistent:
        async with opened(db) as second:
            steps, _ = await second.store.chain(fill.id, [], MAX_CHAIN)
            assert [s.event for s in steps] == members
            assert [k.event_id for k in second.restored.links] == [1, 3, 4, 5, 6, 7]


async def test_a_long_chain_is_cut_at_the_limit_and_seeds_join_in(
    backend: Backend, tmp_path: Path
) -> None:
    """A chain longer than `limit` comes back cut (and says so); links the caller holds (seeds)
    join the walk even when the store does not know the asked id yet."""
    now = float(int(time.time()))
    alpha = EngineRecord("alpha", now, boot_id=BOOT)
    records = [event(n, n, now - 10 + n / 10, kind="order_event") for n in range(1, 11)]
    frame = [(r, chain_link(r, n, n - 1 or None)) for n, r in enumerate(records, 1)]
    async with opened(backend.db(tmp_path)) as opened_store:
        chained(opened_store.store, alpha, frame)
        await opened_store.commits.wait(alpha)
        steps, cut = await opened_store.store.chain(5, [], 4)
        assert len(steps) == 4 and cut
        steps, cut = await opened_store.store.chain(5, [], 10)
        assert [s.link.event_id for s in steps] == list(range(1, 11)) and not cut
        late = event(11, 11, now, kind="order_event")  # not handed to the store
        steps, _ = await opened_store.store.chain(11, [chain_link(late, 11, 10)], 20)
        assert [s.link.event_id for s in steps] == list(range(1, 12))
        assert steps[-1].event is None  # the store does not hold it: the caller fills it in


async def test_a_schema_7_database_upgrades_in_place_to_chains(tmp_path: Path) -> None:
    """A schema 7 file (no links table) opens, gets the table, keeps its events and stores chains."""
    db = SQLITE.db(tmp_path)
    now = float(int(time.time()))
    alpha = EngineRecord("alpha", now, boot_id=BOOT)
    old = event(1, 1, now - 2, kind="signal_event", symbol="X")
    async with opened(db) as first:
        hand(first.store, alpha, [old])
        await first.commits.wait(alpha)
    with database(tmp_path / "hub.db", read_only=False) as conn:  # as schema 7 left it
        conn.executescript("DROP TABLE links; PRAGMA user_version = 7;")
    async with opened(db) as second:
        assert second.restored.events == [old]
        fill = event(2, 2, now - 1, kind="order_event", status="fill")
        chained(second.store, alpha, [(fill, chain_link(fill, 2, 1))])
        await second.commits.wait(alpha)
        steps, _ = await second.store.chain(2, [], MAX_CHAIN)
        assert [s.event for s in steps] == [fill]  # the old signal carried no link
    with database(tmp_path / "hub.db") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 8
        indexes = {
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE tbl_name = 'links'")
        }
        assert {"links_ref", "links_parent", "links_cycle"} <= indexes


# -- #18 timeline: markers of engines in a window ----------------------------------------------


async def test_the_timeline_merges_events_transitions_boots_gaps_and_alerts(
    backend: Backend, tmp_path: Path
) -> None:
    """`timeline` gives marker events (not cycles), health transitions, boots (a second one is a
    restart), gaps and engine alerts of a window, newest first; engines, limit and the time
    cursor narrow it; a persistent store gives the same after reopening."""
    db = backend.db(tmp_path)
    now = float(int(time.time()))
    alpha = EngineRecord("alpha", now, boot_id=BOOT)
    beta = EngineRecord("beta", now, boot_id=BOOT)
    changes = Ingested()
    changes.boots = [
        BootChange("alpha", "boot-0", 11, "paper", now - 7000, now - 6000, "bye"),
        BootChange("alpha", BOOT, 12, "paper", now - 60),
        BootChange("beta", BOOT, 13, "live", now - 55),
    ]
    changes.transitions = [Transition("alpha", now - 20, "stale", "ok")]
    changes.audit = [
        AuditRecord(now - 15, "hub", "alert.firing", "offline: <b>gone</b>", "alpha"),
        AuditRecord(now - 10, "hub", "alert.resolved", "offline: back", "alpha"),
        AuditRecord(now - 12, "hub", "silence.delete", "silence 1 ended", ""),  # hub-wide
        AuditRecord(now - 11, "alice", "sign_in", "", "alpha"),  # not an alert
    ]
    async with opened(db) as first:
        first.store.append(changes)
        hand(first.store, beta, [event(3, 1, now - 40, "beta", "order_event", status="fill")])
        hand(
            first.store,
            alpha,
            [
                event(1, 1, now - 7100, kind="signal_event"),  # before the window
                event(2, 2, now - 50, kind="signal_event", symbol="<script>x</script>"),
                event(4, 3, now - 49, kind="cycle"),  # not a marker
                event(5, 4, now - 30, kind="error", message="boom"),
            ],
            gaps=[Gap("alpha", BOOT, 5, 7)],
        )
        await first.commits.wait(alpha)
        await first.commits.wait(beta)
        window = TimelineQuery(now - 100, now + 60, 100)
        items = await first.store.timeline(window)
        only_beta = await first.store.timeline(TimelineQuery(now - 100, now + 60, 100, ("beta",)))
        top = await first.store.timeline(TimelineQuery(now - 100, now + 60, 3))
        older = await first.store.timeline(TimelineQuery(now - 100, now + 60, 100, before=now - 25))
        bundle = await first.store.export("alpha", now - 100, now + 60)
    # The incident export carries the health changes too (and the alerts, in its audit trail).
    assert bundle["transitions"] == [{"at": utc(now - 20), "health": "stale", "previous": "ok"}]
    assert [(i.kind, i.engine, i.label) for i in items] == [
        (TimelineKind.GAP, "alpha", "gap: client_dropped"),
        (TimelineKind.ALERT, "alpha", "alert.resolved"),
        (TimelineKind.ALERT, "alpha", "alert.firing"),
        (TimelineKind.HEALTH, "alpha", "ok → stale"),
        (TimelineKind.ERROR, "alpha", "error"),
        (TimelineKind.EVENT, "beta", "order fill"),
        (TimelineKind.EVENT, "alpha", "signal"),
        (TimelineKind.BOOT, "beta", "boot"),
        (TimelineKind.BOOT, "alpha", "restart"),
    ]
    signal = items[6]
    assert (signal.event_id, signal.event_type, signal.ts) == (2, "signal_event", now - 50)
    assert "<script>x</script>" in signal.detail  # kept as text; templates escape it
    assert items[0].detail == "seq 5–7 (3 messages)"
    assert [(i.label, i.event_id) for i in only_beta] == [("order fill", 3), ("boot", None)]
    assert top == items[:3]
    assert older == items[4:]
    if backend.persistent:
        async with opened(db) as second:
            assert await second.store.timeline(window) == items
