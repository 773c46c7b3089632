"""Metric series reads, the same for every store: which tier answers, and re-bucketing to a step."""

from __future__ import annotations

import math
from typing import Any

from hub.core.metrics import MetricKind, TagKey
from hub.core.series import Bucket, Tier
from hub.settings import Settings
from hub.stores.base import SeriesLine, SeriesQuery, SeriesStat

__all__ = [
    "MAX_POINTS",
    "MAX_SERIES_LINES",
    "QUANTILES",
    "EXPORT_COLUMNS",
    "bucket_row",
    "export_entry",
    "lines",
    "matches",
    "plan",
]

MAX_POINTS = 2000  # per line: a query whose range / step needs more is refused (a 400)
MAX_SERIES_LINES = 20  # series of one name a query returns (the first by tags)
QUANTILES = (0.5, 0.95, 0.99)
EXPORT_COLUMNS = ["start", "count", "sum", "min", "max", "last", "p50", "p95", "p99"]
_STATS: dict[MetricKind, tuple[tuple[SeriesStat, str | None], ...]] = {
    MetricKind.COUNTER: (("rate", "/s"),),
    MetricKind.GAUGE: (("value", None), ("min", None), ("max", None), ("mean", None)),
    MetricKind.HISTOGRAM: (("p50", "s"), ("p95", "s"), ("p99", "s"), ("count", None), ("sum", "s")),
}


def plan(query: SeriesQuery, now: float, settings: Settings) -> tuple[Tier, float]:
    """The tier that answers `query` and its step, rounded up to whole buckets of that tier.

    Fine buckets answer a step below the coarse width over a range they still cover; otherwise
    the coarse ones do.
    """
    fine_from = now - settings.series_fine_days * 86_400
    if query.step < settings.series_coarse_step and query.since >= fine_from:
        tier, width = Tier.FINE, settings.series_fine_step
    else:
        tier, width = Tier.COARSE, settings.series_coarse_step
    return tier, max(1, math.ceil(query.step / width - 1e-9)) * width


def matches(tags: TagKey, wanted: TagKey) -> bool:
    """Whether a series' tags include every wanted pair."""
    return all(pair in tags for pair in wanted)


def lines(
    name: str,
    tags: TagKey,
    kind: MetricKind,
    buckets: list[Bucket],
    query: SeriesQuery,
    step: float,
) -> list[SeriesLine]:
    """One line per statistic of `kind`, a point per `step` from the step before `since` on.

    `buckets` are the stored ones of the chosen tier, oldest first; each counts in the step its
    start falls in. A step without any bucket is None (no data), not zero.
    """
    first = query.since - query.since % step
    count = min(MAX_POINTS, max(0, math.ceil((query.until - first) / step)))
    slots: list[Bucket | None] = [None] * count
    histogram = kind is MetricKind.HISTOGRAM
    mine = [False] * count  # whether the slot holds a merged copy (never merge into a stored one)
    for bucket in buckets:
        index = int((bucket.start - first) // step)
        if 0 <= index < count:
            slot = slots[index]
            if slot is None:
                slots[index] = bucket  # one bucket per step (step = tier width): used as it is
                continue
            if not mine[index]:
                copy = Bucket(first + index * step, histogram)
                copy.merge(slot)
                slot = slots[index] = copy
                mine[index] = True
            slot.merge(bucket)
    stats = _STATS[kind]
    columns: list[list[tuple[float, float | None]]] = [[] for _ in stats]
    for index, slot in enumerate(slots):
        values = _values(slot, kind, step)
        at = first + index * step
        for column, value in zip(columns, values, strict=True):
            column.append((at, value))
    view = dict(tags)
    return [
        SeriesLine(name, view, stat, unit, column)
        for (stat, unit), column in zip(stats, columns, strict=True)
    ]


def _values(bucket: Bucket | None, kind: MetricKind, step: float) -> list[float | None]:
    """The statistics of one step's bucket in `_STATS` order (None each if it has no data)."""
    if bucket is None or not bucket.count:
        return [None] * len(_STATS[kind])
    match kind:
        case MetricKind.COUNTER:
            return [bucket.sum / step]
        case MetricKind.GAUGE:
            return [bucket.last, bucket.min, bucket.max, bucket.sum / bucket.count]
        case MetricKind.HISTOGRAM:
            return [*_quantiles(bucket), float(bucket.count), bucket.sum]


def _quantiles(bucket: Bucket) -> list[float | None]:
    """p50, p95, p99 of a histogram bucket: as stored, or from its sketch."""
    if bucket.quantiles is not None:
        return bucket.quantiles
    sketch = bucket.sketch
    return [None] * 3 if sketch is None else sketch.quantiles(QUANTILES)


def bucket_row(bucket: Bucket) -> list[Any]:
    """One stored bucket as the incident bundle lists it (`EXPORT_COLUMNS`)."""
    quantiles = _quantiles(bucket)
    low = None if not bucket.count else bucket.min
    high = None if not bucket.count else bucket.max
    return [bucket.start, bucket.count, bucket.sum, low, high, bucket.last, *quantiles]


def export_entry(
    name: str, tags: TagKey, kind: MetricKind, tier: Tier, buckets: list[Bucket]
) -> dict[str, Any]:
    """One series' buckets of one tier as the incident bundle's `series` lists them."""
    return {
        "name": name,
        "tags": dict(tags),
        "kind": kind.value,
        "tier": tier.name.lower(),
        "columns": EXPORT_COLUMNS,
        "points": [bucket_row(b) for b in buckets],
    }
