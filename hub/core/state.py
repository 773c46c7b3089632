"""Hub state, sans-I/O: engine registry, rings, log tails, metrics, dedupe, stats and dirty marks."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import assert_never

from msgspec import UNSET

from hub.core.buckets import EngineBudget, budget_for
from hub.core.chains import ChainIndex, link_of
from hub.core.decoding import Rejected
from hub.core.engines import EngineRecord, Health, derive_health
from hub.core.ingested import Gap, Ingested
from hub.core.lag import LoopLag
from hub.core.logs import LogTails, normalize_level
from hub.core.messages import Bye, EngineMessage, ErrorCode, Event, Heartbeat, Hello, Log, Metric
from hub.core.metrics import MetricRegistry, MetricRejected
from hub.core.records import BootChange, EventRecord, LogRecord, MetricsSnapshot, utc
from hub.core.rings import EventRings, Ring, TooManyTypes
from hub.core.series import Downsampler
from hub.core.stats import Dirty, DirtySet, Stats, Topic
from hub.settings import Settings

__all__ = [
    "CannotForget",
    "DirtySet",
    "Forgotten",
    "HealthChange",
    "HubState",
    "Stats",
    "TooManyEngines",
]

_MAX_STATE_KEYS = 256
_MAX_OLD_BOOTS = 1024
_KIND: dict[type, str] = {
    Hello: "hello",
    Heartbeat: "heartbeat",
    Event: "event",
    Metric: "metric",
    Log: "log",
    Bye: "bye",
}


class TooManyEngines(Exception):
    """Every engine slot is taken by a connected engine."""


class CannotForget(Exception):
    """An engine cannot be forgotten: the hub does not know it, or it is still connected."""


@dataclass(frozen=True, slots=True)
class Forgotten:
    """What forgetting an engine let go of (its history in the store stays)."""

    engine: str
    index: int
    events: int
    logs: int
    series: int


@dataclass(frozen=True, slots=True)
class HealthChange:
    """An engine's derived health changed at `at`."""

    engine: str
    health: Health
    previous: Health
    at: float


class HubState:
    """All live state of the hub. Synchronous; every method takes `now` (Unix seconds)."""

    def __init__(self, settings: Settings, first_event_id: int = 1, first_log_id: int = 1) -> None:
        self.settings = settings
        self.engines: dict[str, EngineRecord] = {}
        self.by_index: dict[int, EngineRecord] = {}  # hub-assigned index -> record (views look up)
        self.lag = LoopLag()  # the I/O shell feeds it; health discounts the loop's blind time
        # Per engine name, kept across reconnects: a socket cannot reset its engine's bucket.
        self.budgets: dict[str, EngineBudget] = {}
        self.rings = EventRings(settings)
        self.chains = ChainIndex()  # chained events (hub/core/chains.py), bounded
        self.logs = LogTails(settings.log_tail_lines)
        self.stats = Stats()
        self.metrics = MetricRegistry.from_settings(settings, self.stats.drops)  # byte caps too
        self.series = Downsampler(settings, self.stats.drops)  # metric history buckets
        self.series_written: set[str] = set()  # engines whose buckets the store was last handed
        self.dirty = DirtySet()
        self._event_ids = itertools.count(first_event_id)
        self._log_ids = itertools.count(first_log_id)
        self._engine_indexes = itertools.count(1)
        self._rate_mark = (0, 0.0)
        self.snapshot_due: set[str] = set()  # engines whose metrics or card the store should keep
        self._old_boots: dict[tuple[str, str], int] = {}
        # One Dirty mark per event type, made once: ingest marks one per run of a type, and a
        # lone event per frame is a run (bounded like the rings: only types that have one).
        self._ring_marks: dict[str, Dirty] = {}

    def hello(
        self, msg: Hello, conn_id: int, now: float, out: Ingested
    ) -> tuple[EngineRecord, int | None]:
        """Register a connection's hello; returns the record and the connection it replaces.

        The boots it starts (and the one it ends, if it replaces a live one) go to `out`.
        """
        self.stats.messages["hello"] += 1
        engine = self.engines.get(msg.engine) or self.add_engine(msg.engine, now)
        boot_id = msg.boot_id or f"conn-{conn_id}"
        if boot_id != engine.boot_id:
            if engine.boot_id:
                self._remember_boot(engine)
                if not engine.said_bye and engine.connected:
                    out.boots.append(self._boot(engine, now, "replaced"))
            engine.new_boot(boot_id, self._old_boots.pop((engine.name, boot_id), 0))
            engine.started_at = now
            self.metrics.new_session(engine.name)
        if msg.acked_seq is not None and msg.acked_seq > engine.hwm:
            engine.hwm = msg.acked_seq  # acked earlier means stored earlier, even if we forgot it
        engine.committed = max(engine.committed, min(engine.hwm, msg.acked_seq or 0))
        replaced = engine.conn_id if engine.connected and engine.conn_id != conn_id else None
        if replaced is not None:
            engine.replaced += 1
            self.stats.drops["replaced_connection"] += 1
        engine.mode = msg.mode.lower()
        engine.pid = msg.pid
        engine.meta = msg.meta
        if msg.started_at is not None:
            started = msg.started_at  # the decoder normalized it to Unix seconds
            engine.started_at = started if isinstance(started, float) else started.timestamp()
        if msg.heartbeat_interval is not None:
            engine.heartbeat_interval = msg.heartbeat_interval
        engine.connected, engine.conn_id, engine.connected_at = True, conn_id, now
        engine.said_bye = False
        out.boots.append(self._boot(engine, None, None))
        self.dirty.mark(Topic.ENGINE, engine.name)
        self.dirty.mark(Topic.ENGINES)
        return engine, replaced

    def add_engine(self, name: str, now: float) -> EngineRecord:
        """Register a new engine (making room by forgetting the oldest disconnected one)."""
        self._make_room()
        engine = self.engines[name] = EngineRecord(
            name,
            now,
            index=next(self._engine_indexes),
            rate_history=deque(maxlen=self.settings.history_points),
            heartbeat_interval=self.settings.heartbeat_interval,  # until the engine says its own
        )
        self.by_index[engine.index] = engine
        return engine

    def budget(self, name: str, now: float) -> EngineBudget:
        """The rate-limit buckets of engine `name` (full ones for an engine not seen before)."""
        budget = self.budgets.get(name)
        if budget is None:
            budget = self.budgets[name] = budget_for(self.settings, now)
        return budget

    def continue_ids(self, next_event_id: int, next_log_id: int) -> None:
        """Continue event and log ids after those a store already holds (ids stay unique)."""
        self._event_ids = itertools.count(next_event_id)
        self._log_ids = itertools.count(next_log_id)

    def _make_room(self) -> None:
        if len(self.engines) < self.settings.max_engines:
            return
        gone = [e for e in self.engines.values() if not e.connected]
        if not gone:
            raise TooManyEngines(
                f"the hub already tracks {self.settings.max_engines} connected engines; "
                "raise max_engines or stop some"
            )
        oldest = min(gone, key=lambda e: e.disconnected_at or e.first_seen)
        self.forget(oldest.name)  # its rings, tail and metric series go too (history stays)

    def forget(self, name: str) -> Forgotten:
        """Drop a retired engine from the live state: registry, rings, log tail and metric series.

        Its stored history stays; if it connects again it is registered as a new engine. Raises
        CannotForget while it is connected (stop it first) or when the hub does not know it.
        """
        engine = self.engines.get(name)
        if engine is None:
            raise CannotForget(f"no engine named {name!r} is known to this hub")
        if engine.connected:
            raise CannotForget(
                f"engine {name!r} is connected; stop it (or wait until it is offline) first"
            )
        del self.engines[name]
        del self.by_index[engine.index]
        self.budgets.pop(name, None)
        self.snapshot_due.discard(name)
        held = self.rings.forget(name)
        for kind in held:  # the overview's tables showed its events
            self.dirty.mark(Topic.EVENTS, kind)
        tail = self.logs.tails.pop(name, None)
        series = self.metrics.forget(name)
        self.series.forget(name)
        self.stats.drops["engine_forgotten"] += 1
        for topic in (Topic.ENGINES, Topic.HUB):
            self.dirty.mark(topic)
        self.dirty.mark(Topic.LOGS, name)
        self.dirty.mark(Topic.METRICS, name)
        return Forgotten(name, engine.index, sum(held.values()), len(tail) if tail else 0, series)

    def _remember_boot(self, engine: EngineRecord) -> None:
        if len(self._old_boots) >= _MAX_OLD_BOOTS:
            del self._old_boots[next(iter(self._old_boots))]
        self._old_boots[(engine.name, engine.boot_id)] = engine.hwm

    def disconnected(self, engine: EngineRecord, conn_id: int, now: float, out: Ingested) -> None:
        """The socket `conn_id` of `engine` closed (without bye, the engine turns offline)."""
        if engine.conn_id == conn_id and engine.connected:
            engine.connected = False
            engine.disconnected_at = now
            self.dirty.mark(Topic.ENGINE, engine.name)
            if not engine.said_bye:
                out.boots.append(self._boot(engine, now, "disconnected"))

    def _boot(self, engine: EngineRecord, ended: float | None, how: str | None) -> BootChange:
        return BootChange(
            engine.name,
            engine.boot_id,
            engine.pid,
            engine.mode,
            engine.started_at,
            ended,
            how,
            engine.meta,
        )

    def ingest(
        self,
        engine: EngineRecord,
        items: list[EngineMessage | Rejected],
        now: float,
        first_index: int | None = None,
        out: Ingested | None = None,
    ) -> Ingested:
        """Apply decoded messages of one frame, in order, deduplicating by seq; returns `out`.

        `first_index` is the batch position of `items[0]` (None for a lone message); rejections
        made here carry their position so the engine can match them. What the frame changed
        goes to `out` (a fresh `Ingested` for `engine` when None), up to the seq to commit.
        """
        if out is None:
            out = Ingested(engine.name, engine.boot_id)
        stats, name, boot_id = self.stats, engine.name, engine.boot_id
        marks, ring_marks, rings, event_ids, events = (
            self.dirty.keys,
            self._ring_marks,
            self.rings.rings,
            self._event_ids,
            out.events,
        )
        # Runs of one type go to their ring through a bound `append`, and the ring's total is
        # added once per run; the engine's hwm is a local, written back before any slow path.
        last_type: str | None = None
        ring: Ring | None = None  # the ring of `last_type`
        ring_append: Callable[[EventRecord], None] = events.append  # rebound at a run's start
        run_start = 0  # index in `events` where the current run's ring appends began
        hwm = engine.hwm
        for position, item in enumerate(items):
            if type(item) is Event:  # the hot path: no call or attribute write that is not needed
                number = item.seq
                if number != hwm + 1:
                    if number <= hwm:
                        stats.drops["duplicate"] += 1
                        continue
                    engine.hwm = hwm
                    self._gap(engine, number, out)
                hwm = number
                kind, ts = item.type, item.ts
                record = EventRecord(
                    next(event_ids),
                    kind,
                    now if ts is None else ts,  # type: ignore[arg-type]  # normalized by the decoder
                    name,
                    number,
                    boot_id,
                    item.payload,
                    now,  # the frame's receive time, beside the engine's
                )
                if kind != last_type:
                    out.runs += 1
                    if ring is not None:
                        ring.added(name, len(events) - run_start)
                    ring = rings.get(kind)
                    if ring is None:
                        engine.hwm = hwm
                        if not self._first_of_type(engine, record, position, first_index, out):
                            last_type = None
                            continue
                        ring = rings[kind]  # it holds `record` already
                        run_start = len(events) + 1
                        ring_append = (ring.lanes.get(name) or ring.lane(name)).append
                    else:
                        ring_append = (ring.lanes.get(name) or ring.lane(name)).append
                        ring_append(record)
                        run_start = len(events)
                    last_type = kind
                    marks.add(ring_marks.get(kind) or self._ring_mark(kind))
                else:
                    ring_append(record)
                if kind == "error":
                    self._error_event(engine, record, now)
                if item.chain is not UNSET:  # one check per event; chained ones are rare
                    self._chained(record, item, out)
                events.append(record)
                continue
            if ring is not None:  # end the run: the slow path below may start another
                ring.added(name, len(events) - run_start)
                ring, last_type = None, None
            engine.hwm = hwm
            self._apply(
                engine, item, now, None if first_index is None else first_index + position, out
            )
            hwm = engine.hwm
        if ring is not None:
            ring.added(name, len(events) - run_start)
        engine.hwm = out.seq = hwm
        engine.events += len(events)
        stats.messages["event"] += len(events)
        return out

    def _apply(
        self,
        engine: EngineRecord,
        item: EngineMessage | Rejected,
        now: float,
        index: int | None,
        out: Ingested,
    ) -> None:
        """One message that is not an event (or a rejection): the slow path of `ingest`."""
        stats, dirty, name = self.stats, self.dirty, engine.name
        seq = None if isinstance(item, Hello) else item.seq
        if seq is not None:
            if seq <= engine.hwm:
                stats.drops["duplicate"] += 1
                return
            if seq != engine.hwm + 1:
                self._gap(engine, seq, out)
            engine.hwm = seq
        if isinstance(item, Rejected):
            self._reject(engine, item, out)
            return
        stats.messages[_KIND[type(item)]] += 1
        match item:
            case Event():  # pragma: no cover - taken by the hot path above
                raise AssertionError("events take the hot path")
            case Heartbeat():
                self._heartbeat(engine, item, now)
            case Metric():
                try:
                    series = self.metrics.apply(name, item, now)
                except MetricRejected as exc:
                    self._reject(engine, Rejected(exc.code, exc.detail, seq, index), out)
                    return
                self.series.add(name, series, item.value, now)
                dirty.mark(Topic.METRICS, name)
                self.snapshot_due.add(name)
            case Log():
                ts = item.ts if item.ts is not None else now
                log = LogRecord(
                    next(self._log_ids),
                    name,
                    item.seq,
                    utc(ts),  # type: ignore[arg-type]
                    normalize_level(item.level),
                    item.logger,
                    item.message,
                    item.exc,
                    item.extra,
                    now,
                )
                self.logs.append(log)
                engine.logs += 1
                dirty.mark(Topic.LOGS, name)
                out.logs.append(log)
            case Bye():
                engine.note_bye(item.status, now)
                engine.said_bye = True
                dirty.mark(Topic.ENGINE, name)
                out.boots.append(self._boot(engine, now, f"bye:{item.status}"))
                self.snapshot_due.add(name)
            case Hello():
                self._reject(
                    engine,
                    Rejected(ErrorCode.ALREADY_HELLO, "hello is only valid as the first message"),
                    out,
                )
            case _:
                assert_never(item)

    def _chained(self, record: EventRecord, item: Event, out: Ingested) -> None:
        """Index an event that carries a chain link, and hand the link to the store."""
        assert item.chain is not UNSET
        link = link_of(record, item.chain)
        self.chains.add(link, record)
        out.links.append(link)

    def _ring_mark(self, event_type: str) -> Dirty:
        mark = self._ring_marks[event_type] = Dirty(Topic.EVENTS, event_type)
        return mark

    def _gap(self, engine: EngineRecord, seq: int, out: Ingested) -> None:
        """Messages between the engine's last seq and `seq` never arrived: record the gap."""
        missing = seq - engine.hwm - 1
        engine.gaps += missing
        self.stats.drops["gap"] += missing
        out.gaps.append(Gap(engine.name, engine.boot_id, engine.hwm + 1, seq - 1))

    def _first_of_type(
        self,
        engine: EngineRecord,
        record: EventRecord,
        position: int,
        first_index: int | None,
        out: Ingested,
    ) -> bool:
        """Keep the first event of a type without a ring yet; False if the type limit refuses it."""
        try:
            self.rings.append(record)
        except TooManyTypes as exc:
            index = None if first_index is None else first_index + position
            self._reject(
                engine, Rejected(ErrorCode.TOO_MANY_TYPES, str(exc), record.seq, index), out
            )
            return False
        return True

    def _error_event(self, engine: EngineRecord, record: EventRecord, now: float) -> None:
        """An `error` event counts on the engine and becomes its last error."""
        engine.errors += 1
        payload = record.data()
        message = payload.get("message") or payload.get("error_type")
        engine.last_error = str(message)[:4096] if message else engine.last_error
        engine.note_error(engine.last_error or "error", now)
        self.dirty.mark(Topic.ENGINE, engine.name)
        self.snapshot_due.add(engine.name)

    def _reject(self, engine: EngineRecord, item: Rejected, out: Ingested) -> None:
        self.stats.rejected[item.code] += 1
        engine.rejected += 1
        out.rejected.append(item)

    def _heartbeat(self, engine: EngineRecord, hb: Heartbeat, now: float) -> None:
        self.snapshot_due.add(engine.name)
        previous = engine.last_heartbeat
        engine.last_heartbeat = now
        engine.heartbeat_ts = hb.ts  # type: ignore[assignment]  # seconds (decoder); skew
        if hb.last_error is not UNSET and hb.last_error and hb.last_error != engine.last_error:
            engine.note_error(hb.last_error, now, count=False)  # its `error` event counts it
        if hb.status is not UNSET:
            engine.note_status(hb.status, now)
        if hb.loop_tick is not UNSET:
            tick: int = hb.loop_tick
            if engine.loop_tick is not None and previous is not None and now > previous:
                engine.loop_rate = max(tick - engine.loop_tick, 0) / (now - previous)
                engine.rate_history.append(engine.loop_rate)
            if tick != engine.loop_tick:
                engine.tick_changed_at = now
            engine.loop_tick = tick
        if hb.universe_size is not UNSET:
            engine.universe_size = hb.universe_size
        if hb.open_positions is not UNSET:
            engine.open_positions = hb.open_positions
        if hb.last_error is not UNSET:
            engine.last_error = hb.last_error
        if hb.interval is not UNSET:
            engine.heartbeat_interval = hb.interval
        if hb.dropped is not UNSET:
            engine.client_dropped = dict(hb.dropped)
        if hb.state is not UNSET:
            merged = {**engine.state, **hb.state}
            engine.state = {k: v for k, v in merged.items() if v is not None}
            if len(engine.state) > _MAX_STATE_KEYS:
                engine.state = dict(list(engine.state.items())[:_MAX_STATE_KEYS])
                self.stats.drops["state_keys"] += 1
        self.dirty.mark(Topic.ENGINE, engine.name)

    def measure_rate(self, now: float) -> None:
        """Update events per second since the last call; marks the hub status dirty."""
        total = sum(ring.total for ring in self.rings.rings.values())
        last_total, last_at = self._rate_mark
        if last_at and now > last_at:
            self.stats.events_per_second = (total - last_total) / (now - last_at)
        self._rate_mark = (total, now)
        self.dirty.mark(Topic.HUB)

    def refresh(self, now: float) -> list[HealthChange]:
        """Re-derive every engine's health at `now`; returns the transitions and marks them dirty."""
        changes: list[HealthChange] = []
        for engine in self.engines.values():
            health = derive_health(engine, now, self.settings, self.lag)
            if health is not engine.health:
                changes.append(HealthChange(engine.name, health, engine.health, now))
                engine.health, engine.health_since = health, now
                self.dirty.mark(Topic.ENGINE, engine.name)
        return changes

    def snapshots(self, now: float | None = None, final: bool = False) -> Ingested | None:
        """The metric series and card facts of every engine that changed since the last call,
        and the series buckets over by `now` (all open ones if `final`: the hub stops)."""
        changed, self.snapshot_due = self.snapshot_due, set()
        out = Ingested()
        # Charts re-read the store when told: the buckets handed over last time are committed
        # by now (the writer commits every `commit_interval`, well under the one-second tick).
        for engine_name in self.series_written:
            self.dirty.mark(Topic.SERIES, engine_name)
        self.series_written = set()
        if now is not None:
            out.points = self.series.drain(now, final)
            self.series_written = {point.engine for point in out.points}
        for name in sorted(changed):
            engine = self.engines.get(name)
            if engine is not None:
                rows = self.metrics.to_rows(name)
                out.snapshots.append(
                    MetricsSnapshot(name, engine.boot_id, rows, engine.card_facts())
                )
        return out if out.snapshots or out.points else None
