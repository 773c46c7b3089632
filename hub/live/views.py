"""Sans-I/O live views: which fragments a change dirtied, and rendering each one once per tick.

A *view* is what one page shows: the overview, one engine's page, or one embedded card. Every
fragment is one partial template with one root element whose id our code derives (never from
engine-supplied text); the same partial renders in the full page, the `hx-get` fragment and the
WebSocket push (then with `hx-swap-oob`).
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jinja2

from hub.core.engines import EngineRecord
from hub.core.records import EventRecord
from hub.core.state import HubState
from hub.core.stats import Dirty, Topic
from hub.live.cards import card_model, hub_model
from hub.live.formats import read_state
from hub.live.orders import OrderRow, fold_orders

__all__ = ["OVERVIEW", "FragmentKey", "Part", "ViewKey", "ViewKind", "Views"]


class ViewKind(enum.Enum):
    """What a page shows."""

    OVERVIEW = "overview"
    ENGINE = "engine"  # one engine's page
    EMBED = "embed"  # one engine's card, embedded elsewhere


@dataclass(frozen=True, slots=True)
class ViewKey:
    """One view: its kind and, for one engine, the engine's hub-assigned index."""

    kind: ViewKind
    index: int = 0


class Part(enum.Enum):
    """The fragments pages are made of; each one is a partial template."""

    HUB = "hub"  # the status line
    CARDS = "cards"  # every card (the overview's container)
    SIGNALS = "signals"
    ORDERS = "orders"
    ERRORS = "errors"
    LOGS = "logs"  # the overview's log tail
    CARD = "card"  # one engine's card
    STATE = "state"
    METRICS = "metrics"
    ELOGS = "elogs"  # one engine's log tail
    POSITIONS = "positions"
    DECISIONS = "decisions"
    CYCLES = "cycles"
    EERRORS = "eerrors"  # one engine's errors
    ESIGNALS = "esignals"  # one engine's signals
    EORDERS = "eorders"  # one engine's orders, one row per order id


@dataclass(frozen=True, slots=True)
class FragmentKey:
    """One fragment: a part and, for the parts of one engine, the engine's index."""

    part: Part
    index: int = 0


OVERVIEW = ViewKey(ViewKind.OVERVIEW)
TABLE_ROWS = 25  # a panel shows about 20 rows; more only costs bytes on every push
SECTION_ROWS = 20
LOG_ROWS = 50  # overview log tail
ENGINE_LOG_ROWS = 100
ORDER_SCAN = 120  # order events folded per render: a few per order, and decoding costs

# Overview tables: part -> event type.
_TABLES = {Part.SIGNALS: "signal_event", Part.ORDERS: "order_event", Part.ERRORS: "error"}
# Engine page event sections: part -> event type.
_SECTIONS = {
    Part.ESIGNALS: "signal_event",
    Part.EORDERS: "order_event",
    Part.POSITIONS: "position_event",
    Part.DECISIONS: "decision_trace",
    Part.CYCLES: "cycle",
    Part.EERRORS: "error",
}
_OVERVIEW_PARTS = [FragmentKey(part) for part in (Part.HUB, Part.CARDS, *_TABLES, Part.LOGS)]


class Views:
    """Renders fragments from the hub state; takes `now`, reads no clock, does no I/O."""

    def __init__(self, env: jinja2.Environment, state: HubState) -> None:
        assert env.autoescape is True, "fragments must render with autoescape on"
        self.env = env
        self.state = state
        self.store_problem: str | None = None  # set by the runtime when the history store fails

    # -- lookups ---------------------------------------------------------------------------

    def engine_by_index(self, index: int) -> EngineRecord | None:
        """The engine with hub-assigned `index`, if the hub still knows it."""
        return self.state.by_index.get(index)

    def _engines(self) -> list[EngineRecord]:
        return sorted(self.state.engines.values(), key=lambda e: e.name)

    # -- which fragments ---------------------------------------------------------------------

    def names(self, view: ViewKey) -> list[FragmentKey]:
        """Every fragment of `view` (its snapshot)."""
        kind, index = view.kind, view.index
        if kind is ViewKind.OVERVIEW:
            return list(_OVERVIEW_PARTS)
        if kind is ViewKind.ENGINE:
            parts = (Part.CARD, Part.STATE, Part.METRICS, Part.ELOGS, *_SECTIONS)
            return [FragmentKey(part, index) for part in parts]
        return [FragmentKey(Part.CARD, index)]

    def dirtied(self, view: ViewKey, dirty: Iterable[Dirty]) -> list[FragmentKey]:
        """Fragments of `view` that the dirty marks touched, in snapshot order."""
        kind, index = view.kind, view.index
        touched: set[FragmentKey] = set()
        if kind is ViewKind.OVERVIEW:
            for topic, name in dirty:
                if topic is Topic.ENGINES:
                    touched.update((FragmentKey(Part.CARDS), FragmentKey(Part.HUB)))
                elif topic is Topic.ENGINE:
                    record = self.state.engines.get(name)
                    if record is not None:
                        touched.add(FragmentKey(Part.CARD, record.index))
                elif topic is Topic.EVENTS:
                    touched.update(FragmentKey(p) for p, t in _TABLES.items() if t == name)
                elif topic is Topic.LOGS:
                    touched.add(FragmentKey(Part.LOGS))
                elif topic is Topic.HUB:
                    touched.add(FragmentKey(Part.HUB))
            if FragmentKey(Part.CARDS) in touched:  # the container re-renders every card
                touched = {key for key in touched if key.part is not Part.CARD}
        else:
            engine = self.engine_by_index(index)
            page = kind is ViewKind.ENGINE
            for topic, name in dirty:
                if engine is None:
                    if topic is Topic.ENGINES:  # the engine was forgotten: show it "gone"
                        touched.update(self.names(view))
                elif topic is Topic.ENGINE and name == engine.name:
                    touched.add(FragmentKey(Part.CARD, index))
                    if page:
                        touched.add(FragmentKey(Part.STATE, index))
                elif not page:
                    continue
                elif topic is Topic.EVENTS:
                    touched.update(FragmentKey(p, index) for p, t in _SECTIONS.items() if t == name)
                elif topic is Topic.LOGS and name == engine.name:
                    touched.add(FragmentKey(Part.ELOGS, index))
                elif topic is Topic.METRICS and name == engine.name:
                    touched.add(FragmentKey(Part.METRICS, index))
        order = {key: i for i, key in enumerate(self.names(view))}
        return sorted(touched, key=lambda key: order.get(key, len(order)))

    # -- rendering ---------------------------------------------------------------------------

    def render(self, key: FragmentKey, now: float, oob: bool) -> str:
        """One fragment; an unknown engine renders its "gone" placeholder."""
        partial = self.env.get_template(f"partials/_{_TEMPLATE[key.part]}.html")
        return partial.render(self.context(key, now), oob=oob)

    def context(self, key: FragmentKey, now: float) -> dict[str, Any]:
        """Template variables of fragment `key` (also used to render full pages)."""
        part, index = key.part, key.index
        state = self.state
        if part is Part.HUB:
            return {"hub": self.hub_model(now)}
        if part is Part.CARDS:
            return {"cards": [self.card_model(e, now) for e in self._engines()]}
        if part is Part.ORDERS:
            orders = fold_orders(state.rings.recent(ORDER_SCAN, "order_event"), TABLE_ROWS)
            return {"table": part.value, "rows": self._order_rows(orders), "where": self._where()}
        if part in _TABLES:
            rows = _rows(state.rings.recent(TABLE_ROWS, _TABLES[part]))
            return {"table": part.value, "rows": rows, "where": self._where()}
        if part is Part.LOGS:
            lines = self._all_logs(LOG_ROWS)
            return {"dom_id": "logs", "lines": lines, "show_engine": True, "where": self._where()}
        engine = self.engine_by_index(index)
        if part is Part.CARD:
            return {"card": self.card_model(engine, now) if engine else None, "index": index}
        base: dict[str, Any] = {"index": index, "engine": engine}
        if engine is None:  # forgotten engine: empty sections keep their ids
            empty: dict[str, Any] = {
                "rows": [],
                "lines": [],
                "items": [],
                "metrics": None,
                "show_engine": False,
            }
            return {**base, **empty, "section": part.value, "dom_id": f"elogs-{index}"}
        if part is Part.STATE:
            return {**base, "items": read_state(engine.state, now)}
        if part is Part.METRICS:
            return {**base, "metrics": state.metrics.snapshot(engine.name)}
        if part is Part.ELOGS:
            lines = state.logs.tail(engine.name, ENGINE_LOG_ROWS)
            return {**base, "dom_id": f"elogs-{index}", "lines": lines, "show_engine": False}
        if part is Part.EORDERS:
            recent = state.rings.recent(ORDER_SCAN, "order_event", engine.name)
            rows = self._order_rows(fold_orders(recent, SECTION_ROWS))
        else:
            rows = _rows(state.rings.recent(SECTION_ROWS, _SECTIONS[part], engine.name))
        return {**base, "section": part.value, "rows": rows}

    def frame(self, keys: Iterable[FragmentKey], now: float, cache: dict[FragmentKey, str]) -> str:
        """One WebSocket frame carrying `keys` as out-of-band swaps; `cache` spans one tick."""
        parts = []
        for key in keys:
            html = cache.get(key)
            if html is None:
                # ASCII only (character references): the server encodes each frame once per
                # browser, and pure-ASCII text encodes ~30x faster than text with a few "·".
                html = self.render(key, now, oob=True)
                html = cache[key] = html.encode("ascii", "xmlcharrefreplace").decode("ascii")
            parts.append(html)
        return "".join(parts)

    # -- models ------------------------------------------------------------------------------

    def card_model(self, engine: EngineRecord, now: float) -> dict[str, Any]:
        """Everything a card shows, computed by our code (engine text stays text)."""
        return card_model(self.state, engine, now)

    def hub_model(self, now: float) -> dict[str, Any]:
        """Hub status line: engines by health, P&L per mode and currency, events per second."""
        return hub_model(self.state, now, self.store_problem)

    def _where(self) -> dict[str, tuple[int, str]]:
        """Engine name -> (hub index, "live" or "paper"): what filterable rows carry as data."""
        return {
            e.name: (e.index, "live" if e.mode.lower() == "live" else "paper")
            for e in self.state.engines.values()
        }

    def _order_rows(self, orders: list[OrderRow]) -> list[dict[str, Any]]:
        return [{"timestamp": o.last_ts, "engine": o.engine, "order": o} for o in orders]

    def _all_logs(self, limit: int) -> list[Any]:
        tails = [reversed(tail) for tail in self.state.logs.tails.values()]
        newest = heapq.merge(*tails, key=lambda r: r.id, reverse=True)
        lines = [line for _, line in zip(range(limit), newest, strict=False)]
        lines.reverse()
        return lines


def _rows(records: list[EventRecord]) -> list[dict[str, Any]]:
    """Table rows: the payload is decoded here, only for the rows a page shows."""
    return [
        {"timestamp": r.ts, "engine": r.engine, "seq": r.seq, "payload": r.data()} for r in records
    ]


_TEMPLATE = {
    Part.CARD: "card",
    Part.CARDS: "cards",
    Part.SIGNALS: "events_table",
    Part.ORDERS: "events_table",
    Part.ERRORS: "events_table",
    Part.POSITIONS: "section",
    Part.DECISIONS: "section",
    Part.CYCLES: "section",
    Part.EERRORS: "section",
    Part.ESIGNALS: "section",
    Part.EORDERS: "section",
    Part.LOGS: "logs",
    Part.ELOGS: "logs",
    Part.STATE: "state",
    Part.METRICS: "metrics",
    Part.HUB: "hub_status",
}
