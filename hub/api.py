"""JSON REST API under `/api/telemetry` plus `/healthz`."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub import __version__
from hub.params import engine_param, event_type_param, int_param, level_param
from hub.records import utc
from hub.runtime import Hub

__all__ = ["json_response", "routes"]

_encode = msgspec.json.Encoder().encode


def json_response(content: Any, status_code: int = 200) -> Response:
    """A JSON response encoded by msgspec (datetimes as ISO-8601)."""
    return Response(_encode(content), status_code, media_type="application/json")


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


async def engines(request: Request) -> Response:
    """Every known engine with reported fields and hub-derived health."""
    hub, now = _hub(request), time.time()
    items = [
        e.as_dict(now, hub.settings)
        for e in sorted(hub.state.engines.values(), key=lambda e: e.name)
    ]
    return json_response({"asof": utc(now), "engines": items})


async def events(request: Request) -> Response:
    """Recent events, newest first: `event_type`, `engine`, `limit` (capped), `before` (id cursor)."""
    hub = _hub(request)
    limit = int_param(request, "limit", 100, 1, hub.settings.api_max_limit)
    event_type, engine = event_type_param(request), engine_param(request)
    before = int_param(request, "before", 0, 1, 2**63 - 1) or None
    records = hub.state.rings.recent(limit, event_type, engine, before)
    if len(records) < limit:
        oldest = records[-1].id if records else before
        records += await hub.store.events(limit - len(records), event_type, engine, oldest)
    next_before = records[-1].id if len(records) == limit else None
    return json_response(
        {
            "asof": utc(time.time()),
            "count": len(records),
            "next_before": next_before,
            "events": records,
        }
    )


async def stats(request: Request) -> Response:
    """Buffer sizes, capacities, totals and evictions per type; drops by reason; connections."""
    hub = _hub(request)
    state = hub.state
    buffers = {
        name: {
            "size": len(ring.items),
            "capacity": ring.capacity,
            "total": ring.total,
            "evicted": ring.evicted,
        }
        for name, ring in sorted(state.rings.rings.items())
    }
    connected = sum(1 for e in state.engines.values() if e.connected)
    return json_response(
        {
            "asof": utc(time.time()),
            "version": __version__,
            "uptime_seconds": round(time.time() - hub.started_at, 3),
            "buffers": buffers,
            "log_tails": {
                "engines": len(state.logs.tails),
                "lines": hub.settings.log_tail_lines,
                "evicted": state.logs.evicted,
            },
            "frames": state.stats.frames,
            "messages": dict(state.stats.messages),
            "rejected": dict(state.stats.rejected),
            "drops": dict(state.stats.drops),
            "connections": {
                "engines": len(hub.sessions),
                "engines_connected": connected,
                "engines_known": len(state.engines),
                "streams": len(hub.broadcaster.subscribers),
            },
        }
    )


async def engine_logs(request: Request) -> Response:
    """The log tail of one engine: `engine` (required), `lines` (capped), `level` (minimum)."""
    hub = _hub(request)
    engine = engine_param(request, required=True)
    assert engine is not None
    lines = int_param(request, "lines", 100, 1, hub.settings.log_tail_lines)
    level = level_param(request)
    if engine not in hub.state.engines:
        return json_response({"error": "not_found", "detail": f"no engine named {engine!r}"}, 404)
    records = hub.state.logs.tail(engine, lines, level)
    return json_response({"asof": utc(time.time()), "engine": engine, "lines": records})


async def metrics(request: Request) -> Response:
    """Counters, gauges and histograms (session and lifetime) of one engine or all."""
    hub = _hub(request)
    engine = engine_param(request)
    if engine is not None and engine not in hub.state.engines:
        return json_response({"error": "not_found", "detail": f"no engine named {engine!r}"}, 404)
    names = [engine] if engine is not None else sorted(hub.state.engines)
    return json_response(
        {
            "asof": utc(time.time()),
            "engines": {name: hub.state.metrics.snapshot(name) for name in names},
        }
    )


async def healthz(request: Request) -> Response:
    """Liveness: 200 while the hub serves; 503 once it is shutting down."""
    hub = _hub(request)
    if hub.shutting_down:
        return json_response({"status": "shutting_down"}, 503)
    return json_response(
        {"status": "ok", "version": __version__, "engines": len(hub.state.engines)}
    )


routes = [
    Route("/api/telemetry/engines", engines),
    Route("/api/telemetry/events", events),
    Route("/api/telemetry/stats", stats),
    Route("/api/telemetry/engine_logs", engine_logs),
    Route("/api/telemetry/metrics", metrics),
    Route("/healthz", healthz),
]
