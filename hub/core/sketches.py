"""A small mergeable quantile sketch (log-spaced buckets, about 1% relative error)."""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from typing import Any

import msgspec

__all__ = ["Sketch", "pack_bins", "sketch_from_dict", "sketch_to_dict", "unpack_bins"]

_GAMMA = 1.02  # bucket growth factor: quantiles are within ~1% of the true value
_LOG_GAMMA = math.log(_GAMMA)
_MIN_POSITIVE = 1e-9  # smaller magnitudes share the zero bucket


class Sketch:
    """Count, sum, min, max and approximate quantiles of observed values in bounded memory."""

    __slots__ = ("count", "max", "min", "_neg", "_pos", "sum", "_zero")

    def __init__(self) -> None:
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self._pos: dict[int, int] = {}
        self._neg: dict[int, int] = {}
        self._zero = 0

    def observe(self, value: float) -> None:
        """Record one value."""
        self.count += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        if value > _MIN_POSITIVE:
            key = math.ceil(math.log(value) / _LOG_GAMMA)
            self._pos[key] = self._pos.get(key, 0) + 1
        elif value < -_MIN_POSITIVE:
            key = math.ceil(math.log(-value) / _LOG_GAMMA)
            self._neg[key] = self._neg.get(key, 0) + 1
        else:
            self._zero += 1

    def merge(self, other: Sketch) -> None:
        """Fold in every observation of `other` (the buckets add up: quantiles stay ~1%)."""
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        for mine, theirs in ((self._pos, other._pos), (self._neg, other._neg)):
            for key, n in theirs.items():
                mine[key] = mine.get(key, 0) + n
        self._zero += other._zero

    def quantile(self, q: float) -> float | None:
        """The approximate `q`-quantile (0..1), clamped to [min, max]; None when empty."""
        if not self.count:
            return None
        rank = q * (self.count - 1)
        seen = 0
        for key in sorted(self._neg, reverse=True):
            seen += self._neg[key]
            if seen > rank:
                return self._clamp(-_value(key))
        seen += self._zero
        if seen > rank:
            return self._clamp(0.0)
        for key in sorted(self._pos):
            seen += self._pos[key]
            if seen > rank:
                return self._clamp(_value(key))
        return self.max

    def quantiles(self, qs: Sequence[float]) -> list[float | None]:
        """`quantile` of each of `qs`, from one sort and running counts (bisected, not walked)."""
        if not self.count:
            return [None] * len(qs)
        neg_keys = sorted(self._neg, reverse=True)  # value order: most negative first
        neg_seen = list(itertools.accumulate(map(self._neg.__getitem__, neg_keys)))
        pos_keys = sorted(self._pos)
        pos_seen = list(itertools.accumulate(map(self._pos.__getitem__, pos_keys)))
        below = neg_seen[-1] if neg_seen else 0
        through = below + self._zero
        out: list[float | None] = []
        for q in qs:
            rank = q * (self.count - 1)  # the first bucket whose running count passes it
            if rank < below:
                value = -_value(neg_keys[bisect.bisect_right(neg_seen, rank)])
            elif rank < through:
                value = 0.0
            else:
                at = bisect.bisect_right(pos_seen, rank - through)
                value = _value(pos_keys[at]) if at < len(pos_keys) else self.max
            out.append(self._clamp(value))
        return out

    def cumulative(self, bounds: Sequence[float]) -> list[int]:
        """Observations <= each ascending positive bound (by bucket midpoint, within ~1%)."""
        per_bound = [0] * (len(bounds) + 1)
        for key, n in self._pos.items():
            per_bound[bisect.bisect_left(bounds, _value(key))] += n
        below = sum(self._neg.values()) + self._zero
        out: list[int] = []
        for n in per_bound[:-1]:
            below += n
            out.append(below)
        return out

    def _clamp(self, value: float) -> float:
        return min(max(value, self.min), self.max)

    def summary(self) -> dict[str, float | int | None]:
        """count, sum, min, max, p50, p95, p99 as a JSON-ready dict."""
        empty = not self.count
        return {
            "count": self.count,
            "sum": self.sum,
            "min": None if empty else self.min,
            "max": None if empty else self.max,
            "p50": self.quantile(0.50),
            "p95": self.quantile(0.95),
            "p99": self.quantile(0.99),
        }


def sketch_to_dict(sketch: Sketch) -> dict[str, Any]:
    """A JSON-ready copy of `sketch` (for the history store)."""
    return {
        "count": sketch.count,
        "sum": sketch.sum,
        "min": sketch.min if sketch.count else None,
        "max": sketch.max if sketch.count else None,
        "pos": sketch._pos,
        "neg": sketch._neg,
        "zero": sketch._zero,
    }


def sketch_from_dict(data: dict[str, Any]) -> Sketch:
    """The sketch `sketch_to_dict` described."""
    sketch = Sketch()
    sketch.count = int(data["count"])
    sketch.sum = float(data["sum"])
    if sketch.count:
        sketch.min, sketch.max = float(data["min"]), float(data["max"])
    sketch._pos = {int(k): int(v) for k, v in data["pos"].items()}
    sketch._neg = {int(k): int(v) for k, v in data["neg"].items()}
    sketch._zero = int(data["zero"])
    return sketch


def _value(key: int) -> float:
    """Representative value of bucket `key`: the midpoint of (gamma^(k-1), gamma^k]."""
    return 2 * _GAMMA**key / (1 + _GAMMA)


_Bins = tuple[int, list[int], list[int]]
_encode_bins = msgspec.msgpack.Encoder().encode
_decode_bins = msgspec.msgpack.Decoder(_Bins).decode


def pack_bins(sketch: Sketch) -> bytes:
    """The sketch's buckets alone, compact (msgpack: zero count, flat key/count pairs of the
    positive and the negative side); count, sum, min and max are kept beside them."""
    pos = [x for pair in sketch._pos.items() for x in pair]
    neg = [x for pair in sketch._neg.items() for x in pair]
    return _encode_bins((sketch._zero, pos, neg))


def unpack_bins(blob: bytes, count: int, total: float, low: float, high: float) -> Sketch:
    """The sketch `pack_bins` packed, with its count, sum, min and max."""
    zero, pos, neg = _decode_bins(blob)
    sketch = Sketch()
    sketch.count, sketch.sum, sketch.min, sketch.max = count, total, low, high
    sketch._zero = zero
    sketch._pos = dict(zip(pos[::2], pos[1::2], strict=True))
    sketch._neg = dict(zip(neg[::2], neg[1::2], strict=True))
    return sketch
