"""Prometheus `/metrics`: valid exposition of hub and engine metrics with engine and mode labels."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import RunningHub, connect_engine, unique


async def test_metrics_exposition(hub: RunningHub) -> None:
    """Engine counters, gauges and histograms and hub health parse as valid Prometheus text."""
    name = unique("prom")
    engine = await connect_engine(hub, name, mode="live")
    await engine.send(
        {"kind": "heartbeat", "status": "running", "loop_tick": 42},
        {
            "kind": "metric",
            "op": "inc",
            "name": "signals.long",
            "value": 3,
            "tags": {"strategy": "mr"},
        },
        {"kind": "metric", "op": "set", "name": "equity", "value": 1000.5},
        {"kind": "metric", "op": "observe", "name": "cycle.seconds", "value": 0.2},
        batch=True,
    )
    await engine.wait_acked()
    response = await hub.http.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    labels = (("engine", name), ("mode", "live"))
    assert (
        samples[
            ("engine_signals_long_total", (("engine", name), ("mode", "live"), ("strategy", "mr")))
        ]
        == 3
    )
    assert samples[("engine_equity", labels)] == 1000.5
    assert samples[("engine_cycle_seconds_count", labels)] == 1
    assert samples[("engine_hub_engine_up", labels)] == 1
    assert samples[("engine_hub_engine_loop_tick", labels)] == 42
    assert (
        samples[
            ("engine_hub_engine_health", (("engine", name), ("health", "ok"), ("mode", "live")))
        ]
        == 1
    )
    await engine.close()


async def test_metric_kind_conflict_is_rejected(hub: RunningHub) -> None:
    """Using a counter name as a gauge is rejected with metric_conflict and /metrics stays valid."""
    engine = await connect_engine(hub, unique("conflict"))
    await engine.send({"kind": "metric", "op": "inc", "name": "clash"})
    await engine.send({"kind": "metric", "op": "set", "name": "clash", "value": 2})
    error = await engine.next_error()
    assert error["code"] == "metric_conflict"
    other = await connect_engine(hub, unique("conflict2"))
    await other.send({"kind": "metric", "op": "set", "name": "clash", "value": 2})
    await other.wait_acked()
    text = (await hub.http.get("/metrics")).text
    assert list(text_string_to_metric_families(text))
    await engine.close()
    await other.close()
