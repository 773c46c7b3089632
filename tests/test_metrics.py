"""MetricRegistry: counters, gauges and histograms per engine, sessions, conflicts, series cap."""

from __future__ import annotations

from typing import Any

import pytest

from hub.core.messages import ErrorCode, Metric
from hub.core.metrics import MetricRegistry, MetricRejected, series_bytes

T0 = 1_700_000_000.0


def metric(op: str, name: str, value: float = 1.0, **tags: str) -> Metric:
    return Metric(seq=1, op=op, name=name, value=value, tags=tags)  # type: ignore[arg-type]


def applied(*metrics: Metric, engine: str = "fno", max_series: int = 5000) -> MetricRegistry:
    registry = MetricRegistry(max_series)
    for m in metrics:
        registry.apply(engine, m, T0)
    return registry


def only(registry: MetricRegistry, group: str, engine: str = "fno") -> dict[str, Any]:
    [series] = registry.snapshot(engine)[group]
    return series


def test_counter_sums_increments() -> None:
    """inc adds its value (default 1) to both session and lifetime totals."""
    registry = applied(metric("inc", "fills"), metric("inc", "fills", 2.5))
    fills = only(registry, "counters")
    assert (fills["value"], fills["session"], fills["lifetime"]) == (3.5, 3.5, 3.5)
    assert (fills["name"], fills["tags"], fills["updated_at"]) == ("fills", {}, T0)


def test_gauge_keeps_last_value() -> None:
    """set replaces the gauge value."""
    registry = applied(metric("set", "equity", 100), metric("set", "equity", -5))
    assert only(registry, "gauges")["value"] == -5


def test_histogram_summarizes_observations() -> None:
    """observe feeds a sketch: count, sum, min, max and quantiles."""
    registry = applied(*(metric("observe", "latency", v) for v in (0.1, 0.2, 0.3, 0.4)))
    summary = only(registry, "histograms")["lifetime"]
    assert (summary["count"], summary["min"], summary["max"]) == (4, 0.1, 0.4)
    assert summary["sum"] == pytest.approx(1.0)
    assert summary["p50"] == pytest.approx(0.2, rel=0.02)


def test_tag_order_does_not_matter() -> None:
    """The same tags in another order address the same series."""
    registry = applied(
        metric("inc", "signals", strategy="mr", symbol="NIFTY"),
        metric("inc", "signals", symbol="NIFTY", strategy="mr"),
    )
    series = only(registry, "counters")
    assert series["lifetime"] == 2
    assert series["tags"] == {"strategy": "mr", "symbol": "NIFTY"}


def test_different_tag_values_are_separate_series() -> None:
    """Each distinct tag set is its own series."""
    registry = applied(
        metric("inc", "signals", strategy="mr"),
        metric("inc", "signals", strategy="trend"),
        metric("inc", "signals"),
    )
    counters = registry.snapshot("fno")["counters"]
    assert [(c["tags"], c["lifetime"]) for c in counters] == [
        ({}, 1.0),
        ({"strategy": "mr"}, 1.0),
        ({"strategy": "trend"}, 1.0),
    ]


def test_engines_are_separate() -> None:
    """The same metric name on two engines are two series."""
    registry = MetricRegistry(5000)
    registry.apply("fno", metric("inc", "fills"), T0)
    registry.apply("equity", metric("inc", "fills", 4), T0)
    assert only(registry, "counters", "fno")["lifetime"] == 1
    assert only(registry, "counters", "equity")["lifetime"] == 4


@pytest.mark.parametrize(
    ("first", "second"),
    [("inc", "set"), ("set", "observe"), ("observe", "inc")],
)
def test_kind_conflict_same_series(first: str, second: str) -> None:
    """An op that does not match the series' kind is rejected with metric_conflict."""
    registry = applied(metric(first, "x", 1))
    with pytest.raises(MetricRejected) as info:
        registry.apply("fno", metric(second, "x", 1), T0)
    assert info.value.code is ErrorCode.METRIC_CONFLICT
    assert "'x'" in info.value.detail


def test_kind_conflict_across_tags() -> None:
    """A name keeps its kind across tag sets: a gauge cannot reuse a counter's name."""
    registry = applied(metric("inc", "x", strategy="mr"))
    with pytest.raises(MetricRejected) as info:
        registry.apply("fno", metric("set", "x", 1, strategy="trend"), T0)
    assert info.value.code is ErrorCode.METRIC_CONFLICT
    assert registry.snapshot("fno")["gauges"] == []


def test_conflict_leaves_value_unchanged() -> None:
    """A rejected message does not change the existing series."""
    registry = applied(metric("inc", "x", 2))
    with pytest.raises(MetricRejected):
        registry.apply("fno", metric("set", "x", 100), T0)
    assert only(registry, "counters")["lifetime"] == 2


def test_series_cap_per_engine() -> None:
    """Past max_series a new series is rejected; existing series and other engines still work."""
    registry = applied(metric("inc", "a"), metric("set", "b", 1), max_series=2)
    with pytest.raises(MetricRejected) as info:
        registry.apply("fno", metric("inc", "a", tag="new"), T0)
    assert info.value.code is ErrorCode.TOO_MANY_SERIES
    registry.apply("fno", metric("inc", "a"), T0)
    assert registry.snapshot("fno")["counters"][0]["lifetime"] == 2
    registry.apply("equity", metric("inc", "a"), T0)
    assert len(registry.engines["fno"].series) == 2


def test_new_session_resets_counters_and_histograms_not_lifetime() -> None:
    """A new boot restarts session counters and histograms; lifetime values and gauges stay."""
    registry = applied(
        metric("inc", "fills", 3), metric("set", "equity", 7), metric("observe", "lat", 0.5)
    )
    registry.new_session("fno")
    snapshot = registry.snapshot("fno")
    [fills], [equity], [lat] = snapshot["counters"], snapshot["gauges"], snapshot["histograms"]
    assert (fills["session"], fills["lifetime"]) == (0.0, 3.0)
    assert equity["value"] == 7
    assert (lat["session"]["count"], lat["lifetime"]["count"]) == (0, 1)
    registry.apply("fno", metric("inc", "fills"), T0)
    assert only(registry, "counters")["session"] == 1
    assert only(registry, "counters")["lifetime"] == 4


def test_snapshot_sorted_and_empty() -> None:
    """snapshot() groups by kind sorted by name; an unknown engine has empty groups."""
    registry = applied(metric("inc", "zeta"), metric("inc", "alpha"), metric("set", "mid", 1))
    assert [c["name"] for c in registry.snapshot("fno")["counters"]] == ["alpha", "zeta"]
    assert registry.snapshot("nobody") == {"counters": [], "gauges": [], "histograms": []}


@pytest.mark.parametrize("key", ["__name__", "__meta_x", "engine", "mode", "quantile", "le"])
def test_reserved_tag_keys_are_refused(key: str) -> None:
    """Tags /metrics adds itself or Prometheus reserves are rejected as bad_message, naming the tag."""
    with pytest.raises(MetricRejected) as caught:
        applied(metric("inc", "fills", **{key: "x"}))
    assert caught.value.code is ErrorCode.BAD_MESSAGE and repr(key) in caught.value.detail


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("inc", "a.b"), ("inc", "a_b")),
        (("set", "a-b"), ("set", "a:b")),
        (("inc", "orders_total"), ("inc", "orders")),
        (("inc", "orders"), ("set", "orders_total")),
        (("observe", "lat"), ("set", "lat_count")),
        (("observe", "lat"), ("observe", "lat_bucket")),
        (("inc", "clash"), ("set", "clash")),
    ],
)
def test_names_with_one_prometheus_name_are_refused_across_engines(
    first: tuple[str, str], second: tuple[str, str]
) -> None:
    """A second name whose samples would land in another's Prometheus series is refused."""
    registry = applied(metric(*first))
    with pytest.raises(MetricRejected) as caught:
        registry.apply("equity", metric(*second), T0)
    assert caught.value.code is ErrorCode.METRIC_CONFLICT and "rename it" in caught.value.detail
    assert registry.snapshot("equity") == {"counters": [], "gauges": [], "histograms": []}


def test_same_name_and_kind_is_shared_by_engines() -> None:
    """Two engines may both use one name with one kind; the family lists both."""
    registry = applied(metric("inc", "fills"))
    registry.apply("equity", metric("inc", "fills"), T0)
    [family] = registry.families.values()
    assert family.engines == {"fno", "equity"}


def test_series_are_capped_by_bytes_per_engine_and_counted() -> None:
    """5,000 series with 15 tags of 256 chars stop at the byte cap; another engine still gets in."""
    registry = MetricRegistry(5000, max_series_bytes_per_engine=4_000_000, max_series_bytes=10**9)
    refused = 0
    for i in range(5000):
        tags = {f"t{j}": f"{i:05d}" + "v" * 251 for j in range(15)}
        try:
            registry.apply("fno", metric("inc", "wide", **tags), T0)
        except MetricRejected as exc:
            assert exc.code is ErrorCode.TOO_MANY_SERIES
            assert "max_series_bytes_per_engine=4000000" in exc.detail
            refused += 1
    kept = len(registry.engines["fno"].series)
    assert kept + refused == 5000 and 0 < kept < 1000
    assert registry.engines["fno"].bytes <= 4_000_000
    assert registry.drops["metric_series_bytes"] == refused
    registry.apply("equity", metric("inc", "wide", t0="x"), T0)
    assert len(registry.engines["equity"].series) == 1


def test_series_are_capped_by_bytes_hub_wide() -> None:
    """The hub-wide byte cap refuses new series from any engine once all engines reach it."""
    cost = series_bytes("m", (("k", "v" * 100),))
    registry = MetricRegistry(5000, max_series_bytes_per_engine=10**9, max_series_bytes=3 * cost)
    for engine in ("a", "b", "c"):
        registry.apply(engine, metric("inc", "m", k="v" * 100), T0)
    with pytest.raises(MetricRejected) as caught:
        registry.apply("d", metric("inc", "m", k="v" * 100), T0)
    assert "max_series_bytes=" in caught.value.detail
    assert registry.drops["metric_series_bytes_hub"] == 1 and registry.bytes == 3 * cost


def test_forget_frees_an_engines_series_bytes_and_unshared_families() -> None:
    """forget() drops an engine's series and bytes; a family only it used is released."""
    registry = applied(metric("inc", "fills"), metric("set", "pnl", 3.0, book="a"))
    registry.apply("eq", metric("inc", "fills"), T0)
    shared_bytes = registry.engines["eq"].bytes
    assert registry.forget("fno") == 2
    assert "fno" not in registry.engines
    assert registry.bytes == shared_bytes
    assert registry.families["engine_metric_fills"].engines == {"eq"}
    assert "engine_metric_pnl" not in registry.families
    registry.apply("eq", metric("observe", "pnl", 0.5), T0)  # the name is free for another kind
    assert registry.forget("nobody") == 0
