"""The start-up check of `serve --cluster`: is Redis there at all (one line if not)."""

from __future__ import annotations

import asyncio

from redis.exceptions import RedisError

from hub.cluster.connections import connect, describe
from hub.settings import Settings, redacted_url

__all__ = ["unreachable"]


async def _ping(settings: Settings) -> None:
    client = connect(settings)
    try:
        await client.ping()
    finally:
        await client.aclose()


def unreachable(settings: Settings) -> str | None:
    """Why the cluster's Redis cannot be reached now (None when it answers PING)."""
    try:
        asyncio.run(_ping(settings))
    except (RedisError, OSError) as exc:
        shown = redacted_url(settings.cluster_url)
        return (
            f"cannot reach the cluster's Redis at {shown}: {describe(exc, settings.cluster_url)}; "
            "start redis-server or fix --cluster"
        )
    return None
