"""Secure by default: whether settings are fit to serve, decided before the hub listens.

On loopback nothing changes (the demo and a first run stay one command). Bound to any other
address, the hub refuses to start unless viewers must sign in, or the operator opted out with
`allow_anonymous_viewers = true` (docs/security.md).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from hub.settings import Settings, SettingsError
from hub.web.hosts import is_loopback
from hub.web.proxies import TrustedProxies

__all__ = [
    "anonymous_warning",
    "exposure",
    "is_loopback",
    "serving_problem",
    "viewer_auth_configured",
]


def viewer_auth_configured(settings: Settings) -> bool:
    """Whether any way for viewers to sign in is set up (and so every route requires one)."""
    return bool(settings.users or settings.api_tokens or settings.proxy_user_header)


def exposure(settings: Settings) -> str | None:
    """How the hub is reachable beyond this machine (None: loopback only, as far as it knows).

    Bound to loopback behind a reverse proxy (trusted_proxies, or a public_url on another host)
    it is on the network all the same.
    """
    if not is_loopback(settings.host):
        return f"on {settings.host or 'every address'}"
    if settings.trusted_proxies:
        return "behind a reverse proxy (trusted_proxies is set)"
    public = urlsplit(settings.public_url).hostname if settings.public_url else None
    if public and not is_loopback(public):
        return f"at {settings.public_url}"
    return None


def serving_problem(settings: Settings) -> str | None:
    """Why the hub must not serve with `settings` (None when it may): says what to add."""
    if settings.proxy_user_header and not settings.trusted_proxies:
        return (
            f"proxy_user_header = {settings.proxy_user_header!r} needs trusted_proxies: the "
            "addresses (or CIDRs) of the reverse proxies allowed to set it, e.g. "
            'trusted_proxies = ["127.0.0.1"] (docs/security.md)'
        )
    try:
        TrustedProxies.from_settings(settings)  # the one parser of trusted_proxies
    except SettingsError as exc:
        return str(exc)
    where = exposure(settings)
    if where is None or viewer_auth_configured(settings) or settings.allow_anonymous_viewers:
        return None
    return (
        f"refusing to serve {where} without viewer sign-in: anyone "
        "who can reach it would see every engine's positions, orders and logs. Add one of: a "
        "[[users]] entry (`engine-hub user add NAME --role admin`), an API token ([[api_tokens]] "
        "from `engine-hub token create --role viewer`), or proxy_user_header with trusted_proxies "
        "(sign-in at your reverse proxy) to the settings file; or set allow_anonymous_viewers = true "
        "to serve anonymously on purpose. See docs/security.md"
    )


def anonymous_warning(settings: Settings) -> str | None:
    """The warning every start logs while anonymous viewers are allowed (None when they are not)."""
    if not settings.allow_anonymous_viewers:
        return None
    return (
        f"allow_anonymous_viewers = true: anyone who can reach {settings.host}:{settings.port} "
        "sees every engine's positions, orders and logs without signing in (docs/security.md)"
    )
