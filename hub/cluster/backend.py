"""The cluster backend interface, its sink, and the null backend a single node runs with."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from hub.core.entries import Entry, StreamId

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
]


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


class ClusterBackend(Protocol):
    """A shared log every node publishes to and reads from (Redis Streams; or none)."""

    enabled: bool
    node_id: str

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
    """Who holds each engine's one socket across the cluster (cluster-edge's `owners.py`)."""

    def claim(self, engine: str, conn_id: int) -> None:
        """This node's socket `conn_id` now holds `engine` (the latest claim wins)."""


class NoOwners:
    """The null owners: a single node's sockets are settled by its own state."""

    def claim(self, engine: str, conn_id: int) -> None:
        """Nothing to claim."""


class Lease(Protocol):
    """The alert lease: only its holder sends notifications (cluster-edge's `lease.py`)."""

    @property
    def held(self) -> bool:
        """Whether this node may send alert notifications now."""


class LocalLease:
    """The null lease: a single node always holds it."""

    @property
    def held(self) -> bool:
        """Always."""
        return True
