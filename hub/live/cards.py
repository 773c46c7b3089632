"""Sans-I/O models of an engine's card and of the hub status line: what they say, worked out at `now`.

Everything here is computed by our code from the hub state; engine text stays data for the
templates' `text` filter. Ages are worked out at `now` so the first paint is right without
JavaScript, and a fragment rendered once per tick is right for every viewer it is sent to.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from hub.core.engines import EngineRecord, Health, derive_health
from hub.core.metrics import MetricKind
from hub.core.pnl import Pnl, totals
from hub.core.state import HubState
from hub.live.formats import schedule
from hub.live.templating import sparkline_points

__all__ = ["CLOCK_SKEW_WARN", "HEALTH_ICONS", "PROBLEMS", "card_model", "hub_model"]

CLOCK_SKEW_WARN = 60.0  # seconds: beyond network delay, the engine's clock itself is off
# Each health has its own shape as well as its own colour, so it reads colour-blind and in grey.
# Character references keep pushed frames ASCII (see `Views.frame`).
HEALTH_ICONS = {
    Health.OK: Markup("&#9679;"),  # ● filled circle
    Health.LATE: Markup("&#9681;"),  # ◑ half circle
    Health.STALE: Markup("&#9675;"),  # ○ hollow circle
    Health.STALLED: Markup("&#8214;"),  # ‖ pause bars
    Health.OFFLINE: Markup("&#10005;"),  # ✕ cross
    Health.STOPPED: Markup("&#9632;"),  # ■ square
    Health.ERROR: Markup("&#9650;"),  # ▲ warning triangle
}
# The hub status and the tab title count these, worst first; ok and stopped are not problems.
PROBLEMS = (Health.ERROR, Health.OFFLINE, Health.STALE, Health.STALLED, Health.LATE)


def card_model(state: HubState, engine: EngineRecord, now: float) -> dict[str, Any]:
    """Everything a card shows, computed by our code (engine text stays text)."""
    health = derive_health(engine, now, state.settings, state.lag)
    ended = engine.ended_at()
    return {
        "index": engine.index,
        "name": engine.name,
        "mode": engine.mode.upper(),
        "live": engine.mode.lower() == "live",
        "health": health.value,
        "icon": HEALTH_ICONS[health],
        "status": engine.status.value,
        "pid": engine.pid,
        "started_at": engine.started_at,
        "uptime": engine.uptime(now),
        "ended_at": ended,  # the uptime froze here; None while the engine is here
        "ended_age": None if ended is None else now - ended,
        "last_heartbeat": engine.last_heartbeat,
        "heartbeat_age": None if engine.last_heartbeat is None else now - engine.last_heartbeat,
        "error": _error_model(engine, now),
        "errors_recent": engine.recent_errors.count(now),
        "pnl": Pnl.from_state(engine.state),
        "schedule": schedule(engine.state, now),  # next cycle countdown, trading hours
        "clock_skew": (skew := engine.clock_skew),
        "clock_warn": skew is not None and abs(skew) > CLOCK_SKEW_WARN,
        "loop_tick": engine.loop_tick,
        "loop_rate": engine.loop_rate,
        "universe_size": engine.universe_size,
        "open_positions": engine.open_positions,
        "gaps": engine.gaps,
        "dropped": sum(engine.client_dropped.values()),
        "rejected": engine.rejected,
        "connected": engine.connected,
        "sparkline": sparkline_points(engine.rate_history),
        "counters": _card_counters(state, engine.name),
        "counters_scope": state.settings.card_metrics,
    }


def hub_model(
    state: HubState, now: float, store_problem: str | None, cluster_note: str | None = None
) -> dict[str, Any]:
    """Hub status line: engines by health, P&L per mode and currency, events per second."""
    counts: dict[Health, int] = {}
    reports: list[tuple[str, Pnl]] = []
    for engine in state.engines.values():
        health = derive_health(engine, now, state.settings, state.lag)
        counts[health] = counts.get(health, 0) + 1
        pnl = Pnl.from_state(engine.state)
        if pnl is not None:
            reports.append((engine.mode, pnl))
    problems = [(h.value, counts[h]) for h in PROBLEMS if h in counts]
    problem_count = sum(n for _, n in problems)
    title = "Engine Hub"
    if problem_count:
        title = f"({problem_count}) Engine Hub \u2014 " + ", ".join(
            f"{n} {health}" for health, n in problems
        )
    pnl_totals, pnl_more = totals(reports)
    return {
        "engines": len(state.engines),
        "by_health": [(h.value, counts[h], HEALTH_ICONS[h]) for h in Health if h in counts],
        "problems": problem_count,
        "title": title,
        "pnl_totals": pnl_totals,
        "pnl_more": pnl_more,
        "events_per_second": state.stats.events_per_second,
        "store_problem": store_problem,
        "cluster_note": cluster_note,  # "cluster degraded: ..." or a gap, from the runtime
        "lagging": state.lag.lagging(now),  # seconds the hub's own loop is behind, or None
    }


def _card_counters(state: HubState, engine: str, limit: int = 4) -> list[tuple[str, float]]:
    """The first counters by name (tags summed), session or lifetime per `card_metrics`."""
    metrics = state.metrics.engines.get(engine)
    if metrics is None:
        return []
    lifetime = state.settings.card_metrics == "lifetime"
    sums: dict[str, float] = {}
    for series in metrics.series.values():
        value = series.lifetime if lifetime else series.session
        if series.kind is MetricKind.COUNTER and isinstance(value, float):
            sums[series.name] = sums.get(series.name, 0.0) + value
    return sorted(sums.items())[:limit]


def _error_model(engine: EngineRecord, now: float) -> dict[str, Any] | None:
    """The card's last error: its text, when it came, and whether the engine has recovered since."""
    text = engine.error_text or engine.last_error  # a restored hub knows the text, not its time
    if text is None:
        return None
    at, healed = engine.error_at, engine.recovered_at
    return {
        "text": text,
        "at": at,
        "age": None if at is None else now - at,
        "recovered_at": healed,
        "recovered_age": None if healed is None else now - healed,
        "past": healed is not None or engine.last_error is None,
    }
