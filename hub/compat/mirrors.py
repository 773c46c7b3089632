"""The collector's local copy of its metrics, in the shape of the third document's metrics.json."""

from __future__ import annotations

import math
import threading
import time
from datetime import UTC, datetime
from typing import Any

__all__ = ["MetricMirror"]

MAX_SERIES = 5000  # the hub's per-engine series cap; names past it are not mirrored
FOLD_EVERY = 4096  # a name's pending values are folded by the writer that reaches this many


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _numbers(values: list[Any]) -> list[float]:
    """The finite numbers among `values` (the client counted the others as invalid)."""
    return [
        float(v)
        for v in values
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    ]


class MetricMirror:
    """Counters, gauges and timers by name, read back by the old API.

    A write appends to the name's pending list (one atomic `list.append`) or stores a gauge (the
    last value wins anyway), so a compatibility call costs little more than the client call it
    wraps. Pending values are folded with C-level `sum`/`min`/`max` on read, or by a writer
    every `FOLD_EVERY` values; folding takes a prefix and deletes it (`del values[:n]`, atomic),
    so a value appended meanwhile is never lost. A counter's or timer's `timestamp` is when it
    was last folded, a gauge's the time of reading. Counters start from `base` (earlier boots'
    totals when `reset_on_startup` is false). Counters and timers show the tags of their first
    update, gauges of their last.
    """

    def __init__(self) -> None:
        self.pending_counts: dict[str, list[Any]] = {}
        self.pending_times: dict[str, list[Any]] = {}
        self.tags: dict[str, dict[str, Any]] = {}
        self.gauges: dict[str, tuple[float, dict[str, Any]]] = {}
        self.counters: dict[str, list[float]] = {}  # name -> [value, ts]
        self.timers: dict[str, list[float]] = {}  # name -> [count, sum, min, max, last, ts]
        self.base: dict[str, float] = {}
        self._lock = threading.Lock()

    def series(self, pending: dict[str, list[Any]], name: str, tags: dict[str, Any]) -> list[Any]:
        """The pending list of a new name, which keeps its first tags (a throwaway list past
        MAX_SERIES)."""
        with self._lock:
            values = pending.get(name)
            if values is None:
                values = []
                if len(pending) < MAX_SERIES:
                    pending[name] = values
                    self.tags[name] = tags
            return values

    def fold(self) -> None:
        """Apply every pending value (safe from any thread)."""
        with self._lock:
            now = time.time()
            for name, values in list(self.pending_counts.items()):
                if values:
                    self._fold_count(name, values, now)
            for name, values in list(self.pending_times.items()):
                if values:
                    self._fold_time(name, values, now)

    def fold_count(self, name: str, values: list[Any]) -> None:
        """Fold one counter's pending values (its writer reached FOLD_EVERY)."""
        with self._lock:
            self._fold_count(name, values, time.time())

    def fold_time(self, name: str, values: list[Any]) -> None:
        """Fold one timer's pending values (its writer reached FOLD_EVERY)."""
        with self._lock:
            self._fold_time(name, values, time.time())

    def _fold_count(self, name: str, values: list[Any], now: float) -> None:
        n = len(values)
        taken = values[:n]
        del values[:n]
        try:
            total = math.fsum(taken)
        except (TypeError, ValueError, OverflowError):
            total = math.fsum(_numbers(taken))
        entry = self.counters.setdefault(name, [0.0, now])
        entry[0] += total
        entry[1] = now

    def _fold_time(self, name: str, values: list[Any], now: float) -> None:
        n = len(values)
        taken = values[:n]
        del values[:n]
        try:
            low, high, total = min(taken), max(taken), math.fsum(taken)  # C speed when all fine
            clean = math.isfinite(total) and not any(type(v) is bool for v in (low, high))
        except (TypeError, ValueError, OverflowError):
            clean = False
        if not clean:
            taken = _numbers(taken)
            if not taken:
                return
            low, high, total = min(taken), max(taken), math.fsum(taken)
        entry = self.timers.get(name)
        if entry is None:
            entry = self.timers[name] = [0, 0.0, math.inf, -math.inf, 0.0, now]
        entry[0] += len(taken)
        entry[1] += total
        entry[2] = min(entry[2], low)
        entry[3] = max(entry[3], high)
        entry[4], entry[5] = taken[-1], now

    def counter(self, name: str) -> float:
        """A counter's value as the old API reported it (session, or lifetime with a base)."""
        entry = self.counters.get(name)
        return self.base.get(name, 0.0) + (entry[0] if entry is not None else 0.0)

    def snapshot(self, now: float) -> dict[str, Any]:
        """{"timestamp","counters","gauges","histograms","timers"} as in metrics.json."""
        self.fold()
        tags = self.tags
        counters = {
            name: {
                "name": name,
                "type": "counter",
                "value": self.base.get(name, 0.0) + value,
                "session": value,
                "timestamp": _iso(ts),
                "tags": dict(tags.get(name, {})),
            }
            for name, (value, ts) in list(self.counters.items())
        }
        for name, value in self.base.items():
            if name not in counters:
                counters[name] = {"name": name, "type": "counter", "value": value, "session": 0}
        gauges = {
            name: {
                "name": name,
                "type": "gauge",
                "value": value,
                "timestamp": _iso(now),
                "tags": dict(gauge_tags),
            }
            for name, (value, gauge_tags) in list(self.gauges.items())
        }
        timers = {
            name: {
                "name": name,
                "type": "timer",
                "count": int(count),
                "sum": total,
                "min": low,
                "max": high,
                "avg": total / count,
                "last": last,
                "timestamp": _iso(ts),
                "tags": dict(tags.get(name, {})),
            }
            for name, (count, total, low, high, last, ts) in list(self.timers.items())
        }
        return {
            "timestamp": _iso(now),
            "counters": counters,
            "gauges": gauges,
            "histograms": {},
            "timers": timers,
        }
