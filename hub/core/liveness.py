"""Node liveness, sans-I/O: which cluster nodes stopped saying they are alive.

Every node stamps itself alive in Redis every fifth of `cluster_node_timeout` (a sorted set scored
by Redis's own clock, so the nodes' clocks do not matter) and reads every node's last stamp back.
`NodeWatch.observe` turns those stamps into decisions: a node whose stamp is older than the timeout
is gone (reported once), one seen fresh again is back. Nobody is judged until this node has
stamped for a whole timeout without a break: after Redis was away every stamp is old, its own too.
The hub marks a gone node's engines
disconnected unless they reconnected elsewhere (`RemoteIngest.node_gone`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["MAX_NODES", "NodeWatch", "Verdict"]

MAX_NODES = 1024  # nodes a watch follows; a cluster this size is far past the plan in scaling.md


@dataclass(slots=True)
class Verdict:
    """What one observation changed."""

    gone: list[str] = field(default_factory=list)
    back: list[str] = field(default_factory=list)


class NodeWatch:
    """Tracks which other nodes are alive, from their last stamps and the stamping clock's `now`."""

    def __init__(self, node_id: str, timeout: float) -> None:
        if not timeout > 0:
            raise ValueError(f"node timeout must be positive (got {timeout!r})")
        self.node_id = node_id
        self.timeout = timeout
        self.gone: set[str] = set()  # nodes reported gone and not seen since
        self._judge_from: float | None = None  # stamping since (+ timeout); None: not stamping

    def lost(self) -> None:
        """This node could not stamp (Redis away): judge nobody until it has stamped a while."""
        self._judge_from = None

    def observe(self, seen: Mapping[str, float], now: float) -> Verdict:
        """`seen`: each node's last stamp (seconds); `now` on the same clock."""
        verdict = Verdict()
        if self._judge_from is None:
            self._judge_from = now + self.timeout
        judging = now >= self._judge_from
        for node, stamp in list(seen.items())[:MAX_NODES]:
            if node == self.node_id:
                continue
            alive = now - stamp <= self.timeout
            if alive and node in self.gone:
                self.gone.discard(node)
                verdict.back.append(node)
            elif judging and not alive and node not in self.gone and len(self.gone) < MAX_NODES:
                self.gone.add(node)
                verdict.gone.append(node)
        return verdict
