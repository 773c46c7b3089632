"""The client's pacing below the hub's rate limit (sans-I/O, `now` passed in)."""

from __future__ import annotations

import pytest

from hub.client.pacing import NO_PACING, PACE, Pacer


def test_nothing_goes_before_the_hold_ends_then_frames_leave_below_the_limit() -> None:
    """From the hold's end, each frame's messages wait for tokens at 0.9x the hub's rate."""
    pacer = Pacer(100.0, 0.0, start=10.0, credit=0.1)
    assert pacer.delay(9.5) == pytest.approx(0.5)
    assert pacer.delay(10.0) == 0.0
    pacer.spend(45, 1000, 10.0)
    assert pacer.delay(10.0) == pytest.approx(45 / (100 * PACE))
    assert pacer.delay(10.0 + 45 / (100 * PACE)) == 0.0


def test_bytes_pace_too_and_the_slower_limit_decides() -> None:
    """A frame waits for whichever limit, messages or bytes, it used up more of."""
    pacer = Pacer(1000.0, 10_000.0, start=0.0, credit=0.1)
    pacer.spend(1, 9000, 0.0)
    assert pacer.delay(0.0) == pytest.approx(9000 / (10_000 * PACE))


def test_idle_time_earns_only_the_credit() -> None:
    """A pump that wakes late catches up `credit` seconds of rate, never a burst the hub lacks."""
    pacer = Pacer(100.0, 0.0, start=0.0, credit=0.1)
    pacer.spend(50, 0, 100.0)  # after 100 s idle: at most 9 tokens saved, so in debt by 41
    assert pacer.delay(100.0) == pytest.approx(41 / (100 * PACE))


def test_no_pacing_never_waits() -> None:
    """Before any rate_limited (or once caught up) frames leave at once."""
    NO_PACING.spend(10**9, 10**12, 0.0)
    assert NO_PACING.delay(0.0) == 0.0
