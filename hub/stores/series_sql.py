"""Metric time series in SQLite: the writer's upsert, retention, reads and export (docs/history.md).

A series is a row of `series` (engine, name, tags as canonical JSON, kind); its buckets are rows of
`series_points` keyed by (series, tier, start), `WITHOUT ROWID` so one series' range is one
b-tree walk. A bucket written twice (a partial one at shutdown, then the rest after a restart)
is merged by the upsert, histogram sketches too (`sketch_merge`, an SQL function).
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from typing import Any

import msgspec

from hub.core.metrics import MetricKind, TagKey
from hub.core.series import Bucket, Point, Tier
from hub.core.sketches import pack_bins, unpack_bins
from hub.settings import Settings
from hub.stores.base import SeriesInfo, SeriesLine, SeriesQuery
from hub.stores.lines import MAX_SERIES_LINES, QUANTILES, export_entry, lines, matches, plan

__all__ = [
    "SeriesIds",
    "export_series",
    "read_series",
    "read_series_names",
    "retain_series",
    "sketch_merge",
    "write_points",
]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode
UPSERT = (
    "INSERT INTO series_points (series, tier, start, n, total, low, high, last, sketch, p50, "
    "p95, p99) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (series, tier, start) "
    "DO UPDATE SET n = n + excluded.n, total = total + excluded.total, "
    "low = min(low, excluded.low), high = max(high, excluded.high), last = excluded.last, "
    "sketch = sketch_merge(sketch, excluded.sketch), p50 = NULL, p95 = NULL, p99 = NULL"
)
# A read that merges buckets takes their sketches; one that does not (a step of the tier's own
# width) takes the stored quantiles, and a sketch only where a merge left them NULL.
_COLUMNS = "start, n, total, low, high, last, {sketch}, p50, p95, p99"
_RANGE = " FROM series_points WHERE series = ? AND tier = ? AND start >= ? AND start < ?"
_MERGING = "SELECT " + _COLUMNS.format(sketch="sketch") + _RANGE + " ORDER BY start"
_AS_STORED = (
    "SELECT "
    + _COLUMNS.format(sketch="CASE WHEN p50 IS NULL THEN sketch END")
    + _RANGE
    + " ORDER BY start"
)


def sketch_merge(mine: bytes | None, theirs: bytes | None) -> bytes | None:
    """SQL function: two stored sketches' buckets as one (either may be NULL)."""
    if mine is None or theirs is None:
        return mine if theirs is None else theirs
    merged = unpack_bins(mine, 0, 0.0, math.inf, -math.inf)
    merged.merge(unpack_bins(theirs, 0, 0.0, math.inf, -math.inf))
    return pack_bins(merged)


def _bucket(start: float, n: int, total: float, low: float, high: float, last: float,
            sketch: bytes | None, p50: float | None, p95: float | None,
            p99: float | None) -> Bucket:  # fmt: skip
    bucket = Bucket(start, False)
    bucket.count, bucket.sum, bucket.min, bucket.max, bucket.last = n, total, low, high, last
    if sketch is not None:
        bucket.sketch = unpack_bins(sketch, n, total, low, high)
    elif p50 is not None:
        bucket.quantiles = [p50, p95, p99]
    return bucket


def _tags(text: str) -> TagKey:
    return tuple((str(k), str(v)) for k, v in _decode(text))


class SeriesIds:
    """The writer's map of (engine, name, tags) to series ids (cleared when rows may have gone)."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str, TagKey], int] = {}

    def of(self, conn: sqlite3.Connection, point: Point) -> int:
        """The id of the point's series, its row made if new (inside the writer's transaction)."""
        key = (point.engine, point.name, point.tags)
        found = self._ids.get(key)
        if found is None:
            tags = _encode([list(pair) for pair in point.tags]).decode()
            conn.execute(
                "INSERT OR IGNORE INTO series (engine, name, tags, kind) VALUES (?, ?, ?, ?)",
                (point.engine, point.name, tags, point.kind.value),
            )
            [(found,)] = conn.execute(
                "SELECT id FROM series WHERE engine = ? AND name = ? AND tags = ?",
                (point.engine, point.name, tags),
            )
            if len(self._ids) >= 100_000:  # bounded like everything; it refills from the table
                self._ids.clear()
            self._ids[key] = found
        return found

    def clear(self) -> None:
        """Forget every id (after retention or a rolled-back transaction)."""
        self._ids.clear()


def write_points(conn: sqlite3.Connection, ids: SeriesIds, points: Sequence[Point]) -> None:
    """Upsert closed buckets, inside the writer's open transaction."""
    rows = []
    for point in points:
        b = point.bucket
        sketch: bytes | None = None
        quantiles: list[float | None] = [None, None, None]
        if b.sketch is not None:
            sketch, quantiles = pack_bins(b.sketch), b.sketch.quantiles(QUANTILES)
        ident, tier = ids.of(conn, point), int(point.tier)
        rows.append(
            (ident, tier, b.start, b.count, b.sum, b.min, b.max, b.last, sketch, *quantiles)
        )
    conn.executemany(UPSERT, rows)


def retain_series(conn: sqlite3.Connection, settings: Settings, now: float) -> None:
    """Fine buckets go after `series_fine_days`, coarse ones after `retention_days`, and a series
    without buckets goes too (inside retention's transaction)."""
    fine = now - settings.series_fine_days * 86_400
    coarse = now - settings.retention_days * 86_400
    for (ident,) in conn.execute("SELECT id FROM series").fetchall():  # one range per series
        conn.execute(
            "DELETE FROM series_points WHERE series = ? AND tier = ? AND start < ?",
            (ident, int(Tier.FINE), fine),
        )
        conn.execute(
            "DELETE FROM series_points WHERE series = ? AND tier = ? AND start < ?",
            (ident, int(Tier.COARSE), coarse),
        )
    conn.execute(
        "DELETE FROM series WHERE NOT EXISTS (SELECT 1 FROM series_points WHERE series = series.id)"
    )


def _series_of(conn: sqlite3.Connection, engine: str) -> list[tuple[str, TagKey, MetricKind, int]]:
    rows = conn.execute("SELECT name, tags, kind, id FROM series WHERE engine = ?", (engine,))
    return sorted((name, _tags(tags), MetricKind(kind), ident) for name, tags, kind, ident in rows)


def read_series(
    conn: sqlite3.Connection, query: SeriesQuery, settings: Settings, now: float
) -> tuple[float, list[SeriesLine]]:
    """The step used and the lines of `query` (see HistoryStore.series)."""
    tier, step = plan(query, now, settings)
    first = query.since - query.since % step
    found = [
        (tags, kind, ident)
        for name, tags, kind, ident in _series_of(conn, query.engine)
        if name == query.name and matches(tags, query.tags)
    ]
    width = settings.series_fine_step if tier is Tier.FINE else settings.series_coarse_step
    sql = _AS_STORED if step == width else _MERGING
    out: list[SeriesLine] = []
    for tags, kind, ident in found[:MAX_SERIES_LINES]:
        rows = conn.execute(sql, (ident, int(tier), first, query.until))
        out += lines(query.name, tags, kind, [_bucket(*row) for row in rows], query, step)
    return step, out


def read_series_names(conn: sqlite3.Connection, engine: str) -> list[SeriesInfo]:
    """Every series of `engine` in the file, by name then tags."""
    return [
        SeriesInfo(name, dict(tags), kind.value) for name, tags, kind, _ in _series_of(conn, engine)
    ]


def export_series(
    conn: sqlite3.Connection, engine: str, since: float, until: float, limit: int
) -> list[dict[str, Any]]:
    """The engine's buckets in [since, until), both tiers, at most `limit` in all."""
    out: list[dict[str, Any]] = []
    for name, tags, kind, ident in _series_of(conn, engine):
        for tier in Tier:
            if limit <= 0:
                return out
            rows = conn.execute(_AS_STORED + " LIMIT ?", (ident, int(tier), since, until, limit))
            buckets = [_bucket(*row) for row in rows]
            limit -= len(buckets)
            if buckets:
                out.append(export_entry(name, tags, kind, tier, buckets))
    return out
