"""`TelemetryBus`: the second document's in-process bus, publishing through `EngineClient`."""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from hub.client import EngineClient
from hub.compat.clients import shared_client
from hub.compat.config import CompatConfig

__all__ = ["EVENT_TYPES", "TelemetryBus"]

# The document's eight event types, in its order.
EVENT_TYPES = (
    "signal_event",
    "indicator_event",
    "order_event",
    "position_event",
    "engine_health",
    "decision_trace",
    "universe_scan",
    "performance_update",
)
BUFFER_SIZE = 5000  # the document's default buffer
MAX_TYPES = 64  # distinct event types counted in get_stats (the hub limits other types too)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


class TelemetryBus:
    """The old bus's calls: every event goes to the hub and into a bounded local buffer.

    `get_recent_events` and `get_stats` answer from that buffer, as the old bus did; the hub's
    `/api/telemetry/events`, `/stats` and `/stream` serve other processes. New code should use
    `hub.client.EngineClient.publish` directly.
    """

    _config: ClassVar[CompatConfig | None] = None
    _instance: ClassVar[TelemetryBus | None] = None
    _class_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, client: EngineClient, buffer_size: int = BUFFER_SIZE) -> None:
        self.client = client
        self.buffer_size = max(1, min(int(buffer_size), 100_000))
        self._buffer: deque[tuple[float, str, Mapping[str, Any]]] = deque(maxlen=self.buffer_size)
        # next() on an itertools.count is the cheapest atomic increment; reading one advances it,
        # so each read is remembered in _reads and taken off.
        self._counts: dict[str, Iterator[int]] = {}
        self._other: Iterator[int] = itertools.count()
        self._reads: dict[str, int] = {}
        self._lock = threading.Lock()

    @classmethod
    def configure(
        cls,
        url: str | None = None,
        engine: str | None = None,
        mode: str | None = None,
        token: str | None = None,
    ) -> None:
        """Say where `instance()` sends (arguments win over ENGINE_HUB_* variables)."""
        with cls._class_lock:
            cls._config = CompatConfig.from_environ().with_overrides(
                url=url, engine=engine, mode=mode, token=token
            )
            cls._instance = None

    @classmethod
    def instance(cls) -> TelemetryBus:
        """The process's bus (the old API's singleton), connected on first use."""
        with cls._class_lock:
            if cls._instance is None:
                cls._instance = cls(shared_client(cls._config or CompatConfig.from_environ()))
            return cls._instance

    get_instance = instance  # the name the old singleton also went by

    def publish(self, event_type: str, payload: Mapping[str, Any] | None = None) -> None:
        """Publish one event of `event_type` with `payload` (a dict; do not mutate it later)."""
        body = payload if payload is not None else {}
        self.client.publish(event_type, body)
        self._buffer.append((time.time(), event_type, body))  # atomic: no lock on this path
        count = self._counts.get(event_type) or self._new_count(event_type)
        next(count)  # one C call: atomic under the GIL, so racing threads lose no count

    def _new_count(self, event_type: str) -> Iterator[int]:
        with self._lock:
            count = self._counts.get(event_type)
            if count is None:
                if len(self._counts) >= MAX_TYPES:
                    return self._other  # types past the cap are counted together
                count = self._counts[event_type] = itertools.count()
            return count

    # One helper per event type of the document (payload as a dict, or as keywords).

    def publish_signal_event(self, payload: Mapping[str, Any] | None = None, **fields: Any) -> None:
        """A strategy signal (BUY/SELL/EXIT): symbol, side, price, strategy, ..."""
        self.publish("signal_event", {**(payload or {}), **fields} if fields else payload)

    def publish_indicator_event(
        self, payload: Mapping[str, Any] | None = None, **fields: Any
    ) -> None:
        """An indicator computation (RSI, EMA, ATR, ...)."""
        self.publish("indicator_event", {**(payload or {}), **fields} if fields else payload)

    def publish_order_event(self, payload: Mapping[str, Any] | None = None, **fields: Any) -> None:
        """An order's lifecycle step: status create, fill or reject."""
        self.publish("order_event", {**(payload or {}), **fields} if fields else payload)

    def publish_position_event(
        self, payload: Mapping[str, Any] | None = None, **fields: Any
    ) -> None:
        """A position update."""
        self.publish("position_event", {**(payload or {}), **fields} if fields else payload)

    def publish_engine_health(
        self, payload: Mapping[str, Any] | None = None, **fields: Any
    ) -> None:
        """An engine component's health metrics."""
        self.publish("engine_health", {**(payload or {}), **fields} if fields else payload)

    def publish_decision_trace(
        self, payload: Mapping[str, Any] | None = None, **fields: Any
    ) -> None:
        """A strategy decision in detail: reason, confidence, timeframe."""
        self.publish("decision_trace", {**(payload or {}), **fields} if fields else payload)

    def publish_universe_scan(
        self, payload: Mapping[str, Any] | None = None, **fields: Any
    ) -> None:
        """A universe refresh: instrument counts by exchange and type."""
        self.publish("universe_scan", {**(payload or {}), **fields} if fields else payload)

    def publish_performance_update(
        self, payload: Mapping[str, Any] | None = None, **fields: Any
    ) -> None:
        """Performance metrics."""
        self.publish("performance_update", {**(payload or {}), **fields} if fields else payload)

    # The read side, from the local buffer.

    def get_recent_events(
        self, event_type: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The newest `limit` events (of `event_type` if given), newest first."""
        found: list[dict[str, Any]] = []
        if limit <= 0:
            return found
        buffered = list(self._buffer)
        for ts, kind, payload in reversed(buffered):
            if event_type is None or kind == event_type:
                found.append({"type": kind, "timestamp": _iso(ts), "payload": dict(payload)})
                if len(found) >= limit:
                    break
        return found

    def _read(self, kind: str, count: Iterator[int]) -> int:
        value = next(count) - self._reads.get(kind, 0)
        self._reads[kind] = self._reads.get(kind, 0) + 1
        return value

    def get_stats(self) -> dict[str, Any]:
        """Buffer size and capacity, events per type and in total, and the hub connection."""
        with self._lock:
            counts = {kind: self._read(kind, count) for kind, count in self._counts.items()}
            total = sum(counts.values()) + self._read("", self._other)
        return {
            "buffer_size": len(self._buffer),
            "max_buffer_size": self.buffer_size,
            "total_events": total,
            "event_counts": counts,
            "connected": self.client.connected,
            "dropped": dict(self.client.stats.dropped),
        }
