"""The history store interface: where accepted records go to be kept, and what comes back."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from hub.core.chains import Link, Step
from hub.core.hits import SearchPage, SearchRequest
from hub.core.ingested import Ingested
from hub.core.records import AuditRecord, EventRecord, LogRecord, utc
from hub.core.silences import Silence

__all__ = [
    "CommitCallback",
    "HistoryKind",
    "HistoryQuery",
    "HistoryStore",
    "Restored",
    "SeriesInfo",
    "SeriesLine",
    "SeriesQuery",
    "StoreError",
    "TimelineItem",
    "TimelineKind",
    "TimelineQuery",
    "UnknownEngine",
    "make_bundle",
]

CommitCallback = Callable[[str, str, int], None]
"""Called on the event loop with (engine, boot_id, seq) once everything up to seq is durable."""


class StoreError(Exception):
    """The store cannot open (corrupt or foreign file, unwritable directory); the message says why."""


class UnknownEngine(LookupError):
    """The store never saw an engine of that name: exporting it is an error, not an empty bundle."""

    def __init__(self, engine: str, known: Iterable[str]) -> None:
        names = sorted(known)
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        held = f"the engines it holds: {shown}" if names else "it holds no engine yet"
        super().__init__(
            f"no engine named {engine!r} in the history ({held}); names are case-sensitive"
        )
        self.engine = engine
        self.known = names


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """Filters for history reads; times are Unix seconds, `before` an id cursor (exclusive)."""

    limit: int
    engine: str | None = None
    event_type: str | None = None
    since: float | None = None
    until: float | None = None
    before: int | None = None
    min_level: int | None = None


class TimelineKind(enum.StrEnum):
    """What a timeline marker stands for."""

    EVENT = "event"  # a signal, decision, order or fill
    ERROR = "error"  # an `error` event
    HEALTH = "health"  # a hub-derived health transition
    BOOT = "boot"  # a boot started (a restart when the engine ran before)
    STOP = "stop"  # a boot ended (bye, dropped socket, replaced)
    GAP = "gap"  # messages the client dropped or the store could not keep
    ALERT = "alert"  # an alert fired, resolved, was acknowledged, silenced or delivered


@dataclass(frozen=True, slots=True)
class TimelineQuery:
    """Markers of `engines` (empty: all) in [since, until), newest first, at most `limit`;
    `before` is a time cursor (exclusive) for the next page."""

    since: float
    until: float
    limit: int
    engines: tuple[str, ...] = ()
    before: float | None = None


@dataclass(frozen=True, slots=True)
class TimelineItem:
    """One marker on the timeline; `label` and `detail` may hold engine text (escape them)."""

    ts: float
    engine: str
    kind: TimelineKind
    label: str  # e.g. the event type, "ok → stale", "alert.firing"
    detail: str = ""  # a short excerpt: payload, gap seqs, alert summary
    event_id: int | None = None  # events only
    event_type: str | None = None  # events only


MAX_BOOT_SEQS = 100_000


@dataclass(slots=True)
class Restored:
    """What a store hands back at start so a restarted hub shows the same history at once."""

    events: list[EventRecord] = field(default_factory=list)  # newest per type, oldest first
    logs: list[LogRecord] = field(default_factory=list)  # newest per engine, oldest first
    boots: list[dict[str, Any]] = field(default_factory=list)  # latest boot per engine
    metrics: list[dict[str, Any]] = field(default_factory=list)  # serialized series
    forgotten: dict[str, float] = field(default_factory=dict)  # engine -> when an admin forgot it
    silences: list[Silence] = field(default_factory=list)  # alert silences still in force
    links: list[Link] = field(default_factory=list)  # chain links of `events` (#18 chain)
    # Every stored boot's last seq, newest first (at most MAX_BOOT_SEQS): a cluster node rereads
    # the stream after a restart and must not take older boots' messages as new (#19).
    boot_seqs: dict[tuple[str, str], int] = field(default_factory=dict)
    next_event_id: int = 1
    next_log_id: int = 1


HistoryKind = Literal["events", "logs", "audit"]
SeriesStat = Literal["rate", "value", "min", "max", "mean", "p50", "p95", "p99", "count", "sum"]


@dataclass(frozen=True, slots=True)
class SeriesQuery:
    """One metric's series of an engine over [since, until) in `step`-second buckets.

    `tags` selects the series whose tags include every given pair (none: all of the name's).
    """

    engine: str
    name: str
    since: float
    until: float
    step: float
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    """One series an engine keeps: its name, tags and kind (counter, gauge or histogram)."""

    name: str
    tags: dict[str, str]
    kind: str


@dataclass(frozen=True, slots=True)
class SeriesLine:
    """One statistic of one series, a point per step: (bucket start, value or None if no data)."""

    name: str
    tags: dict[str, str]
    stat: SeriesStat
    unit: str | None
    points: list[tuple[float, float | None]]

    def view(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "name": self.name,
            "tags": self.tags,
            "stat": self.stat,
            "unit": self.unit,
            "points": [list(p) for p in self.points],
        }


class HistoryStore(Protocol):
    """Keeps history beyond the in-memory rings; `open_store(db)` picks the backend."""

    problem: str | None  # why writes currently fail (None while healthy)
    # The GIL switch interval in seconds the server sets while this store runs (None: leave it).
    switch_interval: float | None

    @property
    def pending_since(self) -> float | None:
        """When the oldest record not yet committed was queued (None: nothing waits)."""

    async def start(self, on_commit: CommitCallback) -> Restored:
        """Open the store and return the history to refill the hub's state with."""

    def append(self, ingested: Ingested) -> None:
        """Queue what the core changed (one frame, a closed socket, snapshots); never blocks."""

    async def history(self, kind: HistoryKind, query: HistoryQuery) -> list[Any]:
        """Stored events (EventRecord), log lines (LogRecord) or audit entries (AuditRecord)
        matching `query`, newest first (audit: `engine`, `since`, `until` and `limit` apply)."""

    async def search(self, request: SearchRequest) -> SearchPage:
        """Log lines and events matching a full-text query, newest first, a page at a time."""

    async def chain(
        self, event_id: int, seeds: Sequence[Link], limit: int
    ) -> tuple[list[Step], bool]:
        """The causal chain of `event_id` joined to `seeds` (links the caller already holds), in
        time order, and whether it was cut at `limit`; empty when the store holds no link of it."""

    async def export(self, engine: str, since: float, until: float) -> dict[str, Any]:
        """One engine's events, logs, errors, gaps, metrics and boots over a window (docs/api.md).

        Raises UnknownEngine for an engine the store never saw.
        """

    async def series(self, query: SeriesQuery) -> tuple[float, list[SeriesLine]]:
        """The step actually used (a whole number of the tier's buckets) and the lines of
        `query` (docs/history.md), at most `MAX_SERIES_LINES` series."""

    async def series_names(self, engine: str) -> list[SeriesInfo]:
        """Every series of `engine` the store holds points of, by name then tags."""

    async def timeline(self, query: TimelineQuery) -> list[TimelineItem]:
        """Events, health transitions, boots, gaps and alerts of engines in a window, newest
        first, bounded by `query.limit` (hub/stores/timelines.py)."""

    async def close(self) -> None:
        """Flush what is queued (within the graceful timeout) and release resources."""


def make_bundle(
    engine: str,
    since: float,
    until: float,
    boots: list[dict[str, Any]],
    events: list[EventRecord],
    logs: list[LogRecord],
    gaps: list[dict[str, Any]],
    metrics: dict[str, Any] | None,
    truncated: bool,
    audit: list[AuditRecord] | None = None,
    series: list[dict[str, Any]] | None = None,
    transitions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The incident bundle (docs/api.md): events and logs oldest first, boots by start, errors picked out."""
    return {
        "format": "engine-hub-export/1",
        "engine": engine,
        "since": utc(since),
        "until": utc(until),
        "boots": boots,
        "events": [e.view() for e in events],
        "errors": [e.view() for e in events if e.type == "error"],
        "logs": [r.view() for r in logs],
        "gaps": gaps,
        "metrics": metrics,
        "audit": [a.view() for a in audit or ()],  # the hub's own and this engine's, oldest first
        "series": series or [],  # metric time-series buckets in the window (docs/api.md)
        "transitions": transitions or [],  # health changes the hub derived, oldest first
        "truncated": truncated,
    }
