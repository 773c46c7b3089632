"""What ingesting one frame changed: the hand-off from the core (`HubState.ingest`) to the I/O
shell, which replies with the rejections, and to the history store, which keeps the records."""

from __future__ import annotations

from dataclasses import dataclass

from hub.core.decoding import Rejected
from hub.core.records import EventRecord, LogRecord

__all__ = ["Gap", "Ingested"]


@dataclass(frozen=True, slots=True)
class Gap:
    """Messages `first`..`last` of a boot never arrived (the client dropped them)."""

    engine: str
    boot_id: str
    first: int
    last: int


class Ingested:
    """What one frame changed: records to store and publish, rejections to reply with."""

    __slots__ = ("events", "frame", "gaps", "logs", "received", "rejected", "runs")

    def __init__(self) -> None:
        self.events: list[EventRecord] = []
        self.runs = 0  # runs of one event type in `events`
        # The frame's text, when `events` are all of it, of one type (one run), in its order:
        # the store may keep it verbatim instead of encoding the records again.
        self.frame: bytes | None = None
        self.received = 0.0  # when `frame` came: the ts of its events that carry none
        self.logs: list[LogRecord] = []
        self.rejected: list[Rejected] = []
        self.gaps: list[Gap] = []
