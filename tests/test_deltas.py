"""Card deltas: whole card, a few values, or nothing yet, decided once per tick (sans-I/O)."""

from __future__ import annotations

from typing import Any

from hub.live.deltas import COALESCE, CardDeltas, Change

T0 = 1_700_000_000.0


def model(index: int = 1, **changes: Any) -> dict[str, Any]:
    """A card model as `card_model` makes it, with `changes` applied."""
    base: dict[str, Any] = {
        "index": index,
        "name": f"e{index}",
        "mode": "PAPER",
        "health": "ok",
        "status": "running",
        "pid": 1,
        "started_at": T0,
        "ended_at": None,
        "connected": True,
        "clock_warn": False,
        "counters_scope": "session",
        "error": None,
        "last_heartbeat": T0,
        "clock_skew": None,
        "loop_tick": 1,
        "loop_rate": None,
        "universe_size": None,
        "open_positions": None,
        "pnl": None,
        "errors_recent": 0,
        "gaps": 0,
        "dropped": 0,
        "counters": [],
        "sparkline": "",
    }
    return {**base, **changes}


def test_the_first_change_is_the_whole_card() -> None:
    """Nothing sent yet: the pages may show anything, so the card goes out whole."""
    deltas = CardDeltas()
    deltas.plan([model()], T0)
    assert deltas.changes == {1: Change.FULL}


def test_a_heartbeat_moving_counters_sends_only_those_values() -> None:
    """Loop tick and heartbeat time changed: just those two fields."""
    deltas = CardDeltas()
    deltas.plan([model()], T0)
    deltas.plan([model(loop_tick=2, last_heartbeat=T0 + 1)], T0 + COALESCE)
    assert deltas.changes == {1: Change.VALUES}
    assert deltas.fields == {1: ("beat", "loop")}


def test_a_health_or_error_change_is_the_whole_card_at_once() -> None:
    """What only a whole card shows goes out on the next tick, never held back."""
    deltas = CardDeltas()
    deltas.plan([model()], T0)
    deltas.plan([model(health="late")], T0 + 0.1)
    assert deltas.changes == {1: Change.FULL}
    error = {"text": "boom", "at": T0, "recovered_at": None}
    deltas.plan([model(health="late", error=error)], T0 + 0.2)
    assert deltas.changes == {1: Change.FULL}


def test_values_are_held_within_the_coalescing_window_then_sent() -> None:
    """A second value change within COALESCE waits (asked for again via `held`), then goes."""
    deltas = CardDeltas()
    deltas.plan([model()], T0)
    deltas.plan([model(loop_tick=2)], T0 + 0.1)
    assert deltas.changes == {1: Change.NONE} and deltas.held() == ["e1"]
    deltas.plan([model(loop_tick=3)], T0 + COALESCE)
    assert deltas.changes == {1: Change.VALUES} and deltas.fields == {1: ("loop",)}
    assert deltas.held() == []


def test_without_a_hold_values_go_out_on_the_next_tick() -> None:
    """A small hub passes hold=0: every value change goes at once."""
    deltas = CardDeltas()
    deltas.plan([model()], T0)
    deltas.plan([model(loop_tick=2)], T0 + 0.1, hold=0.0)
    assert deltas.changes == {1: Change.VALUES}


def test_nothing_visible_changed_sends_nothing() -> None:
    """A dirty mark without a visible change (same values) costs no bytes."""
    deltas = CardDeltas()
    deltas.plan([model()], T0)
    deltas.plan([model()], T0 + 5)
    assert deltas.changes == {1: Change.NONE} and deltas.held() == []


def test_forgotten_engines_are_dropped_from_memory() -> None:
    """Memory is bounded by the engines the hub knows: a forgotten one starts over whole."""
    deltas = CardDeltas()
    deltas.plan([model(1), model(2)], T0)
    deltas.plan([model(2, loop_tick=5)], T0 + 0.1)
    deltas.forget([1])
    assert deltas.held() == []
    deltas.plan([model(2, loop_tick=5)], T0 + 5)
    assert deltas.changes == {2: Change.FULL}


def test_a_once_a_second_engine_is_not_held_for_jitter() -> None:
    """Heartbeats a second apart, read a little early or late, go out on the tick they are read:
    only a change well within COALESCE of the last one waits."""
    deltas = CardDeltas()
    deltas.plan([model()], T0)
    sent = []
    for n, read_at in enumerate((1.08, 1.95, 3.02, 3.9, 5.1), start=2):
        deltas.plan([model(loop_tick=n)], T0 + read_at)
        sent.append(deltas.changes[1])
    assert sent == [Change.VALUES] * 5
    deltas.plan([model(loop_tick=99)], T0 + 5.5)
    assert deltas.changes == {1: Change.NONE} and deltas.held() == ["e1"]
