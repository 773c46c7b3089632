"""What `/timeline`, its polled fragment and the engine page's lane show: request → context.

The handlers live in hub/web/pages.py (they render pages); this module reads the request's
range, engines and list cursor, asks the store for markers and builds the picture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from hub.core.ranges import DEFAULT_SPAN, TimeRange
from hub.stores.base import TimelineItem, TimelineQuery
from hub.web.params import ENGINE_RE, BadRequest, window_param
from hub.web.runtime import Hub
from hub.web.timelines import item_href, picture, query_string, range_picker

__all__ = ["MAX_LANES", "MAX_MARKERS", "PAGE_ROWS", "Row", "timeline_context"]

MAX_LANES = 20  # lanes on one axis; more engines are named with engine=
MAX_MARKERS = 500  # on the axis; a denser window says so and offers zooming in
PAGE_ROWS = 50  # rows of the list view per page
MAX_SKIP = 10_000  # markers at one instant a cursor may step over


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the list view."""

    item: TimelineItem
    href: str


def _engines(request: Request) -> tuple[str, ...]:
    names = list(dict.fromkeys(request.query_params.getlist("engine")))
    if len(names) > MAX_LANES:
        raise BadRequest(f"at most {MAX_LANES} engines on one timeline; pick fewer with engine=")
    for name in names:
        if not ENGINE_RE.match(name):
            raise BadRequest("engine must be an engine name ([A-Za-z0-9_.-]{1,64})")
    return tuple(names)


def _cursor(request: Request) -> tuple[float | None, int]:
    """The list's cursor: the time of the last row shown (`before`) and how many rows at exactly
    that time were shown already (`skip`), so markers sharing a time are neither lost nor repeated
    across a page boundary."""
    raw = request.query_params.get("before", "")
    if not raw:
        return None, 0
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise BadRequest("before must be Unix seconds (the list's cursor, from its 'older' link)")
    skip = request.query_params.get("skip", "0")
    if not skip.isdigit() or int(skip) > MAX_SKIP:
        raise BadRequest(f"skip must be a whole number up to {MAX_SKIP} (from the 'older' link)")
    return value, int(skip)


def _older(
    shown: list[tuple[str, str]], rows: list[TimelineItem], before: float | None, skip: int
) -> str:
    """The next page's cursor: the last row's exact time and the rows shown at that time."""
    last = rows[-1].ts
    at_last = sum(item.ts == last for item in rows) + (skip if last == before else 0)
    return query_string([*shown, ("before", repr(last)), ("skip", str(at_last))])


async def timeline_context(
    hub: Hub, request: Request, now: float, index: int | None = None
) -> dict[str, Any]:
    """The template context of a timeline; `index` fixes one engine's lane (its engine page's,
    where links keep to the page: they carry no engine).

    Raises BadRequest for a bad range, engine name or cursor.
    """
    window = window_param(request, now) or TimeRange.last(DEFAULT_SPAN, now, "1h")
    before, skip = _cursor(request)
    engine = None if index is None else hub.views.engine_by_index(index)
    if index is not None and engine is None:
        raise BadRequest("index must be the index of an engine the hub knows")
    chosen = _engines(request) if engine is None else (engine.name,)
    known = sorted(hub.state.engines)
    lanes = list(chosen) or known[:MAX_LANES]
    unshown = 0 if chosen else max(0, len(known) - MAX_LANES)
    keep = [("engine", name) for name in chosen] if engine is None else []
    scope = keep if index is None else [("index", str(index))]
    names = tuple(lanes)
    items: list[TimelineItem] = []
    if names:
        query = TimelineQuery(window.since, window.until, MAX_MARKERS + 1, names)
        items = await hub.store.timeline(query)
    dense = len(items) > MAX_MARKERS
    del items[MAX_MARKERS:]
    listed = items[: PAGE_ROWS + 1]
    if before is not None and names:
        # Up to and including `before`, then past the `skip` rows already shown at that time
        # (ties come in a fixed order, hub/stores/timelines.py).
        through = math.nextafter(before, math.inf)
        page = TimelineQuery(window.since, window.until, PAGE_ROWS + 1 + skip, names, through)
        listed = await hub.store.timeline(page)
        del listed[: sum(item.ts == before for item in listed[:skip])]
    more = len(listed) > PAGE_ROWS
    del listed[PAGE_ROWS:]

    def index_of(name: str) -> int | None:
        engine = hub.state.engines.get(name)
        return None if engine is None else engine.index

    shown = [*keep, *window.query().items()]
    return {
        "window": window,
        "picker": range_picker(window, keep),
        "picture": picture(window, lanes, items, index_of, keep),
        "rows": [Row(item, item_href(item, index_of)) for item in listed],
        "dense": dense,
        "max_markers": MAX_MARKERS,
        "unshown": unshown,
        "older": _older(shown, listed, before, skip) if more else "",
        "newest": query_string(shown) if before is not None else "",
        "live": window.live(now) and before is None,
        "fragment": "/fragments/timeline" + query_string([*scope, *window.query().items()]),
    }
