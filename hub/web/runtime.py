"""The running hub: owns the state, the store, the live sessions and every background task."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Protocol

from hub.core.access import Credentials
from hub.core.decoding import FrameDecoder
from hub.core.ingested import Ingested
from hub.core.messages import CloseCode
from hub.core.records import AuditRecord
from hub.core.state import HubState
from hub.core.stats import Topic
from hub.core.throttles import LogThrottle
from hub.live.dashboard_fanout import DashboardFanout
from hub.live.sse_fanout import Broadcaster
from hub.live.templating import create_environment
from hub.live.views import FragmentKey, Views
from hub.settings import Settings
from hub.stores import HistoryStore, open_store
from hub.stores.restore import restore
from hub.web.alerting import Alerting

__all__ = ["Hub", "Session", "credentials_of"]

log = logging.getLogger(__name__)

# Topics whose fragments (event tables, log tails) may change on every tick under load: they
# refresh every `table_refresh` instead, so a busy hub pushes fewer bytes to every browser.
_BUSY = (Topic.EVENTS, Topic.LOGS)


class Session(Protocol):
    """A live engine socket as the hub sees it."""

    engine_name: str | None

    def wake(self) -> None:
        """The store committed more of this engine: an ack may be due."""

    def close_soon(self, code: CloseCode, reason: str) -> None:
        """Close the socket with `code` and a readable `reason`."""


def credentials_of(settings: Settings) -> Credentials:
    """The credentials `settings` name, indexed for lookup."""
    return Credentials(
        settings.users,
        settings.api_tokens,
        settings.engine_tokens,
        settings.token,
        settings.revoked_embeds,
    )


class Hub:
    """Everything the lifespan builds; handlers reach it through `request.app.state.hub`."""

    def __init__(self, settings: Settings, store: HistoryStore | None = None) -> None:
        self.settings = settings
        self.state = HubState(settings)
        self.decoder = FrameDecoder(settings, self.state.stats.drops)
        self.store = store or open_store(settings, self.state.stats.drops)
        self.broadcaster = Broadcaster(
            settings.max_sse_clients, settings.sse_queue_events, self.state.stats.drops
        )
        self.env = create_environment()
        self.views = Views(self.env, self.state)
        self.fanout = DashboardFanout(
            settings.dashboard_queue_bytes, settings.max_dashboards, self.state.stats.drops
        )
        self.credentials = credentials_of(settings)
        self.alerting = Alerting(
            settings, self.audit, self.broadcaster.publish_alert, self.store.append
        )
        self.refusal_log = LogThrottle()  # refused engines: one warning per address per minute
        self.sessions: dict[int, Session] = {}
        self.by_engine: dict[str, Session] = {}
        self.started_at = time.time()
        self.shutting_down = False
        self._conn_ids = itertools.count(1)
        self._tables_due = 0.0
        self._tasks: list[asyncio.Task[None]] = []

    def reload_credentials(self, settings: Settings, actor: str = "hub") -> None:
        """Take users and tokens from freshly loaded settings (SIGHUP, the admin API): a token
        removed from the file is refused from the next request or connection on. What was
        added or removed goes to the audit trail, by name (never a secret)."""
        old, self.credentials = self.credentials, credentials_of(settings)
        for action, names in old.changes_to(self.credentials).items():
            for name in names:
                self.audit(actor, action, name)
        log.info(
            "credentials reloaded: %d users, %d API tokens, %d engine tokens",
            len(settings.users),
            len(settings.api_tokens),
            len(settings.engine_tokens),
        )

    def audit(self, actor: str, action: str, detail: str = "", engine: str = "") -> None:
        """Record who did what (sign-ins, failures, tokens, forgets, silences) in history.

        Callers pass names and reasons, never passwords or tokens.
        """
        log.info("audit: %s %s %s", actor, action, ascii(detail) if detail else "")
        changes = Ingested()
        changes.audit.append(AuditRecord(time.time(), actor, action, detail, engine))
        self.store.append(changes)

    def next_conn_id(self) -> int:
        """A fresh connection id."""
        return next(self._conn_ids)

    async def start(self) -> None:
        """Open the store and start the background tasks this hub owns."""
        restored = await self.store.start(self._on_commit)
        restore(self.state, restored, time.time())
        self.alerting.start(restored.silences, time.time())
        self._tasks.append(asyncio.create_task(self._tick(), name="hub-ticker"))

    def _on_commit(self, engine: str, boot_id: str, seq: int) -> None:
        """The store made `seq` of this boot durable: the engine record holds it, acks follow."""
        record = self.state.engines.get(engine)
        if record is not None and record.boot_id == boot_id and seq > record.committed:
            record.committed = seq
            session = self.by_engine.get(engine)
            if session is not None:
                session.wake()

    async def _tick(self) -> None:
        """Every view tick: re-derive health, then push each dirtied fragment, rendered once."""
        next_rate = time.time() + 1.0
        deadline = time.monotonic()
        while True:
            now = time.time()
            changes = self.state.refresh(now)
            if changes:
                for change in changes:
                    log.info(
                        "engine %s is %s (was %s)", change.engine, change.health, change.previous
                    )
                self.broadcaster.publish_health(changes)
            if self.views.store_problem != self.store.problem:
                self.views.store_problem = self.store.problem
                self.state.dirty.mark(Topic.HUB)
            try:  # rules once per tick (docs/alerts.md); a broken rule must not stop the ticker
                self.alerting.tick(self.state, self.store.problem, now)
            except Exception:
                log.exception("evaluating alert rules failed; will retry next tick")
            if now >= next_rate:
                self.state.measure_rate(now)
                self.save_snapshots()
                next_rate = now + 1.0
            try:
                self.push_views(now)
            except Exception:  # one bad fragment must not stop every dashboard
                log.exception("rendering live views failed; will retry next tick")
            deadline += self.settings.view_tick  # a steady period, whatever the work took
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
            if deadline < time.monotonic() - 1.0:
                deadline = time.monotonic()  # far behind (machine paused): do not burst

    def save_snapshots(self) -> None:
        """Hand the store a snapshot of every engine whose metrics or card changed since the last."""
        snapshots = self.state.snapshots()
        if snapshots is not None:
            self.store.append(snapshots)

    def push_views(self, now: float) -> None:
        """Render what changed since the last tick for every watched view and hand it out."""
        dirty = self.state.dirty.drain()
        busy = {key for key in dirty if key.topic in _BUSY}
        if busy and now < self._tables_due:
            dirty -= busy  # tables and log tails wait for their slower cadence
            self.state.dirty.keys.update(busy)
        elif busy:
            self._tables_due = now + self.settings.table_refresh
        cache: dict[FragmentKey, str] = {}  # each fragment is rendered at most once per tick
        views, fanout = self.views, self.fanout
        for view, viewers in list(fanout.views.items()):
            fresh = [v for v in viewers if v.needs_snapshot and not v.closed]
            names = views.dirtied(view, dirty) if dirty else []
            if names:  # offer() skips the fresh viewers: they still await their snapshot
                fanout.offer_all(viewers, views.frame(names, now, cache))
            if fresh:
                for viewer in fresh:
                    viewer.needs_snapshot = False
                fanout.offer_all(fresh, views.frame(views.names(view), now, cache))
            fanout.prune(view)

    def begin_shutdown(self) -> None:
        """Stop taking traffic: close engine sockets with 1012 and end every stream."""
        if self.shutting_down:
            return
        self.shutting_down = True
        log.info("shutting down: closing %d engine sockets and all streams", len(self.sessions))
        for session in list(self.sessions.values()):
            session.close_soon(CloseCode.SERVICE_RESTART, "hub is restarting; reconnect and replay")
        self.broadcaster.close()
        self.fanout.close()

    async def stop(self) -> None:
        """Cancel and await every task this hub owns, then close the store."""
        self.begin_shutdown()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.alerting.stop()
        self.save_snapshots()
        await self.store.close()
