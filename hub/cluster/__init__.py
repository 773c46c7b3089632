"""Several hub nodes on one Redis Stream (docs/scaling.md). Only this package imports redis,
and only once `cluster_url` is set: a single node never loads it."""

from __future__ import annotations

import os
import socket

from hub.cluster.backend import (
    ClusterBackend,
    ClusterSink,
    ClusterState,
    ClusterStatus,
    Lease,
    LocalCluster,
    LocalLease,
    NoOwners,
    Owners,
    replaced_by,
)
from hub.settings import Settings, check_cluster_url, redacted_url

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
    "check_cluster_url",
    "default_node_id",
    "open_cluster",
    "redacted_url",
    "replaced_by",
]


def default_node_id() -> str:
    """hostname-pid: unique per process on a host, readable in logs."""
    host = "".join(c for c in socket.gethostname() if c.isalnum() or c in "_.-")[:48] or "node"
    return f"{host}-{os.getpid()}"


def open_cluster(settings: Settings) -> ClusterBackend:
    """The backend `settings` name: Redis for `cluster_url`, else the null one (no redis import)."""
    node_id = settings.node_id or default_node_id()
    if not settings.cluster_url:
        return LocalCluster(node_id)
    from hub.cluster.stream import RedisCluster  # lazy: redis loads only in cluster mode

    return RedisCluster(settings, node_id)
