"""JSON REST API under `/api/telemetry` (and `/api/admin` for admins) plus `/healthz`."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub import __version__
from hub.core.logs import level_number
from hub.core.records import utc
from hub.stores import HistoryQuery, UnknownEngine
from hub.stores.base import make_bundle
from hub.web.params import (
    BadRequest,
    engine_param,
    event_type_param,
    int_param,
    level_param,
    window_bounds,
)
from hub.web.runtime import Hub

__all__ = ["error_response", "json_response", "routes"]

_encode = msgspec.json.Encoder().encode


def json_response(content: Any, status_code: int = 200) -> Response:
    """A JSON response encoded by msgspec (datetimes as ISO-8601)."""
    return Response(_encode(content), status_code, media_type="application/json")


def error_response(
    status_code: int, error: str, detail: str, headers: Mapping[str, str] | None = None
) -> Response:
    """The hub's one JSON error shape, `{"error": <code>, "detail": <what went wrong, how to fix>}`."""
    body = _encode({"error": error, "detail": detail})
    return Response(body, status_code, headers=dict(headers or {}), media_type="application/json")


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def _no_engine(engine: str) -> Response:
    detail = f"no engine named {engine!r} is known to this hub; /api/telemetry/engines lists those that are"
    return error_response(404, "not_found", detail)


async def engines(request: Request) -> Response:
    """Every known engine with reported fields and hub-derived health."""
    hub, now = _hub(request), time.time()
    items = [
        {**e.as_dict(now, hub.settings, hub.state.lag), "flagged_timestamps": e.flagged_timestamps}
        for e in sorted(hub.state.engines.values(), key=lambda e: e.name)
    ]
    return json_response({"asof": utc(now), "engines": items})


async def events(request: Request) -> Response:
    """Events newest first: `event_type`, `engine`, `limit` (capped), `since`, `until` or `range`/`around`, `before` (id cursor).

    The rings answer down to their horizon; older events come from the history store.
    """
    hub, now = _hub(request), time.time()
    limit = int_param(request, "limit", 100, 1, hub.settings.api_max_limit)
    event_type, engine = event_type_param(request), engine_param(request)
    before = int_param(request, "before", 0, 1, 2**63 - 1) or None
    since, until = window_bounds(request, now)
    rings = hub.state.rings
    horizon = rings.horizon(event_type)
    records = [
        r for r in rings.recent(limit, event_type, engine, before, since, until) if r.id > horizon
    ]
    if len(records) < limit:
        cursor = records[-1].id if records else before
        if horizon and (cursor is None or cursor > horizon + 1):
            cursor = horizon + 1
        query = HistoryQuery(limit - len(records), engine, event_type, since, until, cursor)
        records += await hub.store.history("events", query)
    next_before = records[-1].id if len(records) == limit else None
    return json_response(
        {
            "asof": utc(now),
            "count": len(records),
            "next_before": next_before,
            "events": [r.view() for r in records],
        }
    )


async def audit(request: Request) -> Response:
    """The audit trail newest first (admins): `engine`, `since`, `until`, `limit` (capped)."""
    hub, now = _hub(request), time.time()
    limit = int_param(request, "limit", 100, 1, hub.settings.api_max_limit)
    engine = engine_param(request)
    since, until = window_bounds(request, now)
    entries = await hub.store.history(
        "audit", HistoryQuery(limit, engine, since=since, until=until)
    )
    return json_response(
        {"asof": utc(now), "count": len(entries), "audit": [a.view() for a in entries]}
    )


async def stats(request: Request) -> Response:
    """Ring and log-tail sizes, capacities and evictions; messages, rejections, drops; connections."""
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
                "size": sum(len(tail) for tail in state.logs.tails.values()),
                "capacity_per_engine": hub.settings.log_tail_lines,
                "evicted": state.logs.evicted,
            },
            "frames": state.stats.frames,
            "messages": dict(state.stats.messages),
            "rejected": dict(state.stats.rejected),
            "drops": dict(state.stats.drops),
            "flagged": dict(hub.decoder.flagged),
            "connections": {
                "engines": len(hub.sessions),
                "engines_connected": connected,
                "engines_known": len(state.engines),
                "streams": len(hub.broadcaster.subscribers),
            },
        }
    )


async def engine_logs(request: Request) -> Response:
    """One engine's log lines, oldest first: `engine` (required), `lines`, `level` (minimum), `since`, `until`.

    The in-memory tail answers first; older lines come from the history store.
    """
    hub, now = _hub(request), time.time()
    engine = engine_param(request, required=True)
    assert engine is not None
    lines = int_param(request, "lines", 100, 1, hub.settings.api_max_limit)
    level = level_param(request)
    since, until = window_bounds(request, now)
    if engine not in hub.state.engines:
        return _no_engine(engine)
    tail = hub.state.logs.tails.get(engine) or ()
    floor = level_number(level) if level else None
    horizon = tail[0].id if tail and len(tail) == hub.settings.log_tail_lines else 0
    newest = [
        r
        for r in reversed(tail)
        if (floor is None or level_number(r.level) >= floor)
        and (since is None or r.timestamp.timestamp() >= since)
        and (until is None or r.timestamp.timestamp() < until)
    ][:lines]
    if len(newest) < lines and horizon:
        cursor = min(newest[-1].id, horizon) if newest else horizon
        query = HistoryQuery(lines - len(newest), engine, None, since, until, cursor, floor)
        newest += await hub.store.history("logs", query)
    newest.reverse()
    return json_response({"asof": utc(now), "engine": engine, "lines": [r.view() for r in newest]})


async def export(request: Request) -> Response:
    """One engine's incident bundle over a window: `engine`, `since` (default 1h), `until` (default now).

    404 for an engine neither the store nor the hub knows; an empty bundle for one that is
    connected but has nothing stored yet.
    """
    hub, now = _hub(request), time.time()
    engine = engine_param(request, required=True)
    assert engine is not None
    start, end = window_bounds(request, now)
    since = now - 3600 if start is None else start
    until = now if end is None else end
    if since >= until:
        raise BadRequest("since must be before until")
    try:
        bundle = await hub.store.export(engine, since, until)
    except UnknownEngine as exc:
        if engine not in hub.state.engines:
            return json_response({"error": "not_found", "detail": str(exc)}, 404)
        bundle = make_bundle(engine, since, until, [], [], [], [], None, False)
    bundle["hub"] = __version__
    bundle["generated_at"] = utc(now)
    headers = {"Content-Disposition": f'attachment; filename="engine-hub-{engine}.json"'}
    return Response(_encode(bundle), media_type="application/json", headers=headers)


async def metrics(request: Request) -> Response:
    """Counters, gauges and histograms (session and lifetime) of one engine or all."""
    hub = _hub(request)
    engine = engine_param(request)
    if engine is not None and engine not in hub.state.engines:
        return _no_engine(engine)
    names = [engine] if engine is not None else sorted(hub.state.engines)
    return json_response(
        {
            "asof": utc(time.time()),
            "engines": {name: hub.state.metrics.snapshot(name) for name in names},
        }
    )


async def healthz(request: Request) -> Response:
    """Liveness: 200 while serving, "degraded" with `reasons` when the history store fails, its
    commits (and so the engines' acks) have stalled, the hub's loop lags, or (cluster) Redis is
    unreachable or entries were trimmed before this node read them; 503 only when stopping."""
    hub, now = _hub(request), time.time()
    if hub.shutting_down:
        return json_response({"status": "shutting_down"}, 503)
    store, stall_after = hub.store, hub.settings.store_stall_after
    problem, since = store.problem, store.pending_since
    waiting = round(max(now - since, 0.0), 3) if since is not None else 0.0
    reasons = [f"history store cannot write: {problem}"] if problem else []
    # A record normally waits up to commit_interval; stalled is that much longer again.
    if stall_after and waiting > stall_after + hub.settings.commit_interval:
        reasons.append(
            f"history store has not committed for {waiting:.1f} s (store_stall_after is "
            f"{stall_after:g} s past commit_interval): engines are not being acked"
        )
    acking = not reasons
    lagging = hub.state.lag.lagging(now)
    if lagging is not None:  # health discounts the blind time; say why pages update late
        reasons.append(
            f"hub lagging {lagging:.1f} s: its event loop is behind (dashboards are coalesced; "
            "engines are not marked late for time the hub was not reading them)"
        )
    cluster = hub.cluster.status
    if cluster.degraded:  # local engines are served live; acks wait for Redis
        reasons.append(
            f"cluster degraded: {cluster.problem}; serving this node's engines, not acking, "
            f"{cluster.pending} frames held for Redis"
        )
        acking = False
    if hub.replication.gaps:
        reasons.append(f"cluster gap: {hub.replication.last_gap}")
    return json_response(
        {
            "status": "degraded" if reasons else "ok",
            "reasons": reasons,
            "version": __version__,
            "engines": len(hub.state.engines),
            "loop_lag_seconds": round(hub.state.lag.lag, 3),
            "store": {
                "ok": problem is None,
                "problem": problem,
                "acking": acking,
                "pending_seconds": waiting,
            },
            "cluster": {
                "state": cluster.state.value,  # local, connecting, ok or degraded
                "node_id": cluster.node_id,
                "problem": cluster.problem,
                "pending": cluster.pending,
                "buffer": cluster.buffer,
                "gaps": hub.replication.gaps,
            },
        }
    )


routes = [
    Route("/api/telemetry/engines", engines),
    Route("/api/telemetry/events", events),
    Route("/api/telemetry/stats", stats),
    Route("/api/telemetry/engine_logs", engine_logs),
    Route("/api/telemetry/metrics", metrics),
    Route("/api/telemetry/export", export),
    Route("/api/admin/audit", audit),
    Route("/healthz", healthz),
]
