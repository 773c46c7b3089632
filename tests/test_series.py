"""The downsampler (hub/core/series.py) and re-bucketing (hub/stores/lines.py), checked against
references computed here from the raw values."""

from __future__ import annotations

import math
import random
import time
from collections import Counter, defaultdict
from typing import Any

import pytest

from hub.core.ingested import Ingested
from hub.core.messages import Metric
from hub.core.metrics import MetricKind, MetricRegistry
from hub.core.series import Downsampler, Point, Tier
from hub.settings import Settings
from hub.stores.base import SeriesQuery
from hub.stores.lines import MAX_POINTS, plan
from hub.stores.memory import MemoryStore

# A multiple of 300 (buckets start on it) an hour ago: stores answer from fine buckets this recent.
T0 = float(int(time.time() // 300 * 300 - 3600))
OPS = {MetricKind.COUNTER: "inc", MetricKind.GAUGE: "set", MetricKind.HISTOGRAM: "observe"}


def feed(
    settings: Settings,
    rng: random.Random,
    seconds: float,
    per_second: float,
    boots: int = 1,
    tick: float = 1.0,
) -> tuple[list[Point], list[tuple[str, float, float]], Counter[str]]:
    """Random values of one counter, one gauge and one histogram through the real registry and
    downsampler, over `boots` engine boots; returns every point (drained every `tick` seconds,
    as the hub does every second, and at the end), the raw (name, time, value) and the drops."""
    drops: Counter[str] = Counter()
    registry = MetricRegistry.from_settings(settings, drops)
    sampler = Downsampler(settings, drops)
    raw: list[tuple[str, float, float]] = []
    points: list[Point] = []
    now, due, seq = T0 + rng.random(), T0 + tick, 0
    boot_every = seconds / boots
    next_boot = T0 + boot_every
    while now < T0 + seconds:
        if now >= next_boot:  # a new boot: session values restart, history must not notice
            registry.new_session("alpha")
            next_boot += boot_every
        kind = rng.choice(list(OPS))
        name = kind.value
        value = {
            MetricKind.COUNTER: float(rng.randint(0, 5)),
            MetricKind.GAUGE: rng.uniform(-50, 50),
            MetricKind.HISTOGRAM: rng.lognormvariate(-3, 1.5),
        }[kind]
        seq += 1
        series = registry.apply("alpha", Metric(seq, OPS[kind], name, value), now)  # type: ignore[arg-type]
        sampler.add("alpha", series, value, now)
        raw.append((name, now, value))
        now += rng.expovariate(per_second)
        while due <= now:
            points += sampler.drain(due)
            due += tick
    points += sampler.drain(now, final=True)
    return points, raw, drops


def reference(
    raw: list[tuple[str, float, float]], name: str, width: float
) -> dict[float, list[float]]:
    """The raw values of `name` grouped by the bucket of width `width` their time falls in."""
    groups: dict[float, list[float]] = defaultdict(list)
    for metric, ts, value in raw:
        if metric == name:
            groups[ts - ts % width].append(value)
    return groups


def quantile(values: list[float], q: float) -> float:
    """The rank the sketch aims at: the value at index floor(q * (n - 1)) of the sorted values."""
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


def check(kind: MetricKind, values: list[float], bucket: Any) -> None:
    """One stored bucket against the raw values it summarises."""
    assert bucket.count == len(values)
    assert bucket.sum == pytest.approx(math.fsum(values), rel=1e-9, abs=1e-9)
    assert bucket.sketch is None if kind is not MetricKind.HISTOGRAM else bucket.sketch.count
    if kind is MetricKind.GAUGE:
        assert (bucket.last, bucket.min, bucket.max) == (values[-1], min(values), max(values))
    if kind is MetricKind.HISTOGRAM:
        for q in (0.5, 0.95, 0.99):
            assert bucket.sketch.quantile(q) == pytest.approx(quantile(values, q), rel=0.02)


@pytest.mark.parametrize("tick", [1.0, 10_000.0])  # the hub's tick, or no drain until the end
@pytest.mark.parametrize("seed", range(6))
def test_buckets_match_the_raw_values_they_summarise(seed: int, tick: float) -> None:
    """Every fine and coarse bucket of a counter, gauge and histogram holds exactly the values
    that arrived in it: count, sum, last/min/max, and quantiles within the sketch's 2%."""
    settings = Settings()
    rng = random.Random(seed)
    rate = rng.uniform(0.5, 20)
    points, raw, drops = feed(settings, rng, seconds=1500, per_second=rate, boots=3, tick=tick)
    assert not drops
    for kind in OPS:
        for tier, width in ((Tier.FINE, 10.0), (Tier.COARSE, 300.0)):
            want = reference(raw, kind.value, width)
            got = [p for p in points if p.name == kind.value and p.tier is tier]
            assert [p.bucket.start for p in got] == sorted(want), (
                kind,
                tier,
            )  # once each, in order
            for point in got:
                check(kind, want[point.bucket.start], point.bucket)


@pytest.mark.parametrize("seed", range(4))
async def test_lines_rebucket_to_the_step_like_the_raw_values(seed: int) -> None:
    """A store's lines at a step over a range are the raw values regrouped by that step: counter
    rate = increments / step (never negative across boots), gauge last/min/max/mean, histogram
    quantiles and count; a step without values is None."""
    settings = Settings()
    rng = random.Random(100 + seed)
    points, raw, _ = feed(settings, rng, seconds=1200, per_second=rng.uniform(0.2, 5), boots=2)
    store = MemoryStore(settings=settings)
    ingested = Ingested()
    ingested.points = points
    store.append(ingested)
    step = rng.choice([10.0, 30.0, 60.0, 120.0])
    since = T0 + rng.choice([0.0, 7.0, 60.0])
    until = T0 + rng.choice([600.0, 1200.0, 1234.0])
    for kind in OPS:
        query = SeriesQuery("alpha", kind.value, since, until, step)
        used, lines = await store.series(query)
        assert used == step
        want = reference([r for r in raw if r[1] < until], kind.value, step)
        first = since - since % step
        starts = [first + i * step for i in range(math.ceil((until - first) / step))]
        by_stat = {line.stat: line for line in lines}
        for stat, line in by_stat.items():
            assert [t for t, _ in line.points] == starts, stat
            for t, value in line.points:
                values = want.get(t)
                if not values:
                    assert value is None, (stat, t)
                    continue
                expected = {
                    "rate": math.fsum(values) / step,
                    "value": values[-1],
                    "min": min(values),
                    "max": max(values),
                    "mean": math.fsum(values) / len(values),
                    "count": float(len(values)),
                    "sum": math.fsum(values),
                }.get(stat)
                if stat.startswith("p"):
                    expected = quantile(values, int(stat[1:]) / 100)
                    assert value == pytest.approx(expected, rel=0.02), (stat, t)
                else:
                    assert value == pytest.approx(expected, rel=1e-9, abs=1e-12), (stat, t)
                if stat == "rate":
                    assert value is not None and value >= 0
        assert (
            set(by_stat)
            == {
                MetricKind.COUNTER: {"rate"},
                MetricKind.GAUGE: {"value", "min", "max", "mean"},
                MetricKind.HISTOGRAM: {"p50", "p95", "p99", "count", "sum"},
            }[kind]
        )


def test_a_quiet_series_closes_its_buckets_on_the_tick_and_partials_only_at_the_end() -> None:
    """drain(now) hands out a bucket once its end has passed, even with no later value; an open
    one only when final."""
    settings = Settings()
    registry, sampler = MetricRegistry.from_settings(settings), Downsampler(settings)
    series = registry.apply("alpha", Metric(1, "set", "g", 1.0), T0 + 1)
    sampler.add("alpha", series, 1.0, T0 + 1)
    assert sampler.drain(T0 + 9.9) == []
    [fine] = sampler.drain(T0 + 10)
    assert (fine.tier, fine.bucket.start, fine.bucket.last) == (Tier.FINE, T0, 1.0)
    assert sampler.drain(T0 + 299) == []
    [partial] = sampler.drain(T0 + 299, final=True)
    assert (partial.tier, partial.bucket.start) == (Tier.COARSE, T0)
    assert sampler.drain(T0 + 1000, final=True) == []


def test_series_beyond_the_cap_stay_live_and_their_values_are_counted() -> None:
    """At max_history_series_per_engine tracked series, a further series gets no buckets; each of its
    values counts as series_history_cap; another engine has its own cap."""
    settings = Settings(max_history_series_per_engine=2)
    drops: Counter[str] = Counter()
    registry, sampler = MetricRegistry.from_settings(settings, drops), Downsampler(settings, drops)
    for engine in ("alpha", "beta"):
        for n in range(3):
            for _ in range(2):
                series = registry.apply(engine, Metric(1, "inc", f"c{n}"), T0)
                sampler.add(engine, series, 1.0, T0)
    points = sampler.drain(T0 + 300)
    assert sorted({(p.engine, p.name) for p in points}) == [
        ("alpha", "c0"), ("alpha", "c1"), ("beta", "c0"), ("beta", "c1"),
    ]  # fmt: skip
    assert drops["series_history_cap"] == 4


def test_the_tier_follows_step_and_range_and_the_step_rounds_to_whole_buckets() -> None:
    """Fine buckets answer steps below 5 min over the last day; coarse ones the rest."""
    settings = Settings()
    now = T0 + 10 * 86_400

    def tier(since: float, step: float) -> tuple[Tier, float]:
        return plan(SeriesQuery("a", "m", since, now, step), now, settings)

    assert tier(now - 3600, 10) == (Tier.FINE, 10)
    assert tier(now - 3600, 15) == (Tier.FINE, 20)
    assert tier(now - 3600, 300) == (Tier.COARSE, 300)
    assert tier(now - 2 * 86_400, 10) == (Tier.COARSE, 300)
    assert tier(now - 2 * 86_400, 301) == (Tier.COARSE, 600)
    assert MAX_POINTS >= 86_400 / 60  # a day at one point a minute fits


def test_settings_refuse_a_coarse_step_that_is_not_whole_fine_steps() -> None:
    """A coarse bucket must be made of whole fine ones."""
    with pytest.raises(Exception, match="whole multiple"):
        Settings(series_fine_step=7, series_coarse_step=300)
