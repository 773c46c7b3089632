"""The engine page's charts: the standard ones and a picked metric, for the page's time range.

`chart_context` reads the query (range, `metric`, `tags`), asks the history store and renders
the charts with `hub.live.charts`; the engine page includes it, and `/fragments/engines/id/N/charts`
serves the same section when the dashboard socket nudges a live page (docs/dashboard.md).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from hub.core.engines import EngineRecord
from hub.core.messages import METRIC_NAME_PATTERN
from hub.core.pnl import Pnl
from hub.live.charts import Chart, render_chart
from hub.stores.base import SeriesLine, SeriesQuery
from hub.web.params import BadRequest, parse_duration, time_param
from hub.web.runtime import Hub
from hub.web.series_api import DEFAULT_POINTS, STEPS, parse_tags

__all__ = ["STANDARD", "ChartSpec", "ChartView", "chart_context", "routes"]

_NAME = re.compile(METRIC_NAME_PATTERN)
DEFAULT_SPAN = 3600.0
MAX_SPAN = 31 * 86_400.0
MAX_TAGS_TEXT = 512  # the tag filter's text
MAX_PICKABLE = 500  # metric names the picker lists (an engine keeps at most 500 series)
LIVE_SLACK = 5.0  # a range ending this close to now still shows now


@dataclass(frozen=True, slots=True)
class ChartSpec:
    """A chart every engine page shows: which metric, which statistics, how drawn."""

    key: str  # our name for it: part of element ids, never engine text
    title: str
    metric: str
    stats: tuple[str, ...]
    area: bool = False
    money: bool = False
    hint: str = ""  # what to send when the engine has no such series


# The names the client's docs and the demo use (docs/dashboard.md, "Charts").
STANDARD = (
    ChartSpec("loop", "loop rate", "cycles", ("rate",), area=True, hint='increment("cycles")'),
    ChartSpec(
        "cycle", "cycle duration", "cycle.seconds", ("p50", "p95"), hint='timer("cycle.seconds")'
    ),
    ChartSpec("pnl", "P&L", "pnl", ("value",), money=True, hint='set_gauge("pnl", value)'),
    ChartSpec("errors", "error rate", "errors", ("rate",), area=True, hint='increment("errors")'),
    ChartSpec(
        "rejects",
        "reject rate",
        "orders.rejected",
        ("rate",),
        area=True,
        hint='increment("orders.rejected")',
    ),
)
_BY_KIND = {"rate": ("rate",), "p50": ("p50", "p95", "p99"), "value": ("value",)}


@dataclass(frozen=True, slots=True)
class ChartView:
    """One chart as the page shows it: our key, the chart, and what to send if it is empty."""

    key: str
    metric: str
    chart: Chart
    hint: str
    found: bool  # the engine has a series of this name


@dataclass(frozen=True, slots=True)
class Window:
    """The page's range: its bounds, whether it includes now, and the query that says it."""

    since: float
    until: float
    live: bool
    query: tuple[tuple[str, str], ...]  # the range's own parameters, to keep in links and forms


def window(request: Request, now: float) -> Window:
    """`range=1h` (the last hour, live) or `since=`/`until=` (absolute); default the last hour."""
    params = request.query_params
    raw_range = params.get("range", "")
    if raw_range:
        if params.get("since") or params.get("until"):
            raise BadRequest("use range= or since=/until=, not both")
        try:
            span = parse_duration(raw_range)
        except ValueError as exc:
            raise BadRequest(f"range: {exc}") from None
        if not 10 <= span <= MAX_SPAN:
            raise BadRequest("range must be between 10s and 31d")
        return Window(now - span, now, True, (("range", raw_range.strip()),))
    until = time_param(request, "until", now)
    since = time_param(request, "since", now)
    end = now if until is None else until
    start = end - DEFAULT_SPAN if since is None else since
    if not start < end:
        raise BadRequest("since must be before until")
    if end - start > MAX_SPAN:
        raise BadRequest("the range is longer than 31 days: narrow since/until")
    query = tuple((k, params[k]) for k in ("since", "until") if params.get(k))
    return Window(start, end, start <= now <= end + LIVE_SLACK, query)


def _step(span: float) -> float:
    return float(next((s for s in STEPS if span / s <= DEFAULT_POINTS), STEPS[-1]))


async def _chart(
    hub: Hub, engine: EngineRecord, spec: ChartSpec, win: Window, tags: tuple[tuple[str, str], ...]
) -> ChartView:
    query = SeriesQuery(
        engine.name, spec.metric, win.since, win.until, _step(win.until - win.since), tags
    )
    step, lines = await hub.store.series(query)
    stats = spec.stats or _BY_KIND.get(lines[0].stat if lines else "", ())
    shown: list[SeriesLine] = [line for line in lines if line.stat in stats]
    pnl = Pnl.from_state(engine.state) if spec.money else None
    currency = (pnl.currency or "") if pnl is not None else ("" if spec.money else None)
    chart = render_chart(
        spec.title, shown, win.since, win.until, step, currency=currency, area=spec.area
    )
    return ChartView(spec.key, spec.metric, chart, spec.hint, bool(lines))


async def chart_context(
    hub: Hub, request: Request, now: float, engine: EngineRecord
) -> dict[str, Any]:
    """What `partials/_charts.html` and the picker need; raises BadRequest for a bad query."""
    win = window(request, now)
    picked = request.query_params.get("metric", "")
    if picked and not _NAME.match(picked):
        raise BadRequest("metric must be a metric name ([A-Za-z0-9_.:-]{1,128})")
    raw_tags = request.query_params.get("tags", "").strip()
    if len(raw_tags) > MAX_TAGS_TEXT:
        raise BadRequest(f"tags: at most {MAX_TAGS_TEXT} characters")
    tags = parse_tags(raw_tags) if raw_tags else ()
    views = [await _chart(hub, engine, spec, win, ()) for spec in STANDARD]
    if picked:
        spec = ChartSpec("pick", picked, picked, (), hint="")
        views.append(await _chart(hub, engine, spec, win, tags))
    names = sorted({s.name for s in await hub.store.series_names(engine.name)})[:MAX_PICKABLE]
    keep = [
        *win.query,
        *((("metric", picked),) if picked else ()),
        *((("tags", raw_tags),) if raw_tags else ()),
    ]
    return {
        "charts": views,
        "chart_names": names,
        "chart_metric": picked,
        "chart_tags": raw_tags,
        "chart_range": win.query,
        "chart_live": win.live,
        "chart_query": keep,
    }


async def charts_fragment(request: Request) -> Response:
    """`/fragments/engines/id/{index}/charts`: the charts section, fetched when the dashboard
    socket says new buckets are stored; 204 (nothing to swap) unless the range includes now."""
    hub: Hub = request.app.state.hub
    now = time.time()
    engine = hub.views.engine_by_index(request.path_params["index"])
    if engine is None or request.query_params.get("live") != "1":
        return Response(status_code=204)
    context = await chart_context(hub, request, now, engine)
    if not context["chart_live"]:
        return Response(status_code=204)
    template = hub.env.get_template("partials/_charts.html")
    html = template.render(context, index=engine.index, oob=False)
    from hub.web.pages import csp  # here: pages imports this module for the engine page

    return HTMLResponse(html, headers=csp())


routes = [Route("/fragments/engines/id/{index:int}/charts", charts_fragment)]
