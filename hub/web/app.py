"""`create_app(settings)`: the Starlette application and the lifespan that owns the hub."""

from __future__ import annotations

import http.client
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute

from hub.settings import Settings
from hub.web import (
    admin,
    alert_routes,
    api,
    chains,
    chart_pages,
    login,
    pages,
    searches,
    series_api,
)
from hub.web.api import error_response
from hub.web.auth import AuthMiddleware
from hub.web.dashboard_ws import dashboard_endpoint
from hub.web.engine_ws import engine_endpoint
from hub.web.fastwrite import DASHBOARD_PATH
from hub.web.hosts import HostCheckMiddleware, HostPolicy
from hub.web.identities import Auth
from hub.web.params import BadRequest
from hub.web.prometheus import metrics_endpoint, registry_for
from hub.web.proxies import ProxyHeadersMiddleware, TrustedProxies
from hub.web.runtime import Hub
from hub.web.sse import stream

__all__ = ["create_app"]

log = logging.getLogger(__name__)


async def _bad_request(request: Request, exc: Exception) -> Response:
    return error_response(400, "bad_request", str(exc))


def _code(status: int) -> str:
    """`not_found` for 404, `method_not_allowed` for 405: the reason phrase as an identifier."""
    phrase = http.client.responses.get(status, "error")
    return phrase.lower().replace(" ", "_").replace("-", "_")


async def _http_error(request: Request, exc: Exception) -> Response:
    """Every HTTPException (unknown path, wrong method, static file trouble) in the one JSON shape."""
    assert isinstance(exc, HTTPException)
    status, headers = exc.status_code, dict(exc.headers or {})
    path = request.url.path[:200]
    detail = exc.detail if exc.detail != http.client.responses.get(status) else ""
    if status == 405:
        allowed = ", ".join(sorted({m.strip() for m in headers.get("Allow", "").split(",")} - {""}))
        headers["Allow"] = allowed
        detail = f"{request.method} is not allowed on {path}; allowed: {allowed or 'none'}"
    elif status == 404 and not detail:
        detail = (
            f"nothing at {path}; the API is under /api/telemetry/ (docs/api.md lists every path)"
        )
    return error_response(status, _code(status), detail or _code(status), headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %r", request.url.path, exc_info=exc)  # %r: no forged lines
    return error_response(500, "internal", "internal error; see the hub's log")


async def _websocket_only(request: Request) -> Response:
    """A plain HTTP request to a WebSocket endpoint: 426 that says how to connect instead."""
    path = request.url.path
    detail = (
        f"{path} is a WebSocket endpoint; connect with a WebSocket client (ws://HOST:PORT{path})"
    )
    return error_response(426, "upgrade_required", detail, {"Upgrade": "websocket"})


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the hub application; the lifespan creates the `Hub` and owns its tasks."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        hub = Hub(settings)
        app.state.hub = hub
        app.state.registry = registry_for(hub)
        await hub.start()
        log.info("engine hub ready (store %s)", settings.db)
        try:
            yield
        finally:
            await hub.stop()

    routes = [
        *api.routes,
        *series_api.routes,
        *chart_pages.routes,
        *admin.routes,
        *alert_routes.routes,
        *chains.routes,
        Route("/api/telemetry/stream", stream),
        Route("/metrics", metrics_endpoint),
        WebSocketRoute("/ws/engine", engine_endpoint),
        WebSocketRoute(DASHBOARD_PATH, dashboard_endpoint),
        # Plain HTTP on the socket paths: 426 rather than a 404 that says the path does not exist.
        Route("/ws/engine", _websocket_only),
        Route(DASHBOARD_PATH, _websocket_only),
        *login.routes,
        *searches.routes,
        *pages.routes,
    ]
    # Outermost first: a trusted proxy's X-Forwarded-* make the scope what the client asked for,
    # then the Host check, so nothing below (sign-in included) answers a name the hub does not own;
    # then sign-in, in front of every route (docs/security.md).
    auth = Auth(settings)
    middleware = [
        Middleware(ProxyHeadersMiddleware, proxies=TrustedProxies.from_settings(settings)),
        Middleware(HostCheckMiddleware, policy=HostPolicy.from_settings(settings)),
        Middleware(AuthMiddleware, auth=auth),
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={
            BadRequest: _bad_request,
            HTTPException: _http_error,
            Exception: _server_error,
        },
    )
    app.state.auth = auth
    return app
