"""The hub's own event-loop lag: when the loop was blind, and whether it is behind now.

The I/O shell feeds `observe(delay, now)` with how late a timer woke (the ticker's wake-up delay).
A late wake means every socket waited as long: a heartbeat that sat unread in the socket while the
loop was busy arrived on time. Health rules subtract that blind time (`blind(since, now)`) so the
hub never declares an engine late or stale for time it was not reading it.
"""

from __future__ import annotations

from bisect import bisect_right

__all__ = ["BLIND_AFTER", "HOLD", "LAGGING_AFTER", "NO_LAG", "LoopLag"]

BLIND_AFTER = 0.05  # seconds late before a wake counts as blind time (below: scheduling jitter)
LAGGING_AFTER = 0.5  # seconds late before the hub says it is lagging
HOLD = 5.0  # seconds the hub keeps saying so after its last late wake, so people can see it
WINDOWS = 8192  # blind windows kept (~14 min of a late wake every tick); older ones are forgotten


class LoopLag:
    """Blind windows of the event loop and its current lag; `now` is always passed in."""

    def __init__(
        self, lagging_after: float = LAGGING_AFTER, hold: float = HOLD, windows: int = WINDOWS
    ) -> None:
        self.lagging_after = lagging_after
        self.hold = hold
        self._max = windows
        # Blind windows, oldest first, as three parallel lists so `blind` is one bisect.
        self._starts: list[float] = []
        self._ends: list[float] = []
        self._cum: list[float] = []  # blind seconds up to the end of each window
        self._base = 0.0  # blind seconds in the windows already forgotten
        self.lag = 0.0  # the last observed wake-up delay (seconds)
        self.worst = 0.0  # the largest delay while lagging (what the hub says)
        self._late_at = float("-inf")  # when the last lagging wake was observed

    @property
    def total_blind(self) -> float:
        """Seconds of blind time since the hub started."""
        return self._cum[-1] if self._cum else self._base

    def observe(self, delay: float, now: float) -> None:
        """A timer that should have fired at `now - delay` fired at `now`."""
        delay = max(0.0, delay)
        self.lag = delay
        if delay >= self.lagging_after:
            self.worst = delay if now - self._late_at > self.hold else max(self.worst, delay)
            self._late_at = now
        if delay < BLIND_AFTER:
            return
        start, before = now - delay, self.total_blind
        if self._ends and start <= self._ends[-1]:  # overlaps the last window: extend it
            start = min(start, self._starts.pop())
            self._ends.pop()
            self._cum.pop()
            before = self.total_blind
        self._starts.append(start)
        self._ends.append(now)
        self._cum.append(before + now - start)
        if len(self._ends) > self._max:  # forget the oldest half at once: amortized O(1)
            half = self._max // 2
            self._base = self._cum[half - 1]
            del self._starts[:half], self._ends[:half], self._cum[:half]

    def blind(self, since: float, now: float) -> float:
        """Seconds between `since` and `now` during which the loop was not reading sockets."""
        first = bisect_right(self._ends, since)  # the first window that ends after `since`
        if first == len(self._ends):
            return 0.0
        total = self.total_blind - (self._cum[first - 1] if first else self._base)
        total -= max(0.0, since - self._starts[first])  # only its part after `since`
        total -= max(0.0, self._ends[-1] - now)  # and nothing after `now`
        return max(0.0, total)

    def lagging(self, now: float) -> float | None:
        """The lag to report while the hub is behind (or was within `hold`), else None."""
        if now - self._late_at <= self.hold:
            return self.worst
        return None


class _NoLag(LoopLag):
    """The null monitor: never blind, never lagging (a hub or test that does not measure)."""

    def observe(self, delay: float, now: float) -> None:
        return None


NO_LAG: LoopLag = _NoLag()
