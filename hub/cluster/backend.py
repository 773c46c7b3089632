"""The cluster backend interface, its sink, and the null backend a single node runs with."""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from typing import Protocol

from hub.core.entries import Entry, StreamId
from hub.core.handovers import Mark

__all__ = [
    "ClusterBackend",
    "ClusterSink",
    "ClusterState",
    "ClusterStatus",
    "Lease",
    "LocalCluster",
    "LocalLease",
    "NoOwners",
    "Owners",
    "replaced_by",
]


_MAX_REASON = 123  # bytes a WebSocket close reason may hold


def replaced_by(node: str) -> str:
    """The close reason for a socket another node's newer connection replaced (fits a close frame)."""
    return f"replaced by a newer connection on node {node}"[:_MAX_REASON]


class ClusterState(enum.StrEnum):
    """Where a node stands with the shared log."""

    LOCAL = "local"  # no cluster: the single-process hub
    CONNECTING = "connecting"  # not yet reached Redis since start
    OK = "ok"
    DEGRADED = "degraded"  # Redis unreachable: serving its own engines, not acking


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    """What /healthz and the dashboard say about the cluster."""

    state: ClusterState
    node_id: str = ""
    problem: str | None = None
    pending: int = 0  # frames held for Redis (published when it returns)
    buffer: int = 0  # how many may be held before engine sockets are closed

    @property
    def degraded(self) -> bool:
        """Whether this node is cut off from the cluster (acks paused)."""
        return self.state is ClusterState.DEGRADED


class ClusterSink(Protocol):
    """What a backend reports to the hub that runs it."""

    def published(self, entry: Entry, at: StreamId | None) -> None:
        """`entry` is in Redis (`at`: its stream id; None when Redis had it already)."""

    def received(self, at: StreamId, entry: Entry) -> None:
        """Another node's entry, in stream order."""

    def missed(self, after: StreamId, upto: StreamId) -> None:
        """Entries after `after` up to `upto` were trimmed before this node read them."""

    def displaced(self, engine: str, conn: str, reason: str) -> None:
        """This node's socket `conn` of `engine` was replaced by a newer one elsewhere."""

    def alive(self, seen: dict[str, float] | None, now: float) -> None:
        """Every node's last alive stamp at `now` (Redis's clock); None: Redis unreachable."""


class ClusterBackend(Protocol):
    """A shared log every node publishes to and reads from (Redis Streams; or none)."""

    enabled: bool
    node_id: str

    @property
    def owners(self) -> Owners:
        """Which engine sockets this node holds (one per engine across the cluster)."""

    @property
    def lease(self) -> Lease:
        """The alert lease (always held by a single node)."""

    @property
    def status(self) -> ClusterStatus:
        """Connected, degraded (and why), frames held back."""

    @property
    def full(self) -> bool:
        """The buffer of unpublished frames is full: take no more engine frames."""

    def share(self, entry: Entry) -> None:
        """Queue `entry` for the shared log, in order (never blocks)."""

    async def caught_up(self, within: float) -> bool:
        """Wait up to `within` s until this node has read all the stream held; False if not."""

    async def start(self, sink: ClusterSink) -> None:
        """Start the publisher and the reader tasks."""

    async def stop(self) -> None:
        """Cancel and await the tasks; close the connections."""


class LocalCluster:
    """The null backend: one node, nothing shared, acks come from the history store."""

    enabled = False

    def __init__(self, node_id: str = "") -> None:
        self.node_id = node_id
        self.owners: Owners = NoOwners()
        self.lease: Lease = LocalLease()

    @property
    def status(self) -> ClusterStatus:
        """Always local."""
        return ClusterStatus(ClusterState.LOCAL, self.node_id)

    @property
    def full(self) -> bool:
        """Never full: it holds nothing."""
        return False

    def share(self, entry: Entry) -> None:
        """Nothing to share with."""

    async def caught_up(self, within: float) -> bool:
        """Always: there is nothing else to read."""
        return True

    async def start(self, sink: ClusterSink) -> None:
        """Nothing to start."""

    async def stop(self) -> None:
        """Nothing to stop."""


class Owners(Protocol):
    """Which of this node's sockets holds each engine (`owners.py`; Redis settles the cluster)."""

    def claim(self, engine: str, conn_id: int) -> None:
        """This node's socket `conn_id` said hello as `engine`."""

    def release(self, engine: str, conn_id: int) -> None:
        """This node's socket `conn_id` of `engine` closed."""


class NoOwners:
    """The null owners: a single node's sockets are settled by its own state."""

    def claim(self, engine: str, conn_id: int) -> None:
        """Nothing to claim."""

    def release(self, engine: str, conn_id: int) -> None:
        """Nothing to release."""


class Lease(Protocol):
    """The alert lease: only its holder sends notifications (`lease.py`, docs/alerts.md)."""

    @property
    def held(self) -> bool:
        """Whether this node may send alert notifications now."""

    @property
    def term(self) -> int:
        """Counts the times this node took the lease (a new term needs a new handover)."""

    async def wait_changed(self) -> None:
        """Return once `held` flipped (taken, renewed after a loss, released)."""

    async def marks(self) -> list[Mark] | None:
        """What the holders delivered so far (None: Redis could not say; try again)."""

    def delivered(self, marks: list[Mark]) -> None:
        """Record deliveries for the next holder (in the background; never blocks)."""


class LocalLease:
    """The null lease: a single node always holds it, and nobody takes over from it."""

    held = True
    term = 0

    async def wait_changed(self) -> None:
        """Never: the lease is always this node's."""
        await asyncio.Event().wait()

    async def marks(self) -> list[Mark] | None:
        """Nothing was delivered by another node."""
        return []

    def delivered(self, marks: list[Mark]) -> None:
        """Nobody to tell."""
