"""P&L reports read from heartbeat state, and totals that never mix modes or currencies."""

from __future__ import annotations

from typing import Any

import pytest

from hub.core.pnl import MAX_TOTALS, Pnl, totals


def test_a_full_report_is_read_and_totalled() -> None:
    """realized + unrealized is the total; the currency is upper-cased."""
    pnl = Pnl.from_state(
        {"pnl": {"realized": 100, "unrealized": -20.5, "exposure": 5000.0, "currency": "inr"}}
    )
    assert pnl == Pnl(100.0, -20.5, 5000.0, "INR")
    assert pnl.total == 79.5


def test_parts_are_optional() -> None:
    """A report of exposure alone has no total; one of realized alone totals it."""
    assert Pnl.from_state({"pnl": {"exposure": 10}}) == Pnl(None, None, 10.0, "")
    assert Pnl.from_state({"pnl": {"exposure": 10}}).total is None  # type: ignore[union-attr]
    assert Pnl.from_state({"pnl": {"realized": 3}}).total == 3.0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "state",
    [
        {},
        {"pnl": 12.5},  # a bare number is not the convention
        {"pnl": {}},
        {"pnl": {"realized": "100"}},
        {"pnl": {"realized": True}},
        {"pnl": {"realized": 1e300}},
        {"pnl": {"realized": float("nan")}},
        {"pnl": {"realized": 1, "unrealized": "x"}},  # one broken part spoils the report
        {"pnl": {"realized": 1, "currency": "<b>"}},
        {"pnl": {"realized": 1, "currency": "US DOLLARS"}},
        {"pnl": {"realized": 1, "currency": 5}},
    ],
)
def test_a_report_outside_the_convention_is_ignored(state: dict[str, Any]) -> None:
    """No P&L rather than a guessed one."""
    assert Pnl.from_state(state) is None


def test_totals_keep_modes_and_currencies_apart() -> None:
    """Paper and live are never summed together, nor INR and USD; live comes first."""
    reports = [
        ("paper", Pnl(100.0, 10.0, 1000.0, "INR")),
        ("live", Pnl(-50.0, None, 500.0, "INR")),
        ("paper", Pnl(5.0, 5.0, 200.0, "INR")),
        ("paper", Pnl(7.0, None, None, "USD")),
    ]
    groups, more = totals(reports)
    assert more == 0
    assert [(g.mode, g.currency, g.total, g.exposure, g.engines) for g in groups] == [
        ("LIVE", "INR", -50.0, 500.0, 1),
        ("PAPER", "INR", 120.0, 1200.0, 2),
        ("PAPER", "USD", 7.0, 0.0, 1),
    ]


def test_totals_are_bounded() -> None:
    """More (mode, currency) groups than the top bar holds are counted, not shown."""
    reports = [("paper", Pnl(1.0, None, None, f"C{i}")) for i in range(MAX_TOTALS + 3)]
    groups, more = totals(reports)
    assert (len(groups), more) == (MAX_TOTALS, 3)
