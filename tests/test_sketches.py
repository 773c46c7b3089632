"""Sketch: approximate quantiles within ~1-2% relative error, exact count/sum/min/max."""

from __future__ import annotations

import math
import random

import pytest

from hub.core.sketches import Sketch

QUANTILES = (0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)


def sketch_of(values: list[float]) -> Sketch:
    sketch = Sketch()
    for value in values:
        sketch.observe(value)
    return sketch


def exact(values: list[float], q: float) -> float:
    """The exact q-quantile by the same rank rule (the value at rank floor(q * (n - 1)))."""
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


def assert_close(sketch: Sketch, values: list[float]) -> None:
    for q in QUANTILES:
        got = sketch.quantile(q)
        want = exact(values, q)
        assert got == pytest.approx(want, rel=0.02), (q, got, want)


def test_lognormal_quantiles_within_two_percent() -> None:
    """On 10,000 lognormal latencies every quantile is within 2% of the exact one."""
    rng = random.Random(20240501)
    values = [rng.lognormvariate(-3.0, 1.5) for _ in range(10_000)]
    assert_close(sketch_of(values), values)


def test_wide_range_quantiles_within_two_percent() -> None:
    """Values spanning twelve orders of magnitude keep the relative error bound."""
    rng = random.Random(7)
    values = [10 ** rng.uniform(-6, 6) for _ in range(5_000)]
    assert_close(sketch_of(values), values)


def test_negative_values() -> None:
    """Negative observations (e.g. slippage) are ordered correctly and within 2%."""
    rng = random.Random(11)
    values = [-rng.lognormvariate(0.0, 1.0) for _ in range(5_000)]
    values += [rng.lognormvariate(0.0, 1.0) for _ in range(2_000)]
    sketch = sketch_of(values)
    assert_close(sketch, values)
    assert sketch.quantile(0.5) < 0


def test_zeros() -> None:
    """Zero is its own bucket: all-zero input has zero quantiles; mixed input places it right."""
    assert sketch_of([0.0] * 10).quantile(0.5) == 0.0
    sketch = sketch_of([-2.0, 0.0, 0.0, 0.0, 3.0])
    assert sketch.quantile(0.5) == 0.0
    assert sketch.quantile(0.0) == -2.0
    assert sketch.quantile(1.0) == 3.0


def test_single_value_is_exact() -> None:
    """With one observation every quantile is that value (clamped to min and max)."""
    sketch = sketch_of([0.123456])
    assert {sketch.quantile(q) for q in QUANTILES} == {0.123456}


def test_empty_sketch() -> None:
    """An empty sketch has no quantiles and a summary with nulls."""
    sketch = Sketch()
    assert sketch.quantile(0.5) is None
    assert sketch.summary() == {
        "count": 0,
        "sum": 0.0,
        "min": None,
        "max": None,
        "p50": None,
        "p95": None,
        "p99": None,
    }


def test_summary_exact_aggregates() -> None:
    """count, sum, min and max are exact; p50/p95/p99 approximate."""
    values = [float(v) for v in range(1, 101)]
    summary = sketch_of(values).summary()
    assert (summary["count"], summary["sum"], summary["min"], summary["max"]) == (
        100,
        5050.0,
        1.0,
        100.0,
    )
    assert summary["p50"] == pytest.approx(50, rel=0.02)
    assert summary["p95"] == pytest.approx(95, rel=0.02)
    assert summary["p99"] == pytest.approx(99, rel=0.02)


def test_memory_is_bounded_by_range_not_count() -> None:
    """Many observations in a narrow range share a few buckets."""
    rng = random.Random(3)
    sketch = sketch_of([rng.uniform(1.0, 2.0) for _ in range(20_000)])
    assert sketch.count == 20_000
    assert len(sketch._pos) < 40


def test_cumulative_counts_by_bound() -> None:
    """cumulative gives Prometheus-style `le` counts; zero and negatives are under every bound."""
    sketch = Sketch()
    for value in (-1.0, 0.0, 0.004, 0.2, 0.2, 3.0, 500.0):
        sketch.observe(value)
    assert sketch.cumulative((0.001, 0.01, 0.5, 5.0, 60.0)) == [2, 3, 5, 6, 6]
