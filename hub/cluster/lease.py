"""The alert lease: one node of the cluster holds it and sends the notifications (SET NX PX + renew).

`LeaseTimer` is the sans-I/O part (when to renew, whether the lease is still ours; `now` passed
in). `AlertLease` is the Redis shell around it. The local belief always ends before Redis's key
does: the expiry counts from when the request was *sent*, shortened by a drift margin, and one
failed renewal ends it at once. So two nodes never both believe they hold the lease.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
import uuid
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from hub.core.handovers import MAX_MARKS, Mark

__all__ = ["AlertLease", "LeaseTimer", "NODE_ID"]

log = logging.getLogger(__name__)

NODE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
DRIFT = 0.01  # clocks may run 1% apart (Redlock's figure) ...
MARGIN = 0.005  # ... plus 5 ms for Redis's own expiry resolution
MARKS_TTL_MS = 7 * 86400 * 1000  # delivery marks outlive any repeat interval, then go
_MAX_WRITES = 256  # mark writes in flight; beyond, a mark is dropped (the next holder may repeat)

# Take the lease if it is free, or extend it if it is already ours: one script for both, so a node
# whose renewal failed while Redis restarted gets its own key back instead of waiting it out.
_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
# Compare-and-delete: a release after the lease moved on must not remove the new holder's key.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LeaseTimer:
    """Sans-I/O lease bookkeeping: granted at a send time, renewed at a third of the TTL."""

    def __init__(self, ttl: float) -> None:
        if not 0.05 <= ttl <= 3600:
            raise ValueError(f"lease ttl must be between 0.05 and 3600 seconds (got {ttl!r})")
        self.ttl = ttl
        self._expires = -math.inf
        self._renew_at = -math.inf

    def granted(self, sent_at: float) -> None:
        """Redis granted (or extended) the lease for a request sent at `sent_at`."""
        self._expires = sent_at + self.ttl * (1 - DRIFT) - MARGIN
        self._renew_at = sent_at + self.ttl / 3

    def lost(self) -> None:
        """Redis refused, or could not be asked: the lease is not ours from now on."""
        self._expires = self._renew_at = -math.inf

    def held(self, now: float) -> bool:
        """True while the lease is ours by the local clock."""
        return now < self._expires

    def next_attempt(self, now: float) -> float:
        """Seconds until the next acquire/renew: at a third of the TTL, or a fifth to contend."""
        if self.held(now):
            return max(0.0, self._renew_at - now)
        return self.ttl / 5


class AlertLease:
    """A Redis lease held by at most one node; `held` says whether this node sends alerts now.

    Start `run()` as a task owned by the lifespan; on shutdown cancel it and `await release()`
    so another node takes over at once instead of after the TTL.
    """

    def __init__(
        self,
        redis: Redis,
        key: str,
        node_id: str,
        ttl: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not NODE_ID.fullmatch(node_id):
            raise ValueError(f"node id {node_id!r} must match [A-Za-z0-9_.:-]{{1,128}}")
        self._redis = redis
        self.key = key
        self.node_id = node_id
        # Unique per process: a restarted node with the same id must not inherit the old lease.
        self.token = f"{node_id}/{uuid.uuid4().hex}"
        self._timer = LeaseTimer(ttl)
        self._clock = clock
        self._changed = asyncio.Event()
        self._failing = False
        self.term = 0  # bumps each time this node takes the lease
        self.marks_key = f"{key}:delivered"  # hash: (receiver, rule, engine) -> last delivered
        self._writes: set[asyncio.Task[None]] = set()

    @property
    def held(self) -> bool:
        """True while this node holds the lease (False as soon as it may not)."""
        return self._timer.held(self._clock())

    async def attempt(self) -> bool:
        """Acquire or renew once; True if the lease is ours afterwards."""
        before, sent_at = self.held, self._clock()
        ttl_ms = str(max(1, int(self._timer.ttl * 1000)))
        try:
            async with asyncio.timeout(self._timer.ttl / 3):
                won = await self._redis.eval(_ACQUIRE, 1, self.key, self.token, ttl_ms)
        except (RedisError, OSError, TimeoutError) as exc:
            self._timer.lost()
            if not self._failing:
                log.warning(
                    "alert lease %r: Redis unreachable (%r); not sending alerts", self.key, exc
                )
            self._failing = True
        else:
            self._failing = False
            self._timer.granted(sent_at) if won == 1 else self._timer.lost()
        if self.held and not before:
            self.term += 1
        if self.held != before:
            log.info(
                "alert lease %r %s by %s", self.key, "taken" if self.held else "lost", self.node_id
            )
            self._notify()
        return self.held

    async def run(self) -> None:
        """Keep acquiring/renewing until cancelled (cancelling does not release: see `release`)."""
        while True:
            await self.attempt()
            await asyncio.sleep(self._timer.next_attempt(self._clock()))

    async def marks(self) -> list[Mark] | None:
        """Every delivery mark in Redis (at most MAX_MARKS); None while Redis is unreachable."""
        found: list[Mark] = []
        try:
            async with asyncio.timeout(self._timer.ttl / 3):
                async for field, value in self._redis.hscan_iter(self.marks_key, count=1000):
                    mark = Mark.parse(field, value)
                    if mark is not None:
                        found.append(mark)
                    if len(found) >= MAX_MARKS:
                        break
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("alert lease %r: cannot read delivery marks (%r); retrying", self.key, exc)
            return None
        return found

    def delivered(self, marks: list[Mark]) -> None:
        """Write `marks` in the background (a lost write means the next holder may repeat it)."""
        if not marks:
            return
        if len(self._writes) >= _MAX_WRITES:
            log.warning(
                "alert lease %r: %d mark writes pending; dropped one", self.key, len(self._writes)
            )
            return
        task = asyncio.create_task(self._write(marks), name="alert-lease-marks")
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, marks: list[Mark]) -> None:
        mapping = {mark.field(): mark.value() for mark in marks}
        try:
            async with asyncio.timeout(self._timer.ttl / 3):
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.hset(self.marks_key, mapping=mapping)  # type: ignore[arg-type]
                    pipe.pexpire(self.marks_key, MARKS_TTL_MS)
                    await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("alert lease %r: cannot record a delivery (%r)", self.key, exc)

    async def release(self) -> bool:
        """Give the lease up if it is still ours (compare-and-delete); True if a key was removed.

        Delivery marks still being written go first, so the next holder repeats nothing."""
        self._timer.lost()
        self._notify()
        if self._writes:
            await asyncio.wait(list(self._writes), timeout=self._timer.ttl / 3)
        try:
            async with asyncio.timeout(self._timer.ttl / 3):
                return bool(await self._redis.eval(_RELEASE, 1, self.key, self.token))
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("alert lease %r: release failed (%r); it expires by itself", self.key, exc)
            return False

    async def wait_changed(self) -> None:
        """Wait until an attempt or a release flips `held` (the TTL running out is not signalled)."""
        await self._changed.wait()

    def _notify(self) -> None:
        # A fresh event per change: every waiter wakes once, none misses a change it checked for.
        self._changed.set()
        self._changed = asyncio.Event()
