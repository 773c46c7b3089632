"""The Redis backend: publish this node's entries to one stream, read every node's back.

Publishing is one task that sends what is queued, in order, in pipelined batches. A frame goes
through a Lua script that drops it when Redis already holds its last seq for that
(engine, boot_id) and XADDs it otherwise, atomically: whichever node an engine talks to, and
however often it replays, the stream takes each seq once (a replayed frame straddling what was
stored goes in whole; every reader dedupes its messages). While Redis is unreachable the queue
holds up to `cluster_buffer` frames and the node says it is degraded; they go out when it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from typing import Any

from redis.exceptions import RedisError

from hub.cluster.backend import ClusterSink, ClusterState, ClusterStatus
from hub.cluster.connections import connect, describe
from hub.cluster.consumer import Consumer
from hub.cluster.lease import AlertLease
from hub.cluster.liveness import NodeBeats
from hub.cluster.owners import CLAIM_XADD, RELEASE_XADD, OwnerClaims
from hub.core.entries import Entry, EntryKind, StreamId, stream_id
from hub.settings import Settings

__all__ = ["DEDUPE_XADD", "TRIM_BY_AGE", "RedisCluster"]

log = logging.getLogger(__name__)

# KEYS: the boot's last-stored-seq key, the stream. ARGV: seq, maxlen, key TTL (ms), fields...
DEDUPE_XADD = """
local stored = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) <= stored then return false end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 4))
"""
# KEYS: the stream. ARGV: the age in ms. Exact trimming: `~` would keep whole 100-entry nodes.
TRIM_BY_AGE = """
local t = redis.call('TIME')
local cutoff = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[1])
return redis.call('XTRIM', KEYS[1], 'MINID', cutoff)
"""
_BATCH = 256  # entries per pipeline
_RETRY = (0.1, 0.2, 0.5, 1.0)  # seconds between attempts while Redis is unreachable
SEQ_TTL_MS = 30 * 86400 * 1000  # a boot's last seq is kept this long after its last frame


class RedisCluster:
    """One node's link to the shared stream (`settings.cluster_url`)."""

    enabled = True

    def __init__(self, settings: Settings, node_id: str) -> None:
        self.settings = settings
        self.node_id = node_id
        self.prefix = settings.cluster_prefix
        self.stream_key = f"{self.prefix}:stream"
        self._pending: deque[Entry] = deque()
        self._wake = asyncio.Event()
        self._state = ClusterState.CONNECTING
        self._problem: str | None = None
        self._writer = connect(settings)
        self._script = self._writer.register_script(DEDUPE_XADD)
        self._claim = self._writer.register_script(CLAIM_XADD)
        self._release = self._writer.register_script(RELEASE_XADD)
        self._trim = self._writer.register_script(TRIM_BY_AGE)
        self.consumer = Consumer(settings, self.stream_key, node_id)
        self.owners = OwnerClaims(self._writer, node_id, f"{self.prefix}:")
        self.lease = AlertLease(
            self._writer, f"{self.prefix}:alert-lease", node_id, settings.cluster_lease_ttl
        )
        interval = settings.cluster_node_timeout / 5
        self.beats = NodeBeats(self._writer, f"{self.prefix}:nodes", node_id, interval)
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def status(self) -> ClusterStatus:
        """Degraded while either the publisher or the reader cannot reach Redis."""
        problem = self._problem or self.consumer.problem
        state = ClusterState.DEGRADED if problem else self._state
        if state is ClusterState.CONNECTING and self.consumer.connected:
            state = ClusterState.OK
        return ClusterStatus(
            state, self.node_id, problem, len(self._pending), self.settings.cluster_buffer
        )

    @property
    def full(self) -> bool:
        """More frames held than `cluster_buffer`: the shell closes engine sockets."""
        return len(self._pending) >= self.settings.cluster_buffer

    def share(self, entry: Entry) -> None:
        """Queue `entry`; the publisher sends it in order."""
        self._pending.append(entry)
        self._wake.set()

    async def caught_up(self, within: float) -> bool:
        """Wait (at most `within` s) until this node has read everything the stream held when
        called: an engine that moves here must get a welcome that counts what other nodes
        stored, or its replay would jump ahead of what this node has still to read."""
        try:
            async with asyncio.timeout(within):
                newest = await self._writer.xrevrange(self.stream_key, count=1)
                if newest:
                    await self.consumer.reached(stream_id(newest[0][0] or b"0-0"))
        except (TimeoutError, RedisError, OSError):
            return False  # degraded or far behind: the engine is served all the same
        return True

    async def start(self, sink: ClusterSink) -> None:
        """Start publishing and reading (neither waits for Redis: a node starts degraded)."""
        self._tasks = [
            asyncio.create_task(self._publish(sink), name="cluster-publisher"),
            asyncio.create_task(self.consumer.run(sink), name="cluster-reader"),
            asyncio.create_task(self.owners.run(sink.displaced), name="cluster-owners"),
            asyncio.create_task(self.lease.run(), name="cluster-alert-lease"),
            asyncio.create_task(self.beats.run(sink.alive), name="cluster-liveness"),
        ]
        if self.settings.cluster_stream_max_age:
            self._tasks.append(asyncio.create_task(self._trim_by_age(), name="cluster-trim"))

    async def stop(self) -> None:
        """Cancel the tasks, hand the alert lease on at once, then close both connections."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.lease.held:
            await self.lease.release()
        with contextlib.suppress(RedisError, OSError):
            await self._writer.aclose()
        await self.consumer.close()

    async def _publish(self, sink: ClusterSink) -> None:
        """Send queued entries in batches; on failure keep them and retry, saying so."""
        pending, failures = self._pending, 0
        while True:
            if not pending:
                self._wake.clear()
                await self._wake.wait()
            batch = list(itertools.islice(pending, _BATCH))
            try:
                results = await self._send(batch)
            except (RedisError, OSError) as exc:
                self._down(describe(exc, self.settings.cluster_url))
                await asyncio.sleep(_RETRY[min(failures, len(_RETRY) - 1)])
                failures += 1
                continue
            failures = 0
            for _ in batch:  # share() only appends: the batch is still the queue's head
                pending.popleft()
            self._up()
            for entry, result in zip(batch, results, strict=True):
                sink.published(entry, stream_id(result) if result else None)

    async def _send(self, batch: list[Entry]) -> list[Any]:
        async with self._writer.pipeline(transaction=False) as pipe:
            maxlen, owners, stream = (
                self.settings.cluster_stream_maxlen,
                self.owners,
                self.stream_key,
            )
            for entry in batch:
                flat: list[str | int] = [x for pair in entry.fields().items() for x in pair]
                owner = owners.key(entry.engine)
                match entry.kind:
                    case EntryKind.FRAME:
                        key = f"{self.prefix}:seq:{entry.engine}/{entry.boot_id}"
                        args: list[str | int] = [entry.seq, maxlen, SEQ_TTL_MS, *flat]
                        await self._script(keys=[key, stream], args=args, client=pipe)
                    case EntryKind.HELLO:  # the claim goes in with the hello: one order
                        mine = owners.value(entry.conn)
                        args = [mine, entry.engine, maxlen, *flat]
                        keys = [owner, owners.channel, stream]
                        await self._claim(keys=keys, args=args, client=pipe)
                    case EntryKind.CLOSE:
                        args = [owners.value(entry.conn), maxlen, *flat]
                        await self._release(keys=[owner, stream], args=args, client=pipe)
            return list(await pipe.execute())

    async def _trim_by_age(self) -> None:
        """XTRIM MINID (now - max age) by Redis's clock, every tenth of the age (at most a
        minute): every node runs it, which is harmless (the same cutoff) and needs no leader."""
        age = self.settings.cluster_stream_max_age
        every, age_ms = min(60.0, age / 10), max(1, int(age * 1000))
        while True:
            await asyncio.sleep(every)
            try:
                await self._trim(keys=[self.stream_key], args=[age_ms])
            except (RedisError, OSError) as exc:
                log.debug("trimming the stream by age failed (%r); the publisher reports it", exc)

    def _down(self, problem: str) -> None:
        if self._problem != problem:
            log.warning(
                "cluster degraded: cannot publish to Redis (%s); serving local engines, "
                "holding %d frames, not acking",
                problem,
                len(self._pending),
            )
        self._problem, self._state = problem, ClusterState.DEGRADED

    def _up(self) -> None:
        if self._state is not ClusterState.OK:
            log.info("cluster: publishing to Redis as node %s", self.node_id)
        self._problem, self._state = None, ClusterState.OK

    def last_read(self) -> StreamId:
        """The id of the last entry this node read."""
        return self.consumer.last
