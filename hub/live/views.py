"""Sans-I/O live views: which fragments a change dirtied, and rendering each one once per tick.

A *view* is what one page shows: the overview, one engine's page, or one embedded card. Every
fragment is one partial template with one root element whose id our code derives (never from
engine-supplied text); the same partial renders in the full page, the `hx-get` fragment and the
WebSocket push (then with `hx-swap-oob`).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jinja2

from hub.core.engines import EngineRecord, derive_health
from hub.core.metrics import MetricKind
from hub.core.records import EventRecord
from hub.core.state import HubState
from hub.live.templating import sparkline_points

__all__ = ["OVERVIEW", "ViewKey", "Views"]

ViewKey = tuple[str, int]
"""("overview", 0), ("engine", engine index) or ("embed", engine index)."""

OVERVIEW: ViewKey = ("overview", 0)
TABLE_ROWS = 25  # a panel shows about 20 rows; more only costs bytes on every push
SECTION_ROWS = 20
LOG_ROWS = 50  # overview log tail
ENGINE_LOG_ROWS = 100

# Overview tables: fragment name -> event type.
_TABLES = {"signals": "signal_event", "orders": "order_event", "errors": "error"}
# Engine page event sections: section -> event type.
_SECTIONS = {
    "positions": "position_event",
    "decisions": "decision_trace",
    "cycles": "cycle",
    "eerrors": "error",
}


@dataclass(frozen=True, slots=True)
class Fragment:
    """A rendered fragment name (e.g. "card:3") and its HTML."""

    name: str
    html: str


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
        for engine in self.state.engines.values():
            if engine.index == index:
                return engine
        return None

    def _engines(self) -> list[EngineRecord]:
        return sorted(self.state.engines.values(), key=lambda e: e.name)

    # -- which fragments ---------------------------------------------------------------------

    def names(self, view: ViewKey) -> list[str]:
        """Every fragment of `view` (its snapshot)."""
        kind, index = view
        if kind == "overview":
            return ["hub", "cards", *_TABLES, "logs"]
        if kind == "engine":
            return [f"card:{index}", f"state:{index}", f"metrics:{index}", f"elogs:{index}"] + [
                f"{section}:{index}" for section in _SECTIONS
            ]
        return [f"card:{index}"]

    def dirtied(self, view: ViewKey, dirty: Iterable[tuple[str, str]]) -> list[str]:
        """Fragments of `view` that the dirty keys touched, in snapshot order."""
        kind, index = view
        touched: set[str] = set()
        engine = self.engine_by_index(index) if kind != "overview" else None
        for what, name in dirty:
            if kind == "overview":
                if what == "engines":
                    touched.update(("cards", "hub"))
                elif what == "engine":
                    record = self.state.engines.get(name)
                    if record is not None:
                        touched.add(f"card:{record.index}")
                elif what == "events":
                    touched.update(t for t, event_type in _TABLES.items() if event_type == name)
                elif what == "logs":
                    touched.add("logs")
                elif what == "hub":
                    touched.add("hub")
            elif engine is None:
                if what == "engines":  # the engine was forgotten: show its "gone" card
                    touched.add(f"card:{index}")
            else:
                if what == "engine" and name == engine.name:
                    touched.add(f"card:{index}")
                    if kind == "engine":
                        touched.add(f"state:{index}")
                elif kind != "engine":
                    continue
                elif what == "events":
                    touched.update(f"{s}:{index}" for s, t in _SECTIONS.items() if t == name)
                elif what == "logs" and name == engine.name:
                    touched.add(f"elogs:{index}")
                elif what == "metrics" and name == engine.name:
                    touched.add(f"metrics:{index}")
        if "cards" in touched:  # the container re-renders every card
            touched = {name for name in touched if not name.startswith("card:")}
        order = {name: i for i, name in enumerate(self.names(view))}
        return sorted(touched, key=lambda name: order.get(name, len(order)))

    # -- rendering ---------------------------------------------------------------------------

    def render(self, name: str, now: float, oob: bool) -> str:
        """One fragment by name; an unknown engine renders its "gone" placeholder."""
        kind = name.partition(":")[0]
        partial = self.env.get_template(f"partials/_{_TEMPLATE.get(kind, kind)}.html")
        return partial.render(self.context(name, now), oob=oob)

    def context(self, name: str, now: float) -> dict[str, Any]:
        """Template variables of fragment `name` (also used to render full pages)."""
        kind, _, suffix = name.partition(":")
        state = self.state
        if kind == "hub":
            return {"hub": self.hub_model(now)}
        if kind == "cards":
            return {"cards": [self.card_model(e, now) for e in self._engines()]}
        if kind in _TABLES:
            return {"table": kind, "rows": _rows(state.rings.recent(TABLE_ROWS, _TABLES[kind]))}
        if kind == "logs":
            return {"dom_id": "logs", "lines": self._all_logs(LOG_ROWS), "show_engine": True}
        index = int(suffix)
        engine = self.engine_by_index(index)
        if kind == "card":
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
            return {**base, **empty, "section": kind, "dom_id": f"elogs-{index}"}
        if kind == "state":
            return {**base, "items": sorted(engine.state.items())}
        if kind == "metrics":
            return {**base, "metrics": state.metrics.snapshot(engine.name)}
        if kind == "elogs":
            lines = state.logs.tail(engine.name, ENGINE_LOG_ROWS)
            return {**base, "dom_id": f"elogs-{index}", "lines": lines, "show_engine": False}
        return {
            **base,
            "section": kind,
            "rows": _rows(state.rings.recent(SECTION_ROWS, _SECTIONS[kind], engine.name)),
        }

    def frame(self, names: Iterable[str], now: float, cache: dict[str, str]) -> str:
        """One WebSocket frame carrying `names` as out-of-band swaps; `cache` spans one tick."""
        parts = []
        for name in names:
            html = cache.get(name)
            if html is None:
                # ASCII only (character references): the server encodes each frame once per
                # browser, and pure-ASCII text encodes ~30x faster than text with a few "·".
                html = self.render(name, now, oob=True)
                html = cache[name] = html.encode("ascii", "xmlcharrefreplace").decode("ascii")
            parts.append(html)
        return "".join(parts)

    # -- models ------------------------------------------------------------------------------

    def card_model(self, engine: EngineRecord, now: float) -> dict[str, Any]:
        """Everything a card shows, computed by our code (engine text stays text)."""
        health = derive_health(engine, now, self.state.settings)
        return {
            "index": engine.index,
            "name": engine.name,
            "mode": engine.mode.upper(),
            "live": engine.mode.lower() == "live",
            "health": health.value,
            "status": engine.status.value,
            "pid": engine.pid,
            "started_at": engine.started_at,
            "last_heartbeat": engine.last_heartbeat,
            "loop_tick": engine.loop_tick,
            "loop_rate": engine.loop_rate,
            "universe_size": engine.universe_size,
            "open_positions": engine.open_positions,
            "last_error": engine.last_error,
            "gaps": engine.gaps,
            "dropped": sum(engine.client_dropped.values()),
            "rejected": engine.rejected,
            "connected": engine.connected,
            "sparkline": sparkline_points(engine.rate_history),
            "counters": self._card_counters(engine.name),
            "counters_scope": self.state.settings.card_metrics,
        }

    def _card_counters(self, engine: str, limit: int = 4) -> list[tuple[str, float]]:
        """The first counters by name (tags summed), session or lifetime per `card_metrics`."""
        metrics = self.state.metrics.engines.get(engine)
        if metrics is None:
            return []
        lifetime = self.state.settings.card_metrics == "lifetime"
        totals: dict[str, float] = {}
        for series in metrics.series.values():
            value = series.lifetime if lifetime else series.session
            if series.kind is MetricKind.COUNTER and isinstance(value, float):
                totals[series.name] = totals.get(series.name, 0.0) + value
        return sorted(totals.items())[:limit]

    def hub_model(self, now: float) -> dict[str, Any]:
        """Hub status line: engines by health, events per second."""
        counts: dict[str, int] = {}
        for engine in self.state.engines.values():
            health = derive_health(engine, now, self.state.settings).value
            counts[health] = counts.get(health, 0) + 1
        return {
            "engines": len(self.state.engines),
            "by_health": sorted(counts.items()),
            "events_per_second": self.state.stats.events_per_second,
            "store_problem": self.store_problem,
        }

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
    "card": "card",
    "cards": "cards",
    "signals": "events_table",
    "orders": "events_table",
    "errors": "events_table",
    "positions": "section",
    "decisions": "section",
    "cycles": "section",
    "eerrors": "section",
    "logs": "logs",
    "elogs": "logs",
    "state": "state",
    "metrics": "metrics",
    "hub": "hub_status",
}
