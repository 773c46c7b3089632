"""Profit and loss as engines report it (heartbeat `state["pnl"]`), and the totals per mode.

The convention (docs/protocol.md): `state = {"pnl": {"realized": 1200.5, "unrealized": -80.0,
"exposure": 250000.0, "currency": "INR"}}`, every key optional. A report that breaks it is
ignored rather than guessed at, so a card never shows a number the engine did not mean.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_TOTALS", "Pnl", "PnlTotal", "totals"]

MAX_TOTALS = 8  # (mode, currency) groups in the top bar; more engines than that are summarised
_CURRENCY = re.compile(r"[A-Za-z0-9]{1,8}")
_LIMIT = 1e15  # beyond this a float has no cents left: a unit mistake, not an amount


def _amount(value: Any) -> float | None:
    """A finite, plausible number, or None (bools are not amounts)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) and abs(number) < _LIMIT else None


@dataclass(frozen=True, slots=True)
class Pnl:
    """One engine's last reported P&L and exposure (None: that part was not reported)."""

    realized: float | None
    unrealized: float | None
    exposure: float | None
    currency: str  # "" when the engine named none

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Pnl | None:
        """The `pnl` entry of an engine's state, or None if absent or not in the convention."""
        report = state.get("pnl")
        if not isinstance(report, Mapping):
            return None
        currency = report.get("currency") or ""
        if not isinstance(currency, str) or (currency and not _CURRENCY.fullmatch(currency)):
            return None
        parts = [report.get(key) for key in ("realized", "unrealized", "exposure")]
        amounts = [_amount(part) for part in parts]
        if any(a is None and p is not None for a, p in zip(amounts, parts, strict=True)):
            return None  # a present but broken number: show nothing rather than a wrong total
        if all(a is None for a in amounts):
            return None
        return cls(amounts[0], amounts[1], amounts[2], currency.upper())

    @property
    def total(self) -> float | None:
        """Realized plus unrealized (None when neither was reported)."""
        if self.realized is None and self.unrealized is None:
            return None
        return (self.realized or 0.0) + (self.unrealized or 0.0)


@dataclass(slots=True)
class PnlTotal:
    """The P&L of every engine of one mode in one currency (never mixing either)."""

    mode: str
    currency: str
    total: float = 0.0
    exposure: float = 0.0
    engines: int = 0


def totals(reports: Iterable[tuple[str, Pnl]]) -> tuple[list[PnlTotal], int]:
    """Totals per (mode, currency), live first; also how many groups did not fit MAX_TOTALS."""
    groups: dict[tuple[str, str], PnlTotal] = {}
    for mode, pnl in reports:
        key = (mode.upper(), pnl.currency)
        group = groups.get(key) or groups.setdefault(key, PnlTotal(*key))
        group.total += pnl.total or 0.0
        group.exposure += pnl.exposure or 0.0
        group.engines += 1
    ordered = sorted(groups.values(), key=lambda g: (g.mode != "LIVE", g.mode, g.currency))
    return ordered[:MAX_TOTALS], max(0, len(ordered) - MAX_TOTALS)
