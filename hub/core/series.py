"""Metric time series, sans-I/O: every series folds its values into fine and coarse buckets.

A metric message lands in the fine bucket (`series_fine_step`, 10 s) of the hub time it arrived
(`now`; the client pre-aggregates counters, so message times say little). When a fine bucket
closes (a value arrives in a later one, or `drain(now)` finds it past its end) it becomes a
`Point` and is merged into its coarse bucket (`series_coarse_step`, 5 min), which closes the same
way. Counters keep the sum of their increments (increments are never negative, so a new boot is
never a negative rate), gauges last/min/max/sum/count, histograms also a `Sketch` of the bucket's
own observations: quantiles per bucket come from that bucket's values, not from the lifetime.

Bounded: at most `max_history_series_per_engine` series of an engine get buckets (later ones stay live
only; each value they would have added is counted as `series_history_cap`), and at most
`MAX_PENDING` points wait for the store (beyond: `series_pending_overflow`).
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from dataclasses import dataclass

from hub.core.metrics import MetricKind, Series, TagKey
from hub.core.sketches import Sketch
from hub.settings import Settings

__all__ = ["MAX_PENDING", "Bucket", "Downsampler", "Point", "SeriesBuckets", "Tier"]

MAX_PENDING = 200_000  # points waiting for the store (it drains them every second)


class Tier(enum.IntEnum):
    """Which bucket width a point summarises."""

    FINE = 0
    COARSE = 1


class Bucket:
    """The values of one series in one time bucket: count, sum, min, max, last (and a sketch)."""

    __slots__ = ("count", "last", "max", "min", "quantiles", "sketch", "start", "sum")

    def __init__(self, start: float, histogram: bool) -> None:
        self.start = start
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.last = 0.0
        self.sketch: Sketch | None = Sketch() if histogram else None
        # p50, p95, p99 as a store kept them: a read that merges nothing needs no sketch.
        self.quantiles: list[float | None] | None = None

    def add(self, value: float) -> None:
        """Fold in one value (a counter's increment, a gauge's value, an observation)."""
        self.count += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        self.last = value
        if self.sketch is not None:
            self.sketch.observe(value)

    def merge(self, other: Bucket) -> None:
        """Fold in a later bucket (its `last` wins)."""
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.last = other.last
        if self.sketch is not None and other.sketch is not None:
            self.sketch.merge(other.sketch)


@dataclass(frozen=True, slots=True)
class Point:
    """One bucket of one series as the stores keep it (partial ones only at shutdown)."""

    engine: str
    name: str
    tags: TagKey
    kind: MetricKind
    tier: Tier
    bucket: Bucket


class SeriesBuckets:
    """The open fine and coarse bucket of one series."""

    __slots__ = ("coarse", "engine", "fine", "histogram", "kind", "name", "owner", "tags")

    def __init__(self, owner: Downsampler, engine: str, series: Series) -> None:
        self.owner = owner
        self.engine, self.name, self.tags, self.kind = engine, series.name, series.tags, series.kind
        self.histogram = series.kind is MetricKind.HISTOGRAM
        self.fine: Bucket | None = None
        self.coarse: Bucket | None = None

    def add(self, value: float, now: float) -> None:
        """Fold `value` into the fine bucket of `now` (closing the previous one if it is over)."""
        fine = self.fine
        if fine is None or now >= fine.start + self.owner.fine_step:
            if fine is not None:
                self.close_fine()
            else:
                self.owner.open.add(self)
            self.fine = fine = Bucket(now - now % self.owner.fine_step, self.histogram)
        fine.add(value)  # a clock that stepped back stays in the open bucket

    def close_fine(self) -> None:
        """Hand the fine bucket to the store and fold it into its coarse bucket."""
        fine, self.fine = self.fine, None
        if fine is None:
            return
        owner = self.owner
        owner.emit(Point(self.engine, self.name, self.tags, self.kind, Tier.FINE, fine))
        coarse = self.coarse
        start = fine.start - fine.start % owner.coarse_step
        if coarse is not None and coarse.start != start:
            self.close_coarse()
            coarse = None
        if coarse is None:
            coarse = self.coarse = Bucket(start, self.histogram)
        coarse.merge(fine)

    def close_coarse(self) -> None:
        """Hand the coarse bucket to the store."""
        coarse, self.coarse = self.coarse, None
        if coarse is not None:
            self.owner.emit(
                Point(self.engine, self.name, self.tags, self.kind, Tier.COARSE, coarse)
            )


class _Untracked(SeriesBuckets):
    """A series beyond the per-engine cap: its values are counted, not kept."""

    __slots__ = ()

    def add(self, value: float, now: float) -> None:
        """Count the value that history does not keep."""
        self.owner.drops["series_history_cap"] += 1


class Downsampler:
    """Buckets of every tracked series; `drain(now)` hands out the points that closed."""

    def __init__(self, settings: Settings, drops: Counter[str] | None = None) -> None:
        self.fine_step = settings.series_fine_step
        self.coarse_step = settings.series_coarse_step
        self.max_series = settings.max_history_series_per_engine
        self.drops: Counter[str] = drops if drops is not None else Counter()
        self.open: set[SeriesBuckets] = set()  # series with an open bucket
        self.tracked: Counter[str] = Counter()  # series with buckets, per engine
        self._pending: list[Point] = []

    def add(self, engine: str, series: Series, value: float, now: float) -> None:
        """Fold one accepted metric value of `series` into its buckets."""
        buckets = series.history
        if buckets is None:
            buckets = series.history = self._track(engine, series)
        buckets.add(value, now)

    def _track(self, engine: str, series: Series) -> SeriesBuckets:
        if self.tracked[engine] >= self.max_series:
            return _Untracked(self, engine, series)
        self.tracked[engine] += 1
        return SeriesBuckets(self, engine, series)

    def emit(self, point: Point) -> None:
        """Queue a point for the store (bounded, counted beyond)."""
        if len(self._pending) >= MAX_PENDING:
            self.drops["series_pending_overflow"] += 1
        else:
            self._pending.append(point)

    def drain(self, now: float, final: bool = False) -> list[Point]:
        """Points of every bucket over by `now` (`final`: every open one, partial or not)."""
        for buckets in list(self.open):
            fine = buckets.fine
            if fine is not None and (final or now >= fine.start + self.fine_step):
                buckets.close_fine()
            coarse = buckets.coarse
            if coarse is not None and (final or now >= coarse.start + self.coarse_step):
                buckets.close_coarse()
            if buckets.fine is None and buckets.coarse is None:
                self.open.discard(buckets)
        points, self._pending = self._pending, []
        return points

    def forget(self, engine: str) -> None:
        """A retired engine's series no longer count against its cap (open buckets still drain)."""
        self.tracked.pop(engine, None)
