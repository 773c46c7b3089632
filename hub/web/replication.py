"""Between the hub and its cluster backend: local engine traffic out, other nodes' traffic in.

Out: an engine's hello, each frame that took a new seq, and its socket's close become stream
entries; an ack follows once Redis holds the frame ("ack means it is in Redis"). In: another
node's entries go through the sans-I/O `RemoteIngest` into this node's state, then to its store
and live views like local ones. A remote hello later in the stream than this node's socket of
that engine closes that socket: the latest claim wins, on every node alike.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from hub.cluster import replaced_by
from hub.core.engines import EngineRecord
from hub.core.entries import Entry, EntryKind, StreamId, supersedes
from hub.core.ingested import Gap, Ingested
from hub.core.liveness import NodeWatch
from hub.core.messages import CloseCode, Hello, encoder
from hub.core.remote import RemoteIngest
from hub.core.stats import Topic

if TYPE_CHECKING:
    from hub.web.runtime import Hub

__all__ = ["CLUSTER_GAP_ENGINE", "Replication"]

log = logging.getLogger(__name__)

CLUSTER_GAP_ENGINE = "(cluster)"  # the gaps row of trimmed entries (no engine name has parens)
_MAX_HELLOS = 65_536  # local sockets whose hello position is remembered


class Replication:
    """Shares local engine traffic and applies the other nodes' (the hub is the backend's sink)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.node_id = hub.cluster.node_id
        self.remote = RemoteIngest(hub.state, hub.decoder, hub.next_conn_id)
        self.hello_at: dict[int, StreamId] = {}  # local conn id -> its hello's stream id
        self.nodes = NodeWatch(self.node_id, hub.settings.cluster_node_timeout)
        self.gaps = 0  # times entries were trimmed before this node read them
        self.last_gap: str | None = None

    # Out: this node's engines.

    def opened(self, conn_id: int, engine: EngineRecord) -> None:
        """An engine said hello here: tell the cluster (it registers the boot everywhere)."""
        hello = Hello(
            engine=engine.name,
            mode=engine.mode,
            pid=engine.pid,
            boot_id=engine.boot_id,
            started_at=engine.started_at,
            heartbeat_interval=engine.heartbeat_interval,
            meta=engine.meta,
        )
        data = encoder.encode(hello).decode()
        self._share(EntryKind.HELLO, conn_id, engine.name, engine.boot_id, 0, data)

    def frame(self, conn_id: int, text: str, ingested: Ingested) -> None:
        """A frame that took seqs up to `ingested.seq`: into the stream (deduped there)."""
        self._share(EntryKind.FRAME, conn_id, ingested.engine, ingested.boot_id, ingested.seq, text)

    def closed(self, conn_id: int, engine: str, boot_id: str) -> None:
        """The socket closed here: the other nodes mark the engine offline unless it moved."""
        self.hello_at.pop(conn_id, None)
        self._share(EntryKind.CLOSE, conn_id, engine, boot_id, 0, "")

    def _share(
        self, kind: EntryKind, conn: int, engine: str, boot_id: str, seq: int, data: str
    ) -> None:
        self.hub.cluster.share(Entry(kind, self.node_id, engine, boot_id, conn, seq, data))

    # In: what the backend reports (ClusterSink).

    def published(self, entry: Entry, at: StreamId | None) -> None:
        """Redis holds `entry`: ack a frame; remember where a hello landed (ownership)."""
        if entry.kind is EntryKind.FRAME:
            self.hub.acknowledge(entry.engine, entry.boot_id, entry.seq)
        elif entry.kind is EntryKind.HELLO and at is not None and entry.conn in self.hub.sessions:
            if len(self.hello_at) >= _MAX_HELLOS:
                del self.hello_at[next(iter(self.hello_at))]
            self.hello_at[entry.conn] = at

    def received(self, at: StreamId, entry: Entry) -> None:
        """Another node's entry: apply it to the state, then to the store and the streams."""
        hub, now = self.hub, time.time()
        local = None
        if entry.kind is EntryKind.HELLO:
            engine = hub.state.engines.get(entry.engine)
            if engine is not None and engine.connected and engine.conn_id in hub.sessions:
                local = engine.conn_id
                if not supersedes(at, self.hello_at.get(local)):
                    hub.state.stats.drops["cluster_stale_hello"] += 1
                    return  # our socket claimed the engine later: it stays, theirs closes
        applied = self.remote.apply(entry, now)
        ingested = applied.ingested
        if ingested is not None:
            if ingested.events:
                hub.broadcaster.publish(ingested.events)
            hub.store.append(ingested)
        session = hub.sessions.get(applied.replaced) if applied.replaced is not None else None
        if session is not None and applied.replaced == local:
            log.warning(
                "engine %r connected to node %r: closing its socket here", entry.engine, entry.node
            )
            session.close_soon(CloseCode.REPLACED, replaced_by(entry.node))

    def displaced(self, engine: str, conn: str, reason: str) -> None:
        """The owner notice of a newer hello elsewhere (sooner than this node reads it): close."""
        session = self.hub.sessions.get(int(conn)) if conn.isdigit() else None
        if session is not None and session.engine_name == engine:
            log.warning("engine %r connected to another node: closing its socket here", engine)
            session.close_soon(CloseCode.REPLACED, reason)

    def alive(self, seen: dict[str, float] | None, now: float) -> None:
        """Nodes' alive stamps: a node gone past the timeout takes its engines offline here."""
        if seen is None:
            self.nodes.lost()
            return
        verdict = self.nodes.observe(seen, now)
        for node in verdict.back:
            log.info("cluster node %r is alive again", node)
        for node in verdict.gone:
            changes = self.remote.node_gone(node, time.time())
            log.warning(
                "cluster node %r silent for over %g s: %d of its engines marked offline",
                node,
                self.nodes.timeout,
                len(changes.boots),
            )
            self.hub.store.append(changes)

    def missed(self, after: StreamId, upto: StreamId) -> None:
        """Entries were trimmed before this node read them: a visible gap, never silence."""
        self.gaps += 1
        self.last_gap = (
            f"stream entries after {after[0]}-{after[1]} up to {upto[0]}-{upto[1]} were trimmed "
            "before this node read them"
        )
        log.warning("cluster gap: %s (raise cluster_stream_maxlen)", self.last_gap)
        self.hub.state.stats.drops["cluster_trimmed"] += 1
        changes = Ingested()
        gap = Gap(CLUSTER_GAP_ENGINE, self.node_id, after[0], upto[0], "cluster_trimmed")
        changes.gaps.append(gap)
        self.hub.store.append(changes)
        self.hub.state.dirty.mark(Topic.HUB)
