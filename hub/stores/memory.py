"""In-memory history store: bounded, commits at once; `--db memory://`, and the test double."""

from __future__ import annotations

import heapq
import math
import time
from collections import deque
from collections.abc import Sequence
from operator import attrgetter
from typing import Any

from hub.core.chains import ChainIndex, Link, Step, walk
from hub.core.hits import (
    SearchHit,
    SearchPage,
    SearchRequest,
    event_hit,
    log_hit,
    merge,
    payload_text,
)
from hub.core.ingested import Ingested
from hub.core.logs import level_number
from hub.core.metrics import MetricKind, TagKey
from hub.core.records import (
    AuditRecord,
    EventRecord,
    LogRecord,
    MetricsSnapshot,
    Transition,
    utc,
)
from hub.core.series import Bucket, Point, Tier
from hub.core.silences import Silence
from hub.settings import Settings
from hub.stores.base import (
    CommitCallback,
    HistoryKind,
    HistoryQuery,
    Restored,
    SeriesInfo,
    SeriesLine,
    SeriesQuery,
    TimelineItem,
    TimelineQuery,
    UnknownEngine,
    make_bundle,
)
from hub.stores.lines import MAX_SERIES_LINES, export_entry, lines, matches, plan
from hub.stores.timelines import (
    MARKER_TYPES,
    alert_item,
    boot_items,
    bounds,
    event_item,
    gap_item,
    is_alert,
    newest,
    transition_item,
)

__all__ = ["MemoryStore"]

_id = attrgetter("id")
MAX_BOOTS = 10_000  # the newest are kept
MAX_GAPS = 10_000
MAX_AUDIT = 10_000  # the newest are kept
MAX_SERIES = 10_000  # metric series kept (points of further ones are counted, not kept)
MAX_TRANSITIONS = 10_000  # the newest are kept


def _audit_matches(record: AuditRecord, query: HistoryQuery, hub_wide: bool = False) -> bool:
    """An audit entry in `query`'s window, about its engine (or about the hub, if `hub_wide`)."""
    engine = query.engine
    return (
        (engine is None or record.engine == engine or (hub_wide and not record.engine))
        and (query.since is None or record.ts >= query.since)
        and (query.until is None or record.ts < query.until)
    )


def _ignore(engine: str, boot_id: str, seq: int) -> None:
    """Commit callback of a store that has not started."""


def _matches(record: EventRecord | LogRecord, query: HistoryQuery) -> bool:
    ts = record.ts if isinstance(record, EventRecord) else record.timestamp.timestamp()
    return (
        (query.engine is None or record.engine == query.engine)
        and (
            query.event_type is None
            or getattr(record, "type", query.event_type) == query.event_type
        )
        and (query.since is None or ts >= query.since)
        and (query.until is None or ts < query.until)
        and (query.before is None or record.id < query.before)
        and (
            query.min_level is None
            or level_number(getattr(record, "level", "CRITICAL")) >= query.min_level
        )
    )


def _transition(t: Transition) -> dict[str, Any]:
    """A health change as the incident bundle shows it."""
    return {"at": utc(t.at), "health": t.health, "previous": t.previous}


def _overlaps(boot: dict[str, Any], since: float, until: float) -> bool:
    """Whether a boot ran during [since, until), as the SQLite store's export decides it."""
    started = boot["started"] if boot["started"] is not None else 0.0
    ended = boot["ended"] if boot["ended"] is not None else 9e18
    return bool(started < until and ended >= since)


def _by_start(boot: dict[str, Any]) -> tuple[bool, float, str]:
    """Boots ordered by start (unknown first, as SQLite sorts NULL), then boot_id."""
    return boot["started"] is not None, boot["started"] or 0.0, boot["boot_id"]


class MemoryStore:
    """Keeps the last `capacity` events and log lines; everything appended is committed at once."""

    problem: str | None = None
    pending_since: float | None = None  # everything appended is committed at once
    switch_interval: float | None = None  # no writer thread: the interpreter's default is fine

    def __init__(
        self, capacity: int = 100_000, export_limit: int = 100_000, settings: Settings | None = None
    ) -> None:
        self._settings = settings or Settings()
        keep = self._settings
        # Each tier keeps as many buckets as its keep time holds, at most.
        self._depth = {
            Tier.FINE: math.ceil(keep.series_fine_days * 86_400 / keep.series_fine_step),
            Tier.COARSE: math.ceil(keep.retention_days * 86_400 / keep.series_coarse_step),
        }
        self._series: dict[tuple[str, str, TagKey], tuple[MetricKind, dict[Tier, deque[Bucket]]]]
        self._series = {}
        self.dropped_points = 0
        self._events: deque[EventRecord] = deque(maxlen=capacity)
        self._logs: deque[LogRecord] = deque(maxlen=capacity)
        self._boots: dict[tuple[str, str], dict[str, Any]] = {}
        self._gaps: list[tuple[str, dict[str, Any]]] = []  # (engine, gap as exported)
        self._metrics: dict[str, tuple[MetricsSnapshot, float]] = {}  # and when it was noted
        self._audit: deque[AuditRecord] = deque(maxlen=MAX_AUDIT)
        self._silences: dict[int, Silence] = {}
        self._chains = ChainIndex(capacity)
        self._transitions: deque[Transition] = deque(maxlen=MAX_TRANSITIONS)
        self._export_limit = export_limit
        self._on_commit: CommitCallback = _ignore

    async def start(self, on_commit: CommitCallback) -> Restored:
        """Nothing to open or restore; remember who to tell about commits."""
        self._on_commit = on_commit
        return Restored(silences=list(self._silences.values()))

    def append(self, ingested: Ingested) -> None:
        """Keep what the core changed and report the engine's seq as committed."""
        self._events.extend(ingested.events)
        if ingested.links:
            by_id = {e.id: e for e in ingested.events}
            for link in ingested.links:
                self._chains.add(link, by_id.get(link.event_id))
        if ingested.logs:
            self._logs.extend(ingested.logs)
        if (
            ingested.gaps
            or ingested.boots
            or ingested.snapshots
            or ingested.audit
            or ingested.silences
            or ingested.transitions
        ):
            self._keep_rare(ingested)
        for point in ingested.points:
            self._keep_point(point)
        engine = ingested.engine
        if engine:
            boot_id, seq = ingested.boot_id, ingested.seq
            row = self._boots.get((engine, boot_id)) or self._boot(engine, boot_id)
            if seq > row["last_seq"]:
                row["last_seq"] = seq
            self._on_commit(engine, boot_id, seq)

    def _keep_rare(self, ingested: Ingested) -> None:
        """Gaps, boot changes (before the commit: a hello's row first) and snapshots."""
        for gap in ingested.gaps[:100]:
            if len(self._gaps) < MAX_GAPS:
                row = {"boot_id": gap.boot_id, "first_seq": gap.first, "last_seq": gap.last}
                row |= {"reason": gap.reason, "at": time.time()}
                self._gaps.append((gap.engine, row))
        for change in ingested.boots:
            boot = self._boot(change.engine, change.boot_id)
            boot.update(pid=change.pid, mode=change.mode, ended=change.ended, how=change.how)
            if change.started is not None:
                boot["started"] = change.started
        for snapshot in ingested.snapshots:  # the latest per engine
            self._metrics[snapshot.engine] = (snapshot, time.time())
        self._audit.extend(ingested.audit)
        for silence in ingested.silences[:MAX_AUDIT]:
            self._silences[silence.id] = silence
        self._transitions.extend(ingested.transitions)

    def _keep_point(self, point: Point) -> None:
        """A series bucket: appended, or merged into a bucket of the same start (a restart's)."""
        key = (point.engine, point.name, point.tags)
        kept = self._series.get(key)
        if kept is None:
            if len(self._series) >= MAX_SERIES:
                self.dropped_points += 1
                return
            tiers = {tier: deque[Bucket](maxlen=depth) for tier, depth in self._depth.items()}
            kept = self._series[key] = (point.kind, tiers)
        buckets = kept[1][point.tier]
        if buckets and buckets[-1].start == point.bucket.start:
            buckets[-1].merge(point.bucket)
        elif not buckets or buckets[-1].start < point.bucket.start:
            buckets.append(point.bucket)  # a store lives in one process: never out of order

    async def series(self, query: SeriesQuery) -> tuple[float, list[SeriesLine]]:
        """The query's lines from the buckets memory holds (see HistoryStore.series)."""
        tier, step = plan(query, time.time(), self._settings)
        first = query.since - query.since % step
        found = sorted(
            (tags, kind, tiers[tier])
            for (engine, name, tags), (kind, tiers) in self._series.items()
            if engine == query.engine and name == query.name and matches(tags, query.tags)
        )
        out: list[SeriesLine] = []
        for tags, kind, buckets in found[:MAX_SERIES_LINES]:
            inside = [b for b in buckets if first <= b.start < query.until]
            out += lines(query.name, tags, kind, inside, query, step)
        return step, out

    async def series_names(self, engine: str) -> list[SeriesInfo]:
        """Every series of `engine` memory holds, by name then tags."""
        return [
            SeriesInfo(name, dict(tags), kind.value)
            for (name, tags), kind in sorted(
                ((n, t), k) for (e, n, t), (k, _) in self._series.items() if e == engine
            )
        ]

    def _export_series(self, engine: str, since: float, until: float) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        room = self._export_limit
        for (name_engine, name, tags), (kind, tiers) in sorted(self._series.items()):
            if name_engine != engine:
                continue
            for tier, buckets in tiers.items():
                inside = [b for b in buckets if since <= b.start < until][:room]
                room -= len(inside)
                if inside:
                    out.append(export_entry(name, tags, kind, tier, inside))
        return out

    def _boot(self, engine: str, boot_id: str) -> dict[str, Any]:
        """The boot's row as the export shows it, made (and the oldest dropped) when new."""
        row = self._boots.get((engine, boot_id))
        if row is None:
            if len(self._boots) >= MAX_BOOTS:
                del self._boots[next(iter(self._boots))]
            row = dict.fromkeys(("boot_id", "pid", "mode", "started", "ended", "how"))
            row |= {"boot_id": boot_id, "last_seq": 0}
            self._boots[(engine, boot_id)] = row
        return row

    async def history(self, kind: HistoryKind, query: HistoryQuery) -> list[Any]:
        """Newest first, filtered."""
        if kind == "audit":
            found = (a for a in reversed(self._audit) if _audit_matches(a, query))
            return [a for _, a in zip(range(query.limit), found, strict=False)]
        records: deque[Any] = self._events if kind == "events" else self._logs
        out: list[Any] = []
        for record in reversed(records):
            if _matches(record, query):
                out.append(record)
                if len(out) >= query.limit:
                    break
        return out

    async def search(self, request: SearchRequest) -> SearchPage:
        """Full-text search over what memory holds, by the same rules as the SQLite store."""
        query, limit = request.query, request.limit + 1  # one more: is there a next page
        logs: list[SearchHit] = []
        events: list[SearchHit] = []
        if request.wants_logs:
            matched = (
                r
                for r in self._logs
                if request.log_ok(r) and query.matches((r.message, r.logger, r.exc or ""))
            )
            logs = [log_hit(r) for r in heapq.nlargest(limit, matched, key=_id)]
        if request.wants_events:
            found = (
                e
                for e in self._events
                if query.matches_text(payload_text(e)) and request.event_ok(e)
            )
            events = [event_hit(e) for e in heapq.nlargest(limit, found, key=_id)]
        return merge(request, logs, events)

    async def chain(
        self, event_id: int, seeds: Sequence[Link], limit: int
    ) -> tuple[list[Step], bool]:
        """The chain of `event_id` from the links memory still holds, as the SQLite store's."""
        start = self._chains.step(event_id)
        if start is None and not seeds:
            return [], False
        links, cut = walk(self._chains, [*([start.link] if start else []), *seeds], limit)
        steps = [self._chains.step(k.event_id) or Step(k, None) for k in links]
        return steps, cut

    async def timeline(self, query: TimelineQuery) -> list[TimelineItem]:
        """Markers of what memory still holds, as the SQLite store finds them."""
        since, until = bounds(query)
        names = set(query.engines)

        def wanted(engine: str, ts: float) -> bool:
            return (not names or engine in names) and since <= ts < until

        items = [
            event_item(e) for e in self._events if e.type in MARKER_TYPES and wanted(e.engine, e.ts)
        ]
        items += (transition_item(t) for t in self._transitions if wanted(t.engine, t.at))
        firsts: dict[str, float] = {}
        for (engine, _), row in self._boots.items():
            if row["started"] is not None:
                firsts[engine] = min(firsts.get(engine, row["started"]), row["started"])
        for (engine, _), row in self._boots.items():
            if not names or engine in names:
                items += boot_items(engine, row, firsts.get(engine), since, until)
        items += (
            gap_item(engine, g["first_seq"], g["last_seq"], g["reason"], g["at"])
            for engine, g in self._gaps
            if wanted(engine, g["at"])
        )
        items += (alert_item(a) for a in self._audit if is_alert(a) and wanted(a.engine, a.ts))
        return newest(items, query.limit)

    async def export(self, engine: str, since: float, until: float) -> dict[str, Any]:
        """The incident bundle from what memory still holds, shaped as the SQLite store's."""
        known = {name for name, _ in self._boots} | self._metrics.keys()
        known |= {name for name, _, _ in self._series}
        if engine not in known:
            raise UnknownEngine(engine, known)
        limit = self._export_limit
        window = HistoryQuery(limit, engine=engine, since=since, until=until)
        events = list(reversed(await self.history("events", window)))
        logs = list(reversed(await self.history("logs", window)))
        boots = sorted(
            (
                dict(row)
                for (name, _), row in self._boots.items()
                if name == engine and _overlaps(row, since, until)
            ),
            key=_by_start,
        )
        gaps = [dict(g) for name, g in self._gaps if name == engine and since <= g["at"] < until]
        snapshot, noted = self._metrics.get(engine, (None, 0.0))
        metrics = None if snapshot is None else {"series": snapshot.series, "updated": utc(noted)}
        truncated = len(events) >= limit
        audit = [a for a in self._audit if _audit_matches(a, window, hub_wide=True)]
        series = self._export_series(engine, since, until)
        transitions = [
            _transition(t)
            for t in self._transitions
            if t.engine == engine and since <= t.at < until
        ]
        return make_bundle(
            engine,
            since,
            until,
            boots,
            events,
            logs,
            gaps,
            metrics,
            truncated,
            audit[-limit:],
            series,
            transitions[-limit:],
        )

    async def close(self) -> None:
        """Nothing to flush."""
