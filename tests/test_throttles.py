"""LogThrottle: one line per key per interval, counting what it held back, in bounded memory."""

from __future__ import annotations

import pytest

from hub.core.throttles import LogThrottle

T0 = 1_700_000_000.0


def test_one_line_per_key_per_interval_with_the_count_held_back() -> None:
    """The first line is due, repeats within the interval are held and counted on the next line."""
    throttle = LogThrottle(interval=60.0)
    assert throttle.due("10.0.0.1", T0) == 0
    assert throttle.due("10.0.0.1", T0 + 1) is None
    assert throttle.due("10.0.0.1", T0 + 59.9) is None
    assert throttle.due("10.0.0.2", T0 + 2) == 0  # another peer has its own interval
    assert throttle.due("10.0.0.1", T0 + 60) == 2
    assert throttle.due("10.0.0.1", T0 + 61) is None


def test_memory_is_bounded_by_forgetting_the_oldest_keys() -> None:
    """Beyond max_keys, expired keys go first, then the one logged longest ago."""
    throttle = LogThrottle(interval=60.0, max_keys=2)
    throttle.due("a", T0)
    throttle.due("b", T0 + 1)
    throttle.due("c", T0 + 2)  # full: "a" (logged longest ago) is forgotten
    assert throttle.due("a", T0 + 3) == 0  # a fresh key again, so "b" went
    assert throttle.due("c", T0 + 4) is None
    assert throttle.due("b", T0 + 5) == 0
    assert len(throttle._keys) == 2


def test_bad_limits_are_refused() -> None:
    """A negative interval or no room at all is a ValueError that names the limits."""
    with pytest.raises(ValueError, match="max_keys"):
        LogThrottle(max_keys=0)
