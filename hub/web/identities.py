"""Who a request is: a session cookie, an API token or a trusted proxy's user header.

`Auth` holds what viewer sign-in keeps for one app (the session signer and rules, the login rate
limit) and answers `identify(conn, credentials, now)`. The shapes follow `starlette.authentication`:
an `Identity` is a `BaseUser` and its roles are `AuthCredentials` scopes.
"""

from __future__ import annotations

import enum
import http.cookies
import logging
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeSerializer
from starlette.authentication import AuthCredentials, AuthenticationError, BaseUser
from starlette.requests import HTTPConnection
from starlette.types import Scope

from hub.core.access import Credentials, Role
from hub.core.ratelimits import RateLimiter
from hub.core.sessions import SessionEnd, Sessions, ViewerSession
from hub.settings import Settings
from hub.web.embeds import EMBED_PARAM, EmbedLinks
from hub.web.exposure import is_loopback, viewer_auth_configured
from hub.web.fastwrite import DASHBOARD_PATH
from hub.web.proxies import from_trusted_proxy

__all__ = ["SESSION_COOKIE", "Auth", "Identity", "Via", "origin_of", "secure"]

log = logging.getLogger(__name__)

SESSION_COOKIE = "engine_hub_session"


class Via(enum.StrEnum):
    """How a request proved who it is."""

    SESSION = "session"
    TOKEN = "token"
    PROXY = "proxy"
    EMBED = "embed"  # a signed embed link: one engine's card, nothing else
    ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Identity(BaseUser):
    """Who a request is: a name, a role and how it signed in (`scope["user"]`)."""

    name: str
    role: Role
    via: Via
    session: ViewerSession | None = None

    @property
    def is_authenticated(self) -> bool:
        """Signed in, rather than admitted anonymously."""
        return self.via is not Via.ANONYMOUS

    @property
    def display_name(self) -> str:
        """The name the header shows."""
        return self.name

    @property
    def identity(self) -> str:
        """Starlette's identifier for the user: the name."""
        return self.name

    def credentials(self) -> AuthCredentials:
        """The roles as Starlette auth scopes: an admin holds both."""
        roles = ["viewer", "admin"] if self.role is Role.ADMIN else ["viewer"]
        return AuthCredentials(["authenticated", *roles] if self.is_authenticated else roles)


def _embed_path(conn: HTTPConnection, engine: str) -> bool:
    """Whether `conn` asks for what an embed link of `engine` shows: its embed page, its card
    fragment, or the embed view of /ws/dashboard for its hub index (GET/HEAD/OPTIONS/socket)."""
    path, scope = conn.scope["path"], conn.scope
    if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD", "OPTIONS"):
        return False
    if path in (f"/embed/engines/{engine}", f"/fragments/engines/{engine}/card"):
        return bool(scope["type"] == "http")
    if path != DASHBOARD_PATH or scope["type"] != "websocket":
        return False
    record = scope["app"].state.hub.state.engines.get(engine)
    query = conn.query_params
    return (
        record is not None and query.get("view") == "embed" and query.get("id") == str(record.index)
    )


def origin_of(url: str) -> str | None:
    """scheme://host[:port] of `url`, lower-cased (None when it has no host)."""
    parts = urlsplit(url.strip())
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else None


class Auth:
    """What viewer sign-in keeps for one app: the session signer and rules, the login limit."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = viewer_auth_configured(settings)
        self.allow_anonymous = settings.allow_anonymous_viewers
        self.local = is_loopback(settings.host)
        self.sessions = Sessions(settings.session_idle, settings.session_lifetime)
        self.limiter = RateLimiter(settings.login_attempts_per_minute)
        # An empty secret means a random one per start: sessions then end when the hub restarts.
        secret = settings.session_secret or secrets.token_urlsafe(32)
        self._signer = URLSafeSerializer(secret, salt="engine-hub.session")
        self._proxy_header = settings.proxy_user_header
        self._proxy_admins = frozenset(settings.proxy_admins)
        self.settings = settings
        self.live_recheck = 30.0  # how often an open live socket's sign-in is checked again
        self.dummy_hash: str | None = None  # what unknown users' passwords are checked against
        # Embed links are signed with the configured secret only: a random one would make links
        # that die at the next restart, so without one there are none (engine-hub token embed).
        self.embeds = EmbedLinks(settings.session_secret) if settings.session_secret else None

    def anonymous(self) -> Identity | None:
        """Who an unsigned request is: refused with auth on (unless opted out), else today's access."""
        if self.enabled and not self.allow_anonymous:
            return None
        # Without sign-in, the operator at a loopback hub may do everything; anyone else reads.
        role = Role.ADMIN if self.local and not self.enabled else Role.VIEWER
        return Identity("anonymous", role, Via.ANONYMOUS)

    def identify(
        self, conn: HTTPConnection, credentials: Credentials, now: float, *, live: bool = False
    ) -> Identity | None:
        """Who `conn` signed in as (None: nobody); AuthenticationError for a bad API token."""
        if not self.enabled:
            return None
        header = conn.headers.get("authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            entry = (
                credentials.api_token(token.strip(), now) if scheme.lower() == "bearer" else None
            )
            if entry is None:
                raise AuthenticationError(
                    "this API token is unknown, revoked or expired; make one with "
                    "`engine-hub token create --role viewer` and send it as Authorization: Bearer"
                )
            return Identity(entry.name or "API token", entry.role, Via.TOKEN)
        return (
            self._proxied(conn)
            or self._session(conn, credentials, now, live)
            or self._embedded(conn, credentials, now)
        )

    def _embedded(
        self, conn: HTTPConnection, credentials: Credentials, now: float
    ) -> Identity | None:
        """An embed link's read-only access, for its own engine's card and nothing else."""
        token = conn.query_params.get(EMBED_PARAM)
        if not token or self.embeds is None:
            return None
        grant = self.embeds.read(token, now, credentials.revoked_embeds)
        if grant is None or not _embed_path(conn, grant.engine):
            return None
        return Identity(f"embed link {grant.link_id}", Role.VIEWER, Via.EMBED)

    def _proxied(self, conn: HTTPConnection) -> Identity | None:
        """The user a trusted reverse proxy names in its header (ignored from anyone else)."""
        name = conn.headers.get(self._proxy_header, "").strip() if self._proxy_header else ""
        if not name:
            return None
        if not from_trusted_proxy(conn.scope):  # the TCP peer, judged by ProxyHeadersMiddleware
            return None
        if len(name) > 256 or not name.isprintable():
            raise AuthenticationError(f"the proxy's {self._proxy_header} header is not a user name")
        role = Role.ADMIN if name in self._proxy_admins else Role.VIEWER
        return Identity(name, role, Via.PROXY)

    def _session(
        self, conn: HTTPConnection, credentials: Credentials, now: float, live: bool
    ) -> Identity | None:
        session = self.read_cookie(conn.cookies.get(SESSION_COOKIE))
        if session is None:
            return None
        user = self.sessions.check(session, credentials.users, now, live=live)
        if isinstance(user, SessionEnd):
            return None
        return Identity(user.name, user.role, Via.SESSION, session)

    def read_cookie(self, value: str | None) -> ViewerSession | None:
        """The session a cookie value carries, if this hub signed it."""
        if not value:
            return None
        try:
            return ViewerSession.from_wire(self._signer.loads(value))
        except BadSignature:
            return None

    def cookie(self, session: ViewerSession | None, now: float, secure: bool) -> str:
        """A Set-Cookie value that stores `session` (None: one that clears the cookie)."""
        cookie: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
        if session is None:
            cookie[SESSION_COOKIE] = ""
            cookie[SESSION_COOKIE]["max-age"] = 0
        else:
            cookie[SESSION_COOKIE] = str(self._signer.dumps(session.to_wire()))
            cookie[SESSION_COOKIE]["max-age"] = self.sessions.max_age(session, now)
        morsel = cookie[SESSION_COOKIE]
        morsel["path"] = "/"
        morsel["httponly"] = True
        morsel["samesite"] = "Strict"
        if secure:
            morsel["secure"] = True
        return morsel.OutputString()


def secure(scope: Scope) -> bool:
    """Whether the browser reached the hub over TLS (as the server, or a trusted proxy, says)."""
    return scope.get("scheme") in ("https", "wss")
