"""Where record calls land: from any thread, never blocking, bounded, every loss counted.

Only operations that are atomic under the GIL are used on the hot path (`deque.append`,
`dict` get/set/update, `next()` on an `itertools.count`), so engine threads never wait on each
other or on the sender. The one exception is `increment` by an amount other than 1, which takes
an uncontended lock for the read-modify-write. A single reader (the sender) drains it all.
"""

from __future__ import annotations

import enum
import itertools
import threading
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from typing import Any

__all__ = ["DropReason", "Intake", "NullIntake", "SeriesKey"]

SeriesKey = Hashable  # `name`, or `(name, tuple(tags.items()))` in the caller's keyword order

EVENT, LOG, OBSERVE = 0, 1, 2


class DropReason(enum.StrEnum):
    """Why the client dropped something; the counts reach the hub in heartbeats (`dropped`)."""

    BUFFER_FULL = "buffer_full"  # evicted from the outbox before it was ever sent
    UNACKED_EVICTED = "unacked_evicted"  # evicted after sending; the hub then proved it lost
    INTAKE_FULL = "intake_full"  # evicted before the sender drained it (sender starved)
    INVALID = "invalid"  # bad metric name/tags/value, event type, heartbeat field or argument
    TOO_MANY_SERIES = "too_many_series"
    TOO_LARGE = "too_large"  # one message above the hub's max_message_bytes
    UNENCODABLE = "unencodable"
    AFTER_BYE = "after_bye"  # recorded after mark_stopped()
    CLOSE_TIMEOUT = "close_timeout"  # still unacknowledged when close() gave up


def _noop() -> None:
    return None


class Intake:
    """The lock-free front of the client; `ClientCore` is its only reader."""

    def __init__(self, capacity: int, batch: int, max_series: int) -> None:
        self.items: deque[tuple[Any, ...]] = deque()
        self.wake: Callable[[], None] = _noop  # the I/O shell's "send soon" signal
        self._capacity = capacity
        self._batch = batch
        self._max_series = max_series
        self._units: dict[SeriesKey, itertools.count[int]] = {}
        self._unit_seen: dict[SeriesKey, int] = {}
        self._sums: dict[SeriesKey, float] = {}
        self._sum_lock = threading.Lock()
        self._gauges: dict[SeriesKey, Any] = {}
        self._health: dict[str, Any] = {}
        self._state: dict[str, Any] = {}  # pending `state` keys, merged key by key
        self._tallies = {reason: itertools.count() for reason in DropReason}
        self._tally_seen = dict.fromkeys(DropReason, 0)

    # Hot path: any thread.

    def append(self, item: tuple[Any, ...]) -> None:
        """Queue one event, log or observation; evicts the oldest when full."""
        items = self.items
        if len(items) >= self._capacity:
            try:
                items.popleft()
            except IndexError:
                pass  # the sender drained it meanwhile
            else:
                next(self._tallies[DropReason.INTAKE_FULL])
        items.append(item)
        if len(items) == self._batch:
            self.wake()

    def inc(self, key: SeriesKey, amount: float) -> None:
        """Add to a counter series; `amount == 1` is lock-free."""
        if amount == 1:
            counter = self._units.get(key)
            if counter is None:
                if len(self._units) >= self._max_series:
                    next(self._tallies[DropReason.TOO_MANY_SERIES])
                    return
                counter = self._units.setdefault(key, itertools.count())
            next(counter)
            return
        if not amount > 0:  # negative or NaN (zero is simply nothing to add)
            if amount != 0:
                next(self._tallies[DropReason.INVALID])
            return
        with self._sum_lock:
            sums = self._sums
            if len(sums) >= self._max_series and key not in sums:
                next(self._tallies[DropReason.TOO_MANY_SERIES])
                return
            sums[key] = sums.get(key, 0.0) + amount

    def set_gauge(self, key: SeriesKey, value: Any) -> None:
        """Remember the latest value of a gauge series (coalesced until the next flush)."""
        gauges = self._gauges
        if len(gauges) >= self._max_series and key not in gauges:
            next(self._tallies[DropReason.TOO_MANY_SERIES])
            return
        gauges[key] = value

    def update_health(self, fields: Mapping[str, Any]) -> None:
        """Merge heartbeat fields (coalesced until the next flush); `state` merges per key."""
        if "state" in fields:
            # Per key, not per keyword: two heartbeat(state=...) calls between flushes must
            # not lose the first one's keys (set_next_cycle_time then set_trading_hours_active).
            state = fields["state"]
            fields = {k: v for k, v in fields.items() if k != "state"}
            if isinstance(state, Mapping):
                self._state.update(state)
            else:
                next(self._tallies[DropReason.INVALID])
        self._health.update(fields)

    def count_drop(self, reason: DropReason) -> None:
        """Count one thing dropped on the hot path."""
        next(self._tallies[reason])

    # Reader side: the sender only.

    def counter_deltas(self) -> dict[SeriesKey, float]:
        """What each counter series gained since the last call."""
        deltas: dict[SeriesKey, float] = {}
        seen = self._unit_seen
        for key, counter in list(self._units.items()):
            value = next(counter)  # this read itself advances the count by one
            delta = value - seen.get(key, 0)
            seen[key] = value + 1
            if delta:
                deltas[key] = delta
        with self._sum_lock:
            sums, self._sums = self._sums, {}
        for key, amount in sums.items():
            deltas[key] = deltas.get(key, 0) + amount
        return deltas

    def forget_series(self, key: SeriesKey) -> None:
        """Stop tracking an invalid counter series so it does not hold a series slot."""
        self._units.pop(key, None)
        self._unit_seen.pop(key, None)

    def gauges(self) -> dict[SeriesKey, Any]:
        """Gauge values set since the last call (each key once, latest value)."""
        return _pop_all(self._gauges)

    def health(self) -> dict[str, Any]:
        """Heartbeat fields updated since the last call."""
        fields = _pop_all(self._health)
        state = _pop_all(self._state)
        if state:
            fields["state"] = state
        return fields

    def drops(self) -> dict[DropReason, int]:
        """Hot-path drops counted since the last call, by reason."""
        new: dict[DropReason, int] = {}
        for reason, tally in self._tallies.items():
            value = next(tally)
            count = value - self._tally_seen[reason]
            self._tally_seen[reason] = value + 1
            if count:
                new[reason] = count
        return new


def _pop_all(source: dict[Any, Any]) -> dict[Any, Any]:
    """Move every item out of a dict that other threads keep writing (popitem is atomic)."""
    out: dict[Any, Any] = {}
    while True:
        try:
            key, value = source.popitem()
        except KeyError:
            return out
        out[key] = value  # a key popped twice was written again meanwhile: newer wins


class NullIntake(Intake):
    """`enabled=False`: every record call does nothing and nothing is ever buffered."""

    def __init__(self) -> None:
        super().__init__(capacity=1, batch=1, max_series=1)

    def append(self, item: tuple[Any, ...]) -> None:
        """Discard."""

    def inc(self, key: SeriesKey, amount: float) -> None:
        """Discard."""

    def set_gauge(self, key: SeriesKey, value: Any) -> None:
        """Discard."""

    def update_health(self, fields: Mapping[str, Any]) -> None:
        """Discard."""

    def count_drop(self, reason: DropReason) -> None:
        """Discard."""
