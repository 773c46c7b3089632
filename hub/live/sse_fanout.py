"""Fan-out of serialized events to SSE subscribers through one bounded queue each."""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Iterable

import msgspec

from hub.core.records import EventRecord
from hub.core.state import HealthChange

__all__ = ["Broadcaster", "Subscriber", "TooManySubscribers", "sse_frame"]

_encode = msgspec.json.Encoder().encode
HEALTH_EVENT = "hub.health"


def sse_frame(record: EventRecord) -> bytes:
    """One SSE message for `record`; its id resumes the stream (Last-Event-ID)."""
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (
        record.id,
        record.type.encode(),
        _encode(record.view()),
    )


def _health_frame(change: HealthChange) -> bytes:
    data = _encode(
        {
            "engine": change.engine,
            "health": change.health,
            "previous": change.previous,
            "at": change.at,
        }
    )
    return b"event: %s\ndata: %s\n\n" % (HEALTH_EVENT.encode(), data)


class TooManySubscribers(Exception):
    """The configured number of stream clients is reached."""


class Subscriber:
    """One stream client's bounded queue. Overflow closes it: the client resumes by Last-Event-ID."""

    __slots__ = ("closed", "engine", "event_type", "queue", "reason", "_limit", "_wake")

    def __init__(self, event_type: str | None, engine: str | None, limit: int) -> None:
        self.event_type = event_type
        self.engine = engine
        self.queue: deque[bytes] = deque()
        self.closed = False
        self.reason = ""
        self._limit = limit
        self._wake = asyncio.Event()

    def wants(self, event_type: str, engine: str) -> bool:
        """Whether this subscriber's filters let the event through."""
        return (self.event_type is None or self.event_type == event_type) and (
            self.engine is None or self.engine == engine
        )

    def push(self, frame: bytes) -> bool:
        """Queue one frame; False (and closed) when the client has fallen too far behind."""
        if self.closed:
            return False
        if len(self.queue) >= self._limit:
            self.close("slow")
            return False
        self.queue.append(frame)
        self._wake.set()
        return True

    def close(self, reason: str) -> None:
        """End the stream after what is queued."""
        self.closed = True
        self.reason = reason
        self._wake.set()

    async def wait(self) -> list[bytes]:
        """Wait for frames (or close) and take them all."""
        await self._wake.wait()
        self._wake.clear()
        frames = list(self.queue)
        self.queue.clear()
        return frames


class Broadcaster:
    """Serializes each event once and hands the same bytes to every interested subscriber."""

    def __init__(self, max_subscribers: int, queue_limit: int, drops: Counter[str]) -> None:
        self.subscribers: set[Subscriber] = set()
        self._max = max_subscribers
        self._limit = queue_limit
        self._drops = drops

    def subscribe(self, event_type: str | None, engine: str | None) -> Subscriber:
        """A new subscriber with the given filters."""
        if len(self.subscribers) >= self._max:
            raise TooManySubscribers(
                f"the hub already serves {self._max} streams; raise max_sse_clients or close some"
            )
        subscriber = Subscriber(event_type, engine, self._limit)
        self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Forget `subscriber` (its stream ended)."""
        self.subscribers.discard(subscriber)

    def publish(self, records: Iterable[EventRecord]) -> None:
        """Offer events to every subscriber; slow ones are closed and counted."""
        if not self.subscribers:
            return
        for record in records:
            frame: bytes | None = None
            for subscriber in self.subscribers:
                if subscriber.wants(record.type, record.engine):
                    frame = frame or sse_frame(record)
                    if not subscriber.push(frame) and subscriber.reason == "slow":
                        self._drops["sse_slow_client"] += 1

    def publish_health(self, changes: Iterable[HealthChange]) -> None:
        """Offer health transitions (SSE event `hub.health`) to subscribers."""
        if not self.subscribers:
            return
        for change in changes:
            frame = _health_frame(change)
            for subscriber in self.subscribers:
                if subscriber.wants(HEALTH_EVENT, change.engine):
                    subscriber.push(frame)

    def publish_alert(self, engine: str, frame: bytes) -> None:
        """Offer an alert change (SSE event `hub.alert`, already framed) to subscribers."""
        for subscriber in self.subscribers:
            if subscriber.wants("hub.alert", engine):
                subscriber.push(frame)

    def close(self) -> None:
        """End every stream (hub shutdown)."""
        for subscriber in self.subscribers:
            subscriber.close("shutdown")
