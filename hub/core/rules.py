"""The rules: what is wrong with each engine (and the hub) at `now`, once per tick.

`RuleEngine.evaluate(state, store_problem, now)` returns the conditions that hold; `AlertBook`
turns them into alerts. Health rules read the health `HubState.refresh` derived this tick (never
re-derived here). Order and error rules read only the events that arrived since the last tick
(`EventRings.after`), so a tick costs the same whatever the number of browsers watching.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from operator import itemgetter

from hub.core.alert_settings import BUILTIN_RULES, Aggregate, AlertSettings, UserRule
from hub.core.alerts import AlertKey, Condition
from hub.core.engines import EngineRecord, Health
from hub.core.metrics import MetricKind
from hub.core.sketches import Sketch
from hub.core.state import HubState

__all__ = ["RuleEngine"]

_FILLS = frozenset(
    ("fill", "filled", "complete", "completed", "executed", "partial", "partial_fill")
)
_REJECTS = frozenset(("reject", "rejected", "failed", "error"))
_HEALTH_RULES = (
    ("offline", Health.OFFLINE, "engine {name!r} is offline: its socket dropped without bye"),
    ("stale", Health.STALE, "engine {name!r} is stale: no heartbeat for {silence:.0f} s"),
    ("stalled", Health.STALLED, "engine {name!r} is stalled: loop_tick stopped advancing"),
    ("status_error", Health.ERROR, "engine {name!r} reports status error"),
)
_BY_HEALTH = {health: (rule, text) for rule, health, text in _HEALTH_RULES}
_SIZE = itemgetter(1)
_MAX_SAMPLES = 4096  # per engine and window: older samples go first
# The windowed built-in rules (errors, rejects, fills, universe, drops, clock) and the user rules
# (a p95 walks a sketch) of an engine are evaluated when it sent something since, else once per
# this many seconds (engines spread over the interval), and their conditions held in between, so
# a tick costs a fraction of evaluating them all (docs/benchmarks.md). Health rules read this
# tick's health: every tick.
USER_RULE_PERIOD = 1.0
_SPREAD = 10


@dataclass(slots=True)
class _Track:
    """What the windowed rules remember of one engine."""

    errors: deque[float] = field(default_factory=lambda: deque(maxlen=_MAX_SAMPLES))
    orders: deque[tuple[float, bool]] = field(default_factory=lambda: deque(maxlen=_MAX_SAMPLES))
    rejects: int = 0  # rejected orders in `orders`
    last_fill: float | None = None
    trading_since: float | None = None
    universe: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=_MAX_SAMPLES))
    drops_total: int = -1  # -1: not seen yet (a restarted hub's restored gaps are not news)
    drops: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=_MAX_SAMPLES))
    rates: dict[str, deque[tuple[float, float]]] = field(default_factory=dict)
    due: float | None = None  # when its windowed and user rules are evaluated next
    seen: tuple[str, int, bool] = ("", -1, False)  # (boot, highest seq, connected) then
    conditions: dict[AlertKey, Condition] = field(default_factory=dict)  # held until then


class RuleEngine:
    """Evaluates the built-in and user rules of `settings` against the hub's state."""

    def __init__(self, settings: AlertSettings) -> None:
        self.settings = settings
        self._rules = {name: settings.rule(name) for name in BUILTIN_RULES}
        self._tracks: dict[str, _Track] = {}
        self._cursor = 0  # the newest event id read from the rings

    def evaluate(
        self, state: HubState, store_problem: str | None, now: float
    ) -> dict[AlertKey, Condition]:
        """Every condition that holds at `now`, keyed by (rule, engine)."""
        out: dict[AlertKey, Condition] = {}
        if not self.settings.enabled:
            return out
        self._read_events(state)
        for name in [n for n in self._tracks if n not in state.engines]:
            del self._tracks[name]  # forgotten engines
        for engine in state.engines.values():
            track = self._tracks.get(engine.name)
            if track is None:
                track = self._tracks[engine.name] = _Track()
            health = _BY_HEALTH.get(engine.health)
            if health is not None and self._rules[health[0]].enabled:
                silence = now - (engine.last_heartbeat or engine.connected_at or now)
                text = health[1].format(name=engine.name, silence=silence)
                self._add(out, health[0], engine.name, engine.mode, text)
            seen = (engine.boot_id, engine.hwm, engine.connected)
            if track.due is None or now >= track.due or seen != track.seen:  # due, or news
                spread = 0.0 if track.due else engine.index % _SPREAD / _SPREAD
                track.due, track.seen = now + USER_RULE_PERIOD * (1.0 + spread), seen
                held: dict[AlertKey, Condition] = {}
                track.conditions = held
                self._engine(engine, track, now, held)
                for rule in self.settings.user_rules:
                    self._user(rule, state, engine, track, now, held)
            out.update(track.conditions)
        store = self._rules["store_failing"]
        if store.enabled and store_problem:
            self._add(out, "store_failing", "", "hub", f"history store failing: {store_problem}")
        return out

    def _add(
        self, out: dict[AlertKey, Condition], rule: str, engine: str, mode: str, text: str
    ) -> None:
        cfg = self._rules[rule]
        out[(rule, engine)] = Condition(rule, engine, mode, cfg.severity, text[:500], cfg.hold)

    def _read_events(self, state: HubState) -> None:
        """Fold the order and error events that arrived since the last tick into the tracks."""
        start = self._cursor
        for event_type in ("order_event", "error"):
            for record in state.rings.after(start, event_type):
                track = self._tracks.get(record.engine)
                if track is None:
                    track = self._tracks[record.engine] = _Track()
                self._cursor = max(self._cursor, record.id)
                at = record.received or record.ts
                if event_type == "error":
                    track.errors.append(at)
                    continue
                status = str(record.data().get("status") or "").strip().lower()
                if status in _FILLS:
                    track.last_fill = at
                    track.orders.append((at, False))
                elif status in _REJECTS:
                    track.orders.append((at, True))
                    track.rejects += 1

    def _engine(
        self, engine: EngineRecord, track: _Track, now: float, out: dict[AlertKey, Condition]
    ) -> None:
        """The windowed built-in rules of one engine."""
        name, mode, rules = engine.name, engine.mode, self._rules
        cfg = rules["error_burst"]
        while track.errors and track.errors[0] < now - cfg.window:
            track.errors.popleft()
        if cfg.enabled and len(track.errors) >= max(cfg.threshold, 1):
            text = f"engine {name!r}: {len(track.errors)} errors in {cfg.window:.0f} s"
            self._add(out, "error_burst", name, mode, text)

        cfg = rules["reject_rate"]
        while track.orders and track.orders[0][0] < now - cfg.window:
            track.rejects -= track.orders.popleft()[1]
        orders = len(track.orders)
        if cfg.enabled and orders and orders >= cfg.minimum:
            rate = track.rejects / orders
            if rate >= cfg.threshold:
                text = f"engine {name!r}: {track.rejects} of {orders} orders rejected ({rate:.0%})"
                self._add(out, "reject_rate", name, mode, text)

        cfg = rules["no_fills"]
        trading = engine.connected and engine.state.get("trading_hours_active") is True
        track.trading_since = (track.trading_since or now) if trading else None
        if cfg.enabled and track.trading_since is not None:
            fill = track.last_fill
            last = fill if fill is not None and fill > track.trading_since else track.trading_since
            if now - last >= cfg.window:
                text = f"engine {name!r}: no fills for {now - last:.0f} s during trading hours"
                self._add(out, "no_fills", name, mode, text)

        cfg = rules["universe_collapse"]
        size = engine.universe_size
        if size is not None and engine.connected:
            if not track.universe or track.universe[-1][1] != size:
                track.universe.append((now, size))
            while len(track.universe) > 1 and track.universe[0][0] < now - cfg.window:
                track.universe.popleft()
            peak = max(track.universe, key=_SIZE)[1] if len(track.universe) > 1 else size
            if cfg.enabled and peak > 0 and size < peak * (1 - cfg.threshold / 100):
                text = f"engine {name!r}: universe fell from {peak} to {size}"
                self._add(out, "universe_collapse", name, mode, text)

        cfg = rules["client_drops"]
        total = engine.gaps + sum(engine.client_dropped.values())
        if 0 <= track.drops_total < total:
            track.drops.append((now, total - track.drops_total))
        track.drops_total = total  # a new boot starts again from 0
        while track.drops and track.drops[0][0] < now - cfg.window:
            track.drops.popleft()
        lost = sum(n for _, n in track.drops) if track.drops else 0
        if cfg.enabled and lost and lost >= cfg.threshold:
            text = f"engine {name!r}: {lost} messages dropped or gapped in {cfg.window:.0f} s"
            self._add(out, "client_drops", name, mode, text)

        cfg = rules["clock_skew"]
        skew = engine.clock_skew
        if cfg.enabled and engine.connected and skew is not None and abs(skew) > cfg.threshold:
            self._add(out, "clock_skew", name, mode, f"engine {name!r}: clock {skew:+.1f} s off")

    def _user(
        self,
        rule: UserRule,
        state: HubState,
        engine: EngineRecord,
        track: _Track,
        now: float,
        out: dict[AlertKey, Condition],
    ) -> None:
        if rule.mode not in ("*", engine.mode) or not fnmatchcase(engine.name, rule.engine):
            return
        metrics = state.metrics.engines.get(engine.name)
        series = metrics.by_name.get(rule.metric) if metrics is not None else None
        if not series:
            return
        wanted = set(rule.tags)
        values: list[float] = []
        for tags, one in series.items():
            if not wanted <= set(tags):
                continue
            if rule.aggregate is Aggregate.P95 and isinstance(one.session, Sketch):
                p95 = one.session.quantile(0.95)
                if p95 is not None:
                    values.append(p95)
            elif one.kind is not MetricKind.HISTOGRAM and isinstance(one.lifetime, float | int):
                values.append(float(one.lifetime))
        if not values:
            return
        if rule.aggregate is Aggregate.RATE:
            samples = track.rates.setdefault(rule.name, deque(maxlen=_MAX_SAMPLES))
            total = sum(values)
            if not samples or now - samples[-1][0] >= 1.0:
                samples.append((now, total))
            while len(samples) > 2 and samples[1][0] <= now - rule.window:
                samples.popleft()
            span = now - samples[0][0]
            value = (total - samples[0][1]) / span if span > 0 else 0.0
        else:
            value = max(values)
        if rule.breached(value):
            text = f"engine {engine.name!r}: {rule.metric} {rule.aggregate} {value:.4g} {rule.op} {rule.threshold:g}"
            out[(rule.name, engine.name)] = Condition(
                rule.name, engine.name, engine.mode, rule.severity, text[:500], rule.hold
            )
