"""X-Forwarded-* from a trusted reverse proxy: the real scheme, client and host of a request.

Behind nginx or Caddy the hub's TCP peer is the proxy, the connection plain HTTP and perhaps the
`Host` the upstream's. The proxy says what it saw in `X-Forwarded-Proto`, `X-Forwarded-For` and
`X-Forwarded-Host`; anyone else could say the same, so the headers count only when the peer is in
`trusted_proxies` (uvicorn's own handling is off, see `uvicorn_config`). Then `scope["scheme"]`
becomes https/wss (cookies get Secure, links are right), `scope["client"]` the real client (for
per-client limits) and the `Host` header the forwarded one (which the host check then checks).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from hub.settings import Settings, SettingsError
from hub.web.hosts import split_host

__all__ = ["PROXY_PEER", "ProxyHeadersMiddleware", "TrustedProxies", "from_trusted_proxy"]

PROXY_PEER = "hub.proxy_peer"  # scope key: the trusted proxy's address, set only when it is one

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_SCHEMES = {
    "http": ("http", "ws"),
    "https": ("https", "wss"),
    "ws": ("http", "ws"),
    "wss": ("https", "wss"),
}


def from_trusted_proxy(scope: Scope) -> bool:
    """Whether the request came through a proxy in `trusted_proxies` (whose user header may count)."""
    return PROXY_PEER in scope


def _address(value: str) -> str | None:
    """An address from a forwarded list entry (`203.0.113.7`, `[2001:db8::1]:443`, `1.2.3.4:5`)."""
    value = value.strip()
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        return ipaddress.ip_address(value).compressed
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    """The peers whose X-Forwarded-* headers the hub believes."""

    networks: tuple[_Network, ...] = ()
    any_peer: bool = False  # "*": only when nothing but the proxy can reach the hub

    @classmethod
    def from_settings(cls, settings: Settings) -> TrustedProxies:
        """`trusted_proxies` (addresses, CIDR networks or "*"); SettingsError names a bad entry."""
        networks: list[_Network] = []
        for entry in settings.trusted_proxies:
            if entry == "*":
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                raise SettingsError(
                    f"trusted_proxies entry {entry!r} must be an address or network such as "
                    f"'127.0.0.1', '10.0.0.0/8' or '::1' (names are not resolved)"
                ) from None
        return cls(tuple(networks), any_peer="*" in settings.trusted_proxies)

    @property
    def enabled(self) -> bool:
        """Whether any peer is trusted at all."""
        return self.any_peer or bool(self.networks)

    def trusts(self, address: str) -> bool:
        """Whether `address` (an IP address; anything else is not) is a trusted proxy."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return self.any_peer or any(ip in network for network in self.networks)

    def forwarded(self, scope: Scope) -> dict[str, Any]:
        """The changes a trusted proxy's headers make to `scope`."""
        values: dict[bytes, list[str]] = {}
        for key, value in scope["headers"]:
            if key.startswith(b"x-forwarded-"):
                values.setdefault(key, []).append(value.decode("latin-1"))
        changes: dict[str, Any] = {}
        proto = _last(values.get(b"x-forwarded-proto"))
        if proto.lower() in _SCHEMES:
            changes["scheme"] = _SCHEMES[proto.lower()][scope["type"] == "websocket"]
        client = self._client(values.get(b"x-forwarded-for"))
        if client is not None:
            changes["client"] = (client, 0)
        host = _last(values.get(b"x-forwarded-host"))
        if host and split_host(host) is not None:
            headers = [(k, v) for k, v in scope["headers"] if k != b"host"]
            changes["headers"] = [*headers, (b"host", host.strip().encode("latin-1"))]
        return changes

    def _client(self, lists: list[str] | None) -> str | None:
        """The nearest address that is not a trusted proxy, walking X-Forwarded-For from the right.

        Entries to its left were written by the client itself and prove nothing.
        """
        entries = [entry for value in lists or () for entry in value.split(",")]
        addresses = [_address(entry) for entry in entries]
        for address in reversed(addresses):
            if address is None:
                return None  # garbage from the chain: keep the peer rather than guess
            if not self.trusts(address):
                return address
        return addresses[0] if addresses else None  # every hop trusted: the first one


def _last(values: list[str] | None) -> str:
    """The rightmost item of a header that proxies append to: what the nearest one set."""
    return values[-1].rsplit(",", 1)[-1].strip() if values else ""


class ProxyHeadersMiddleware:
    """Apply X-Forwarded-Proto/-For/-Host to the scope when the TCP peer is a trusted proxy."""

    def __init__(self, app: ASGIApp, proxies: TrustedProxies) -> None:
        self.app = app
        self.proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self.proxies.enabled:
            peer = scope.get("client")
            if peer and self.proxies.trusts(peer[0]):
                scope = {**scope, **self.proxies.forwarded(scope), PROXY_PEER: peer[0]}
        # The same receive and send: the dashboard's fast path finds uvicorn's socket through them.
        await self.app(scope, receive, send)
