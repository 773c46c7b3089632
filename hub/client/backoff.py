"""Full-jitter exponential backoff between reconnection attempts (sans-I/O: it only computes delays)."""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """Delays drawn uniformly from [0, min(cap, base * 2**attempt)] ("full jitter").

    Full jitter spreads the reconnections of many engines after a hub restart instead of
    having them all retry at the same instants.
    """

    def __init__(
        self, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None
    ) -> None:
        if not 0 < base <= cap:
            raise ValueError(f"backoff needs 0 < base <= cap (got base={base}, cap={cap})")
        self.base = base
        self.cap = cap
        self.attempt = 0
        self._rng = rng or random.Random()

    def ceiling(self) -> float:
        """The largest delay the next attempt may draw."""
        # Clamp the exponent so a very long outage cannot overflow the float.
        return min(self.cap, self.base * 2.0 ** min(self.attempt, 64))

    def next_delay(self) -> float:
        """The delay before the next attempt; each call widens the window up to the cap."""
        delay = self._rng.uniform(0.0, self.ceiling())
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """A connection succeeded: start again from the base window."""
        self.attempt = 0
