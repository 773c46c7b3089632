"""Deny by default: one pure-ASGI middleware decides what each HTTP and WebSocket request may do.

With viewer auth on, a request that is not signed in (hub/web/identities.py) reaches only the paths
in `PUBLIC`. The rules (docs/security.md):

- reading (GET, HEAD, OPTIONS, WebSockets) needs any signed-in identity (role viewer or admin);
- everything under /api/admin/ and /admin/ and every other method (POST, PUT, DELETE, ...) needs the admin
  role, except signing in and out;
- a state-changing request not sent with an API token must come from the hub's own pages
  (Origin, else Referer): cookies and proxy sign-ins are ambient, so they are CSRF-checked.

The identity is `scope["user"]` and its roles `scope["auth"]`, as Starlette's own
AuthenticationMiddleware leaves them, so `request.user` and `requires("admin")` work.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from starlette.authentication import AuthCredentials, AuthenticationError, UnauthenticatedUser
from starlette.requests import HTTPConnection
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.core.access import Credentials, Role
from hub.core.messages import CloseCode
from hub.settings import Settings
from hub.web import hosts
from hub.web.api import error_response
from hub.web.identities import Auth, Identity, Via, origin_of, secure
from hub.web.pages import csp

__all__ = ["PUBLIC", "AuthMiddleware", "Public", "needs_admin", "safe_next", "same_origin"]

log = logging.getLogger(__name__)

_READS = frozenset({"GET", "HEAD", "OPTIONS", "WEBSOCKET"})
_SIGN_IN_OUT = frozenset({("POST", "/login"), ("POST", "/logout")})


@dataclass(frozen=True, slots=True)
class Public:
    """A path anyone may reach with viewer auth on (a prefix when it ends with /), and why."""

    path: str
    methods: frozenset[str]
    why: str

    def admits(self, method: str, path: str) -> bool:
        """Whether `method` on `path` is this public entry."""
        matches = path.startswith(self.path) if self.path.endswith("/") else path == self.path
        return matches and method in self.methods


_PAGE = frozenset({"GET", "HEAD"})
_NOT_PAGES = ("/api/", "/metrics", "/fragments/", "/ws/")  # anonymous: a 401, not the sign-in page
PUBLIC = (
    Public("/login", frozenset({"GET", "HEAD", "POST"}), "the sign-in page and its form"),
    Public(
        "/logout", frozenset({"POST"}), "signing out: an expired session may still clear its cookie"
    ),
    Public("/static/", _PAGE, "stylesheets, scripts and icons, the same for everyone"),
    Public("/healthz", _PAGE, "liveness for load balancers; no engine data"),
    Public("/ws/engine", frozenset({"WEBSOCKET"}), "engines, which present engine tokens instead"),
)


def needs_admin(method: str, path: str) -> bool:
    """The authorization rule: admin actions are /api/admin/ and anything that is not a read."""
    if path.startswith(("/api/admin/", "/admin/")) or path in ("/api/admin", "/admin"):
        return True
    return method not in _READS and (method, path) not in _SIGN_IN_OUT


def safe_next(raw: str | None) -> str:
    """Where to go after signing in: a path on this hub, never another site (else "/")."""
    if not raw or len(raw) > 2000 or not raw.startswith("/") or raw.startswith("//"):
        return "/"
    if "\\" in raw or not raw.isprintable():  # browsers read "/\evil" as "//evil"
        return "/"
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc or parts.path in ("/login", "/logout"):
        return "/"
    return raw


def same_origin(conn: HTTPConnection, settings: Settings) -> bool | None:
    """Whether a request came from the hub's own pages: its Origin, else its Referer, is the hub's
    own origin (`hosts.same_origin`); None when it carries neither."""
    claimed = conn.headers.get("origin") or conn.headers.get("referer")
    if not claimed:
        return None
    origin = origin_of(claimed)  # a Referer's path goes
    return origin is not None and hosts.same_origin(origin, conn.scope, settings)


class AuthMiddleware:
    """Authenticate every HTTP and WebSocket scope; refuse what its identity may not do."""

    def __init__(self, app: ASGIApp, auth: Auth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        auth, conn, now = self.auth, HTTPConnection(scope), time.time()
        credentials: Credentials = scope["app"].state.hub.credentials  # per request: reloadable
        method = scope["method"] if scope["type"] == "http" else "WEBSOCKET"
        path: str = scope["path"]
        public = any(entry.admits(method, path) for entry in PUBLIC)
        try:
            identity = auth.identify(conn, credentials, now) or auth.anonymous()
        except AuthenticationError as exc:
            if not public:
                await _unauthorized(scope, receive, send, str(exc), invalid=True)
                return
            identity = auth.anonymous()
        refusal = self._refusal(conn, identity, method, path, public)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        scope["user"] = identity or UnauthenticatedUser()
        scope["auth"] = identity.credentials() if identity else AuthCredentials()
        if identity is None or identity.via is Via.ANONYMOUS or public:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._watched(scope, receive, send, conn, identity)
        else:
            await self.app(scope, receive, self._renewing(scope, send, identity, now))

    def _refusal(
        self, conn: HTTPConnection, identity: Identity | None, method: str, path: str, public: bool
    ) -> ASGIApp | None:
        """The response that refuses this request, or None to let it through."""
        if identity is None and not public:
            if method in _PAGE and not path.startswith(_NOT_PAGES):
                return _to_sign_in(conn)
            detail = "sign in first: send Authorization: Bearer <API token>, or sign in at /login"
            return lambda s, r, w: _unauthorized(s, r, w, detail)
        if method not in _READS and (identity is None or identity.via is not Via.TOKEN):
            refusal = self._cross_site(conn, identity, method, path)
            if refusal is not None:
                return refusal
        if public or identity is None or identity.role is Role.ADMIN:
            return None
        if not needs_admin(method, path):
            return None
        if method == "WEBSOCKET":
            return _close_policy
        detail = (
            f"{method} {path[:200]} needs the admin role and {identity.name!r} is a "
            f"{identity.role}; sign in as an admin or use an admin API token"
        )
        return error_response(403, "forbidden", detail)

    def _cross_site(
        self, conn: HTTPConnection, identity: Identity | None, method: str, path: str
    ) -> Response | None:
        """CSRF: refuse a write from another site's page; with neither Origin nor Referer, refuse
        it when a browser's ambient credentials (cookie, proxy sign-in) or signing in are at stake."""
        same = same_origin(conn, self.auth.settings)
        ambient = identity is not None and identity.via in (Via.SESSION, Via.PROXY)
        if same is None and (ambient or (method, path) in _SIGN_IN_OUT):
            why = "it carries neither Origin nor Referer"
        elif same is False:
            claimed = conn.headers.get("origin") or conn.headers.get("referer", "")
            why = f"it comes from {claimed[:100]!r}"
        else:
            return None
        detail = (
            f"cross-site request refused: {why}, not from this hub's own pages; "
            "programs send an API token as Authorization: Bearer"
        )
        return error_response(403, "cross_site", detail)

    def _renewing(self, scope: Scope, send: Send, identity: Identity, now: float) -> Send:
        """`send`, adding a renewed session cookie to the response when one is due."""
        renewed = identity.session and self.auth.sessions.renewed(identity.session, now)
        if not renewed:
            return send
        header = (b"set-cookie", self.auth.cookie(renewed, now, secure(scope)).encode("latin-1"))

        async def send_renewed(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        return send_renewed

    async def _watched(
        self, scope: Scope, receive: Receive, send: Send, conn: HTTPConnection, identity: Identity
    ) -> None:
        """Serve a live socket, closing it (1008) once its sign-in ends: sign-out, expiry, removal."""
        auth, hub = self.auth, scope["app"].state.hub
        task = asyncio.ensure_future(self.app(scope, receive, send))
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=auth.live_recheck)
                if done:
                    task.result()  # the socket ended on its own; re-raise what it raised
                    return
                try:
                    still = auth.identify(conn, hub.credentials, time.time(), live=True)
                except AuthenticationError:
                    still = None
                if still is None:
                    break
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        log.info("closing %r's live socket: the sign-in (%s) ended", identity.name, identity.via)
        try:
            await send(
                {
                    "type": "websocket.close",
                    "code": CloseCode.POLICY_VIOLATION,
                    "reason": "your sign-in ended; sign in again",
                }
            )
        except (OSError, RuntimeError):
            return  # the socket was already gone


async def _close_policy(scope: Scope, receive: Receive, send: Send) -> None:
    """Refuse a WebSocket before accepting it: 1008, which the server answers as HTTP 403."""
    await send(
        {"type": "websocket.close", "code": CloseCode.POLICY_VIOLATION, "reason": "sign in first"}
    )


async def _unauthorized(
    scope: Scope, receive: Receive, send: Send, detail: str, invalid: bool = False
) -> None:
    """401 in the hub's JSON error shape, or 1008 before accept for a WebSocket."""
    if scope["type"] == "websocket":
        await _close_policy(scope, receive, send)
        return
    challenge = 'Bearer realm="engine-hub"' + (', error="invalid_token"' if invalid else "")
    response = error_response(401, "unauthorized", detail, {"WWW-Authenticate": challenge})
    await response(scope, receive, send)


# A link from another site arrives without the SameSite=Strict cookie; reloading the same URL
# from here is a same-site navigation that carries it (and lands on /login when there is none).
_RELOAD = (
    '<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0">'
    "<title>Engine Hub</title><p>Opening Engine Hub…</p>"
)


def _to_sign_in(conn: HTTPConnection) -> Response:
    """Where an anonymous page request goes: the sign-in page, with the way back."""
    headers = {"Cache-Control": "no-store", "Referrer-Policy": "same-origin"}
    if conn.headers.get("sec-fetch-site") == "cross-site":
        return HTMLResponse(_RELOAD, headers={**csp(), "Cache-Control": "no-store"})
    target = conn.scope["path"] + (f"?{conn.url.query}" if conn.url.query else "")
    return RedirectResponse(f"/login?{urlencode({'next': safe_next(target)})}", 303, headers)
