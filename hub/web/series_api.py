"""`GET /api/telemetry/series`: an engine's metric time series, or the list of them (docs/api.md)."""

from __future__ import annotations

import math
import re
import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.core.messages import METRIC_NAME_PATTERN, TAG_KEY_PATTERN
from hub.core.records import utc
from hub.stores.base import SeriesQuery
from hub.stores.lines import MAX_POINTS
from hub.web.api import error_response, json_response
from hub.web.params import BadRequest, engine_param, parse_duration, window_bounds
from hub.web.runtime import Hub

__all__ = ["DEFAULT_POINTS", "STEPS", "parse_tags", "routes", "series"]

_NAME = re.compile(METRIC_NAME_PATTERN)
_TAG_KEY = re.compile(TAG_KEY_PATTERN)
MAX_TAGS = 15  # as many as a metric may carry
MAX_TAG_VALUE = 256
# Without `step`, the smallest of these that draws the range in at most DEFAULT_POINTS points.
STEPS = (10, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86_400)
DEFAULT_POINTS = 360


def parse_tags(raw: str) -> tuple[tuple[str, str], ...]:
    """`k=v,k2=v2` as sorted pairs; raises BadRequest saying what is wrong."""
    pairs: dict[str, str] = {}
    for part in raw.split(","):
        key, eq, value = part.partition("=")
        if not eq or not _TAG_KEY.match(key):
            raise BadRequest(
                f"tags: {part[:40]!r} is not key=value with a tag key ([A-Za-z_][A-Za-z0-9_]*); "
                "use e.g. tags=strategy=mean_reversion,venue=nse"
            )
        if len(value) > MAX_TAG_VALUE:
            raise BadRequest(f"tags: the value of {key!r} is over {MAX_TAG_VALUE} characters")
        pairs[key] = value
    if len(pairs) > MAX_TAGS:
        raise BadRequest(f"tags: at most {MAX_TAGS} pairs")
    return tuple(sorted(pairs.items()))


def _step(request: Request, span: float) -> float:
    raw = request.query_params.get("step")
    if not raw:
        return float(next((s for s in STEPS if span / s <= DEFAULT_POINTS), STEPS[-1]))
    try:
        step = parse_duration(raw)
    except ValueError as exc:
        raise BadRequest(f"step: {exc}") from None
    if step < 1:
        raise BadRequest("step must be at least 1s")
    if span / step > MAX_POINTS:
        least = math.ceil(span / MAX_POINTS)
        raise BadRequest(
            f"step {raw[:20]!r} gives over {MAX_POINTS} points for this range; use a step of "
            f"{least}s or more, or a shorter range"
        )
    return step


async def series(request: Request) -> Response:
    """Points of one metric (`name`, optional `tags`) over `since`..`until` in `step` buckets;
    without `name`, the series the engine has."""
    hub: Hub = request.app.state.hub
    now = time.time()
    engine = engine_param(request, required=True)
    assert engine is not None
    name = request.query_params.get("name")
    if not name:
        found = await hub.store.series_names(engine)
        if not found and engine not in hub.state.engines:
            detail = f"no engine named {engine!r} has stored series or is known to this hub"
            return error_response(404, "not_found", detail)
        listed = [{"name": s.name, "tags": s.tags, "kind": s.kind} for s in found]
        return json_response({"asof": utc(now), "engine": engine, "series": listed})
    if not _NAME.match(name):
        raise BadRequest("name must be a metric name ([A-Za-z0-9_.:-]{1,128})")
    raw_tags = request.query_params.get("tags")
    tags = parse_tags(raw_tags) if raw_tags else ()
    since, until = window_bounds(request, now)  # since/until, or range=/around=
    until = now if until is None else until
    since = until - 3600 if since is None else since
    if since >= until:
        raise BadRequest("since must be before until")
    step = _step(request, until - since)
    used, lines = await hub.store.series(SeriesQuery(engine, name, since, until, step, tags))
    return json_response(
        {
            "asof": utc(now),
            "engine": engine,
            "name": name,
            "since": since,
            "until": until,
            "step": used,
            "lines": [line.view() for line in lines],
        }
    )


routes = [Route("/api/telemetry/series", series)]
