"""The engine registry record and the health the hub derives for it from `now`."""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from hub.core.messages import Status
from hub.core.records import utc
from hub.settings import Settings

__all__ = ["EngineRecord", "Health", "derive_health"]


class Health(enum.StrEnum):
    """Health as judged by the hub, never trusted from the engine."""

    OK = "ok"
    LATE = "late"
    STALE = "stale"
    STALLED = "stalled"
    OFFLINE = "offline"
    STOPPED = "stopped"
    ERROR = "error"


@dataclass(slots=True)
class EngineRecord:
    """Everything the hub knows about one engine (by name), across its boots."""

    name: str
    first_seen: float
    index: int = 0  # hub-assigned; element ids derive from it, never from the engine's name
    mode: str = "paper"
    pid: int | None = None
    boot_id: str = ""
    boots: int = 0
    status: Status = Status.STARTING
    started_at: float | None = None
    last_heartbeat: float | None = None  # when the hub received it
    heartbeat_ts: float | None = None  # the time the engine put in it (its own clock)
    loop_tick: int | None = None
    loop_rate: float | None = None
    tick_changed_at: float | None = None
    universe_size: int | None = None
    open_positions: int | None = None
    last_error: str | None = None
    state: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    heartbeat_interval: float = 5.0
    connected: bool = False
    conn_id: int | None = None
    connected_at: float | None = None
    disconnected_at: float | None = None
    said_bye: bool = False
    hwm: int = 0  # highest seq received in this boot (dedupe)
    committed: int = 0  # highest seq of this boot the store made durable (welcome.last_seq)
    gaps: int = 0
    client_dropped: dict[str, int] = field(default_factory=dict)
    replaced: int = 0
    rejected: int = 0
    rate_limited: int = 0  # messages refused by the engine's rate limit (the client resends them)
    events: int = 0
    logs: int = 0
    errors: int = 0
    health: Health = Health.OK
    health_since: float = 0.0
    rate_history: deque[float] = field(default_factory=lambda: deque(maxlen=120))
    # messages whose ts was beyond max_past_seconds or max_future_seconds (flagged or rejected)
    flagged_timestamps: int = 0

    def new_boot(self, boot_id: str, last_seq: int) -> None:
        """Forget per-boot facts when the engine process restarted."""
        self.boot_id = boot_id
        self.boots += 1
        self.hwm = self.committed = last_seq
        self.status = Status.STARTING
        self.loop_tick = self.loop_rate = self.tick_changed_at = self.heartbeat_ts = None
        self.last_error = None
        self.state = {}
        self.gaps = 0
        self.client_dropped = {}
        self.rate_history.clear()

    @property
    def clock_skew(self) -> float | None:
        """The engine's clock minus the hub's at its last heartbeat (None: it sent no ts)."""
        if self.heartbeat_ts is None or self.last_heartbeat is None:
            return None
        return self.heartbeat_ts - self.last_heartbeat

    def card_facts(self) -> dict[str, Any]:
        """What the engine last reported, kept by the history store so a restarted hub shows it."""
        return {
            "status": self.status.value,
            "last_heartbeat": self.last_heartbeat,
            "loop_tick": self.loop_tick,
            "loop_rate": self.loop_rate,
            "universe_size": self.universe_size,
            "open_positions": self.open_positions,
            "last_error": self.last_error,
            "state": self.state,
            "heartbeat_interval": self.heartbeat_interval,
            "gaps": self.gaps,
            "dropped": self.client_dropped,
        }

    def as_dict(self, now: float, settings: Settings) -> dict[str, Any]:
        """The API shape (`/api/telemetry/engines`), with health derived at `now`."""
        last = self.last_heartbeat
        return {
            "name": self.name,
            "mode": self.mode,
            "pid": self.pid,
            "status": self.status,
            "started_at": utc(self.started_at) if self.started_at is not None else None,
            "last_heartbeat": utc(last) if last is not None else None,
            "last_heartbeat_ts": utc(self.heartbeat_ts) if self.heartbeat_ts is not None else None,
            "clock_skew": round(skew, 3) if (skew := self.clock_skew) is not None else None,
            "loop_tick": self.loop_tick,
            "universe_size": self.universe_size,
            "open_positions": self.open_positions,
            "last_error": self.last_error,
            "state": self.state,
            "health": derive_health(self, now, settings),
            "connected": self.connected,
            "boot_id": self.boot_id,
            "boots": self.boots,
            "heartbeat_interval": self.heartbeat_interval,
            "last_heartbeat_age": round(now - last, 3) if last is not None else None,
            "uptime_seconds": round(now - self.started_at, 3) if self.started_at else None,
            "loop_rate": self.loop_rate,
            "seq": self.hwm,
            "gaps": self.gaps,
            "dropped": self.client_dropped,
            "replaced": self.replaced,
            "rejected": self.rejected,
            "rate_limited": self.rate_limited,
            "events": self.events,
            "logs": self.logs,
            "errors": self.errors,
            "meta": self.meta,
        }


def derive_health(engine: EngineRecord, now: float, settings: Settings) -> Health:
    """Health at `now`: stopped > offline > stale > late > error > stalled > ok.

    Thresholds are multiples of the engine's own heartbeat interval.
    """
    if engine.said_bye or engine.status is Status.STOPPED:
        return Health.STOPPED
    if not engine.connected:
        return Health.OFFLINE
    interval = engine.heartbeat_interval
    seen = max(engine.last_heartbeat or 0.0, engine.connected_at or 0.0)
    silence = now - seen
    if silence > settings.stale_after * interval:
        return Health.STALE
    if silence > settings.late_after * interval:
        return Health.LATE
    if engine.status is Status.ERROR:
        return Health.ERROR
    changed = engine.tick_changed_at
    if (
        changed is not None
        and engine.status is Status.RUNNING
        and now - changed > settings.stalled_after * interval
    ):
        return Health.STALLED
    return Health.OK
