"""Prometheus `/metrics`: the hub's own families (`engine_hub_*`) and every engine metric.

The hub-wide families come from a custom collector on a per-app registry; the hub's per-engine
families and engine metrics (`engine_metric_*`, naming in docs/api.md) are rendered here as text
in chunks of about CHUNK_BYTES, yielding to the event loop between chunks, so a scrape of a big hub
never stalls it (docs/benchmarks.md, session 7).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from itertools import chain

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
    "chunked",
    "engine_exposition",
    "engine_lines",
    "hub_engine_lines",
    "metrics_endpoint",
    "registry_for",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Text rendered between two yields to the event loop: well under 1 ms of work, one socket write.
CHUNK_BYTES = 16 * 1024
_LE = tuple(repr(b) for b in HISTOGRAM_BUCKETS)
_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})


class HubCollector:
    """Exposes the hub-wide families: message and drop counts, rings, connections.

    The per-engine families are text from `hub_engine_lines`: prometheus_client spends ~9 us a
    sample, 20 ms in one piece for 256 engines, where the stream can yield between chunks.
    """

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def collect(self) -> Iterator[Metric]:
        """Build the families from the current state (called per scrape)."""
        hub = self._hub
        state = hub.state
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
        lag = GaugeMetricFamily(
            "engine_hub_loop_lag_seconds",
            "How late the hub's event loop last woke (seconds); health discounts this blind time",
            value=state.lag.lag,
        )
        blind = CounterMetricFamily(
            "engine_hub_loop_blind_seconds",
            "Seconds the hub's event loop was too busy to read sockets",
            value=state.lag.total_blind,
        )
        yield from (messages, rejected, drops, evicted, size, conns, lag, blind)
        yield from _alert_families(hub)


def _alert_families(hub: Hub) -> Iterator[Metric]:
    """Active alerts (1 per pending or firing alert) and deliveries by receiver and outcome."""
    alerts = GaugeMetricFamily(
        "engine_hub_alerts",
        "Active alerts (docs/alerts.md), 1 per alert",
        labels=["rule", "engine", "mode", "severity", "state"],
    )
    for alert in hub.alerting.book.active.values():
        labels = [alert.rule, alert.engine, alert.mode, str(alert.severity), str(alert.state)]
        alerts.add_metric(labels, 1.0)
    deliveries = CounterMetricFamily(
        "engine_hub_alert_deliveries",
        "Alert notifications by receiver: sent, failed attempts, dropped messages",
        labels=["receiver", "outcome"],
    )
    for notifier in hub.alerting.notifiers.values():
        for outcome in ("sent", "failed", "dropped"):
            value = float(getattr(notifier, outcome))
            deliveries.add_metric([notifier.receiver.name, outcome], value)
    yield from (alerts, deliveries)


def hub_engine_lines(hub: Hub, now: float) -> Iterator[str]:
    """The hub's per-engine families (up, health, loop tick, heartbeat age, gaps) as text."""
    records = list(hub.state.engines.values())
    labels = [_labels((("engine", r.name), ("mode", r.mode))) for r in records]
    yield _head("engine_hub_engine_up", "gauge", "1 while the engine's socket is connected")
    for record, label in zip(records, labels, strict=True):
        yield f"engine_hub_engine_up{{{label}}} {1.0 if record.connected else 0.0}\n"
    yield _head("engine_hub_engine_health", "gauge", "1 for the engine's current health")
    for record, label in zip(records, labels, strict=True):
        current = derive_health(record, now, hub.settings, hub.state.lag)
        for value in Health:
            sample = 1.0 if value is current else 0.0
            yield f'engine_hub_engine_health{{{label},health="{value.value}"}} {sample}\n'
    yield _head("engine_hub_engine_loop_tick", "gauge", "Last reported loop tick")
    for record, label in zip(records, labels, strict=True):
        if record.loop_tick is not None:
            yield f"engine_hub_engine_loop_tick{{{label}}} {_num(record.loop_tick)}\n"
    name = "engine_hub_engine_heartbeat_age_seconds"
    yield _head(name, "gauge", "Seconds since the last heartbeat")
    for record, label in zip(records, labels, strict=True):
        if record.last_heartbeat is not None:
            yield f"{name}{{{label}}} {_num(now - record.last_heartbeat)}\n"
    name = "engine_hub_engine_gap_messages_total"
    yield _head(name, "counter", "Messages the engine's client dropped (seq gaps)")
    for record, label in zip(records, labels, strict=True):
        yield f"{name}{{{label}}} {_num(record.gaps)}\n"


def _head(name: str, kind: str, documentation: str) -> str:
    return f"# HELP {name} {documentation}\n# TYPE {name} {kind}\n"


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
    """Engine metrics as exposition text in chunks of about `chunk_bytes` (see `chunked`)."""
    return chunked(engine_lines(metrics, engines), chunk_bytes)


def chunked(lines: Iterable[str], chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """`lines` joined into chunks that close after the piece taking them past `chunk_bytes`.

    A chunk is never larger than `chunk_bytes` plus one piece (one series' lines; a histogram's
    are 20), and pieces stay in order, so a family's lines stay together as the format requires.
    Sizes are counted in characters: bytes for ASCII, up to 4x that for other engine text.
    """
    pieces: list[str] = []
    size = 0
    for text in lines:
        pieces.append(text)
        size += len(text)
        if size >= chunk_bytes:
            yield "".join(pieces).encode()
            pieces, size = [], 0
    if pieces:
        yield "".join(pieces).encode()


def engine_lines(metrics: MetricRegistry, engines: Mapping[str, EngineRecord]) -> Iterator[str]:
    """Engine metrics as text: per family its HELP and TYPE, then every series.

    Safe to interleave with ingest between pieces: every list it walks is copied first.
    """
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
    yield generate_latest(registry)  # a few dozen samples, however many engines
    lines = chain(
        hub_engine_lines(hub, time.time()), engine_lines(hub.state.metrics, hub.state.engines)
    )
    for chunk in chunked(lines):
        yield chunk
        await asyncio.sleep(0)  # let heartbeats, acks and /healthz run between chunks


async def metrics_endpoint(request: Request) -> StreamingResponse:
    """Prometheus text exposition, streamed in chunks."""
    hub: Hub = request.app.state.hub
    return StreamingResponse(_body(hub, request.app.state.registry), media_type=CONTENT_TYPE)
