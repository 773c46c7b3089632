"""What the monitor knows about the hub, sans-I/O: engines, signals, logs, the link; `now` passed in."""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from hub.core.engines import Health

__all__ = ["EngineView", "Link", "LogLine", "Monitor", "Signal", "seconds"]

MAX_ENGINES = 500  # the engine list shows this many (a hub with more is not a terminal's job)
MAX_SIGNALS = 100  # per engine, newest first
MAX_LOGS = 1000  # lines of the picked engine's log kept for scrolling
MAX_TEXT = 2000  # characters of any one engine string kept


class Link(enum.Enum):
    """The monitor's connection to the hub's stream."""

    CONNECTING = "connecting"
    LIVE = "live"
    DISCONNECTED = "disconnected"


def seconds(value: Any) -> float | None:
    """Unix seconds from an ISO-8601 string (naive: UTC) or a finite number; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, str) and 10 <= len(value) <= 40:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else "" if value is None else str(value)
    return text[:MAX_TEXT]


@dataclass(frozen=True, slots=True)
class EngineView:
    """One engine as `/api/telemetry/engines` describes it, checked field by field."""

    name: str
    mode: str = ""
    health: Health = Health.OFFLINE
    status: str = ""
    uptime: float | None = None  # seconds, at `asof`
    loop_tick: int | None = None
    loop_rate: float | None = None
    open_positions: int | None = None
    last_error: str = ""
    state: Mapping[str, Any] = field(default_factory=dict)
    asof: float = 0.0

    @classmethod
    def parse(cls, raw: Mapping[str, Any], asof: float) -> EngineView | None:
        """The engine in `raw`, or None when it has no usable name."""
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            return None
        try:
            health = Health(str(raw.get("health")))
        except ValueError:
            health = Health.OFFLINE
        state = raw.get("state")
        rate = raw.get("loop_rate")
        return cls(
            name=name[:64],
            mode=_text(raw.get("mode"))[:16],
            health=health,
            status=_text(raw.get("status"))[:16],
            uptime=seconds(raw.get("uptime_seconds")),
            loop_tick=_int(raw.get("loop_tick")),
            loop_rate=seconds(rate) if isinstance(rate, (int, float)) else None,
            open_positions=_int(raw.get("open_positions")),
            last_error=_text(raw.get("last_error")),
            state=state if isinstance(state, Mapping) else {},
            asof=asof,
        )

    def uptime_at(self, now: float) -> float | None:
        """Uptime now: it keeps counting while the engine is here, and stands still once it left."""
        if self.uptime is None:
            return None
        if self.health in (Health.OFFLINE, Health.STOPPED):
            return self.uptime
        return self.uptime + max(0.0, now - self.asof)


@dataclass(frozen=True, slots=True)
class Signal:
    """One signal row: time, symbol, side/type, entry price, strategy, status."""

    id: int
    ts: float | None
    symbol: str
    side: str
    price: float | None
    strategy: str
    status: str

    @classmethod
    def parse(cls, event: Mapping[str, Any]) -> Signal | None:
        """A `signal_event` as the API or stream shows it; None when it is not one."""
        payload = event.get("payload")
        ident = _int(event.get("id"))
        if not isinstance(payload, Mapping) or ident is None:
            return None
        price = next((payload[k] for k in ("price", "entry_price") if k in payload), None)
        side = next((payload[k] for k in ("side", "signal_type", "type") if k in payload), "")
        return cls(
            ident,
            seconds(event.get("timestamp")),
            _text(payload.get("symbol"))[:40],
            _text(side)[:16],
            seconds(price) if isinstance(price, (int, float)) else None,
            _text(payload.get("strategy"))[:40],
            _text(payload.get("status", "new"))[:24],
        )


@dataclass(frozen=True, slots=True)
class LogLine:
    """One log line of the picked engine."""

    id: int
    ts: float | None
    level: str
    message: str


@dataclass(slots=True)
class _Extras:
    """What the stream says about an engine beyond the engine list: last cycle and error events."""

    cycle: tuple[float | None, bool, float | None] | None = None  # (at, ok, duration)
    error_at: float | None = None


class Monitor:
    """The monitor's whole state: the engine list, the picked engine, its signals and log."""

    def __init__(self, engine: str | None = None) -> None:
        self.link = Link.CONNECTING
        self.link_detail = ""
        self.engines: dict[str, EngineView] = {}
        self.selected: str | None = engine
        self.signals: dict[str, deque[Signal]] = {}
        self.logs: deque[LogLine] = deque(maxlen=MAX_LOGS)
        self.log_engine: str | None = None  # whose lines `logs` holds
        self._extras: dict[str, _Extras] = {}
        self.events_seen = 0

    # Engines.

    def set_engines(self, payload: Any, now: float) -> None:
        """Replace the engine list with an `/api/telemetry/engines` answer."""
        items = payload.get("engines") if isinstance(payload, Mapping) else None
        if not isinstance(items, list):
            raise ValueError("the hub's engine list is not {'engines': [...]}; is --url a hub?")
        asof = seconds(payload.get("asof")) or now
        engines = (
            EngineView.parse(raw, asof) for raw in items[:MAX_ENGINES] if isinstance(raw, Mapping)
        )
        self.engines = {e.name: e for e in engines if e is not None}
        if self.selected is None and self.engines:
            self.selected = next(iter(sorted(self.engines)))

    @property
    def engine(self) -> EngineView | None:
        """The picked engine, if the hub knows it."""
        return self.engines.get(self.selected) if self.selected else None

    def names(self) -> list[str]:
        """Engine names in list order (the picked one is listed even before the hub knows it)."""
        names = set(self.engines)
        if self.selected:
            names.add(self.selected)
        return sorted(names)

    def pick(self, name: str) -> bool:
        """Follow engine `name`; True when that changed the pick."""
        changed = name != self.selected
        self.selected = name
        return changed

    def step(self, offset: int) -> str | None:
        """Pick the engine `offset` places down the list (wrapping); returns the new pick."""
        names = self.names()
        if not names:
            return None
        index = names.index(self.selected) if self.selected in names else -1
        self.selected = names[(index + offset) % len(names)]
        return self.selected

    def set_health(self, data: Mapping[str, Any]) -> None:
        """A `hub.health` transition from the stream."""
        name, health = data.get("engine"), data.get("health")
        engine = self.engines.get(name) if isinstance(name, str) else None
        if engine is None or not isinstance(health, str):
            return
        try:
            self.engines[engine.name] = replace(engine, health=Health(health))
        except ValueError:
            return

    # Events.

    def add_event(self, event: Mapping[str, Any]) -> str | None:
        """One event from the stream or a snapshot; returns its engine when it mattered."""
        engine, kind = event.get("engine"), event.get("type")
        if not isinstance(engine, str) or not isinstance(kind, str):
            return None
        self.events_seen += 1
        if kind == "signal_event":
            signal = Signal.parse(event)
            if signal is None:
                return None
            rows = self.signals.get(engine)
            if rows is None:
                if len(self.signals) >= MAX_ENGINES:
                    return None
                rows = self.signals[engine] = deque(maxlen=MAX_SIGNALS)
            if not rows or signal.id > rows[0].id:
                rows.appendleft(signal)  # the stream's usual case: newer than everything shown
                return engine
            if any(row.id == signal.id for row in rows):
                return None  # the snapshot and the stream overlap by a few events
            if signal.id < rows[0].id:
                rows.append(signal)  # older (a snapshot page): goes to the end
                rows = deque(sorted(rows, key=lambda r: -r.id), maxlen=MAX_SIGNALS)
                self.signals[engine] = rows
            else:
                rows.appendleft(signal)
            return engine
        if kind in ("cycle", "error") and (
            engine in self.engines or len(self._extras) < MAX_ENGINES
        ):
            extras = self._extras.setdefault(engine, _Extras())
            at = seconds(event.get("timestamp"))
            payload = event.get("payload")
            payload = payload if isinstance(payload, Mapping) else {}
            if kind == "error":
                extras.error_at = max(at or 0.0, extras.error_at or 0.0) or None
            else:
                ok = not (
                    payload.get("ok") is False
                    or payload.get("success") is False
                    or payload.get("error")
                )
                took = payload.get("duration")
                extras.cycle = (at, ok, seconds(took) if isinstance(took, (int, float)) else None)
            return engine
        return None

    def last_cycle(self, name: str) -> tuple[float | None, bool, float | None] | None:
        """(at, ok, duration) of the engine's newest `cycle` event seen."""
        extras = self._extras.get(name)
        return extras.cycle if extras else None

    def error_at(self, name: str) -> float | None:
        """When the engine's newest `error` event seen happened."""
        extras = self._extras.get(name)
        return extras.error_at if extras else None

    # Logs.

    def set_logs(self, engine: str, lines: Iterable[Any]) -> int:
        """Merge a log tail (oldest first) of `engine`; returns how many lines are new."""
        if engine != self.log_engine:
            self.logs.clear()
            self.log_engine = engine
        newest = self.logs[-1].id if self.logs else -1
        added = 0
        for raw in lines:
            if not isinstance(raw, Mapping) or (ident := _int(raw.get("id"))) is None:
                continue
            if ident <= newest:
                continue
            self.logs.append(
                LogLine(
                    ident,
                    seconds(raw.get("timestamp")),
                    _text(raw.get("level"))[:16],
                    _text(raw.get("message")),
                )
            )
            newest = ident
            added += 1
        return added

    def all_new(self, lines: list[Any]) -> bool:
        """Whether even the oldest of `lines` is newer than every line held (a gap may precede it)."""
        first = lines[0] if lines else None
        ident = _int(first.get("id")) if isinstance(first, Mapping) else None
        return ident is not None and (not self.logs or ident > self.logs[-1].id)

    def forget_history(self) -> None:
        """A new connection (maybe a restarted hub with new ids): start the tables afresh."""
        self.signals.clear()
        self.logs.clear()
        self.log_engine = None
        self._extras.clear()
