"""`TelemetryCollector`: the third document's collector as a thin layer over `EngineClient`."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from hub.client import EngineClient
from hub.client.intake import OBSERVE, DropReason
from hub.compat.clients import shared_client
from hub.compat.config import CompatConfig
from hub.compat.lifetimes import fetch_lifetimes
from hub.compat.mirrors import FOLD_EVERY, MAX_SERIES, MetricMirror
from hub.compat.records import cycle_payload, json_time, signal_args

__all__ = ["TelemetryCollector"]

log = logging.getLogger(__name__)

# The document's ring sizes ("Telemetry uses ring buffers with these default limits").
EVENTS, SIGNALS, CYCLES, ERRORS = 1000, 500, 100, 200


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


class TelemetryCollector:
    """The old collector's calls; each forwards to the typed client and keeps a bounded local copy.

    The read side (`get_recent_signals`, `get_all_metrics`, ...) answers from that copy, as the
    old in-process collector did. New code should use `hub.client.EngineClient` directly.
    """

    _config: ClassVar[CompatConfig | None] = None
    _reset_on_startup: ClassVar[bool] = True
    _instance: ClassVar[TelemetryCollector | None] = None
    _class_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        client: EngineClient,
        *,
        reset_on_startup: bool = True,
        lifetimes: Callable[[], dict[str, float]] | None = None,
    ) -> None:
        self.client = client
        self.reset_on_startup = reset_on_startup
        self.metrics = MetricMirror()
        self._counts, self._times = self.metrics.pending_counts, self.metrics.pending_times
        self._gauges = self.metrics.gauges
        # Bound once: the metric calls are the hot path, and each lookup saved is a few percent.
        # They write to the client's intake directly (what `client.increment` etc. do after
        # making the series key), so a call here costs the client's work once, plus the mirror.
        intake = client.intake
        self._inc, self._gauge, self._queue = intake.inc, intake.set_gauge, intake.append
        self._invalid = intake.count_drop
        self._count_of, self._time_of = self._counts.get, self._times.get
        self.seeded = threading.Event()  # set once counters hold earlier boots' totals (or not)
        self._lifetimes = lifetimes
        # (time, record) pairs: the dicts the old API returned are built on read.
        self.events: deque[tuple[float, str, Any]] = deque(maxlen=EVENTS)
        self.signals: deque[tuple[float, Mapping[str, Any]]] = deque(maxlen=SIGNALS)
        self.cycles: deque[tuple[float, Mapping[str, Any]]] = deque(maxlen=CYCLES)
        self.errors: deque[tuple[float, Mapping[str, Any]]] = deque(maxlen=ERRORS)
        self.started = time.time()
        self.state: dict[str, Any] = {"bot_start_time": _iso(self.started), "is_running": True}
        self._lock = threading.Lock()
        self._use_lifetimes(not reset_on_startup)

    def _use_lifetimes(self, lifetime: bool) -> None:
        """Session counters start at 0; lifetime ones at the hub's totals of earlier boots."""
        if not lifetime or self._lifetimes is None:
            with self._lock:
                self.metrics.base = {}
            self.seeded.set()
            return
        fetch = self._lifetimes
        self.seeded.clear()

        def seed() -> None:  # off the engine's thread: the hub may be slow or away
            base = fetch()
            with self._lock:
                self.metrics.base = base
            self.seeded.set()

        threading.Thread(target=seed, name="engine-hub-lifetimes", daemon=True).start()

    # The old singleton.

    @classmethod
    def configure(
        cls,
        url: str | None = None,
        engine: str | None = None,
        mode: str | None = None,
        token: str | None = None,
        *,
        reset_on_startup: bool | None = None,
        api_token: str | None = None,
    ) -> None:
        """Say where `instance()` sends (arguments win over ENGINE_HUB_* variables).

        `reset_on_startup=False` reports lifetime counters (earlier boots' totals read back
        from the hub, with `api_token` when the hub requires sign-in); True, the default, session.
        """
        with cls._class_lock:
            cls._config = CompatConfig.from_environ().with_overrides(
                url=url, engine=engine, mode=mode, token=token, api_token=api_token
            )
            if reset_on_startup is not None:
                cls._reset_on_startup = reset_on_startup
            cls._instance = None

    @classmethod
    def instance(cls) -> TelemetryCollector:
        """The process's collector (the old API's singleton), connected on first use."""
        with cls._class_lock:
            if cls._instance is None:
                config = cls._config or CompatConfig.from_environ()
                client = shared_client(config)
                cls._instance = cls(
                    client,
                    reset_on_startup=cls._reset_on_startup,
                    lifetimes=lambda: fetch_lifetimes(
                        config.url, config.engine, client.boot_id, config.api_token
                    ),
                )
            return cls._instance

    # Metrics.

    def increment(
        self,
        name: str,
        amount: float = 1,
        tags: Mapping[str, Any] | None = None,
        **tag_kwargs: Any,
    ) -> None:
        """Add `amount` to counter `name` (tags as a mapping or as keywords)."""
        if tags:
            tag_kwargs = {**tags, **tag_kwargs}
        try:
            self._inc((name, tuple(tag_kwargs.items())) if tag_kwargs else name, amount)
        except Exception:  # e.g. an unhashable tag value: counted, as the client does
            self._invalid(DropReason.INVALID)
        values = self._count_of(name)
        if values is None:
            values = self.metrics.series(self._counts, name, tag_kwargs)
        values.append(amount)
        if len(values) > FOLD_EVERY:
            self.metrics.fold_count(name, values)

    def set_gauge(
        self, name: str, value: float, tags: Mapping[str, Any] | None = None, **tag_kwargs: Any
    ) -> None:
        """Set gauge `name` to `value`."""
        if tags:
            tag_kwargs = {**tags, **tag_kwargs}
        try:
            self._gauge((name, tuple(tag_kwargs.items())) if tag_kwargs else name, value)
        except Exception:
            self._invalid(DropReason.INVALID)
        gauges = self._gauges
        if len(gauges) < MAX_SERIES or name in gauges:
            gauges[name] = (value, tag_kwargs)  # one atomic store: the last value wins

    def record_timing(
        self, name: str, duration: float, tags: Mapping[str, Any] | None = None, **tag_kwargs: Any
    ) -> None:
        """Record one duration of `name` in seconds (a timer on the hub)."""
        if tags:
            tag_kwargs = {**tags, **tag_kwargs}
        key = (name, tuple(tag_kwargs.items())) if tag_kwargs else name
        self._queue((OBSERVE, key, duration))
        values = self._time_of(name)
        if values is None:
            values = self.metrics.series(self._times, name, tag_kwargs)
        values.append(duration)
        if len(values) > FOLD_EVERY:
            self.metrics.fold_time(name, values)

    # Records.

    def record_event(self, name: str, data: Mapping[str, Any] | None = None) -> None:
        """Publish an event of type `name` with `data` as its payload."""
        self.client.publish(name, data)
        self.events.append((time.time(), name, data))  # kept as given: do not mutate it later

    def record_signal(self, data: Mapping[str, Any]) -> None:
        """Publish a `signal_event` (symbol, signal_type, entry_price or price, strategy, ...)."""
        try:
            symbol, side, price, strategy, extra = signal_args(data)
            self.client.record_signal(symbol, side, price=price, strategy=strategy, **extra)
        except Exception:
            log.warning("record_signal needs a mapping with text keys; nothing sent")
            return
        self.signals.append((time.time(), data))  # kept as given: do not mutate it later

    def record_cycle(self, data: Mapping[str, Any]) -> None:
        """Publish a `cycle` event (its duration in seconds under `duration` or `duration_seconds`)."""
        try:
            payload = cycle_payload(data)
        except Exception:
            log.warning("record_cycle needs a mapping, got %r; nothing sent", type(data))
            return
        try:
            self.client.record_cycle(**payload)  # the typed call, whatever it learns to report
        except TypeError:  # no duration in the record, or keys that are not text
            self.client.publish("cycle", payload)
        now = time.time()
        self.cycles.append((now, payload))
        self.state["last_cycle_time"] = now

    def record_error(
        self, error_type: str, message: str, context: Mapping[str, Any] | None = None
    ) -> None:
        """Publish an `error` event (the engine's status is not changed)."""
        self.client.record_error(error_type, message, context)
        self.errors.append(
            (time.time(), {"error_type": error_type, "message": message, "context": context})
        )

    # Bot state (rides on the heartbeat's `state`).

    def set_bot_state(self, reset_on_startup: bool | None = None, **state: Any) -> None:
        """Report bot state (next_cycle_time, run_interval_minutes, is_running, ...).

        `reset_on_startup` switches the read side between session and lifetime counters.
        """
        if reset_on_startup is not None and reset_on_startup != self.reset_on_startup:
            self.reset_on_startup = reset_on_startup
            self._use_lifetimes(not reset_on_startup)
        fields = {str(k): json_time(v) for k, v in state.items()}
        self.state.update(fields)
        self.client.heartbeat(**fields)

    def set_next_cycle_time(self, timestamp: datetime | float | str | None) -> None:
        """When the next cycle starts (a datetime, Unix seconds or ISO-8601 text)."""
        when: datetime | float | None
        if isinstance(timestamp, str):
            try:
                when = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
            except ValueError:
                return  # the old collector stored any text; the hub needs a time
        else:
            when = timestamp
        self.state["next_cycle_time"] = when.isoformat() if isinstance(when, datetime) else when
        self.client.set_next_cycle_time(when)

    def set_trading_hours_active(self, active: bool, window: str | None = None) -> None:
        """Whether trading hours are on, and the window (e.g. "06:00-19:00 UTC") if known."""
        self.state["trading_hours_active"] = bool(active)
        if window is not None:
            self.state["trading_hours"] = window
        self.client.set_trading_hours_active(active, window)

    # The read side, from the local buffers.

    def get_recent_signals(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest `limit` signals this process recorded, newest first."""
        return _newest(self.signals, limit)

    def get_recent_cycles(self, limit: int = 24) -> list[dict[str, Any]]:
        """The newest `limit` cycles this process recorded, newest first."""
        return _newest(self.cycles, limit)

    def get_recent_errors(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest `limit` errors this process recorded, newest first."""
        return _newest(self.errors, limit)

    def get_all_metrics(self) -> dict[str, Any]:
        """Counters, gauges, histograms and timers in the shape of metrics.json."""
        return self.metrics.snapshot(time.time())

    def get_summary(self) -> dict[str, Any]:
        """Uptime, bot state, counter and gauge values, and how many records each ring holds."""
        now = time.time()
        self.metrics.fold()
        counters = {name: self.metrics.counter(name) for name in list(self.metrics.counters)}
        counters.update({n: v for n, v in self.metrics.base.items() if n not in counters})
        gauges = {name: entry[0] for name, entry in list(self.metrics.gauges.items())}
        return {
            "timestamp": _iso(now),
            "engine": self.client.engine,
            "uptime_seconds": round(now - self.started, 3),
            "metrics": "session" if self.reset_on_startup else "lifetime",
            "state": {k: _iso(v) if k == "last_cycle_time" else v for k, v in self.state.items()},
            "counters": counters,
            "gauges": gauges,
            "signals": len(self.signals),
            "cycles": len(self.cycles),
            "errors": len(self.errors),
            "events": len(self.events),
            "connected": self.client.connected,
        }

    def export_to_json(self, path: str | Path) -> str:
        """Write the summary, metrics and every buffered record to `path`; returns the path."""
        data = {
            "summary": self.get_summary(),
            "metrics": self.get_all_metrics(),
            "signals": [_shown(r) for r in self.signals],
            "cycles": [_shown(r) for r in self.cycles],
            "errors": [_shown(r) for r in self.errors],
            "events": [
                {"timestamp": _iso(ts), "event": name, "data": data}
                for ts, name, data in list(self.events)
            ],
        }
        Path(path).write_text(json.dumps(data, indent=2, default=str))
        return str(path)


def _newest(ring: deque[tuple[float, Mapping[str, Any]]], limit: int) -> list[dict[str, Any]]:
    """The newest `limit` records, newest first, as dicts with an ISO-8601 `timestamp`."""
    items = list(ring)[-int(limit) :] if limit > 0 else []
    items.reverse()
    return [_shown(item) for item in items]


def _shown(item: tuple[float, Mapping[str, Any]]) -> dict[str, Any]:
    """A record with the time it was recorded (its own `timestamp`, if it has one, wins)."""
    ts, record = item
    return {"timestamp": _iso(ts), **record}
