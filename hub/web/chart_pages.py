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
from hub.core.ranges import DEFAULT_SPAN, TimeRange
from hub.live.charts import Chart, render_chart
from hub.stores.base import SeriesLine, SeriesQuery
from hub.web.params import BadRequest, window_param
from hub.web.runtime import Hub
from hub.web.series_api import DEFAULT_POINTS, STEPS, parse_tags
from hub.web.timelines import range_picker

__all__ = [
    "STANDARD",
    "ChartSpec",
    "ChartView",
    "chart_context",
    "metric_param",
    "routes",
    "step_for",
]

_NAME = re.compile(METRIC_NAME_PATTERN)
MAX_TAGS_TEXT = 512  # the tag filter's text
MAX_PICKABLE = 500  # metric names the picker lists (an engine keeps at most 500 series)


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


# The metric names the demo engines send (docs/dashboard.md, "Charts"); the client docs time
# `cycle.seconds` too.
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


def step_for(span: float) -> float:
    """The step that draws `span` in at most DEFAULT_POINTS points (as the series API picks)."""
    return float(next((s for s in STEPS if span / s <= DEFAULT_POINTS), STEPS[-1]))


def metric_param(request: Request, key: str) -> str:
    """A metric name parameter ("" when absent); raises BadRequest when malformed."""
    value = request.query_params.get(key, "")
    if value and not _NAME.match(value):
        raise BadRequest(f"{key} must be a metric name ([A-Za-z0-9_.:-]{{1,128}})")
    return value


async def _chart(
    hub: Hub,
    engine: EngineRecord,
    spec: ChartSpec,
    win: TimeRange,
    tags: tuple[tuple[str, str], ...],
) -> ChartView:
    query = SeriesQuery(engine.name, spec.metric, win.since, win.until, step_for(win.span), tags)
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
    """What `partials/_charts.html` and the chart form need, and the range picker, which keeps
    the picked metric and tags; raises BadRequest for a bad query."""
    win = window_param(request, now) or TimeRange.last(DEFAULT_SPAN, now, "1h")
    picked = metric_param(request, "metric")
    raw_tags = request.query_params.get("tags", "").strip()
    if len(raw_tags) > MAX_TAGS_TEXT:
        raise BadRequest(f"tags: at most {MAX_TAGS_TEXT} characters")
    tags = parse_tags(raw_tags) if raw_tags else ()
    views = [await _chart(hub, engine, spec, win, ()) for spec in STANDARD]
    if picked:
        spec = ChartSpec("pick", picked, picked, (), hint="")
        views.append(await _chart(hub, engine, spec, win, tags))
    names = sorted({s.name for s in await hub.store.series_names(engine.name)})[:MAX_PICKABLE]
    keep = [("metric", picked)] if picked else []
    keep += [("tags", raw_tags)] if raw_tags else []
    range_query = list(win.query().items())
    return {
        "charts": views,
        "chart_names": names,
        "chart_metric": picked,
        "chart_tags": raw_tags,
        "chart_range": range_query,
        "chart_live": win.live(now),
        "chart_query": [*range_query, *keep],
        "picker": range_picker(win, keep),
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
