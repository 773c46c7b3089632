"""The login rate limit as a token bucket per client address, driven by `now`."""

from __future__ import annotations

import pytest

from hub.core.ratelimits import RateLimiter

NOW = 1_700_000_000.0


def test_a_burst_up_to_the_limit_then_a_wait() -> None:
    """`per_minute` attempts pass at once; the next is refused with the time until one refills."""
    limiter = RateLimiter(per_minute=6)
    assert [limiter.take("1.2.3.4", NOW) for _ in range(6)] == [0.0] * 6
    assert limiter.take("1.2.3.4", NOW) == pytest.approx(10.0)  # one token per 10 s
    assert limiter.take("1.2.3.4", NOW + 4) == pytest.approx(6.0)  # refusals spend nothing
    assert limiter.take("1.2.3.4", NOW + 10) == 0.0
    assert limiter.take("5.6.7.8", NOW) == 0.0  # per address


def test_the_bucket_refills_but_never_beyond_the_limit() -> None:
    """A long pause refills the bucket to `per_minute`, not more."""
    limiter = RateLimiter(per_minute=2)
    limiter.take("a", NOW)
    limiter.take("a", NOW)
    later = NOW + 3600
    assert [limiter.take("a", later) > 0 for _ in range(3)] == [False, False, True]


def test_zero_turns_the_limit_off() -> None:
    """login_attempts_per_minute = 0 means no limit."""
    limiter = RateLimiter(per_minute=0)
    assert not limiter.enabled
    assert all(limiter.take("a", NOW) == 0.0 for _ in range(100))


def test_the_table_of_addresses_is_bounded() -> None:
    """Past `max_keys`, refilled buckets go first, then the least recently used."""
    limiter = RateLimiter(per_minute=1, max_keys=2)
    limiter.take("a", NOW)
    limiter.take("b", NOW + 30)
    limiter.take("c", NOW + 60)  # full: "a" has refilled, so it makes room
    assert limiter.take("b", NOW + 61) > 0  # still limited: remembered
    assert limiter.take("c", NOW + 61) > 0
    limiter.take("d", NOW + 62)  # nothing refilled: the least recently used ("b") goes
    assert limiter.take("b", NOW + 62) == 0.0
