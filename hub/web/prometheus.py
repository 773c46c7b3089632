"""Prometheus `/metrics`: the hub's own families (`engine_hub_*`) and every engine metric.

The hub's families come from a custom collector on a per-app registry. Engine metrics
(`engine_metric_*`, naming in docs/api.md) are rendered here in chunks of about CHUNK_BYTES,
yielding to the event loop between chunks, so a scrape of a big hub never stalls it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.requests import Request
from starlette.responses import StreamingResponse

from hub.core.engines import EngineRecord, Health, derive_health
from hub.core.metrics import (
    HISTOGRAM_BUCKETS,
    MetricKind,
    MetricRegistry,
    Series,
    TagKey,
)
from hub.core.sketches import Sketch
from hub.web.runtime import Hub

__all__ = [
    "CHUNK_BYTES",
    "HubCollector",
    "engine_exposition",
    "engine_lines",
    "metrics_endpoint",
    "registry_for",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Text rendered between two yields to the event loop: well under 1 ms of work, one socket write.
CHUNK_BYTES = 16 * 1024
_LE = tuple(repr(b) for b in HISTOGRAM_BUCKETS)
_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})


class HubCollector:
    """Exposes the hub's own families: engine health, message and drop counts, connections."""

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


def engine_exposition(
    metrics: MetricRegistry, engines: Mapping[str, EngineRecord], chunk_bytes: int = CHUNK_BYTES
) -> Iterator[bytes]:
    """Engine metrics as exposition text, in chunks of about `chunk_bytes` that end with a line.

    A chunk closes after the series that takes it past `chunk_bytes`, so it is never larger than
    that plus one series' lines (a histogram: 20). Safe to interleave with ingest between chunks:
    every list it walks is copied first, and a family's lines stay together as the format requires.
    """
    lines: list[str] = []
    size = 0
    for text in engine_lines(metrics, engines):
        lines.append(text)
        size += len(text)
        if size >= chunk_bytes:
            yield "".join(lines).encode()
            lines, size = [], 0
    if lines:
        yield "".join(lines).encode()


def engine_lines(metrics: MetricRegistry, engines: Mapping[str, EngineRecord]) -> Iterator[str]:
    """The exposition text of engine metrics: per family its HELP and TYPE, then every series."""
    for family, owner in sorted(metrics.families.items()):
        kind = owner.kind
        # Text format 0.0.4 names a counter's family by its sample name, `_total` included.
        named = family + "_total" if kind is MetricKind.COUNTER else family
        yield f"# HELP {named} engine {kind.value} {owner.name}\n# TYPE {named} {kind.value}\n"
        for engine in sorted(owner.engines):
            held = metrics.engines.get(engine)
            if held is None:
                continue
            record = engines.get(engine)
            # Rendered once per engine and family, not once per series.
            extra = _labels(
                (("engine", engine), ("mode", record.mode if record is not None else ""))
            )
            for series in list(held.by_name.get(owner.name, {}).values()):
                yield _render(family, series, extra)


def _num(value: float) -> str:
    """A sample value as the text format spells it."""
    if value == math.inf:
        return "+Inf"
    return "-Inf" if value == -math.inf else repr(float(value))


def _escape(value: str) -> str:
    # Most label values need no escape; three `in` tests cost less than a translate.
    if "\\" in value or '"' in value or "\n" in value:
        return value.translate(_ESCAPES)
    return value


def _labels(tags: TagKey) -> str:
    return ",".join([f'{k}="{_escape(v)}"' for k, v in tags])


def _render(family: str, series: Series, extra: str) -> str:
    """The sample lines of one series (counters and histograms use lifetime values)."""
    labels = f"{_labels(series.tags)},{extra}" if series.tags else extra
    value, current = series.lifetime, series.session
    if series.kind is MetricKind.COUNTER and isinstance(value, float):
        return f"{family}_total{{{labels}}} {_num(value)}\n"
    if series.kind is MetricKind.GAUGE and isinstance(current, float):
        return f"{family}{{{labels}}} {_num(current)}\n"
    if isinstance(value, Sketch):
        lines = [
            f'{family}_bucket{{{labels},le="{le}"}} {count}\n'
            for le, count in zip(_LE, value.cumulative(HISTOGRAM_BUCKETS), strict=True)
        ]
        lines.append(f'{family}_bucket{{{labels},le="+Inf"}} {value.count}\n')
        lines.append(f"{family}_count{{{labels}}} {value.count}\n")
        lines.append(f"{family}_sum{{{labels}}} {_num(value.sum)}\n")
        return "".join(lines)
    return ""


async def _body(hub: Hub, registry: CollectorRegistry) -> AsyncIterator[bytes]:
    yield generate_latest(registry)
    for chunk in engine_exposition(hub.state.metrics, hub.state.engines):
        yield chunk
        await asyncio.sleep(0)  # let heartbeats, acks and /healthz run between chunks


async def metrics_endpoint(request: Request) -> StreamingResponse:
    """Prometheus text exposition, streamed in chunks."""
    hub: Hub = request.app.state.hub
    return StreamingResponse(_body(hub, request.app.state.registry), media_type=CONTENT_TYPE)
