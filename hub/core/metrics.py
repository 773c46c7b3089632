"""Aggregation of engine metrics: counters, gauges and histograms, per session and lifetime.

Also the rules that keep `/metrics` sound (docs/api.md): each metric name maps to one Prometheus
family `engine_metric_<name>` (characters outside `[A-Za-z0-9_]` become `_`, a counter's trailing
`_total` is dropped), owned hub-wide by one (name, kind); tag keys that Prometheus or the hub
reserve are refused; series are bounded in count and in estimated bytes, per engine and hub-wide.
"""

from __future__ import annotations

import enum
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hub.core.messages import ErrorCode, Metric
from hub.core.sketches import Sketch, sketch_from_dict, sketch_to_dict
from hub.settings import Settings

if TYPE_CHECKING:
    from hub.core.series import SeriesBuckets

__all__ = [
    "FAMILY_PREFIX",
    "HISTOGRAM_BUCKETS",
    "RESERVED_TAGS",
    "EngineMetrics",
    "Family",
    "MetricKind",
    "MetricRegistry",
    "MetricRejected",
    "Series",
    "TagKey",
    "family_name",
    "series_bytes",
]

FAMILY_PREFIX = "engine_metric_"
# Label names the exposition adds itself (engine, mode, le) or that Prometheus reserves.
RESERVED_TAGS = frozenset({"engine", "mode", "quantile", "le"})
# One bucket layout for every histogram of every engine, so `sum by (le)` aggregates them.
HISTOGRAM_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
)  # fmt: skip
# Estimated bytes of one series (objects, dict slots, sketches) on top of its text.
_SERIES_OVERHEAD = 512
_TAG_OVERHEAD = 112
_INVALID = re.compile(r"[^A-Za-z0-9_]")
_SUFFIXES = {
    "counter": ("", "_total"),
    "gauge": ("",),
    "histogram": ("", "_bucket", "_count", "_sum"),
}


class MetricKind(enum.StrEnum):
    """What a metric name measures; fixed by the first message that uses the name."""

    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


_KIND_OF_OP = {"inc": MetricKind.COUNTER, "set": MetricKind.GAUGE, "observe": MetricKind.HISTOGRAM}

TagKey = tuple[tuple[str, str], ...]


def family_name(name: str, kind: MetricKind) -> str:
    """The Prometheus family an engine metric is exposed as (samples add suffixes to it)."""
    base = _INVALID.sub("_", name)
    if kind is MetricKind.COUNTER and base.endswith("_total"):
        base = base[: -len("_total")]
    return FAMILY_PREFIX + base


def series_bytes(name: str, tags: TagKey) -> int:
    """What one series is charged against the byte caps: its text plus a fixed overhead."""
    text = len(name.encode()) + sum(len(k) + len(v.encode()) for k, v in tags)
    return _SERIES_OVERHEAD + _TAG_OVERHEAD * len(tags) + text


def _check_tags(name: str, tags: TagKey) -> None:
    for key, _ in tags:
        if key in RESERVED_TAGS or key.startswith("__"):
            raise MetricRejected(
                ErrorCode.BAD_MESSAGE,
                f"metric {name!r} has tag {key!r}, which /metrics reserves (engine, mode, "
                "quantile, le and names starting with __); rename the tag",
            )


class MetricRejected(Exception):
    """A metric message cannot be aggregated; carries the protocol error code."""

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(slots=True)
class Series:
    """One (name, tags) series: its session value (this boot) and lifetime value."""

    kind: MetricKind
    name: str
    tags: TagKey
    session: float | Sketch
    lifetime: float | Sketch
    updated_at: float = 0.0
    history: SeriesBuckets | None = None  # its time-series buckets (hub/core/series.py)

    def reset_session(self) -> None:
        """Start a new session (a new engine boot); lifetime values continue."""
        if self.kind is MetricKind.HISTOGRAM:
            self.session = Sketch()
        elif self.kind is MetricKind.COUNTER:
            self.session = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view with session and lifetime values."""
        out: dict[str, Any] = {"name": self.name, "tags": dict(self.tags)}
        if isinstance(self.session, Sketch) and isinstance(self.lifetime, Sketch):
            out["session"] = self.session.summary()
            out["lifetime"] = self.lifetime.summary()
        else:
            out["value"] = self.session
            out["session"] = self.session
            out["lifetime"] = self.lifetime
        out["updated_at"] = self.updated_at
        return out


@dataclass(slots=True)
class EngineMetrics:
    """All series of one engine, bounded in count and bytes, also indexed by name."""

    series: dict[tuple[str, TagKey], Series] = field(default_factory=dict)
    kinds: dict[str, MetricKind] = field(default_factory=dict)
    by_name: dict[str, dict[TagKey, Series]] = field(default_factory=dict)
    bytes: int = 0


@dataclass(slots=True)
class Family:
    """One Prometheus family: the metric name and kind that own it, and the engines using it."""

    name: str
    kind: MetricKind
    engines: set[str] = field(default_factory=set)


class MetricRegistry:
    """Metrics of every engine keyed by (engine, name, tags), with series caps per engine and hub."""

    def __init__(
        self,
        max_series: int,
        max_series_bytes_per_engine: int | None = None,
        max_series_bytes: int | None = None,
        drops: Counter[str] | None = None,
    ) -> None:
        defaults = Settings()
        self._max_series = max_series
        self._max_engine_bytes = (
            defaults.max_series_bytes_per_engine
            if max_series_bytes_per_engine is None
            else max_series_bytes_per_engine
        )
        self._max_bytes = (
            defaults.max_series_bytes if max_series_bytes is None else max_series_bytes
        )
        self.drops: Counter[str] = drops if drops is not None else Counter()
        self.engines: dict[str, EngineMetrics] = {}
        self.families: dict[str, Family] = {}  # by family name
        self._owners: dict[str, Family] = {}  # every sample name a family writes
        self.bytes = 0

    @classmethod
    def from_settings(cls, settings: Settings, drops: Counter[str] | None = None) -> MetricRegistry:
        """A registry with the caps in `settings`, counting rejected series into `drops`."""
        return cls(
            settings.max_series_per_engine,
            settings.max_series_bytes_per_engine,
            settings.max_series_bytes,
            drops,
        )

    def apply(self, engine: str, msg: Metric, now: float) -> Series:
        """Fold one metric message in and return its series; raises MetricRejected on a kind
        conflict or the series cap."""
        metrics = self.engines.get(engine)
        if metrics is None:
            metrics = self.engines[engine] = EngineMetrics()
        tags: TagKey = tuple(sorted(msg.tags.items())) if msg.tags else ()
        series = metrics.series.get((msg.name, tags))
        if series is None:
            series = self._new_series(engine, metrics, msg, tags)
        elif series.kind is not _KIND_OF_OP[msg.op]:
            raise MetricRejected(
                ErrorCode.METRIC_CONFLICT,
                f"metric {msg.name!r} is a {series.kind}; op {msg.op!r} does not apply to it",
            )
        value = msg.value
        if series.kind is MetricKind.COUNTER:
            series.session += value  # type: ignore[operator]
            series.lifetime += value  # type: ignore[operator]
        elif series.kind is MetricKind.GAUGE:
            series.session = series.lifetime = value
        else:
            series.session.observe(value)  # type: ignore[union-attr]
            series.lifetime.observe(value)  # type: ignore[union-attr]
        series.updated_at = now
        return series

    def _new_series(self, engine: str, metrics: EngineMetrics, msg: Metric, tags: TagKey) -> Series:
        kind = _KIND_OF_OP[msg.op]
        known = metrics.kinds.get(msg.name)
        if known is not None and known is not kind:
            raise MetricRejected(
                ErrorCode.METRIC_CONFLICT,
                f"metric {msg.name!r} is a {known}; op {msg.op!r} does not apply to it",
            )
        _check_tags(msg.name, tags)
        cost = self._check_room(metrics, msg.name, tags)
        if known is None:
            self._check_family(msg.name, kind)
        if kind is MetricKind.HISTOGRAM:
            series = Series(kind, msg.name, tags, Sketch(), Sketch())
        else:
            series = Series(kind, msg.name, tags, 0.0, 0.0)
        return self._add(engine, metrics, series, cost)

    def _check_room(self, metrics: EngineMetrics, name: str, tags: TagKey) -> int:
        """The bytes a new series costs; raises MetricRejected (and counts) at any cap."""
        cost = series_bytes(name, tags)
        if len(metrics.series) >= self._max_series:
            self.drops["metric_series_cap"] += 1
            raise MetricRejected(
                ErrorCode.TOO_MANY_SERIES,
                f"engine already has {self._max_series} metric series; "
                "use fewer distinct names or tag values",
            )
        if metrics.bytes + cost > self._max_engine_bytes:
            self.drops["metric_series_bytes"] += 1
            raise MetricRejected(
                ErrorCode.TOO_MANY_SERIES,
                f"engine's metric series hold about {metrics.bytes} bytes of names and tags and "
                f"this one needs {cost}; the limit is max_series_bytes_per_engine="
                f"{self._max_engine_bytes}: use fewer or shorter tag values",
            )
        if self.bytes + cost > self._max_bytes:
            self.drops["metric_series_bytes_hub"] += 1
            raise MetricRejected(
                ErrorCode.TOO_MANY_SERIES,
                f"the hub's metric series of all engines hold about {self.bytes} bytes; the "
                f"limit is max_series_bytes={self._max_bytes}: use fewer or shorter tag values",
            )
        return cost

    def _check_family(self, name: str, kind: MetricKind) -> None:
        """Refuse a name whose Prometheus samples another (name, kind) already writes."""
        family = family_name(name, kind)
        for suffix in _SUFFIXES[kind]:
            owner = self._owners.get(family + suffix)
            if owner is not None and (owner.name, owner.kind) != (name, kind):
                raise MetricRejected(
                    ErrorCode.METRIC_CONFLICT,
                    f"metric {name!r} ({kind}) would be exposed as {family + suffix}, which "
                    f"{owner.kind} {owner.name!r} already uses (on this or another engine); "
                    "every engine must use one kind per name and names must differ after "
                    "mapping to [A-Za-z0-9_]: rename it",
                )

    def _add(self, engine: str, metrics: EngineMetrics, series: Series, cost: int) -> Series:
        family_key = family_name(series.name, series.kind)
        family = self.families.get(family_key)
        if family is None:
            family = self.families[family_key] = Family(series.name, series.kind)
            for suffix in _SUFFIXES[series.kind]:
                self._owners[family_key + suffix] = family
        family.engines.add(engine)
        metrics.kinds[series.name] = series.kind
        metrics.series[(series.name, series.tags)] = series
        metrics.by_name.setdefault(series.name, {})[series.tags] = series
        metrics.bytes += cost
        self.bytes += cost
        return series

    def new_session(self, engine: str) -> None:
        """A new boot of `engine` started: session values restart, lifetime values continue."""
        metrics = self.engines.get(engine)
        if metrics is not None:
            for series in metrics.series.values():
                series.reset_session()

    def forget(self, engine: str) -> int:
        """Free every series of `engine` (a retired engine); returns how many there were.

        A family no engine uses any more is released too, so its name may later take another kind.
        """
        metrics = self.engines.pop(engine, None)
        if metrics is None:
            return 0
        self.bytes -= metrics.bytes
        for name, kind in metrics.kinds.items():
            key = family_name(name, kind)
            family = self.families.get(key)
            if family is None:
                continue
            family.engines.discard(engine)
            if not family.engines:
                del self.families[key]
                for suffix in _SUFFIXES[kind]:
                    self._owners.pop(key + suffix, None)
        return len(metrics.series)

    def to_rows(self, engine: str) -> list[dict[str, Any]]:
        """Every series of `engine` serialized for the history store."""
        metrics = self.engines.get(engine)
        if metrics is None:
            return []
        return [
            {
                "name": s.name,
                "tags": [list(pair) for pair in s.tags],
                "kind": s.kind.value,
                "session": sketch_to_dict(s.session)
                if isinstance(s.session, Sketch)
                else s.session,
                "lifetime": sketch_to_dict(s.lifetime)
                if isinstance(s.lifetime, Sketch)
                else s.lifetime,
                "updated_at": s.updated_at,
            }
            for s in metrics.series.values()
        ]

    def restore_rows(self, engine: str, rows: list[dict[str, Any]], same_boot: bool) -> int:
        """Bring back stored series: lifetime always, session only if the boot is still current.

        Rows today's rules refuse (reserved tags, a name another kind owns, the caps) are left
        out and counted as `metric_restore_skipped`; returns how many were.
        """
        metrics = self.engines.setdefault(engine, EngineMetrics())
        skipped = 0
        for row in rows:
            kind = MetricKind(row["kind"])
            name = str(row["name"])
            tags: TagKey = tuple((str(k), str(v)) for k, v in row["tags"])
            if (name, tags) in metrics.series:
                continue
            try:
                known = metrics.kinds.get(name)
                if known is not None and known is not kind:
                    raise MetricRejected(ErrorCode.METRIC_CONFLICT, name)
                _check_tags(name, tags)
                cost = self._check_room(metrics, name, tags)
                if known is None:
                    self._check_family(name, kind)
            except MetricRejected:
                skipped += 1
                continue
            if kind is MetricKind.HISTOGRAM:
                lifetime: float | Sketch = sketch_from_dict(row["lifetime"])
                session: float | Sketch = (
                    sketch_from_dict(row["session"]) if same_boot else Sketch()
                )
            else:
                lifetime = float(row["lifetime"])
                session = float(row["session"]) if same_boot or kind is MetricKind.GAUGE else 0.0
            series = Series(kind, name, tags, session, lifetime, float(row["updated_at"]))
            self._add(engine, metrics, series, cost)
        if skipped:
            self.drops["metric_restore_skipped"] += skipped
        return skipped

    def snapshot(self, engine: str) -> dict[str, list[dict[str, Any]]]:
        """counters, gauges and histograms of `engine`, sorted by name then tags."""
        out: dict[str, list[dict[str, Any]]] = {"counters": [], "gauges": [], "histograms": []}
        metrics = self.engines.get(engine)
        if metrics is None:
            return out
        group = {
            MetricKind.COUNTER: out["counters"],
            MetricKind.GAUGE: out["gauges"],
            MetricKind.HISTOGRAM: out["histograms"],
        }
        for key in sorted(metrics.series):
            series = metrics.series[key]
            group[series.kind].append(series.as_dict())
        return out
