"""Alert endpoints: `/api/alerts`, `/api/silences`, the dashboard's panel and its forms.

Reads need any signed-in identity; acknowledging and silencing are writes, so the auth
middleware requires the admin role and checks the Origin (CSRF) in front of them.
"""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from hub.core.access import Role
from hub.core.alert_settings import AlertSettingsError, parse_duration
from hub.core.silences import BadSilence
from hub.web.api import error_response, json_response
from hub.web.params import BadRequest, engine_param, small_form
from hub.web.runtime import Hub

__all__ = ["panel_context", "routes"]

MAX_BODY = 4096


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def _actor(request: Request) -> str:
    return request.user.display_name if request.user.is_authenticated else "anonymous"


def panel_context(hub: Hub, now: float, engine: str | None = None) -> dict[str, Any]:
    """What `partials/_alerts.html` renders: firing first, then recent resolved, and silences."""
    view = hub.alerting.view(now, engine)
    silences = [s.view() for s in hub.alerting.silences.by_id.values()]
    return {"alerts": view, "silences": silences, "alert_engine": engine}


async def list_alerts(request: Request) -> Response:
    """GET /api/alerts[?engine=]: firing, pending and recent resolved alerts; receivers' counters."""
    hub, now = _hub(request), time.time()
    return json_response(hub.alerting.view(now, engine_param(request)))


async def ack_alert(request: Request) -> Response:
    """POST /api/alerts/{id}/ack: acknowledge a firing alert (it stops repeating)."""
    alert = _hub(request).alerting.ack(request.path_params["id"], _actor(request), time.time())
    if alert is None:
        return error_response(404, "not_found", "no firing alert has this id; GET /api/alerts")
    return json_response(alert.view())


async def silences_endpoint(request: Request) -> Response:
    """GET /api/silences lists the silences in force; POST adds one."""
    if request.method == "POST":
        return await add_silence(request)
    silences = _hub(request).alerting.silences
    silences.expire(time.time())
    return json_response({"silences": [s.view() for s in silences.by_id.values()]})


def _silence_fields(raw: Any) -> tuple[str, str, float, str]:
    """engine, rule, duration (seconds) and comment from a JSON object or a form."""
    if not isinstance(raw, dict):
        raise BadSilence('send a JSON object like {"engine": "fno", "rule": "*", "duration": "2h"}')
    try:
        duration = parse_duration("duration", raw.get("duration", "1h"))
    except AlertSettingsError as exc:
        raise BadSilence(str(exc)) from None
    comment = raw.get("comment", "")
    if not isinstance(comment, str):
        raise BadSilence("comment must be text")
    return str(raw.get("engine", "*")), str(raw.get("rule", "*")), duration, comment


async def add_silence(request: Request) -> Response:
    """POST /api/silences {engine, rule, duration, comment}: silence matching alerts."""
    body = await request.body()
    if len(body) > MAX_BODY:
        return error_response(413, "too_large", f"a silence is at most {MAX_BODY} bytes of JSON")
    try:
        fields = _silence_fields(json.loads(body or b"{}"))
        silence = _hub(request).alerting.silence(*fields, _actor(request), time.time())
    except ValueError as exc:  # BadSilence, and JSON that does not parse
        raise BadRequest(str(exc)[:300]) from None
    return json_response(silence.view(), 201)


async def delete_silence(request: Request) -> Response:
    """DELETE /api/silences/{id}: end a silence now."""
    ended = _hub(request).alerting.unsilence(
        request.path_params["id"], _actor(request), time.time()
    )
    if ended is None:
        return error_response(
            404, "not_found", "no silence in force has this id; GET /api/silences"
        )
    return json_response(ended.view())


async def alerts_fragment(request: Request) -> Response:
    """GET /fragments/alerts[?index=]: the alerts panel, of one engine by its hub index (polled)."""
    hub = _hub(request)
    raw = request.query_params.get("index", "0")
    if not raw.isdigit() or len(raw) > 9:
        raise BadRequest("index must be an engine's index (0: every engine)")
    engine = hub.views.engine_by_index(int(raw)) if raw != "0" else None
    if raw != "0" and engine is None:
        return error_response(404, "not_found", "no engine has this index any more")
    context = panel_context(hub, time.time(), engine.name if engine else None)
    admin = getattr(request.scope.get("user"), "role", None) == Role.ADMIN
    context |= {"admin": admin, "alert_scope": int(raw)}
    html = hub.env.get_template("partials/_alerts.html").render(context)
    firing = (
        len(hub.alerting.view(time.time())["firing"])
        if engine
        else len(context["alerts"]["firing"])
    )
    badge = hub.env.get_template("partials/_alert_badge.html").render(alert_firing=firing)
    return Response(html + badge, media_type="text/html")


def _back(request: Request) -> Response:
    """Back to the page the form was on (only our own paths)."""
    referer = request.headers.get("referer", "")
    path = "/" + referer.split("://", 1)[-1].split("/", 1)[-1] if "://" in referer else "/"
    return RedirectResponse(path if path.startswith(("/engines/", "/?")) else "/", 303)


async def ack_form(request: Request) -> Response:
    """POST /admin/alerts/ack (form: id): acknowledge from the dashboard."""
    form = await small_form(request) or {}
    raw = form.get("id", "")
    if not raw.isdigit() or len(raw) > 18:
        raise BadRequest("id must be an alert id")
    _hub(request).alerting.ack(int(raw), _actor(request), time.time())
    return _back(request)


async def silence_form(request: Request) -> Response:
    """POST /admin/alerts/silence (form: engine, rule, duration, comment)."""
    form = await small_form(request) or {}
    raw = form.get("id", "")
    alert = _hub(request).alerting.book.find(int(raw)) if raw.isdigit() and len(raw) < 18 else None
    if alert is not None:  # the dashboard silences one alert: its engine and rule
        form = {**form, "engine": alert.engine or "*", "rule": alert.rule}
    try:
        fields = _silence_fields(form)
        _hub(request).alerting.silence(*fields, _actor(request), time.time())
    except BadSilence as exc:
        raise BadRequest(str(exc)[:300]) from None
    return _back(request)


routes = [
    Route("/api/alerts", list_alerts),
    Route("/api/alerts/{id:int}/ack", ack_alert, methods=["POST"]),
    Route("/api/silences", silences_endpoint, methods=["GET", "POST"]),
    Route("/api/silences/{id:int}", delete_silence, methods=["DELETE"]),
    Route("/fragments/alerts", alerts_fragment),
    Route("/admin/alerts/ack", ack_form, methods=["POST"]),
    Route("/admin/alerts/silence", silence_form, methods=["POST"]),
]
