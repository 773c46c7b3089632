"""The running hub: owns the state, the store, the live sessions and every background task."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Protocol

from hub.broadcast import Broadcaster
from hub.protocol import FrameDecoder
from hub.settings import Settings
from hub.state import HubState
from hub.stores import HistoryStore

__all__ = ["Hub", "Session"]

log = logging.getLogger(__name__)


class Session(Protocol):
    """A live engine socket as the hub sees it."""

    engine_name: str | None

    def committed(self, boot_id: str, seq: int) -> None:
        """Everything up to `seq` of `boot_id` is durable: an ack may go out."""

    def close_soon(self, code: int, reason: str) -> None:
        """Close the socket with `code` and a readable `reason`."""


class Hub:
    """Everything the lifespan builds; handlers reach it through `request.app.state.hub`."""

    def __init__(self, settings: Settings, store: HistoryStore) -> None:
        self.settings = settings
        self.state = HubState(settings)
        self.decoder = FrameDecoder(settings, self.state.stats.drops)
        self.store = store
        self.broadcaster = Broadcaster(
            settings.max_sse_clients, settings.sse_queue_events, self.state.stats.drops
        )
        self.sessions: dict[int, Session] = {}
        self.by_engine: dict[str, Session] = {}
        self.started_at = time.time()
        self.shutting_down = False
        self._conn_ids = itertools.count(1)
        self._tasks: list[asyncio.Task[None]] = []

    def next_conn_id(self) -> int:
        """A fresh connection id."""
        return next(self._conn_ids)

    async def start(self) -> None:
        """Open the store and start the background tasks this hub owns."""
        await self.store.start(self._on_commit)
        self._tasks.append(asyncio.create_task(self._tick(), name="hub-ticker"))

    def _on_commit(self, engine: str, boot_id: str, seq: int) -> None:
        session = self.by_engine.get(engine)
        if session is not None:
            session.committed(boot_id, seq)

    async def _tick(self) -> None:
        """Re-derive health every view tick so silence turns into late/stale without traffic."""
        while True:
            changes = self.state.refresh(time.time())
            if changes:
                for change in changes:
                    log.info(
                        "engine %s is %s (was %s)", change.engine, change.health, change.previous
                    )
                self.broadcaster.publish_health(changes)
            await asyncio.sleep(self.settings.view_tick)

    def begin_shutdown(self) -> None:
        """Stop taking traffic: close engine sockets with 1012 and end every stream."""
        if self.shutting_down:
            return
        self.shutting_down = True
        log.info("shutting down: closing %d engine sockets and all streams", len(self.sessions))
        for session in list(self.sessions.values()):
            session.close_soon(1012, "hub is restarting; reconnect and replay")
        self.broadcaster.close()

    async def stop(self) -> None:
        """Cancel and await every task this hub owns, then close the store."""
        self.begin_shutdown()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.store.close()
