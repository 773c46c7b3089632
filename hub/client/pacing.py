"""Pacing below the hub's per-engine rate limit once it said `rate_limited`, sans-I/O.

Without pacing, a client on hold resends its whole backlog when the hold ends: the first frame
passes, every later one is refused again, and the engine gets a small fraction of its limit.
With it, frames leave at a little under the limits the hub named, so its bucket refills faster
than the client spends it and nothing more is refused. `now` is passed in (the loop's clock).
"""

from __future__ import annotations

__all__ = ["NO_PACING", "NoPacing", "Pacer"]

# Of the hub's rates: its bucket gains a tenth of the limit every second, which absorbs the
# jitter of frames that reach the hub closer together than they were sent.
PACE = 0.9
_OFF = 1e18  # the rate of a limit that is off: finite, so that no inf - inf turns into NaN


class Pacer:
    """Spend each frame sent; `delay` says how long the next one must wait (a bucket in debt)."""

    __slots__ = ("at", "byte_rate", "bytes", "credit", "message_rate", "messages")

    def __init__(
        self, messages_per_second: float, bytes_per_second: float, start: float, credit: float
    ) -> None:
        """Pace from `start` (when the hub's hold ends); `credit`: seconds of rate kept while idle."""
        self.message_rate = messages_per_second * PACE if messages_per_second > 0 else _OFF
        self.byte_rate = bytes_per_second * PACE if bytes_per_second > 0 else _OFF
        self.messages = self.bytes = 0.0  # the hub's bucket was short at the refusal: start empty
        self.at = start
        self.credit = credit  # a pump that wakes late may catch up this much, no more

    def delay(self, now: float) -> float:
        """Seconds until the next frame may be sent (0.0: now)."""
        self._refill(now)
        return max(
            0.0, self.at - now, -self.messages / self.message_rate, -self.bytes / self.byte_rate
        )

    def spend(self, messages: int, size: int, now: float) -> None:
        """A frame of `messages` and `size` bytes was sent: the next one waits for its tokens."""
        self._refill(now)
        self.messages -= messages
        self.bytes -= size

    def _refill(self, now: float) -> None:
        elapsed = now - self.at
        if elapsed > 0:
            self.at = now
            rate, credit = self.message_rate, self.credit
            self.messages = min(self.messages + elapsed * rate, rate * credit)
            rate = self.byte_rate
            self.bytes = min(self.bytes + elapsed * rate, rate * credit)


class NoPacing(Pacer):
    """Not rate limited (or caught up since): frames leave as fast as the socket takes them."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(0.0, 0.0, 0.0, 0.0)

    def delay(self, now: float) -> float:
        """Never wait."""
        return 0.0

    def spend(self, messages: int, size: int, now: float) -> None:
        """Nothing to count."""


NO_PACING = NoPacing()  # stateless: shared by every sender
