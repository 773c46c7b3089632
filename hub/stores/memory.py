"""In-memory history store: bounded, commits at once; the default until SQLite, and the test double."""

from __future__ import annotations

from collections import deque

from hub.engines import EngineRecord
from hub.records import EventRecord
from hub.state import Ingested
from hub.stores.base import CommitCallback

__all__ = ["MemoryStore"]


def _ignore(engine: str, boot_id: str, seq: int) -> None:
    """Commit callback of a store that has not started."""


class MemoryStore:
    """Keeps the last `capacity` events in memory; everything appended is committed immediately."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._events: deque[EventRecord] = deque(maxlen=capacity)
        self._on_commit: CommitCallback = _ignore
        self.evicted = 0

    async def start(self, on_commit: CommitCallback) -> None:
        """Nothing to open; remember who to tell about commits."""
        self._on_commit = on_commit

    def append(self, engine: EngineRecord, ingested: Ingested) -> None:
        """Keep the frame's events and report the engine's seq as committed."""
        if ingested.events:
            overflow = len(self._events) + len(ingested.events) - (self._events.maxlen or 0)
            if overflow > 0:
                self.evicted += overflow
            self._events.extend(ingested.events)
        self._on_commit(engine.name, engine.boot_id, engine.hwm)

    async def events(
        self, limit: int, event_type: str | None, engine: str | None, before_id: int | None
    ) -> list[EventRecord]:
        """Newest first, filtered, older than `before_id`."""
        out: list[EventRecord] = []
        for record in reversed(self._events):
            if before_id is not None and record.id >= before_id:
                continue
            if event_type is not None and record.type != event_type:
                continue
            if engine is not None and record.engine != engine:
                continue
            out.append(record)
            if len(out) >= limit:
                break
        return out

    async def close(self) -> None:
        """Nothing to flush."""
