"""Dashboard pages, embeddable cards and their security headers (strict CSP, no inline scripts)."""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from hub.core.state import CannotForget
from hub.live.filters import RowFilter
from hub.live.listing import ListFilter, ListOrder, page_of
from hub.live.resources import static_dir
from hub.live.views import FragmentKey, Part, ViewKey, ViewKind
from hub.stores import HistoryQuery
from hub.web import hosts
from hub.web.admin import forget_engine, forgotten_message
from hub.web.api import error_response
from hub.web.chart_pages import chart_context
from hub.web.compare_charts import compare_context
from hub.web.embeds import EMBED_PARAM, EmbedLinks
from hub.web.params import BadRequest, small_form
from hub.web.runtime import Hub
from hub.web.timeline_pages import timeline_context

__all__ = ["csp", "routes"]

_BASE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'"
)
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_.-]{1,512}$")


def csp(frame_ancestors: str = "'none'") -> dict[str, str]:
    """Security headers for an HTML response; `frame_ancestors` decides who may frame it."""
    return {
        "Content-Security-Policy": f"{_BASE_CSP}; frame-ancestors {frame_ancestors}",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def _page(
    request: Request,
    template: str,
    context: dict[str, Any],
    status: int = 200,
    frame_ancestors: str = "'none'",
) -> HTMLResponse:
    html = (
        _hub(request)
        .env.get_template(template)
        .render(context, now=round(time.time(), 3), oob=False, viewer=request.scope.get("user"))
    )
    return HTMLResponse(html, status, headers=csp(frame_ancestors))


def _not_found(request: Request, name: str, frame_ancestors: str = "'none'") -> HTMLResponse:
    message = f"No engine named {name!r} has connected to this hub."
    context = {"status": "Engine not found", "message": message}
    return _page(request, "error.html", context, 404, frame_ancestors)


async def overview(request: Request) -> Response:
    """`/`: every engine's card (or one page of the engine list), recent signals, orders,
    errors, logs and hub status."""
    views, now, params = _hub(request).views, time.time(), request.query_params
    view = ViewKey(
        ViewKind.OVERVIEW,
        page=page_of(params.get("page", "")),
        order=ListOrder.parse(params.get("sort", "")),
        only=ListFilter.parse(params),
    )
    context: dict[str, Any] = {"listing": None}
    for key in views.names(view):
        context.update(views.context(key, now))
    context.update(
        signals=views.context(FragmentKey(Part.SIGNALS), now)["rows"],
        orders=views.context(FragmentKey(Part.ORDERS), now)["rows"],
        errors=views.context(FragmentKey(Part.ERRORS), now)["rows"],
        logs=views.context(FragmentKey(Part.LOGS), now)["lines"],
        page_filter=RowFilter.from_query(request.query_params),
    )
    return _page(request, "overview.html", context)


async def audit_page(request: Request) -> Response:
    """`/admin/audit`: the audit trail, newest first (admins)."""
    hub, limit = _hub(request), 200
    entries = await hub.store.history("audit", HistoryQuery(limit))
    return _page(request, "audit.html", {"entries": entries, "limit": limit})


_EMBED_TTLS = {"1d": 86_400.0, "7d": 7 * 86_400.0, "30d": 30 * 86_400.0, "90d": 90 * 86_400.0}


async def make_embed_link(request: Request) -> Response:
    """`POST /admin/embeds` (admins; form: index, ttl): a signed link to one engine's card."""
    hub, now = _hub(request), time.time()
    form = await small_form(request) or {}
    raw_index, ttl = form.get("index", ""), form.get("ttl", "30d")
    engine = hub.views.engine_by_index(int(raw_index)) if raw_index.isdigit() else None
    context: dict[str, Any] = {"index": engine.index if engine else 0, "link": None}
    if engine is None or ttl not in _EMBED_TTLS:
        context |= {"status": "No such engine", "message": "Pick an engine and a lifetime."}
        return _page(request, "embed_link.html", context, 400)
    try:
        links = EmbedLinks(hub.settings.session_secret)
    except ValueError as exc:
        context |= {"status": "Embed links are off", "message": str(exc)}
        return _page(request, "embed_link.html", context, 409)
    token, grant = links.make(engine.name, now + _EMBED_TTLS[ttl])
    path = f"/embed/engines/{engine.name}?{urlencode({EMBED_PARAM: token})}"
    actor = request.user.display_name if request.user.is_authenticated else "anonymous"
    hub.audit(actor, "embed_link_created", f"id {grant.link_id}, {ttl}", engine=engine.name)
    context |= {
        "status": "Embed link",
        "engine": engine.name,
        "link": hosts.absolute_url(request.scope, hub.settings, path),
        "link_id": grant.link_id,
        "expires": grant.expires,
    }
    return _page(request, "embed_link.html", context)


async def engine_page(request: Request) -> Response:
    """`/engines/{name}`: one engine in depth."""
    hub, now = _hub(request), time.time()
    name = request.path_params["name"]
    engine = hub.state.engines.get(name)
    if engine is None:
        return _not_found(request, name)
    views, index = hub.views, engine.index
    sections = [
        (part.value, views.context(FragmentKey(part, index), now)["rows"])
        for part in (
            Part.ESIGNALS,
            Part.EORDERS,
            Part.POSITIONS,
            Part.DECISIONS,
            Part.CYCLES,
            Part.EERRORS,
        )
    ]
    context = {
        "engine_name": engine.name,
        "engine": engine,
        "index": index,
        "card": views.card_model(engine, now),
        "hub": views.hub_model(now),
        "state_items": views.context(FragmentKey(Part.STATE, index), now)["items"],
        "metrics": views.context(FragmentKey(Part.METRICS, index), now)["metrics"],
        "sections": sections,
        "logs": views.context(FragmentKey(Part.ELOGS, index), now)["lines"],
    }
    try:  # its lane of the timeline, for the range in the URL
        context |= await timeline_context(hub, request, now, index)
    except BadRequest as exc:
        return _page(request, "error.html", {"status": "Bad range", "message": str(exc)}, 400)
    try:  # its charts, for the range (and picked metric) in the URL
        context |= await chart_context(hub, request, now, engine)
    except BadRequest as exc:
        return _page(
            request, "error.html", {"status": "Bad chart request", "message": str(exc)}, 400
        )
    return _page(request, "engine.html", context)


async def forget_engine_form(request: Request) -> Response:
    """`POST /admin/engines/forget` (admins; form: index, confirm=yes): forget a retired engine."""
    hub = _hub(request)
    form = await small_form(request) or {}
    raw_index = form.get("index", "")
    engine = hub.views.engine_by_index(int(raw_index)) if raw_index.isdigit() else None
    if engine is None:
        message = "This engine is no longer known to the hub (already forgotten?)."
        return _page(request, "error.html", {"status": "No such engine", "message": message}, 404)
    if form.get("confirm") != "yes":
        message = "Tick the confirmation box to forget this engine."
        return _page(request, "error.html", {"status": "Not confirmed", "message": message}, 400)
    actor = request.user.display_name if request.user.is_authenticated else "anonymous"
    try:
        forgotten = forget_engine(hub, engine.name, actor)
    except CannotForget as exc:
        context = {"status": "Cannot forget this engine", "message": f"{exc}."}
        return _page(request, "error.html", context, 409)
    context = {"status": "Engine forgotten", "message": forgotten_message(forgotten)}
    return _page(request, "error.html", context)


async def engine_by_index(request: Request) -> Response:
    """`/engines/id/{index}`: where card links point (ids are ours; names stay out of markup)."""
    engine = _hub(request).views.engine_by_index(request.path_params["index"])
    if engine is None:
        return _page(
            request,
            "error.html",
            {"status": "Engine not found", "message": "This engine is no longer known to the hub."},
            404,
        )
    path = str(request.app.url_path_for("engine_page", name=engine.name))
    return RedirectResponse(hosts.absolute_url(request.scope, _hub(request).settings, path), 303)


def _allowed_origin(request: Request) -> str | None:
    """The request's Origin if the embedding allowlist has it."""
    origin = request.headers.get("origin")
    return origin if origin and origin in _hub(request).settings.embed_origins else None


async def embed(request: Request) -> Response:
    """`/embed/engines/{name}`: a minimal live card for iframes on allowed origins."""
    hub, now = _hub(request), time.time()
    engine = hub.state.engines.get(request.path_params["name"])
    ancestors = " ".join(["'self'", *hub.settings.embed_origins])
    if engine is None:
        return _not_found(request, request.path_params["name"], ancestors)
    context = {"card": hub.views.card_model(engine, now), "index": engine.index}
    # An embed link's token rides along to the page's live socket (the auth middleware checked
    # it for this engine); anything not shaped like one is left out rather than echoed.
    token = request.query_params.get(EMBED_PARAM, "")
    context["embed_query"] = urlencode({EMBED_PARAM: token}) if _TOKEN_SHAPE.match(token) else ""
    return _page(request, "embed.html", context, frame_ancestors=ancestors)


async def card_fragment(request: Request) -> Response:
    """`/fragments/engines/{name}/card`: the card partial for `hx-get`, CORS from the allowlist."""
    hub, now = _hub(request), time.time()
    origin = request.headers.get("origin")
    allowed = _allowed_origin(request)
    same_origin = origin is None or hosts.same_origin(origin, request.scope, hub.settings)
    if not same_origin and allowed is None:
        detail = (
            f"origin {str(origin)[:100]!r} is not allowed to embed engine cards; "
            "add it to the hub's embed_origins (ENGINE_HUB_EMBED_ORIGINS)"
        )
        return error_response(403, "forbidden", detail)
    headers = {"Vary": "Origin", **csp()}
    if allowed:
        headers.update(
            {"Access-Control-Allow-Origin": allowed, "Access-Control-Allow-Headers": "*"}
        )
    if request.method == "OPTIONS":
        return Response(status_code=204, headers={**headers, "Access-Control-Allow-Methods": "GET"})
    name = request.path_params["name"]
    engine = hub.state.engines.get(name)
    if engine is None:
        detail = f"no engine named {name!r} is known to this hub, so it has no card"
        return error_response(404, "not_found", detail, headers)
    html = hub.views.render(FragmentKey(Part.CARD, engine.index), now, oob=False)
    return HTMLResponse(html, headers=headers)


async def timeline_page(request: Request) -> Response:
    """`/timeline?engine=A&engine=B&range=1h`: engines' markers on one time axis (docs/history.md)."""
    try:
        context = await timeline_context(_hub(request), request, time.time())
    except BadRequest as exc:
        context = {"status": "Bad timeline request", "message": str(exc)}
        return _page(request, "error.html", context, 400)
    return _page(request, "timeline.html", context)


async def charts_page(request: Request) -> Response:
    """`/charts?name=cycles&engine=A&engine=B&range=6h`: one metric across engines (docs/dashboard.md)."""
    try:
        context = await compare_context(_hub(request), request, time.time())
    except BadRequest as exc:
        context = {"status": "Bad chart request", "message": str(exc)}
        return _page(request, "error.html", context, 400)
    return _page(request, "charts.html", context)


async def timeline_fragment(request: Request) -> Response:
    """`/fragments/timeline`: the timeline partial the page polls while its range includes now
    (`index=` an engine page's lane, else the page's `engine=`); a bad query is a JSON 400."""
    hub, raw = _hub(request), request.query_params.get("index", "")
    if raw and (not raw.isdigit() or len(raw) > 9):
        raise BadRequest("index must be an engine's index")
    context = await timeline_context(hub, request, time.time(), int(raw) if raw else None)
    html = hub.env.get_template("partials/_timeline.html").render(context)
    return HTMLResponse(html, headers=csp())


routes = [
    Route("/admin/audit", audit_page),
    Route("/admin/embeds", make_embed_link, methods=["POST"]),
    Route("/admin/engines/forget", forget_engine_form, methods=["POST"]),
    Route("/", overview),
    Route("/engines/id/{index:int}", engine_by_index),
    Route("/engines/{name}", engine_page, name="engine_page"),
    Route("/embed/engines/{name}", embed),
    Route("/fragments/engines/{name}/card", card_fragment, methods=["GET", "OPTIONS"]),
    Mount("/static", StaticFiles(directory=static_dir()), name="static"),
    Route("/timeline", timeline_page),
    Route("/charts", charts_page),
    Route("/fragments/timeline", timeline_fragment),
]
