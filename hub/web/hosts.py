"""The host names the hub answers to, and its own origin: no DNS rebinding, right links behind a proxy.

A page on `http://evil.example` whose name an attacker points at the hub's address (DNS rebinding)
is same-origin with whatever the hub serves there: the browser sends `Host: evil.example` and would
let the page read every answer. So the hub answers only the names it knows (`HostPolicy`): the
loopback names when it listens on loopback (or the request comes from this machine), the host of
`public_url`, the address it is bound to, and `allowed_hosts`. Anything else gets a 421 in the
hub's JSON error shape, and a WebSocket handshake is refused before it is accepted.

Starlette's `TrustedHostMiddleware` is the model, but it answers a WebSocket scope with an HTTP
response unconditionally (a server without the denial-response extension fails with an error
instead of refusing) and knows nothing about loopback or `public_url`.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from hub.settings import Settings, SettingsError
from hub.web.api import error_response

__all__ = [
    "HostCheckMiddleware",
    "HostPolicy",
    "absolute_url",
    "check_hosts",
    "is_loopback",
    "public_origin",
    "request_origin",
    "same_origin",
    "split_host",
]

log = logging.getLogger(__name__)

_HOST = re.compile(r"(?:(?P<name>[a-z0-9_.-]+)|\[(?P<v6>[0-9a-f:.]+)\])(?::(?P<port>[0-9]{1,5}))?")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_WS_SCHEMES = {"ws": "http", "wss": "https"}
_CLOSE_REASONS = {
    400: "malformed Host header",
    421: "host name not served by this hub: add it to allowed_hosts or set public_url",
}
_MAX_LOGGED = 32  # distinct refused names worth a warning; beyond that it is noise (or a scan)


def split_host(value: str) -> tuple[str, int | None] | None:
    """A `Host` header or URL authority as (lowercase name, port); None when it is malformed.

    IPv6 literals lose their brackets and are written the short way; a trailing dot goes.
    """
    match = _HOST.fullmatch(value.strip().lower())
    if match is None:
        return None
    port = int(match["port"]) if match["port"] else None
    if port is not None and port > 65535:
        return None
    if match["v6"]:
        try:
            return ipaddress.IPv6Address(match["v6"]).compressed, port
        except ValueError:
            return None
    name = match["name"].removesuffix(".")
    if not name or name.startswith(".") or ".." in name:
        return None
    return name, port


def is_loopback(host: str) -> bool:
    """Whether `host` is only reachable from this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name or a wildcard (0.0.0.0, ::, ""): assume the network


def _unspecified(name: str) -> bool:
    """0.0.0.0, :: or empty: every address of the machine."""
    try:
        return not name or ipaddress.ip_address(name).is_unspecified
    except ValueError:
        return False


def _origin(scheme: str, name: str, port: int | None) -> str:
    """scheme://host[:port], the way a browser writes it in an `Origin` header."""
    host = f"[{name}]" if ":" in name else name
    if port is None or port == _DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _public(settings: Settings) -> tuple[str, str, int | None] | None:
    """`public_url` as (scheme, name, port); SettingsError when it is not scheme://host[:port]."""
    if not settings.public_url:
        return None
    parts = urlsplit(settings.public_url.strip())
    host = split_host(parts.netloc) if parts.netloc and "@" not in parts.netloc else None
    if parts.scheme not in _DEFAULT_PORTS or host is None or parts.path not in ("", "/"):
        raise SettingsError(
            f"setting 'public_url' must look like https://hub.example.com (scheme and host, "
            f"optionally a port, no path: the hub is served at the root of its host); "
            f"got {settings.public_url!r}"
        )
    if parts.query or parts.fragment:
        raise SettingsError(
            f"setting 'public_url' must have no query or fragment; got {settings.public_url!r}"
        )
    return parts.scheme, host[0], host[1]


def public_origin(settings: Settings) -> str | None:
    """The origin of `public_url` (how browsers reach the hub), None when it is not set."""
    public = _public(settings)
    return _origin(*public) if public else None


def _host_header(scope: Scope) -> str | None:
    """The one `Host` header of a request; None when it is missing or repeated."""
    found = [value for key, value in scope["headers"] if key == b"host"]
    return found[0].decode("latin-1") if len(found) == 1 else None


def request_origin(scope: Scope) -> str | None:
    """scheme://host[:port] the request was made to (after a trusted proxy's headers)."""
    raw = _host_header(scope)
    host = split_host(raw) if raw is not None else None
    if host is None:
        return None
    scheme: str = scope["scheme"]
    return _origin(_WS_SCHEMES.get(scheme, scheme), *host)


def same_origin(origin: str, scope: Scope, settings: Settings) -> bool:
    """A browser's `Origin` is the hub's own: `public_url`'s origin or the one the request named.

    The second holds only because the host check ran first; scheme and port must match too.
    """
    parts = urlsplit(origin.strip())
    host = split_host(parts.netloc) if parts.scheme in _DEFAULT_PORTS and parts.netloc else None
    if host is None or parts.path:
        return False  # "null", or not scheme://host[:port]
    normal = _origin(parts.scheme, *host)
    return normal in (public_origin(settings), request_origin(scope))


def absolute_url(scope: Scope, settings: Settings, path: str) -> str:
    """`path` (starting with /) as an absolute URL: under `public_url` when set, else the request's."""
    base = public_origin(settings) or request_origin(scope) or ""
    return base + path


@dataclass(frozen=True, slots=True)
class HostPolicy:
    """Which `Host` names the hub answers; built once from the settings."""

    names: frozenset[str]  # exact names: public_url's host, the bound address, allowed_hosts
    suffixes: tuple[str, ...] = ()  # ".example.com" for an allowed "*.example.com"
    any_host: bool = False  # allowed_hosts = ["*"]: no check at all (unsafe)
    loopback: bool = True  # bound to loopback: loopback names from any client

    @classmethod
    def from_settings(cls, settings: Settings) -> HostPolicy:
        """The policy `settings` describe; SettingsError names a malformed entry."""
        names: set[str] = set()
        suffixes: list[str] = []
        public = _public(settings)
        if public:
            names.add(public[1])
        bound = settings.host.strip("[]").lower()
        if not _unspecified(bound) and not is_loopback(bound):
            parsed = split_host(f"[{bound}]" if ":" in bound else bound)
            names.update([parsed[0]] if parsed else [])
        for entry in settings.allowed_hosts:
            if entry == "*":
                continue
            pattern = entry.lower().removeprefix("*.")
            if pattern.count(":") > 1 and not pattern.startswith("["):
                pattern = f"[{pattern}]"  # a bare IPv6 address, as TOML lists it naturally
            host = split_host(pattern) if "*" not in pattern else None
            if host is None or host[1] is not None:
                raise SettingsError(
                    f"allowed_hosts entry {entry!r} must be a host name without scheme or port: "
                    f"'hub.example.com', '10.0.0.5', '*.example.com' (any subdomain) or '*' (any "
                    f"host, unsafe); the URL browsers use belongs in public_url"
                )
            if entry.startswith("*."):
                suffixes.append(f".{host[0]}")
            else:
                names.add(host[0])
        return cls(
            frozenset(names),
            tuple(suffixes),
            any_host="*" in settings.allowed_hosts,
            loopback=is_loopback(settings.host.strip("[]").lower()),
        )

    def allows(self, name: str, client: str | None) -> bool:
        """Whether to answer a request for host `name` from `client` (an address or None)."""
        if self.any_host or name in self.names:
            return True
        if self.suffixes and name.endswith(self.suffixes):
            return True
        # From this machine a loopback name is what a person typed, never a rebinding page.
        return is_loopback(name) and (self.loopback or (client is not None and is_loopback(client)))


def check_hosts(settings: Settings) -> None:
    """Refuse to serve off loopback without knowing the hub's own names (the startup check).

    Listening on loopback the hub answers the loopback names; on any other address it must be
    told the names browsers and engines use, or it would have to choose between answering every
    name (DNS rebinding) and answering none.
    """
    policy = HostPolicy.from_settings(settings)
    if policy.loopback or settings.public_url or settings.allowed_hosts:
        return
    raise SettingsError(
        f"the hub listens on {settings.host or '0.0.0.0'!r}, beyond this machine, but does not "
        f"know the host names it is reached by, so it would answer any web page that points a "
        f"name at it (DNS rebinding). Set public_url to the URL browsers use (public_url = "
        f'"https://hub.example.com", ENGINE_HUB_PUBLIC_URL) and list other names engines use in '
        f'allowed_hosts (allowed_hosts = ["10.0.0.5", "*.example.com"], '
        f'ENGINE_HUB_ALLOWED_HOSTS); allowed_hosts = ["*"] answers any name (unsafe). '
        f"See docs/deployment.md"
    )


class HostCheckMiddleware:
    """Answer only requests and WebSocket handshakes whose `Host` the policy allows."""

    def __init__(self, app: ASGIApp, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy
        self._logged: set[str] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.policy.any_host:
            await self.app(scope, receive, send)
            return
        raw = _host_header(scope)
        host = split_host(raw) if raw is not None else None
        client = scope.get("client")
        if host is not None and self.policy.allows(host[0], client[0] if client else None):
            await self.app(scope, receive, send)
            return
        if host is None:
            status, error = 400, "bad_request"
            detail = "the request needs exactly one well-formed Host header (name or address, optional port)"
        else:
            status, error = 421, "misdirected_request"
            detail = (
                f"this hub does not answer to the host name {host[0][:100]!r}; if it should, add the "
                f"name to allowed_hosts (ENGINE_HUB_ALLOWED_HOSTS) or set public_url (docs/deployment.md)"
            )
            self._note(host[0])
        await _refuse(scope, receive, send, status, error, detail)

    def _note(self, name: str) -> None:
        """Warn once per refused name (a proxy sending the wrong Host shows up in the log)."""
        if name in self._logged or len(self._logged) >= _MAX_LOGGED:
            return
        self._logged.add(name)
        log.warning(
            "refused a request for host %r: not this hub's name (allowed_hosts, public_url); "
            "said once per name",
            name[:100],
        )


async def _refuse(
    scope: Scope, receive: Receive, send: Send, status: int, error: str, detail: str
) -> None:
    """The JSON error as the response, or for a WebSocket as the handshake's refusal."""
    response = error_response(status, error, detail)
    if scope["type"] == "http" or "websocket.http.response" in scope.get("extensions", {}):
        await response(scope, receive, send)  # Starlette sends a WebSocket's as a denial response
        return
    # No denial-response extension: closing before accept makes the server answer 403.
    reason = _CLOSE_REASONS[status]  # a close reason has room for 123 bytes only
    await send({"type": "websocket.close", "code": 1008, "reason": reason})
