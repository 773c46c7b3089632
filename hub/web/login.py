"""`/login` and `/logout`: password sign-in to a session cookie, rate-limited per client address.

A wrong user name and a wrong password get the same answer after about the same time: an unknown
user's password is checked against a throwaway hash, so timing does not tell which names exist.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from hub.web.auth import safe_next
from hub.web.identities import Auth, Identity, secure
from hub.web.pages import csp
from hub.web.params import small_form
from hub.web.passwords import hash_password, verify_password
from hub.web.runtime import Hub

__all__ = ["routes"]

log = logging.getLogger(__name__)

_FAILED = "Wrong user name or password."


def _auth(request: Request) -> Auth:
    auth: Auth = request.app.state.auth
    return auth


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _render(
    request: Request, next_path: str, error: str = "", status: int = 200, **headers: str
) -> HTMLResponse:
    """The sign-in page, with `error` above the form."""
    context: dict[str, Any] = {
        "next": next_path,
        "error": error,
        "passwords": bool(_hub(request).credentials.users),
    }
    html = _hub(request).env.get_template("login.html").render(context, now=round(time.time(), 3))
    return HTMLResponse(html, status, headers={**csp(), **headers})


async def login(request: Request) -> Response:
    """`/login`: GET shows the form, POST signs in."""
    return await (sign_in(request) if request.method == "POST" else sign_in_page(request))


async def sign_in_page(request: Request) -> Response:
    """`GET /login`: the form (or straight on, when already signed in or sign-in is off)."""
    next_path = safe_next(request.query_params.get("next"))
    viewer = request.scope.get("user")
    if not _auth(request).enabled or (isinstance(viewer, Identity) and viewer.is_authenticated):
        return RedirectResponse(next_path, 303)
    return _render(request, next_path)


async def _dummy_hash(auth: Auth) -> str:
    """A hash no password matches, made once with the same parameters as real ones."""
    if auth.dummy_hash is None:
        auth.dummy_hash = await asyncio.to_thread(hash_password, secrets.token_urlsafe(24))
    return auth.dummy_hash


async def sign_in(request: Request) -> Response:
    """`POST /login`: check the password off the event loop, then set the session cookie."""
    auth, now, client = _auth(request), time.time(), _client(request)
    wait = auth.limiter.take(client, now)
    if wait:
        log.warning("sign-in attempt from %s refused: over the per-minute limit", client)
        _hub(request).audit(client, "sign_in_limited")
        message = f"Too many sign-in attempts from your address; try again in {math.ceil(wait)} s."
        return _render(request, "/", message, 429, **{"Retry-After": str(math.ceil(wait))})
    form = await small_form(request)
    if form is None:
        return _render(request, "/", "That form could not be read; please try again.", 400)
    name, password = form.get("user", ""), form.get("password", "")
    next_path = safe_next(form.get("next"))
    user = _hub(request).credentials.users.get(name)
    dummy = await _dummy_hash(auth)  # made before the check, so no path pays for it alone
    matched = await asyncio.to_thread(verify_password, user.password if user else dummy, password)
    if user is None or not matched:
        reason = "no such user" if user is None else "wrong password"
        log.warning("sign-in failed for user %r from %s: %s", name[:64], client, reason)
        _hub(request).audit(client, "sign_in_failed", f"as {name[:64]!r}: {reason}")
        return _render(request, next_path, _FAILED)
    session = auth.sessions.start(user, now)
    log.info("signed in: %r (%s) from %s", user.name, user.role, client)
    _hub(request).audit(user.name, "sign_in", f"{user.role} from {client}")
    response = RedirectResponse(next_path, 303)
    response.headers.append("set-cookie", auth.cookie(session, now, secure(request.scope)))
    return response


async def sign_out(request: Request) -> Response:
    """`POST /logout`: end the session for every holder of its cookie, and clear the cookie."""
    auth, now = _auth(request), time.time()
    viewer = request.scope.get("user")
    if isinstance(viewer, Identity) and viewer.session is not None:
        auth.sessions.sign_out(viewer.session, now)
        log.info("signed out: %r from %s", viewer.name, _client(request))
        _hub(request).audit(viewer.name, "sign_out", f"from {_client(request)}")
    response = RedirectResponse("/login", 303)
    response.headers.append("set-cookie", auth.cookie(None, now, secure(request.scope)))
    return response


routes = [
    Route("/login", login, methods=["GET", "POST"]),
    Route("/logout", sign_out, methods=["POST"]),
]
