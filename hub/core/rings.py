"""Per-type bounded ring buffers of recent events that count what they evict."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import takewhile

from hub.core.records import EventRecord
from hub.settings import KNOWN_EVENT_TYPES, Settings

__all__ = ["EventRings", "Ring", "TooManyTypes"]


class TooManyTypes(Exception):
    """A new event type would exceed the configured number of distinct types."""


@dataclass(slots=True)
class Ring:
    """Recent events of one type: evicts the oldest when full and counts it."""

    capacity: int
    items: deque[EventRecord] = field(init=False)
    total: int = 0

    def __post_init__(self) -> None:
        self.items = deque(maxlen=self.capacity)

    @property
    def evicted(self) -> int:
        """How many events this ring has dropped to make room (everything appended but not held)."""
        return self.total - len(self.items)

    def append(self, record: EventRecord) -> None:
        """Keep `record`, evicting the oldest one if the ring is full."""
        self.items.append(record)
        self.total += 1


class EventRings:
    """One ring per event type, so a flood of one type never evicts the rare ones."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.rings: dict[str, Ring] = {
            t: Ring(settings.ring_capacity(t)) for t in KNOWN_EVENT_TYPES
        }
        self._max_types = len(KNOWN_EVENT_TYPES) + settings.max_event_types

    def append(self, record: EventRecord) -> None:
        """Keep `record` in its type's ring; raises TooManyTypes for a type over the limit."""
        ring = self.rings.get(record.type)
        if ring is None:
            if len(self.rings) >= self._max_types:
                raise TooManyTypes(
                    f"event type {record.type!r} would exceed the limit of "
                    f"{self._settings.max_event_types} types beyond the known ones"
                )
            ring = self.rings[record.type] = Ring(self._settings.ring_capacity(record.type))
        ring.append(record)

    def _selected(self, event_type: str | None) -> Iterable[Ring]:
        if event_type is None:
            return self.rings.values()
        ring = self.rings.get(event_type)
        return (ring,) if ring is not None else ()

    def recent(
        self,
        limit: int,
        event_type: str | None = None,
        engine: str | None = None,
        before_id: int | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[EventRecord]:
        """Up to `limit` most recent events, newest first, optionally filtered (times in Unix s)."""
        newest_first = heapq.merge(
            *(reversed(ring.items) for ring in self._selected(event_type)),
            key=lambda r: r.id,
            reverse=True,
        )
        out: list[EventRecord] = []
        for record in newest_first:
            if before_id is not None and record.id >= before_id:
                continue
            if engine is not None and record.engine != engine:
                continue
            if since is not None or until is not None:
                ts = record.ts
                if (since is not None and ts < since) or (until is not None and ts >= until):
                    continue
            out.append(record)
            if len(out) >= limit:
                break
        return out

    def after(self, last_id: int, event_type: str | None = None) -> Iterator[EventRecord]:
        """Events with id greater than `last_id`, oldest first (for SSE resume)."""
        tails = []
        for ring in self._selected(event_type):
            newer = list(takewhile(lambda r: r.id > last_id, reversed(ring.items)))
            if newer:
                newer.reverse()
                tails.append(newer)
        return heapq.merge(*tails, key=lambda r: r.id)

    def horizon(self, event_type: str | None = None) -> int:
        """Below this id the rings may be missing events (some ring evicted); 0 if none did."""
        held = [r.items[0].id for r in self._selected(event_type) if r.evicted and r.items]
        return max(held, default=0)

    def oldest_id(self) -> int | None:
        """The smallest id still held in any ring (None when empty)."""
        heads = [ring.items[0].id for ring in self.rings.values() if ring.items]
        return min(heads) if heads else None
