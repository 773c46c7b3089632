"""`/api/admin/*`: operator actions: reload the credentials without a restart, forget an engine.

Who may call these is decided in front of them (the auth middleware requires the admin role for
every `/api/admin/` path); the endpoints themselves only do the work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, fields

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.core.state import CannotForget, Forgotten
from hub.settings import Settings
from hub.web.api import error_response, json_response
from hub.web.engine_ws import close_revoked
from hub.web.runtime import Hub

__all__ = [
    "Reload",
    "Reloaded",
    "forget_engine",
    "forgotten_message",
    "reload_credentials",
    "routes",
]

log = logging.getLogger(__name__)

Reload = Callable[[], Settings]
"""Loads the settings afresh from where the server took them (file, environment, flags)."""

# What a reload applies; every other setting is read once, at startup.
_CREDENTIALS = frozenset({"users", "api_tokens", "engine_tokens", "token", "revoked_embeds"})


@dataclass(frozen=True, slots=True)
class Reloaded:
    """What a reload did: the credentials now in force and the engine sockets it closed."""

    users: int
    api_tokens: int
    engine_tokens: int
    closed_engine_sockets: int
    restart_needed: tuple[str, ...]  # settings that changed but apply only at the next start


def reload_credentials(hub: Hub, reload: Reload, actor: str = "hub") -> Reloaded:
    """Load the settings again, put their credentials in force and close revoked engine sockets.

    A settings problem raises (SettingsError, OSError) before anything changes: the old
    credentials stay in force.
    """
    settings = reload()
    hub.reload_credentials(settings, actor)
    closed = close_revoked(hub)
    pending = tuple(
        f.name
        for f in fields(Settings)
        if f.name not in _CREDENTIALS and getattr(settings, f.name) != getattr(hub.settings, f.name)
    )
    if pending:
        log.warning(
            "settings reloaded: only credentials apply now; restart the hub for %s",
            ", ".join(pending),
        )
    return Reloaded(
        len(settings.users),
        len(settings.api_tokens),
        len(settings.engine_tokens),
        closed,
        pending,
    )


async def reload_endpoint(request: Request) -> Response:
    """POST /api/admin/reload: `reload_credentials` from the settings the server started with."""
    hub: Hub = request.app.state.hub
    reload: Reload | None = getattr(request.app.state, "reload_settings", None)
    if reload is None:
        detail = (
            "this hub has no settings source to reload; run it with `engine-hub serve` "
            "(or give HubServer a reload= callable)"
        )
        return error_response(409, "no_reload", detail)
    try:
        actor = request.user.display_name if request.user.is_authenticated else "anonymous"
        reloaded = reload_credentials(hub, reload, actor)
    except (ValueError, OSError) as exc:  # SettingsError is a ValueError
        log.error("reloading settings failed; the previous credentials stay in force: %s", exc)
        detail = (
            f"{exc}; fix the settings and reload again (the previous credentials stay in force)"
        )
        return error_response(422, "bad_settings", detail)
    return json_response(reloaded)


def forget_engine(hub: Hub, name: str, actor: str) -> Forgotten:
    """Forget a retired engine (raises CannotForget while it is connected) and audit it."""
    forgotten = hub.state.forget(name)
    hub.audit(actor, "engine.forget", forgotten_message(forgotten), engine=name)
    return forgotten


def forgotten_message(forgotten: Forgotten) -> str:
    """What forgetting let go of, in words (engine name escaped as a repr)."""
    return (
        f"forgot engine {forgotten.engine!r}: {forgotten.events} recent events, "
        f"{forgotten.logs} log lines and {forgotten.series} metric series left the live views "
        "and /metrics; its stored history stays"
    )


async def forget_endpoint(request: Request) -> Response:
    """POST /api/admin/engines/{name}/forget: `forget_engine`; 409 while it is connected."""
    hub: Hub = request.app.state.hub
    name = request.path_params["name"]
    actor = request.user.display_name if request.user.is_authenticated else "anonymous"
    if name not in hub.state.engines:
        detail = f"no engine named {name[:100]!r} is known to this hub (already forgotten?)"
        return error_response(404, "not_found", detail)
    try:
        forgotten = forget_engine(hub, name, actor)
    except CannotForget as exc:
        return error_response(409, "engine_connected", str(exc))
    return json_response(forgotten)


routes = [
    Route("/api/admin/reload", reload_endpoint, methods=["POST"]),
    Route("/api/admin/engines/{name}/forget", forget_endpoint, methods=["POST"]),
]
