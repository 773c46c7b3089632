"""Connections to Redis that fail fast, and why one failed in a line without the password."""

from __future__ import annotations

from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from hub.settings import Settings

__all__ = ["connect", "describe"]

_MAX = 200  # characters: it goes on the dashboard and into /healthz


def describe(exc: BaseException, url: str) -> str:
    """`exc` as a short reason, with the password of `url` (if any) blanked out."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        text = text.replace(password, "***")
    return " ".join(text.split())[:_MAX]


def connect(settings: Settings) -> aioredis.Redis:
    """A client that fails fast: the node goes degraded at once and retries on its own schedule."""
    return aioredis.Redis.from_url(
        settings.cluster_url,
        socket_connect_timeout=2.0,
        socket_timeout=5.0,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=10,
    )
