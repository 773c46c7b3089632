"""What the core changed that history must keep: the one thing the stores take from the core.

One `Ingested` comes from each engine frame (`EngineConnection.receive_text`), from a socket that
closed (`EngineConnection.closed`), from the runtime's snapshot tick (`HubState.snapshots`) and
from the audit trail (`Hub.audit`) and from health changes (the runtime's ticker).
The I/O shell replies with its rejections, publishes its events and hands it, whole, to
`HistoryStore.append`. It names its engine and boot by plain keys, never by the live (mutable)
`EngineRecord`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hub.core.chains import Link
from hub.core.decoding import Rejected
from hub.core.records import (
    AuditRecord,
    BootChange,
    EventRecord,
    LogRecord,
    MetricsSnapshot,
    Transition,
)
from hub.core.series import Point
from hub.core.silences import Silence

__all__ = ["Gap", "Ingested"]


@dataclass(frozen=True, slots=True)
class Gap:
    """Messages `first`..`last` of a boot never arrived (the client dropped them), or, with
    reason `cluster_trimmed`, stream entries (ids in ms) trimmed before this node read them."""

    engine: str
    boot_id: str
    first: int
    last: int
    reason: str = "client_dropped"


class Ingested:
    """Records to store and publish, rejections to reply with, boots and snapshots to keep.

    `engine`, `boot_id` and `seq` say what the store reports as committed once it has kept
    this: everything of that boot up to `seq` (`engine` is "" when nothing is to commit).
    """

    __slots__ = (
        "audit",
        "boot_id",
        "boots",
        "engine",
        "events",
        "frame",
        "gaps",
        "links",
        "logs",
        "points",
        "received",
        "rejected",
        "runs",
        "seq",
        "silences",
        "snapshots",
        "transitions",
    )

    def __init__(self, engine: str = "", boot_id: str = "", seq: int = 0) -> None:
        self.engine = engine
        self.boot_id = boot_id
        self.seq = seq
        self.events: list[EventRecord] = []
        self.runs = 0  # runs of one event type in `events`
        # The frame's text, when `events` are all of it, of one type (one run), in its order:
        # the store may keep it verbatim instead of encoding the records again.
        self.frame: bytes | None = None
        self.received = 0.0  # when `frame` came: the ts of its events that carry none
        self.links: list[Link] = []  # events of `events` that carry a chain link
        self.logs: list[LogRecord] = []
        self.rejected: list[Rejected] = []
        self.gaps: list[Gap] = []
        self.boots: list[BootChange] = []  # boots that started or ended (hello, bye, replaced)
        self.snapshots: list[MetricsSnapshot] = []
        # Closed metric series buckets (hub/core/series.py): only the snapshot tick has any, so
        # the engine frames' hot path allocates no list for them.
        self.points: Sequence[Point] = ()
        self.audit: list[AuditRecord] = []  # who did what (the shell adds these, not ingest)
        self.silences: list[Silence] = []  # silences added or ended (kept across restarts)
        self.transitions: list[Transition] = []  # health changes (the runtime's ticker adds these)
