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

from hub.core.chains import ChainIndex
from hub.core.engines import EngineRecord
from hub.core.records import EventRecord
from hub.core.state import HubState
from hub.core.stats import Dirty, Topic
from hub.live.cards import card_model, hub_model
from hub.live.deltas import COALESCE, ROW_FIELDS, CardDeltas, Change
from hub.live.formats import read_state
from hub.live.listing import CARD_LIMIT, EVERY_ENGINE, ListFilter, Listing, ListOrder, listing
from hub.live.orders import OrderRow, fold_orders

__all__ = ["OVERVIEW", "FragmentKey", "Part", "ViewKey", "ViewKind", "Views"]


class ViewKind(enum.Enum):
    """What a page shows."""

    OVERVIEW = "overview"
    ENGINE = "engine"  # one engine's page
    EMBED = "embed"  # one engine's card, embedded elsewhere


@dataclass(frozen=True, slots=True)
class ViewKey:
    """One view: its kind and, for one engine, the engine's hub-assigned index; for the
    overview of a big hub, the page of its dense list, the list's order and its filter."""

    kind: ViewKind
    index: int = 0
    page: int = 1
    order: ListOrder = ListOrder.HEALTH
    only: ListFilter = EVERY_ENGINE


class Part(enum.Enum):
    """The fragments pages are made of; each one is a partial template."""

    HUB = "hub"  # the status line
    CARDS = "cards"  # every card (the overview's container)
    SIGNALS = "signals"
    ORDERS = "orders"
    ERRORS = "errors"
    LOGS = "logs"  # the overview's log tail
    CARD = "card"  # one engine's card
    VALUES = "values"  # a few values of one engine's card (a heartbeat's counters)
    ROW = "row"  # a few values of one engine's row in the dense list
    STATE = "state"
    METRICS = "metrics"
    ELOGS = "elogs"  # one engine's log tail
    POSITIONS = "positions"
    DECISIONS = "decisions"
    CYCLES = "cycles"
    EERRORS = "eerrors"  # one engine's errors
    ESIGNALS = "esignals"  # one engine's signals
    EORDERS = "eorders"  # one engine's orders, one row per order id
    ALERTS = "alerts"  # tells the page to fetch its alerts panel again (it depends on the viewer)
    CHARTS = "charts"  # tells an engine page to fetch its charts again (they depend on its range)


@dataclass(frozen=True, slots=True)
class FragmentKey:
    """One fragment: a part and, for the parts of one engine, the engine's index; for the
    engine list, its page, order and filter."""

    part: Part
    index: int = 0
    page: int = 1
    order: ListOrder = ListOrder.HEALTH
    only: ListFilter = EVERY_ENGINE


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


_Page = tuple[int, ListOrder, ListFilter]  # one page of the dense list: page, order, filter


class Views:
    """Renders fragments from the hub state; takes `now`, reads no clock, does no I/O."""

    def __init__(self, env: jinja2.Environment, state: HubState) -> None:
        assert env.autoescape is True, "fragments must render with autoescape on"
        self.env = env
        self.state = state
        self.store_problem: str | None = None  # set by the runtime when the history store fails
        self.cluster_note: str | None = None  # set by the runtime: cluster degraded, or a gap
        self.deltas = CardDeltas()
        self.card_limit = CARD_LIMIT  # more engines than this: the overview is the engine list
        self._tick_at: float | None = None  # the tick the caches below belong to
        self._models: dict[int, dict[str, Any]] = {}  # card models of this tick
        self._listings: dict[_Page, Listing] = {}  # list pages of this tick
        self._shown: dict[_Page, tuple[int, ...]] = {}  # rows each page was sent
        self._planned: object = None  # the dirty marks this tick's plan was made from

    # -- lookups ---------------------------------------------------------------------------

    def engine_by_index(self, index: int) -> EngineRecord | None:
        """The engine with hub-assigned `index`, if the hub still knows it."""
        return self.state.by_index.get(index)

    def _engines(self) -> list[EngineRecord]:
        return sorted(self.state.engines.values(), key=lambda e: e.name)

    def listed(
        self, page: int, order: ListOrder, now: float | None = None, only: ListFilter = EVERY_ENGINE
    ) -> Listing:
        """The engines one page of the dense list shows (computed once per tick)."""
        self._start_tick(now)
        key = (page, order, only)
        shown = self._listings.get(key) if now is not None else None
        if shown is None:
            shown = self._listings[key] = listing(self.state.engines, order, page, only)
        return shown

    def _start_tick(self, now: float | None) -> None:
        if now is None or now != self._tick_at:
            self._tick_at = now
            self._models.clear()
            self._listings.clear()

    # -- which fragments ---------------------------------------------------------------------

    def names(self, view: ViewKey) -> list[FragmentKey]:
        """Every fragment of `view` (its snapshot)."""
        kind, index = view.kind, view.index
        if kind is ViewKind.OVERVIEW:
            cards = FragmentKey(Part.CARDS, 0, view.page, view.order, view.only)
            return [
                FragmentKey(Part.HUB),
                cards,
                *map(FragmentKey, _TABLES),
                FragmentKey(Part.LOGS),
                FragmentKey(Part.ALERTS),
            ]
        if kind is ViewKind.ENGINE:
            parts = (Part.CARD, Part.STATE, Part.METRICS, Part.ELOGS, *_SECTIONS)
            # The hub status too: a problem on another engine is never hidden (top bar, tab title).
            return [
                FragmentKey(Part.HUB),
                *(FragmentKey(part, index) for part in parts),
                FragmentKey(Part.ALERTS, index),
            ]
        return [FragmentKey(Part.CARD, index)]

    def plan(self, dirty: Iterable[Dirty], now: float) -> dict[int, Change]:
        """What this tick sends for each changed engine (decided once per tick, for every view)."""
        if now != self._tick_at or self._planned is not dirty:
            self._start_tick(now)
            self._planned = dirty
            names = {name for topic, name in dirty if topic is Topic.ENGINE}
            names.update(self.deltas.held())
            engines = [e for e in map(self.state.engines.get, names) if e is not None]
            if any(topic is Topic.ENGINES for topic, _ in dirty):
                self.deltas.forget(e.index for e in self.state.engines.values())
            big = len(self.state.engines) > self.card_limit
            hold = COALESCE if big else 0.0  # bytes on a big hub, latency on a small one
            self.deltas.plan([self._model(e, now) for e in engines], now, hold)
        return self.deltas.changes

    def dirtied(
        self, view: ViewKey, dirty: Iterable[Dirty], now: float | None = None
    ) -> list[FragmentKey]:
        """Fragments of `view` that the dirty marks touched, in snapshot order.

        With `now` (the ticker), a changed engine's card is planned by `CardDeltas`: the whole
        card, a few values, or nothing yet; without, every changed card is sent whole.
        """
        kind, index = view.kind, view.index
        if now is None:
            changes = {
                e.index: Change.FULL
                for topic, name in dirty
                if topic is Topic.ENGINE and (e := self.state.engines.get(name)) is not None
            }
        else:
            changes = self.plan(dirty, now)
        touched: set[FragmentKey] = set()
        if kind is ViewKind.OVERVIEW:
            touched = self._overview_dirtied(view, dirty, changes, now)
        else:
            engine = self.engine_by_index(index)
            page = kind is ViewKind.ENGINE
            change = changes.get(index, Change.NONE)
            if engine is not None and change is not Change.NONE:
                part = Part.CARD if change is Change.FULL else Part.VALUES
                touched.add(FragmentKey(part, index))
            for topic, name in dirty:
                if page and topic in (Topic.ENGINES, Topic.HUB):  # counts, tab title
                    touched.add(FragmentKey(Part.HUB))
                if page and topic is Topic.ALERTS:
                    touched.add(FragmentKey(Part.ALERTS, index))
                if page and topic is Topic.SERIES and engine is not None and name == engine.name:
                    touched.add(FragmentKey(Part.CHARTS, index))  # not in the snapshot: the
                    # page rendered its charts itself, and the next nudge follows within a step
                if engine is None:
                    if topic is Topic.ENGINES:  # the engine was forgotten: show it "gone"
                        touched.update(self.names(view))
                elif topic is Topic.ENGINE and name == engine.name:
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
        return sorted(touched, key=lambda key: (order.get(key, len(order)), key.index))

    def _overview_dirtied(
        self, view: ViewKey, dirty: Iterable[Dirty], changes: dict[int, Change], now: float | None
    ) -> set[FragmentKey]:
        cards = FragmentKey(Part.CARDS, 0, view.page, view.order, view.only)
        touched: set[FragmentKey] = set()
        for topic, name in dirty:
            if topic is Topic.ENGINES:
                touched.update((cards, FragmentKey(Part.HUB)))
            elif topic is Topic.EVENTS:
                touched.update(FragmentKey(p) for p, t in _TABLES.items() if t == name)
            elif topic is Topic.LOGS:
                touched.add(FragmentKey(Part.LOGS))
            elif topic is Topic.HUB:
                touched.add(FragmentKey(Part.HUB))
            elif topic is Topic.ALERTS:
                touched.add(FragmentKey(Part.ALERTS))
        if len(self.state.engines) <= self.card_limit:
            for index, change in changes.items():
                if change is not Change.NONE:
                    part = Part.CARD if change is Change.FULL else Part.VALUES
                    touched.add(FragmentKey(part, index))
        else:
            shown = self.listed(view.page, view.order, now, view.only).indices
            page = (view.page, view.order, view.only)
            if self._shown.get(page) != shown:  # rows moved, came or went
                if len(self._shown) > 1000:  # bounded: forget pages nobody may watch any more
                    self._shown.clear()
                self._shown[page] = shown
                touched.add(cards)
            on_page = set(shown)
            for index, change in changes.items():
                if index not in on_page or change is Change.NONE:
                    continue
                if change is Change.FULL:
                    touched.add(cards)
                elif set(self.deltas.fields.get(index, ())) & set(ROW_FIELDS):
                    touched.add(FragmentKey(Part.ROW, index))
        if cards in touched:  # the container re-renders every card or row
            touched = {key for key in touched if key.part not in _PER_ENGINE}
        return touched

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
        if part in (Part.ALERTS, Part.CHARTS):
            return {"scope": index}
        if part is Part.CARDS:
            if len(state.engines) <= self.card_limit:
                return {"cards": [self._model(e, now) for e in self._engines()], "listing": None}
            shown = self.listed(key.page, key.order, now, key.only)
            by_index = {e.index: e for e in state.engines.values()}
            rows = [self._model(by_index[i], now) for i in shown.indices]
            return {"cards": rows, "listing": shown, "order": key.order.value}
        if part is Part.ORDERS:
            orders = fold_orders(state.rings.recent(ORDER_SCAN, "order_event"), TABLE_ROWS)
            return {"table": part.value, "rows": self._order_rows(orders), "where": self._where()}
        if part in _TABLES:
            rows = _rows(state.rings.recent(TABLE_ROWS, _TABLES[part]), state.chains)
            return {"table": part.value, "rows": rows, "where": self._where()}
        if part is Part.LOGS:
            lines = self._all_logs(LOG_ROWS)
            return {"dom_id": "logs", "lines": lines, "show_engine": True, "where": self._where()}
        engine = self.engine_by_index(index)
        if part is Part.CARD:
            return {"card": self._model(engine, now) if engine else None, "index": index}
        if part in (Part.VALUES, Part.ROW):
            fields = self.deltas.fields.get(index, ())
            if part is Part.ROW:
                fields = tuple(f for f in fields if f in ROW_FIELDS)
            card = self._model(engine, now) if engine else None
            return {"card": card, "fields": fields if card else (), "cell": part is Part.ROW}
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
            rows = _rows(
                state.rings.recent(SECTION_ROWS, _SECTIONS[part], engine.name), state.chains
            )
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

    def _model(self, engine: EngineRecord, now: float) -> dict[str, Any]:
        """The card model, computed once per tick for every view that shows the engine."""
        if now != self._tick_at:
            self._start_tick(now)
        model = self._models.get(engine.index)
        if model is None:
            model = self._models[engine.index] = self.card_model(engine, now)
        return model

    def hub_model(self, now: float) -> dict[str, Any]:
        """Hub status line: engines by health, P&L per mode and currency, events per second."""
        return hub_model(self.state, now, self.store_problem, self.cluster_note)

    def _where(self) -> dict[str, tuple[int, str]]:
        """Engine name -> (hub index, "live" or "paper"): what filterable rows carry as data."""
        return {
            e.name: (e.index, "live" if e.mode.lower() == "live" else "paper")
            for e in self.state.engines.values()
        }

    def _order_rows(self, orders: list[OrderRow]) -> list[dict[str, Any]]:
        chains = self.state.chains
        return [
            {
                "timestamp": o.last_ts,
                "engine": o.engine,
                "order": o,
                "chain": next((i for i in o.ids if chains.has(i)), None),
            }
            for o in orders
        ]

    def _all_logs(self, limit: int) -> list[Any]:
        tails = [reversed(tail) for tail in self.state.logs.tails.values()]
        newest = heapq.merge(*tails, key=lambda r: r.id, reverse=True)
        lines = [line for _, line in zip(range(limit), newest, strict=False)]
        lines.reverse()
        return lines


def _rows(records: list[EventRecord], chains: ChainIndex) -> list[dict[str, Any]]:
    """Table rows: the payload is decoded here, only for the rows a page shows; `chain` is the
    event's id when it belongs to a causal chain (the row links to /chain)."""
    return [
        {
            "timestamp": r.ts,
            "engine": r.engine,
            "seq": r.seq,
            "payload": r.data(),
            "chain": r.id if chains.has(r.id) else None,
        }
        for r in records
    ]


_PER_ENGINE = (Part.CARD, Part.VALUES, Part.ROW)
_TEMPLATE = {
    Part.ALERTS: "alerts_nudge",
    Part.CHARTS: "charts_nudge",
    Part.CARD: "card",
    Part.VALUES: "card_values",
    Part.ROW: "card_values",
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
