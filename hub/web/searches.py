"""Full-text search over history: `GET /api/telemetry/search` (JSON) and the `/search` page.

Both parse the same parameters into a `SearchRequest` (hub/core/hits.py) and ask the store for a
page. A hit's snippet is structured, a list of (text, matched) parts: the page wraps matched parts
in <mark> around escaped text, so engine text never becomes markup (docs/history.md).
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from hub.core.hits import BadCursor, Cursor, SearchHit, SearchPage, SearchRequest
from hub.core.logs import level_number
from hub.core.messages import EVENT_TYPE_PATTERN
from hub.core.records import utc
from hub.core.searches import BadQuery, SearchQuery, parse_query, snippet
from hub.web.api import json_response
from hub.web.pages import csp
from hub.web.params import BadRequest, engine_param, int_param, level_param, window_bounds
from hub.web.runtime import Hub

__all__ = ["routes"]

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
_TYPE = re.compile(EVENT_TYPE_PATTERN)
_FILTERS = ("q", "engine", "level", "type", "since", "until", "limit")


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def _request(request: Request, now: float) -> SearchRequest:
    """The search the query parameters ask for; raises BadRequest saying what to fix."""
    params = request.query_params
    text = params.get("q", "").strip()
    if not text:
        raise BadRequest('q is required: words, "a phrase", prefix*, OR, -excluded')
    try:
        query = parse_query(text)
    except BadQuery as exc:
        raise BadRequest(f"q: {exc}") from None
    kind = params.get("type") or None
    if kind is not None and not _TYPE.match(kind):
        raise BadRequest("type must be an event type ([A-Za-z0-9_.:-]{1,64})")
    level = level_param(request)
    if level and kind:
        raise BadRequest("level filters log lines and type filters events: pass one of them")
    try:
        cursor = Cursor.decode(params["cursor"]) if params.get("cursor") else Cursor()
    except BadCursor as exc:
        raise BadRequest(str(exc)) from None
    since, until = window_bounds(request, now)  # since/until, or range=/around=
    return SearchRequest(
        query,
        int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
        engine=engine_param(request),
        min_level=level_number(level) if level else None,
        event_type=kind,
        since=since,
        until=until,
        cursor=cursor,
    )


def timeline_link(hit: SearchHit) -> str:
    """The timeline around a hit (engine names are validated at hello: [A-Za-z0-9_.-])."""
    return "/timeline?" + urlencode({"engine": hit.engine, "around": int(hit.ts)})


def _shown(hit: SearchHit, query: SearchQuery) -> list[tuple[str, bool]]:
    """The snippet: of the message or payload, or of the exception if only it matched."""
    parts = snippet(query, hit.text)
    if hit.exc and not any(matched for _, matched in parts):
        found = snippet(query, hit.exc)
        if any(matched for _, matched in found):
            return found
    return parts


def _view(hit: SearchHit, query: SearchQuery) -> dict[str, Any]:
    """A hit as the API shows it."""
    view: dict[str, Any] = {"kind": hit.kind, "id": hit.id, "engine": hit.engine}
    view |= {"ts": utc(hit.ts), "unix": hit.ts}
    if hit.kind == "log":
        view |= {"level": hit.label, "logger": hit.logger}
    else:
        view["type"] = hit.label
    view["snippet"] = [{"text": text, "match": matched} for text, matched in _shown(hit, query)]
    view["timeline"] = timeline_link(hit)
    return view


async def _search(request: Request) -> tuple[SearchRequest, SearchPage, float]:
    now = time.time()
    wanted = _request(request, now)
    return wanted, await _hub(request).store.search(wanted), now


async def search_api(request: Request) -> Response:
    """`GET /api/telemetry/search`: hits newest first and the cursor of the next page."""
    wanted, page, now = await _search(request)
    return json_response(
        {
            "asof": utc(now),
            "hits": [_view(h, wanted.query) for h in page.hits],
            "next": page.next.encode() if page.next else None,
            "partial": page.partial,
        }
    )


async def search_page(request: Request) -> Response:
    """`/search`: the form, and with `q` one page of hits; htmx's "more" gets only the rows."""
    params = request.query_params
    form = {name: params.get(name, "") for name in _FILTERS}
    context: dict[str, Any] = {"form": form, "hits": [], "more": None, "error": None}
    status = 200
    if form["q"].strip():
        try:
            wanted, page, _ = await _search(request)
        except BadRequest as exc:
            context["error"], status = str(exc), 400
        else:
            context["hits"] = [_view(h, wanted.query) for h in page.hits]
            context["partial"] = page.partial
            if page.next is not None:
                kept = {k: v for k, v in form.items() if v}
                context["more"] = "/search?" + urlencode({**kept, "cursor": page.next.encode()})
    fragment = request.headers.get("hx-request") == "true" and bool(params.get("cursor"))
    template = "partials/_search_hits.html" if fragment else "search.html"
    html = (
        _hub(request)
        .env.get_template(template)
        .render(context, now=round(time.time(), 3), oob=False, viewer=request.scope.get("user"))
    )
    return HTMLResponse(html, status, headers=csp())


routes = [
    Route("/api/telemetry/search", search_api),
    Route("/search", search_page),
]
