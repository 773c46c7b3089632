"""`create_app(settings)`: the Starlette application and the lifespan that owns the hub."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute

from hub.settings import Settings
from hub.web import api, pages
from hub.web.dashboard_ws import dashboard_endpoint
from hub.web.engine_ws import engine_endpoint
from hub.web.params import BadRequest
from hub.web.prometheus import metrics_endpoint, registry_for
from hub.web.runtime import Hub
from hub.web.sse import stream

__all__ = ["create_app"]

log = logging.getLogger(__name__)


async def _bad_request(request: Request, exc: Exception) -> Response:
    return api.json_response({"error": "bad_request", "detail": str(exc)}, 400)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return api.json_response(
        {"error": exc.detail or "error", "status": exc.status_code}, exc.status_code
    )


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s", request.url.path, exc_info=exc)
    return api.json_response(
        {"error": "internal", "detail": "internal error; see the hub's log"}, 500
    )


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
        Route("/api/telemetry/stream", stream),
        Route("/metrics", metrics_endpoint),
        WebSocketRoute("/ws/engine", engine_endpoint),
        WebSocketRoute("/ws/dashboard", dashboard_endpoint),
        *pages.routes,
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            BadRequest: _bad_request,
            HTTPException: _http_error,
            Exception: _server_error,
        },
    )
