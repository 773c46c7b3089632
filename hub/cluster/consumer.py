"""The reader: every node reads the whole stream and hands other nodes' entries to the hub.

It starts from the oldest entry the stream keeps, so a node that joins (or restarts with an
empty store) catches up on what the cluster retained; dedupe by (engine, boot_id, seq) makes a
re-read harmless. Before each read it asks Redis the newest id trimming deleted: past the last
id this node read means entries it never saw are gone, and the hub records a visible gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
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
        on_problem: Callable[[str | None], None],
    ) -> None:
        self.settings = settings
        self.stream_key = stream_key
        self.node_id = node_id
        self.last: StreamId = (0, 0)
        self.problem: str | None = None
        self.connected = False
        self._on_problem = on_problem
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
                await self._check_trimmed(sink)
                reply = await self._redis.xread(
                    {self.stream_key: "{}-{}".format(*self.last)}, count=_COUNT, block=_BLOCK_MS
                )
            except (RedisError, OSError) as exc:
                self.problem = describe(exc, self.settings.cluster_url)
                self._on_problem(self.problem)
                await asyncio.sleep(_RETRY[min(failures, len(_RETRY) - 1)])
                failures += 1
                continue
            if self.problem is not None:
                log.info("cluster: reading the stream again from %s-%s", *self.last)
            failures, self.problem, self.connected = 0, None, True
            self._on_problem(None)
            streams: list[Any] = list(reply or ())
            for _, entries in streams:
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
                await asyncio.sleep(0)  # a long catch-up must not starve engine sockets

    async def _check_trimmed(self, sink: ClusterSink) -> None:
        """Report entries trimmed after the last one this node read (a node that was away)."""
        if self.last == (0, 0):
            return  # a node that read nothing yet never held what was trimmed before it came
        try:
            info = await self._redis.xinfo_stream(self.stream_key)
        except ResponseError:
            return  # no stream yet
        deleted = stream_id(info.get("max-deleted-entry-id") or b"0-0")
        if deleted > self.last:
            sink.missed(self.last, deleted)
            self.last = deleted
