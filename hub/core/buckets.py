"""Per-engine token buckets on messages/s and bytes/s, sans-I/O (`now` is passed in).

A frame is charged whole, once: a batch of 100 messages costs 100 message tokens and its length
in byte tokens, so the cost on the ingest path is a few float operations per frame. A refused
frame spends nothing: an engine that honours the retry hint gets through on its next try. With
both limits off an engine gets `NULL_BUDGET`, whose charge is one call that returns 0.0.
"""

from __future__ import annotations

from hub.settings import Settings

__all__ = ["NULL_BUDGET", "EngineBudget", "NullBudget", "budget_for"]

# A limit that is off: a bucket so deep that nothing an engine sends can empty it (a finite
# number, so that no inf * 0 turns into NaN).
_UNLIMITED = 1e18


class EngineBudget:
    """One engine's message and byte buckets: `charge` a frame, or learn how long to wait."""

    __slots__ = (
        "at",
        "byte_burst",
        "byte_rate",
        "bytes",
        "message_burst",
        "message_rate",
        "messages",
    )

    def __init__(self, settings: Settings, now: float) -> None:
        rate, burst = settings.engine_messages_per_second, settings.engine_message_burst
        self.message_rate = rate if rate > 0 else _UNLIMITED
        self.message_burst = float(burst) if rate > 0 else _UNLIMITED
        rate, burst = settings.engine_bytes_per_second, settings.engine_byte_burst
        self.byte_rate = rate if rate > 0 else _UNLIMITED
        self.byte_burst = float(burst) if rate > 0 else _UNLIMITED
        self.messages = self.message_burst  # tokens: an engine starts with a full burst
        self.bytes = self.byte_burst
        self.at = now

    def charge(self, messages: int, size: int, now: float) -> float:
        """Spend a frame of `messages` and `size` bytes: 0.0 if allowed, else seconds to wait.

        A frame larger than a burst passes when that bucket is full and leaves it in debt, so no
        frame the hub accepts at all can be refused forever.
        """
        self.refill(now)
        tokens, octets = self.messages, self.bytes
        # `tokens >= min(messages, burst)`, without two calls to min() on every frame.
        if (tokens >= messages or tokens >= self.message_burst) and (
            octets >= size or octets >= self.byte_burst
        ):
            self.messages, self.bytes = tokens - messages, octets - size
            return 0.0
        return self.shortfall(messages, size)

    def spend(self, messages: int, size: int) -> None:
        """Take a frame's tokens whatever the buckets hold (after `refill`): debt is repaid first."""
        self.messages -= messages
        self.bytes -= size

    def refill(self, now: float) -> None:
        """Add the tokens earned since the last charge or refill (before `shortfall`)."""
        elapsed = now - self.at
        if elapsed > 0:
            self.at = now
            tokens = self.messages + elapsed * self.message_rate
            self.messages = tokens if tokens < self.message_burst else self.message_burst
            tokens = self.bytes + elapsed * self.byte_rate
            self.bytes = tokens if tokens < self.byte_burst else self.byte_burst

    def shortfall(self, messages: int, size: int) -> float:
        """Seconds until a frame of `messages` and `size` bytes would pass (0.0 if it would now)."""
        short_messages = min(messages, self.message_burst) - self.messages
        short_bytes = min(size, self.byte_burst) - self.bytes
        return max(0.0, short_messages / self.message_rate, short_bytes / self.byte_rate)


class NullBudget(EngineBudget):
    """Both limits off: every frame passes, and nothing is refilled or counted."""

    __slots__ = ()

    def __init__(self) -> None:
        self.message_rate = self.message_burst = self.messages = _UNLIMITED
        self.byte_rate = self.byte_burst = self.bytes = _UNLIMITED
        self.at = 0.0

    def charge(self, messages: int, size: int, now: float) -> float:
        """Always allowed."""
        return 0.0

    def spend(self, messages: int, size: int) -> None:
        """Nothing to take."""

    def refill(self, now: float) -> None:
        """Nothing to refill."""

    def shortfall(self, messages: int, size: int) -> float:
        """Never short."""
        return 0.0


NULL_BUDGET = NullBudget()  # stateless, so one is shared by every engine and connection


def budget_for(settings: Settings, now: float) -> EngineBudget:
    """A fresh engine's buckets under `settings` (`NULL_BUDGET` when both limits are off)."""
    if settings.engine_messages_per_second <= 0 and settings.engine_bytes_per_second <= 0:
        return NULL_BUDGET
    return EngineBudget(settings, now)
