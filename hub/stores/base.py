"""The history store interface: where accepted records go to be kept."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from hub.engines import EngineRecord
from hub.records import EventRecord
from hub.state import Ingested

__all__ = ["CommitCallback", "HistoryStore"]

CommitCallback = Callable[[str, str, int], None]
"""Called with (engine, boot_id, seq) once everything up to seq of that boot is durable."""


class HistoryStore(Protocol):
    """Keeps history beyond the in-memory rings; backends are chosen by `open_store(url)`."""

    async def start(self, on_commit: CommitCallback) -> None:
        """Open the store; `on_commit` reports durable progress (acks are sent only after it)."""

    def append(self, engine: EngineRecord, ingested: Ingested) -> None:
        """Queue what one frame of `engine` changed; must not block the event loop."""

    async def events(
        self, limit: int, event_type: str | None, engine: str | None, before_id: int | None
    ) -> list[EventRecord]:
        """Events older than `before_id` (newest first), for paging beyond the rings."""

    async def close(self) -> None:
        """Flush what is queued and release resources."""
