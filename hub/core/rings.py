"""Per-type bounded ring buffers of recent events that count what they evict."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import repeat, starmap, takewhile

from hub.core.records import EventRecord
from hub.settings import KNOWN_EVENT_TYPES, Settings

__all__ = ["EventRings", "Ring", "TooManyTypes"]


class TooManyTypes(Exception):
    """A new event type would exceed the configured number of distinct types."""


@dataclass(slots=True)
class Ring:
    """Recent events of one type in one lane per engine; evicts and counts when full.

    Fair share: when the ring is full, the engine appending loses its own oldest event if it
    holds at least `capacity // engines` of them, else the engine holding the most loses its
    oldest. So a flooding engine evicts itself, and every engine keeps its share of recent events.
    """

    capacity: int
    lanes: dict[str, deque[EventRecord]] = field(default_factory=dict)  # engine -> oldest first
    size: int = 0  # events held, in all lanes
    total: int = 0
    evicted_upto: int = 0  # the highest id evicted (0: none yet)
    released: int = 0  # events let go with a forgotten engine (not evictions)
    share: int = 0  # capacity // len(lanes), kept as lanes come and go (read once per run)

    def __post_init__(self) -> None:
        self._reshare()

    @property
    def evicted(self) -> int:
        """How many events this ring has dropped to make room (appended, not held, not released)."""
        return self.total - self.size - self.released

    def forget(self, engine: str) -> int:
        """Let go of every event of `engine` (a retired engine); returns how many were held."""
        lane = self.lanes.pop(engine, None)
        if lane is None:
            return 0
        self._reshare()  # the engines left share the ring
        self.size -= len(lane)
        self.released += len(lane)
        return len(lane)

    @property
    def items(self) -> list[EventRecord]:
        """Every event held, oldest first (a merged copy: for stats and tests, not hot paths)."""
        return list(heapq.merge(*self.lanes.values(), key=lambda r: r.id))

    def lane(self, engine: str) -> deque[EventRecord]:
        """The events of `engine`; append to it, then call `added` (the ingest hot path)."""
        lane = self.lanes.get(engine)
        if lane is None:
            lane = self.lanes[engine] = deque()
            self._reshare()
        return lane

    def append(self, record: EventRecord) -> None:
        """Keep `record`, evicting by fair share if the ring is full."""
        self.lane(record.engine).append(record)
        self.added(record.engine, 1)

    def added(self, engine: str, count: int) -> None:
        """`count` events were appended to `engine`'s lane: count them, and trim to capacity.

        Called once per run of events, so the usual case (the ring is full and the engine
        appending holds its share) costs a few operations whatever the run's length.
        """
        self.total += count
        size = self.size + count
        excess = size - self.capacity
        if excess <= 0:
            self.size = size
            return
        lane = self.lanes.get(engine)
        if lane is not None and len(lane) - excess >= self.share:  # usual: it pays itself
            self.size = self.capacity
            if excess == 1:  # one event per frame: no further call
                last = lane.popleft()
                if last.id > self.evicted_upto:
                    self.evicted_upto = last.id
            else:
                self._evict(lane, excess)
        else:
            self.size = size
            self._trim(engine)

    def _evict(self, lane: deque[EventRecord], count: int) -> None:
        """Drop the `count` oldest events of `lane` (at least one), remembering the newest id."""
        if count == 1:
            last = lane.popleft()
        else:  # popped in C, keeping only the last: no Python loop per evicted event
            last = deque(starmap(lane.popleft, repeat((), count)), maxlen=1)[0]
        if last.id > self.evicted_upto:
            self.evicted_upto = last.id

    def _trim(self, engine: str) -> None:
        """Make room by fair share: an engine below its share takes from the biggest lane."""
        lanes, share = self.lanes, self.share
        excess = self.size - self.capacity
        while excess > 0:
            name = engine
            lane = lanes.get(engine)
            if lane is None or len(lane) <= share:  # below its share: the biggest pays
                name = max(lanes, key=lambda n: len(lanes[n]))
                lane = lanes[name]
            take = min(excess, max(1, len(lane) - share))
            self._evict(lane, take)
            excess -= take
            self.size -= take
            if not lane:
                del lanes[name]
                self._reshare()
                share = self.share

    def _reshare(self) -> None:
        self.share = self.capacity // len(self.lanes) if self.lanes else self.capacity


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

    def forget(self, engine: str) -> dict[str, int]:
        """Let go of every event of `engine`; returns how many it held, by type."""
        held = {kind: ring.forget(engine) for kind, ring in self.rings.items()}
        return {kind: count for kind, count in held.items() if count}

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
        lanes = (
            [lane for ring in self._selected(event_type) for lane in ring.lanes.values()]
            if engine is None
            else [
                lane
                for ring in self._selected(event_type)
                if (lane := ring.lanes.get(engine)) is not None
            ]
        )
        newest_first = heapq.merge(*map(reversed, lanes), key=lambda r: r.id, reverse=True)
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
            for lane in ring.lanes.values():
                newer = list(takewhile(lambda r: r.id > last_id, reversed(lane)))
                if newer:
                    newer.reverse()
                    tails.append(newer)
        return heapq.merge(*tails, key=lambda r: r.id)

    def horizon(self, event_type: str | None = None) -> int:
        """Below this id the rings may be missing events (some ring evicted); 0 if none did."""
        return max((r.evicted_upto + 1 for r in self._selected(event_type) if r.evicted), default=0)

    def oldest_id(self) -> int | None:
        """The smallest id still held in any ring (None when empty)."""
        heads = [lane[0].id for ring in self.rings.values() for lane in ring.lanes.values()]
        return min(heads) if heads else None
