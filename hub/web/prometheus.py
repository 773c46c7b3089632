"""Prometheus `/metrics`: a custom collector over the hub's state (no global registry)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.samples import Sample
from starlette.requests import Request
from starlette.responses import Response

from hub.core.engines import Health, derive_health
from hub.core.metrics import MetricKind
from hub.core.sketches import Sketch
from hub.web.runtime import Hub

__all__ = ["HubCollector", "metrics_endpoint", "registry_for"]

_INVALID = re.compile(r"[^a-zA-Z0-9_]")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _family_name(name: str) -> str:
    return "engine_" + _INVALID.sub("_", name)


class HubCollector:
    """Exposes hub health and every engine metric with `engine` and `mode` labels."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def collect(self) -> Iterator[Metric]:
        """Build the families from the current state (called per scrape)."""
        hub, now = self._hub, time.time()
        state = hub.state
        up = GaugeMetricFamily(
            "engine_hub_engine_up",
            "1 while the engine's socket is connected",
            labels=["engine", "mode"],
        )
        health = GaugeMetricFamily(
            "engine_hub_engine_health",
            "1 for the engine's current health",
            labels=["engine", "mode", "health"],
        )
        tick = GaugeMetricFamily(
            "engine_hub_engine_loop_tick", "Last reported loop tick", labels=["engine", "mode"]
        )
        age = GaugeMetricFamily(
            "engine_hub_engine_heartbeat_age_seconds",
            "Seconds since the last heartbeat",
            labels=["engine", "mode"],
        )
        gaps = CounterMetricFamily(
            "engine_hub_engine_gap_messages",
            "Messages the engine's client dropped (seq gaps)",
            labels=["engine", "mode"],
        )
        for engine in state.engines.values():
            labels = [engine.name, engine.mode]
            up.add_metric(labels, 1.0 if engine.connected else 0.0)
            current = derive_health(engine, now, hub.settings)
            for value in Health:
                health.add_metric([*labels, value.value], 1.0 if value is current else 0.0)
            if engine.loop_tick is not None:
                tick.add_metric(labels, float(engine.loop_tick))
            if engine.last_heartbeat is not None:
                age.add_metric(labels, now - engine.last_heartbeat)
            gaps.add_metric(labels, float(engine.gaps))
        yield from (up, health, tick, age, gaps)

        stats = state.stats
        messages = _counts(
            "engine_hub_messages", "Engine messages accepted, by kind", "kind", stats.messages
        )
        rejected = _counts(
            "engine_hub_rejected", "Engine messages rejected, by code", "code", stats.rejected
        )
        drops = _counts(
            "engine_hub_drops", "Everything dropped anywhere, by reason", "reason", stats.drops
        )
        evicted = CounterMetricFamily(
            "engine_hub_ring_evicted", "Events evicted from rings", labels=["type"]
        )
        size = GaugeMetricFamily("engine_hub_ring_size", "Events held in rings", labels=["type"])
        for name, ring in sorted(state.rings.rings.items()):
            evicted.add_metric([name], float(ring.evicted))
            size.add_metric([name], float(len(ring.items)))
        conns = GaugeMetricFamily("engine_hub_connections", "Open connections", labels=["type"])
        conns.add_metric(["engine"], float(len(hub.sessions)))
        conns.add_metric(["stream"], float(len(hub.broadcaster.subscribers)))
        yield from (messages, rejected, drops, evicted, size, conns)
        yield from self._engine_metrics()

    def _engine_metrics(self) -> Iterator[Metric]:
        """Engine metrics as families `engine_<name>`; a name used with two kinds keeps the first."""
        state = self._hub.state
        families: dict[str, Metric] = {}
        for engine_name, metrics in sorted(state.metrics.engines.items()):
            record = state.engines.get(engine_name)
            mode = record.mode if record is not None else ""
            for (name, tags), series in sorted(metrics.series.items()):
                family = _family_name(name)
                metric = families.get(family)
                kind = series.kind
                if metric is None:
                    if kind is MetricKind.COUNTER:
                        metric = CounterMetricFamily(family, f"engine counter {name}")
                    elif kind is MetricKind.GAUGE:
                        metric = GaugeMetricFamily(family, f"engine gauge {name}")
                    else:
                        metric = SummaryMetricFamily(family, f"engine histogram {name} (session)")
                    families[family] = metric
                elif (
                    metric.type
                    != {"counter": "counter", "gauge": "gauge", "histogram": "summary"}[kind]
                ):
                    continue
                labels = {**dict(tags), "engine": engine_name, "mode": mode}
                if kind is MetricKind.COUNTER and isinstance(series.lifetime, float):
                    metric.samples.append(Sample(family + "_total", labels, series.lifetime, None))
                elif kind is MetricKind.GAUGE and isinstance(series.session, float):
                    metric.samples.append(Sample(family, labels, series.session, None))
                else:
                    sketch = series.session
                    assert isinstance(sketch, Sketch)
                    for q in (0.5, 0.95, 0.99):
                        value = sketch.quantile(q)
                        if value is not None:
                            metric.samples.append(
                                Sample(family, {**labels, "quantile": str(q)}, value, None)
                            )
                    metric.samples.append(
                        Sample(family + "_count", labels, float(sketch.count), None)
                    )
                    metric.samples.append(Sample(family + "_sum", labels, sketch.sum, None))
        yield from families.values()


def _counts(name: str, documentation: str, label: str, counts: Mapping[str, int]) -> Metric:
    """A counter family with one sample per key of `counts`."""
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, count in sorted(counts.items()):
        family.add_metric([str(key)], float(count))
    return family


def registry_for(hub: Hub) -> CollectorRegistry:
    """A private registry holding only this hub's collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(hub))
    return registry


async def metrics_endpoint(request: Request) -> Response:
    """Prometheus text exposition."""
    registry: CollectorRegistry = request.app.state.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE)
