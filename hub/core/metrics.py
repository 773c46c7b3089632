"""Aggregation of engine metrics: counters, gauges and histograms, per session and lifetime."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from hub.core.messages import ErrorCode, Metric
from hub.core.sketches import Sketch, sketch_from_dict, sketch_to_dict

__all__ = ["EngineMetrics", "MetricKind", "MetricRegistry", "MetricRejected", "Series"]


class MetricKind(enum.StrEnum):
    """What a metric name measures; fixed by the first message that uses the name."""

    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


_KIND_OF_OP = {"inc": MetricKind.COUNTER, "set": MetricKind.GAUGE, "observe": MetricKind.HISTOGRAM}

TagKey = tuple[tuple[str, str], ...]


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
    """All series of one engine, bounded in count."""

    series: dict[tuple[str, TagKey], Series] = field(default_factory=dict)
    kinds: dict[str, MetricKind] = field(default_factory=dict)


class MetricRegistry:
    """Metrics of every engine keyed by (engine, name, tags), with a series cap per engine."""

    def __init__(self, max_series: int) -> None:
        self._max_series = max_series
        self.engines: dict[str, EngineMetrics] = {}

    def apply(self, engine: str, msg: Metric, now: float) -> None:
        """Fold one metric message in; raises MetricRejected on a kind conflict or the series cap."""
        metrics = self.engines.get(engine)
        if metrics is None:
            metrics = self.engines[engine] = EngineMetrics()
        tags: TagKey = tuple(sorted(msg.tags.items())) if msg.tags else ()
        series = metrics.series.get((msg.name, tags))
        if series is None:
            series = self._new_series(metrics, msg, tags)
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

    def _new_series(self, metrics: EngineMetrics, msg: Metric, tags: TagKey) -> Series:
        kind = _KIND_OF_OP[msg.op]
        known = metrics.kinds.get(msg.name)
        if known is not None and known is not kind:
            raise MetricRejected(
                ErrorCode.METRIC_CONFLICT,
                f"metric {msg.name!r} is a {known}; op {msg.op!r} does not apply to it",
            )
        if len(metrics.series) >= self._max_series:
            raise MetricRejected(
                ErrorCode.TOO_MANY_SERIES,
                f"engine already has {self._max_series} metric series; "
                "use fewer distinct names or tag values",
            )
        if kind is MetricKind.HISTOGRAM:
            series = Series(kind, msg.name, tags, Sketch(), Sketch())
        else:
            series = Series(kind, msg.name, tags, 0.0, 0.0)
        metrics.kinds[msg.name] = kind
        metrics.series[(msg.name, tags)] = series
        return series

    def new_session(self, engine: str) -> None:
        """A new boot of `engine` started: session values restart, lifetime values continue."""
        metrics = self.engines.get(engine)
        if metrics is not None:
            for series in metrics.series.values():
                series.reset_session()

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

    def restore_rows(self, engine: str, rows: list[dict[str, Any]], same_boot: bool) -> None:
        """Bring back stored series: lifetime always, session only if the boot is still current."""
        metrics = self.engines.setdefault(engine, EngineMetrics())
        for row in rows[: self._max_series]:
            kind = MetricKind(row["kind"])
            tags: TagKey = tuple((str(k), str(v)) for k, v in row["tags"])
            if kind is MetricKind.HISTOGRAM:
                lifetime: float | Sketch = sketch_from_dict(row["lifetime"])
                session: float | Sketch = (
                    sketch_from_dict(row["session"]) if same_boot else Sketch()
                )
            else:
                lifetime = float(row["lifetime"])
                session = float(row["session"]) if same_boot or kind is MetricKind.GAUGE else 0.0
            series = Series(kind, row["name"], tags, session, lifetime, float(row["updated_at"]))
            metrics.series[(series.name, tags)] = series
            metrics.kinds[series.name] = kind

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
