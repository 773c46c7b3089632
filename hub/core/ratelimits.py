"""Rate limits, sans-I/O: a token bucket per key (a client address), with `now` passed in."""

from __future__ import annotations

__all__ = ["RateLimiter"]


class RateLimiter:
    """Up to `per_minute` attempts per key, refilled steadily; bursts up to the same number.

    The table of keys is bounded: when it is full, keys whose buckets have refilled (they carry
    no information) are forgotten first, then the least recently used.
    """

    def __init__(self, per_minute: int, max_keys: int = 10_000) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # tokens per second
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._max_keys = max_keys

    @property
    def enabled(self) -> bool:
        """Whether there is a limit at all (0 attempts per minute turns it off)."""
        return self.capacity > 0

    def take(self, key: str, now: float) -> float:
        """Spend one attempt for `key` at `now`: 0.0 when allowed, else seconds until the next one is.

        A refused attempt spends nothing, so hammering does not push the next chance further away.
        """
        if not self.enabled:
            return 0.0
        tokens = self._tokens(key, now)
        self._buckets.pop(key, None)  # re-inserted last: the dict's order is recency
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate
        if len(self._buckets) >= self._max_keys:
            self._evict(now)
        self._buckets[key] = (tokens - 1.0, now)
        return 0.0

    def _tokens(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (self.capacity, now))
        return min(self.capacity, tokens + max(0.0, now - at) * self.rate)

    def _evict(self, now: float) -> None:
        """Make room: drop full buckets, then the oldest until there is space for one more."""
        for key in [k for k in self._buckets if self._tokens(k, now) >= self.capacity]:
            del self._buckets[key]
        while len(self._buckets) >= self._max_keys:
            del self._buckets[next(iter(self._buckets))]
