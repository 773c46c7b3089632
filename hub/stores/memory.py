"""In-memory history store: bounded, commits at once; `--db :memory:`, and the test double."""

from __future__ import annotations

from collections import deque
from typing import Any, Literal

from hub.core.ingested import Ingested
from hub.core.logs import level_number
from hub.core.records import EventRecord, LogRecord, MetricsSnapshot
from hub.stores.base import CommitCallback, HistoryQuery, Restored, make_bundle

__all__ = ["MemoryStore"]


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


class MemoryStore:
    """Keeps the last `capacity` events and log lines; everything appended is committed at once."""

    problem: str | None = None
    switch_interval: float | None = None  # no writer thread: the interpreter's default is fine

    def __init__(self, capacity: int = 100_000) -> None:
        self._events: deque[EventRecord] = deque(maxlen=capacity)
        self._logs: deque[LogRecord] = deque(maxlen=capacity)
        self._boots: dict[tuple[str, str], dict[str, Any]] = {}
        self._gaps: list[dict[str, Any]] = []
        self._metrics: dict[str, MetricsSnapshot] = {}
        self._on_commit: CommitCallback = _ignore

    async def start(self, on_commit: CommitCallback) -> Restored:
        """Nothing to open or restore; remember who to tell about commits."""
        self._on_commit = on_commit
        return Restored()

    def append(self, ingested: Ingested) -> None:
        """Keep what the core changed and report the engine's seq as committed."""
        self._events.extend(ingested.events)
        self._logs.extend(ingested.logs)
        for gap in ingested.gaps[:100]:
            if len(self._gaps) < 10_000:
                self._gaps.append(
                    {
                        "boot_id": gap.boot_id,
                        "first_seq": gap.first,
                        "last_seq": gap.last,
                        "reason": "client_dropped",
                        "engine": gap.engine,
                    }
                )
        for snapshot in ingested.snapshots:  # the latest per engine
            self._metrics[snapshot.engine] = snapshot
        for change in ingested.boots:  # bounded
            if (change.engine, change.boot_id) in self._boots or len(self._boots) < 10_000:
                keys = ("boot_id", "pid", "mode", "started", "ended", "how")
                self._boots[(change.engine, change.boot_id)] = {k: getattr(change, k) for k in keys}
        if ingested.engine:
            self._on_commit(ingested.engine, ingested.boot_id, ingested.seq)

    async def history(self, kind: Literal["events", "logs"], query: HistoryQuery) -> list[Any]:
        """Newest first, filtered."""
        records: deque[Any] = self._events if kind == "events" else self._logs
        out: list[Any] = []
        for record in reversed(records):
            if _matches(record, query):
                out.append(record)
                if len(out) >= query.limit:
                    break
        return out

    async def export(self, engine: str, since: float, until: float) -> dict[str, Any]:
        """The incident bundle from what memory still holds."""
        window = HistoryQuery(100_000, engine=engine, since=since, until=until)
        events = list(reversed(await self.history("events", window)))
        logs = list(reversed(await self.history("logs", window)))
        boots = [row for (name, _), row in self._boots.items() if name == engine]
        gaps = [g for g in self._gaps if g["engine"] == engine]
        snapshot = self._metrics.get(engine)
        metrics = {"series": snapshot.series, "card": snapshot.card} if snapshot else None
        return make_bundle(engine, since, until, boots, events, logs, gaps, metrics, False)

    async def close(self) -> None:
        """Nothing to flush."""
