"""Node liveness in Redis: each node stamps itself alive and reads every node's last stamp.

One Lua script per beat: ZADD this node with Redis's own clock (`TIME`), drop stamps older than a
day (a node gone that long is forgotten), and return the clock and every stamp. The sans-I/O
decision (`hub.core.liveness.NodeWatch`) is the sink's; this shell only beats and reports.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from hub.core.liveness import MAX_NODES

__all__ = ["BEAT", "NodeBeats"]

log = logging.getLogger(__name__)

FORGET_MS = 86_400_000  # a stamp older than a day goes (the sorted set stays bounded)

# KEYS: the sorted set. ARGV: node id, forget-after (ms), max nodes returned.
BEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
return {now, redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1, 'WITHSCORES')}
"""

Report = Callable[[dict[str, float] | None, float], None]  # (node -> stamp s or None, now s)


class NodeBeats:
    """Stamps `node_id` alive every `interval` seconds and reports every node's stamp."""

    def __init__(self, redis: Redis, key: str, node_id: str, interval: float) -> None:
        self._redis = redis
        self.key = key
        self.node_id = node_id
        self.interval = interval
        self._script = redis.register_script(BEAT)

    async def beat(self) -> tuple[dict[str, float], float]:
        """Stamp once; every node's last stamp and Redis's clock, in seconds."""
        now_ms, flat = await self._script(
            keys=[self.key], args=[self.node_id, FORGET_MS, MAX_NODES]
        )
        seen: dict[str, float] = {}
        for raw, score in zip(flat[::2], flat[1::2], strict=True):
            name = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
            seen[name] = float(score) / 1000
        return seen, int(now_ms) / 1000

    async def run(self, report: Report) -> None:
        """Beat until cancelled; while Redis is away nothing is reported (nobody is judged)."""
        failing = False
        while True:
            try:
                seen, now = await self.beat()
            except (RedisError, OSError, ValueError) as exc:
                if not failing:
                    log.warning("node liveness: Redis unreachable (%r); retrying", exc)
                failing = True
                report(None, 0.0)
            else:
                failing = False
                report(seen, now)
            await asyncio.sleep(self.interval)
