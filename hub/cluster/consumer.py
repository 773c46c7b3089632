"""The reader: every node reads the whole stream and hands other nodes' entries to the hub.

It starts from the oldest entry the stream keeps, so a node that joins (or restarts with an
empty store) catches up on what the cluster retained; dedupe by (engine, boot_id, seq) makes a
re-read harmless. Each read asks Redis, in the same transaction, how many entries were ever
trimmed (`entries-added` - `length`): more than this node has passed means entries it never read
are gone, and the hub records a visible gap. Only head trimming deletes entries (never XDEL).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from redis.exceptions import RedisError, ResponseError

from hub.cluster.backend import ClusterSink
from hub.cluster.connections import connect, describe
from hub.core.entries import StreamId, decode_entry, stream_id
from hub.settings import Settings

__all__ = ["Consumer"]

log = logging.getLogger(__name__)

_COUNT = 512  # entries per read
_BLOCK_MS = 1000  # how long a read waits for new entries
_RETRY = (0.1, 0.2, 0.5, 1.0)


class Consumer:
    """Reads `stream_key` from the start, skipping `node_id`'s own entries."""

    def __init__(
        self,
        settings: Settings,
        stream_key: str,
        node_id: str,
    ) -> None:
        self.settings = settings
        self.stream_key = stream_key
        self.node_id = node_id
        self.last: StreamId = (0, 0)
        self.position: int | None = None  # how many entries ever added precede `last`'s successor
        self.problem: str | None = None
        self.connected = False
        self._moved = asyncio.Event()  # set (and replaced) each time `last` moves on
        self._redis = connect(settings)

    async def close(self) -> None:
        """Close the connection."""
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()

    async def run(self, sink: ClusterSink) -> None:
        """Read until cancelled; Redis failures make the node degraded, then it retries."""
        failures = 0
        while True:
            try:
                entries = await self._read(sink)
                if not entries:
                    await self._wait()
            except (RedisError, OSError) as exc:
                problem = describe(exc, self.settings.cluster_url)
                if problem != self.problem:
                    log.warning("cluster degraded: cannot read the stream: %s", problem)
                self.problem = problem
                await asyncio.sleep(_RETRY[min(failures, len(_RETRY) - 1)])
                failures += 1
                continue
            if self.problem is not None:
                log.info("cluster: reading the stream again from %s-%s", *self.last)
            failures, self.problem, self.connected = 0, None, True
            for raw_id, fields in entries:
                at = stream_id(raw_id)
                self.last = at
                try:
                    entry = decode_entry(fields)
                except ValueError as exc:
                    log.warning("skipping cluster entry %s-%s: %s", *at, exc)
                    continue
                if entry.node != self.node_id:
                    sink.received(at, entry)
            if entries:
                moved, self._moved = self._moved, asyncio.Event()
                moved.set()
            await asyncio.sleep(0)  # a long catch-up must not starve engine sockets

    async def reached(self, target: StreamId) -> None:
        """Return once this node has read the stream up to `target`."""
        while self.last < target:
            await self._moved.wait()

    async def _read(self, sink: ClusterSink) -> list[Any]:
        """Entries after `last`, and (atomically with them) how many were ever trimmed: more
        than this node has passed means entries it never read are gone."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xinfo_stream(self.stream_key)
            pipe.xread({self.stream_key: "{}-{}".format(*self.last)}, count=_COUNT)
            try:
                info, reply = await pipe.execute()
            except ResponseError:
                return []  # no stream yet: nobody published
        trimmed = int(info["entries-added"]) - int(info["length"])
        if self.position is None:
            self.position = trimmed  # a node that just came never held what went before
        elif trimmed > self.position:
            sink.missed(self.last, stream_id(info.get("recorded-first-entry-id") or b"0-0"))
            self.position = trimmed
        streams: list[Any] = list(reply or ())
        entries: list[Any] = streams[0][1] if streams else []
        self.position += len(entries)
        return entries

    async def _wait(self) -> None:
        """Block until something new is in the stream (the next `_read` takes it)."""
        await self._redis.xread(
            {self.stream_key: "{}-{}".format(*self.last)}, count=1, block=_BLOCK_MS
        )
