"""The running hub: owns the state, the store, the live sessions and every background task."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Iterator
from typing import Protocol

from hub.cluster import ClusterState, open_cluster
from hub.core.access import Credentials
from hub.core.cadence import Cadence
from hub.core.decoding import FrameDecoder
from hub.core.ingested import Ingested
from hub.core.messages import CloseCode
from hub.core.records import AuditRecord, Transition
from hub.core.state import HubState
from hub.core.stats import Topic
from hub.core.throttles import LogThrottle
from hub.live.dashboard_fanout import DashboardFanout, Wire
from hub.live.sse_fanout import Broadcaster
from hub.live.templating import create_environment
from hub.live.views import FragmentKey, Views
from hub.settings import Settings
from hub.stores import HistoryStore, open_store
from hub.stores.restore import restore
from hub.web.alerting import Alerting
from hub.web.replication import Replication

__all__ = ["Hub", "Session", "credentials_of"]

log = logging.getLogger(__name__)

# Topics whose fragments (event tables, log tails) may change on every tick under load: they
# refresh every `table_refresh` instead, so a busy hub pushes fewer bytes to every browser.
_BUSY = (Topic.EVENTS, Topic.LOGS)
_YIELD_EVERY = 64  # viewers offered a frame between two yields to the event loop


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
        # Cluster mode (docs/scaling.md): the null backend when `cluster_url` is unset.
        self.cluster = open_cluster(settings)
        # One socket per engine (owner claims) and alerts sent once per cluster (the lease).
        self.owners = self.cluster.owners
        self.lease = self.cluster.lease
        self.alerting = Alerting(
            settings, self.audit, self.broadcaster.publish_alert, self.store.append, self.lease
        )
        self.refusal_log = LogThrottle()  # refused engines: one warning per address per minute
        self.sessions: dict[int, Session] = {}
        self.by_engine: dict[str, Session] = {}
        self.started_at = time.time()
        self.shutting_down = False
        self._conn_ids = itertools.count(1)
        self.cadence = Cadence(settings.view_tick, settings.table_refresh)
        self._lagging: float | None = None  # what the hub status last said about the loop's lag
        self._alert_changes = 0  # the alerting changes the pages were last told of
        self.replication = Replication(self)
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
        # One node acks what its store committed; a cluster node what Redis holds.
        on_commit = self._stored if self.cluster.enabled else self.acknowledge
        restored = await self.store.start(on_commit)
        restore(self.state, restored, time.time())
        # Restored engines take their health now, silently: the hub was away, so e.g. "offline"
        # is not news (no hub.health, no stored transition on every restart).
        self.state.refresh(time.time())
        self.replication.remote.resume(restored.boot_seqs)
        if self.cluster.enabled:
            # What this node stored may never have reached Redis (it died degraded): a welcome
            # must promise only what the stream holds, which the reader re-establishes.
            for engine in self.state.engines.values():
                engine.committed = 0
        self.alerting.start(restored.silences, time.time())
        await self.cluster.start(self.replication)
        self._tasks.append(asyncio.create_task(self._tick(), name="hub-ticker"))
        self._tasks.append(asyncio.create_task(self._fan_out(), name="hub-fanout"))

    def _stored(self, engine: str, boot_id: str, seq: int) -> None:
        """A cluster node's store committed: nothing to ack (Redis holding it is the ack)."""

    def acknowledge(self, engine: str, boot_id: str, seq: int) -> None:
        """`seq` of this boot is durable (stored; in Redis for a cluster): acks follow."""
        record = self.state.engines.get(engine)
        if record is not None and record.boot_id == boot_id and seq > record.committed:
            record.committed = seq
            session = self.by_engine.get(engine)
            if session is not None:
                session.wake()

    async def _tick(self) -> None:
        """Every view tick: measure the loop's lag, then re-derive health (never postponed)."""
        loop, tick = asyncio.get_running_loop(), self.settings.view_tick
        next_rate = time.time() + 1.0
        due = loop.time()
        while True:
            due += tick  # a steady period; this task does little, so its lateness is the loop's
            await asyncio.sleep(max(0.0, due - loop.time()))
            late = loop.time() - due
            now = time.time()
            self.state.lag.observe(late, now)  # before refresh: blind time is not silence
            if late > tick:
                due = loop.time()  # behind: skip the missed ticks instead of bursting
            changes = self.state.refresh(now)
            if changes:
                for change in changes:
                    log.info(
                        "engine %s is %s (was %s)", change.engine, change.health, change.previous
                    )
                self.broadcaster.publish_health(changes)
                kept = Ingested()  # history keeps them for the timeline
                kept.transitions += (
                    Transition(c.engine, c.at, c.health.value, c.previous.value) for c in changes
                )
                self.store.append(kept)
            if self.views.store_problem != self.store.problem:
                self.views.store_problem = self.store.problem
                self.state.dirty.mark(Topic.HUB)
            cluster_note = self.cluster_note()
            if self.views.cluster_note != cluster_note:
                self.views.cluster_note = cluster_note
                self.state.dirty.mark(Topic.HUB)
            lagging = self.state.lag.lagging(now)
            if lagging != self._lagging:  # the hub status says so (and stops saying so)
                self._lagging = lagging
                self.state.dirty.mark(Topic.HUB)
            try:  # rules once per tick (docs/alerts.md); a broken rule must not stop the ticker
                self.alerting.tick(self.state, self.store.problem, now)
            except Exception:
                log.exception("evaluating alert rules failed; will retry next tick")
            if self.alerting.changes != self._alert_changes:  # pages fetch their panel again
                self._alert_changes = self.alerting.changes
                self.state.dirty.mark(Topic.ALERTS)
            if now >= next_rate:
                self.state.measure_rate(now)
                self.save_snapshots(now)
                next_rate = now + 1.0

    async def _fan_out(self) -> None:
        """Push the views on the next tick while idle; under load, less often (coalesced)."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                for _ in self.pushing(time.time()):
                    await asyncio.sleep(0)  # let engine sockets be read between chunks
            except Exception:  # one bad fragment must not stop every dashboard
                log.exception("rendering live views failed; will retry next tick")
            spent = loop.time() - started
            following = self.cadence.ran(started, spent, self.state.lag.lag)
            await asyncio.sleep(max(0.0, following - loop.time()))

    def cluster_note(self) -> str | None:
        """What the hub status says about the cluster: degraded, or a gap; None while fine."""
        status = self.cluster.status
        if status.state is ClusterState.DEGRADED:
            return f"cluster degraded: {status.problem} ({status.pending} frames held, acks paused)"
        if self.replication.gaps:
            return f"cluster gap: {self.replication.last_gap}"
        return None

    def save_snapshots(self, now: float | None = None, final: bool = False) -> None:
        """Hand the store a snapshot of every engine whose metrics or card changed since the last,
        and the metric series buckets over by `now` (every open one if `final`)."""
        snapshots = self.state.snapshots(time.time() if now is None else now, final)
        if snapshots is not None:
            self.store.append(snapshots)

    def push_views(self, now: float) -> None:
        """Render what changed since the last run for every watched view and hand it out."""
        for _ in self.pushing(now):
            pass

    def pushing(self, now: float) -> Iterator[None]:
        """`push_views` in steps: it yields every few viewers, where the fan-out task lets the
        loop read engine sockets, so ingest and health never wait for a whole fan-out. Marks
        that arrive meanwhile go out on the next run."""
        dirty = self.state.dirty.drain()
        busy = {key for key in dirty if key.topic in _BUSY}
        if busy and not self.cadence.tables_now(now):
            dirty -= busy  # tables and log tails wait for their slower cadence under load
            self.state.dirty.keys.update(busy)
        cache: dict[FragmentKey, str] = {}  # each fragment is rendered at most once per run
        views, fanout = self.views, self.fanout
        offered = 0
        for view, watching in list(fanout.views.items()):
            viewers = list(watching)  # the set may change while this run yields
            fresh = fanout.resyncable(viewers, now)  # new, or lagged and caught up since
            names = views.dirtied(view, dirty, now)  # also values held back on earlier runs
            if names:  # offer() skips the fresh viewers: they still await their snapshot
                frame = views.frame(names, now, cache)
                wire = Wire(frame)  # framed (and deflated) once for every viewer of the view
                for viewer in viewers:
                    fanout.offer(viewer, frame, wire)
                    offered += 1
                    if offered >= _YIELD_EVERY:
                        offered = 0
                        yield
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
        await self.cluster.stop()
        self.save_snapshots(final=True)
        await self.store.close()
