"""The collector's local copy of its metrics, in the shape of the third document's metrics.json."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

__all__ = ["MetricMirror"]

MAX_SERIES = 5000  # the hub's per-engine series cap; names past it are not mirrored


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


class MetricMirror:
    """Counters, gauges and timers by name (tags of the last update), read back by the old API.

    Writes keep plain lists (no timestamps formatted, no dicts built) so that a compatibility
    call costs little more than the client call it wraps; the document's shape is built on read.
    Counters start from `base` (the hub's lifetime values when `reset_on_startup` is false).
    """

    def __init__(self) -> None:
        self.counters: dict[str, list[Any]] = {}  # name -> [value, ts, tags]
        self.gauges: dict[str, list[Any]] = {}
        self.timers: dict[str, list[Any]] = {}  # name -> [count, sum, min, max, last, ts, tags]
        self.base: dict[str, float] = {}

    def inc(self, name: str, amount: float, tags: Mapping[str, Any], now: float) -> None:
        """Add `amount` to counter `name`."""
        entry = self.counters.get(name)
        if entry is not None:
            entry[0] += amount
            entry[1] = now
            entry[2] = tags
        elif len(self.counters) < MAX_SERIES:
            self.counters[name] = [amount, now, tags]

    def set(self, name: str, value: float, tags: Mapping[str, Any], now: float) -> None:
        """Set gauge `name`."""
        if name in self.gauges or len(self.gauges) < MAX_SERIES:
            self.gauges[name] = [value, now, tags]

    def observe(self, name: str, value: float, tags: Mapping[str, Any], now: float) -> None:
        """Record one duration of timer `name`."""
        entry = self.timers.get(name)
        if entry is not None:
            entry[0] += 1
            entry[1] += value
            entry[2] = min(entry[2], value)
            entry[3] = max(entry[3], value)
            entry[4], entry[5], entry[6] = value, now, tags
        elif len(self.timers) < MAX_SERIES:
            self.timers[name] = [1, value, value, value, value, now, tags]

    def counter(self, name: str) -> float:
        """A counter's value as the old API reported it (session, or lifetime with a base)."""
        entry = self.counters.get(name)
        return self.base.get(name, 0.0) + (entry[0] if entry is not None else 0.0)

    def snapshot(self, now: float) -> dict[str, Any]:
        """{"timestamp","counters","gauges","histograms","timers"} as in metrics.json."""
        counters = {
            name: {
                "name": name,
                "type": "counter",
                "value": self.base.get(name, 0.0) + value,
                "session": value,
                "timestamp": _iso(ts),
                "tags": dict(tags),
            }
            for name, (value, ts, tags) in self.counters.items()
        }
        for name, value in self.base.items():
            if name not in counters:
                counters[name] = {"name": name, "type": "counter", "value": value, "session": 0}
        gauges = {
            name: {
                "name": name,
                "type": "gauge",
                "value": v,
                "timestamp": _iso(ts),
                "tags": dict(t),
            }
            for name, (v, ts, t) in self.gauges.items()
        }
        timers = {
            name: {
                "name": name,
                "type": "timer",
                "count": count,
                "sum": total,
                "min": low,
                "max": high,
                "avg": total / count,
                "last": last,
                "timestamp": _iso(ts),
                "tags": dict(tags),
            }
            for name, (count, total, low, high, last, ts, tags) in self.timers.items()
        }
        return {
            "timestamp": _iso(now),
            "counters": counters,
            "gauges": gauges,
            "histograms": {},
            "timers": timers,
        }
