"""EngineBudget: per-engine token buckets on messages and bytes, with an injected clock."""

from __future__ import annotations

import pytest

from hub.core.buckets import NULL_BUDGET, EngineBudget, budget_for
from hub.settings import Settings, SettingsError

T0 = 1_700_000_000.0


def budget(**overrides: float) -> EngineBudget:
    """A budget of 100 messages/s (burst 200) and 1000 bytes/s (burst 5000) unless overridden."""
    values: dict[str, float] = {
        "engine_messages_per_second": 100,
        "engine_message_burst": 200,
        "engine_bytes_per_second": 1000,
        "engine_byte_burst": 5000,
        **overrides,
    }
    return EngineBudget(Settings(**values), T0)  # type: ignore[arg-type]


def test_a_full_burst_passes_then_the_next_frame_waits() -> None:
    """A new engine may send its burst at once; the next frame waits for its tokens to refill."""
    b = budget()
    assert b.charge(200, 100, T0) == 0.0
    assert b.charge(10, 10, T0) == pytest.approx(0.1)  # 10 messages at 100/s


def test_a_refused_frame_spends_nothing() -> None:
    """Asking again and again does not push the next chance further away."""
    b = budget()
    b.charge(200, 100, T0)
    for _ in range(5):
        assert b.charge(50, 10, T0 + 0.1) == pytest.approx(0.4)
    assert b.charge(50, 10, T0 + 0.5) == 0.0


def test_tokens_refill_at_the_rate_up_to_the_burst() -> None:
    """An idle engine earns its rate back, never more than one burst."""
    b = budget()
    b.charge(200, 100, T0)
    assert b.charge(100, 10, T0 + 1.0) == 0.0
    assert b.charge(1, 1, T0 + 1.0) == pytest.approx(0.01)
    assert b.charge(200, 10, T0 + 3600) == 0.0
    assert b.charge(1, 1, T0 + 3600) > 0


def test_bytes_limit_a_frame_of_few_large_messages() -> None:
    """The byte bucket refuses what the message bucket would let through."""
    b = budget()
    assert b.charge(1, 5000, T0) == 0.0
    assert b.charge(1, 500, T0) == pytest.approx(0.5)  # 500 bytes at 1000/s


def test_a_frame_larger_than_the_burst_passes_on_a_full_bucket() -> None:
    """A frame bigger than a burst is never refused forever: a full bucket takes it into debt."""
    b = budget()
    assert b.charge(500, 10, T0) == 0.0
    assert b.charge(1, 1, T0) == pytest.approx(3.01)  # 300 in debt plus one message


def test_zero_turns_a_limit_off() -> None:
    """A rate of 0 means no limit on that dimension."""
    b = budget(engine_messages_per_second=0, engine_bytes_per_second=0)
    for _ in range(100):
        assert b.charge(10**6, 10**9, T0) == 0.0


def test_a_clock_going_backwards_refills_nothing() -> None:
    """A `now` earlier than the last one neither refills nor breaks the bucket."""
    b = budget()
    b.charge(200, 10, T0)
    assert b.charge(1, 1, T0 - 100) > 0


def test_a_burst_below_one_is_refused_while_a_rate_is_set() -> None:
    """A limit that could refuse every frame is caught at startup, naming the setting."""
    with pytest.raises(SettingsError, match="engine_message_burst"):
        Settings(engine_message_burst=0)
    Settings(engine_message_burst=0, engine_messages_per_second=0)


def test_limits_off_give_the_null_budget_and_one_limit_on_a_real_one() -> None:
    """Both limits off: the shared null budget passes anything; one limit on: real buckets."""
    off = Settings(engine_messages_per_second=0, engine_bytes_per_second=0)
    assert budget_for(off, 0.0) is NULL_BUDGET
    assert NULL_BUDGET.charge(10**9, 10**12, 0.0) == 0.0 and NULL_BUDGET.shortfall(10**9, 1) == 0.0
    bytes_only = budget_for(Settings(engine_messages_per_second=0, engine_byte_burst=100), 0.0)
    assert bytes_only is not NULL_BUDGET
    assert bytes_only.charge(10**6, 100, 0.0) == 0.0 and bytes_only.charge(1, 1, 0.0) > 0
