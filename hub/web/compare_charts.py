"""`/charts`: one metric of several engines on one chart, for a range (the cross-engine view)."""

from __future__ import annotations

from typing import Any, get_args

from starlette.requests import Request

from hub.core.ranges import DEFAULT_SPAN, TimeRange
from hub.live.charts import MAX_LINES, render_chart
from hub.stores.base import SeriesLine, SeriesQuery, SeriesStat
from hub.web.chart_pages import MAX_PICKABLE, MAX_TAGS_TEXT, ChartView, metric_param, step_for
from hub.web.params import ENGINE_RE, BadRequest, window_param
from hub.web.runtime import Hub
from hub.web.series_api import parse_tags
from hub.web.timelines import range_picker

__all__ = ["compare_context"]

_STATS = get_args(SeriesStat)
_DEFAULT_STAT = {"rate": "rate", "p50": "p95", "value": "value"}  # by the first line's stat


def _engines(hub: Hub, request: Request) -> tuple[list[str], int]:
    """The engines asked for (default: the hub's, by name), at most MAX_LINES; and how many more
    the hub knows that are not shown."""
    asked = list(dict.fromkeys(request.query_params.getlist("engine")))
    for name in asked:
        if not ENGINE_RE.match(name):
            raise BadRequest("engine must be an engine name ([A-Za-z0-9_.-]{1,64})")
    if len(asked) > MAX_LINES:
        raise BadRequest(f"at most {MAX_LINES} engines on one chart; pick fewer with engine=")
    if asked:
        return asked, 0
    known = sorted(hub.state.engines)
    return known[:MAX_LINES], max(0, len(known) - MAX_LINES)


async def compare_context(hub: Hub, request: Request, now: float) -> dict[str, Any]:
    """What `charts.html` shows: the metric `name` of each engine over the range, one line each
    (the `stat` asked for, else rate, value or p95 by kind); raises BadRequest."""
    params = request.query_params
    win = window_param(request, now) or TimeRange.last(DEFAULT_SPAN, now, "1h")
    name = metric_param(request, "name")
    stat = params.get("stat", "")
    if stat and stat not in _STATS:
        raise BadRequest(f"stat must be one of {', '.join(_STATS)}")
    raw_tags = params.get("tags", "").strip()
    if len(raw_tags) > MAX_TAGS_TEXT:
        raise BadRequest(f"tags: at most {MAX_TAGS_TEXT} characters")
    tags = parse_tags(raw_tags) if raw_tags else ()
    engines, unshown = _engines(hub, request)
    names: set[str] = set()
    lines: list[SeriesLine] = []
    labels: list[str] = []
    step = step_for(win.span)
    for engine in engines:
        names.update(s.name for s in await hub.store.series_names(engine))
        if not name:
            continue
        query = SeriesQuery(engine, name, win.since, win.until, step, tags)
        step, found = await hub.store.series(query)
        wanted = stat or _DEFAULT_STAT.get(found[0].stat, "") if found else stat
        for line in found:
            if line.stat == wanted and len(lines) < MAX_LINES + 1:
                lines.append(line)
                shown = ",".join(f"{k}={v}" for k, v in sorted(line.tags.items()))
                labels.append(f"{engine} {shown}".strip())
    view = None
    if name:
        title = f"{name} {stat or (lines[0].stat if lines else '')}".strip()
        chart = render_chart(title, lines, win.since, win.until, step, labels=labels)
        view = ChartView("compare", name, chart, "", bool(lines))
    keep = [("name", name)] if name else []
    keep += [("engine", e) for e in params.getlist("engine")]
    keep += [("stat", stat)] if stat else []
    keep += [("tags", raw_tags)] if raw_tags else []
    return {
        "view": view,
        "index": 0,
        "engines": engines,
        "chosen": set(params.getlist("engine")),
        "unshown": unshown,
        "known": sorted(hub.state.engines),
        "chart_names": sorted(names)[:MAX_PICKABLE],
        "chart_metric": name,
        "chart_stat": stat,
        "stats": _STATS,
        "chart_tags": raw_tags,
        "chart_range": list(win.query().items()),
        "picker": range_picker(win, keep),
    }
