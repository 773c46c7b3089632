"""Sans-I/O card deltas: whether a changed engine needs its whole card, a few values, or nothing yet.

A heartbeat mostly moves counters (loop tick, positions, the heartbeat time): those go out as
small out-of-band fragments, one element per value, with ids our code derives
(`card-{index}-{field}`). Anything else a card shows (health, status, the error, which blocks
exist) re-renders the whole card. On a big hub, value-only changes of one engine go out at most
once per `COALESCE` seconds (bytes); ages keep ticking in the browser (`data-since`) meanwhile. A
small hub sends them on the next tick (latency): its few cards cost little.

The plan is made once per tick and is the same for every view, so the bytes of one tick are
rendered once and every page that shows an engine gets the same fragments: a page that missed
one is resynced with a snapshot by the fan-out, and values are absolute, never differences.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["CARD_FIELDS", "COALESCE", "ROW_FIELDS", "Change", "CardDeltas"]

COALESCE = 1.0  # seconds between two value-only updates of one card
# ... less this much: an engine heartbeating once per COALESCE whose heartbeat was read a little
# later than the one before (or whose previous one went out on a late tick) is not held back a
# whole fan-out run for it. Holding those doubled heartbeat->page latency under load (scale.py).
SLACK = 0.25

_Model = dict[str, Any]

# Field -> what it shows, read from the card model. Order is the order of the card's rows.
_VALUES: dict[str, Callable[[_Model], object]] = {
    "beat": lambda m: m["last_heartbeat"],
    "skew": lambda m: None if m["clock_skew"] is None else round(m["clock_skew"], 1),
    "loop": lambda m: (m["loop_tick"], m["loop_rate"]),
    "universe": lambda m: m["universe_size"],
    "positions": lambda m: m["open_positions"],
    "pnl": lambda m: m["pnl"],
    "exposure": lambda m: m["pnl"],
    "errors": lambda m: m["errors_recent"],
    "drops": lambda m: (m["gaps"], m["dropped"]),
    "counters": lambda m: tuple(m["counters"]),
    "spark": lambda m: m["sparkline"],
}
CARD_FIELDS = tuple(_VALUES)
ROW_FIELDS = ("beat", "loop", "positions", "errors")  # what a row of the dense list shows


def _shape(m: _Model) -> tuple[object, ...]:
    """What only a whole card can show: a change here re-renders the card."""
    error = m["error"]
    return (
        m["name"],
        m["mode"],
        m["health"],
        m["status"],
        m["pid"],
        m["started_at"],
        m["ended_at"],
        m["connected"],
        m["clock_warn"],
        m["counters_scope"],
        m["pnl"] is None,
        None if error is None else (error["text"], error["at"], error["recovered_at"]),
    )


class Change(enum.Enum):
    """What this tick sends for one changed engine."""

    FULL = "full"  # the whole card (or row)
    VALUES = "values"  # only the fields in `CardDeltas.fields`
    NONE = "none"  # nothing visible changed, or its values wait for the next second


class CardDeltas:
    """Per engine, what the pages were last sent; decides each tick what a change needs."""

    def __init__(self) -> None:
        self._sent: dict[int, tuple[tuple[object, ...], dict[str, object], float]] = {}
        self._held: dict[int, str] = {}  # value changes waiting out COALESCE: index -> name
        self.changes: dict[int, Change] = {}  # this tick's plan, by engine index
        self.fields: dict[int, tuple[str, ...]] = {}  # this tick's changed fields (VALUES)

    def plan(self, models: Iterable[_Model], now: float, hold: float = COALESCE) -> None:
        """Decide this tick's change for each engine whose model is in `models` (changed ones);
        value-only changes of one engine go out at most once per `hold` seconds (less SLACK)."""
        self.changes.clear()
        self.fields.clear()
        for model in models:
            index = model["index"]
            shape, values = _shape(model), {f: read(model) for f, read in _VALUES.items()}
            sent = self._sent.get(index)
            self._held.pop(index, None)
            if sent is None or sent[0] != shape:
                self._sent[index] = (shape, values, now)
                self.changes[index] = Change.FULL
                continue
            changed = tuple(f for f in CARD_FIELDS if values[f] != sent[1][f])
            if not changed:
                self.changes[index] = Change.NONE
            elif now - sent[2] < hold - SLACK:
                self._held[index] = model["name"]  # planned again next tick (`held`)
                self.changes[index] = Change.NONE
            else:
                self._sent[index] = (shape, values, now)
                self.changes[index] = Change.VALUES
                self.fields[index] = changed

    def held(self) -> list[str]:
        """Names of the engines with value changes still waiting to go out."""
        return list(self._held.values())

    def forget(self, known: Iterable[int]) -> None:
        """Drop what was sent for engines the hub no longer knows (bounded by the engines)."""
        keep = set(known)
        for index in [i for i in self._sent if i not in keep]:
            del self._sent[index]
        for index in [i for i in self._held if i not in keep]:
            del self._held[index]
