"""The cluster tests' Redis is real: it starts, answers, and keeps acknowledged data over a restart."""

from __future__ import annotations

from pathlib import Path

import redis.asyncio as aioredis

from tests.redisproc import redis_server


async def test_redis_restart_keeps_acknowledged_data(tmp_path: Path) -> None:
    async with redis_server(tmp_path) as server:
        client = aioredis.Redis.from_url(server.url)
        try:
            entry = await client.xadd("probe", {"n": "1"})
        finally:
            await client.aclose()
        port = server.port
        await server.stop()
        await server.start()
        assert server.port == port
        client = aioredis.Redis.from_url(server.url)
        try:
            [(found, fields)] = await client.xrange("probe")
        finally:
            await client.aclose()
        assert (found, fields) == (entry, {b"n": b"1"})
