"""The engine registry record and the health the hub derives for it from `now`."""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from hub.core.lag import NO_LAG, LoopLag
from hub.core.messages import Status
from hub.core.records import utc
from hub.settings import Settings

__all__ = ["ERROR_WINDOW", "EngineRecord", "Health", "RecentCount", "derive_health"]

ERROR_WINDOW = 15 * 60.0  # seconds: cards count the errors of the last 15 minutes


class RecentCount:
    """Events per minute over a trailing window: bounded (one small bucket per minute)."""

    __slots__ = ("_buckets", "_window")

    def __init__(self, window: float = ERROR_WINDOW) -> None:
        self._window = window
        self._buckets: deque[list[int]] = deque(maxlen=int(window // 60) + 1)  # [minute, count]

    def add(self, now: float) -> None:
        """Count one event at `now`."""
        minute = int(now // 60)
        if self._buckets and self._buckets[-1][0] == minute:
            self._buckets[-1][1] += 1
        else:
            self._buckets.append([minute, 1])

    def count(self, now: float) -> int:
        """Events in the window ending at `now` (to the minute)."""
        first = int((now - self._window) // 60) + 1
        return sum(n for minute, n in self._buckets if minute >= first)


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
    # The last error as the card shows it: kept after the engine clears `last_error`, so the card
    # can say it is past ("recovered 12 min ago") instead of hiding or repeating it.
    error_text: str | None = None
    error_at: float | None = None  # hub time the error arrived
    recovered_at: float | None = None  # first healthy heartbeat after it
    recent_errors: RecentCount = field(default_factory=RecentCount)
    stopped_at: float | None = None  # hub time the engine said it stopped (bye or status)
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
        self.stopped_at = None
        self.loop_tick = self.loop_rate = self.tick_changed_at = self.heartbeat_ts = None
        self.last_error = None
        self.state = {}
        self.gaps = 0
        self.client_dropped = {}
        self.rate_history.clear()

    def note_error(self, text: str, now: float, count: bool = True) -> None:
        """A new error arrived at `now` (`count`: an `error` event, counted on the card)."""
        self.error_text, self.error_at, self.recovered_at = text, now, None
        if count:
            self.recent_errors.add(now)

    def note_status(self, status: Status, now: float) -> None:
        """The engine reported `status` at `now`: a stop is timed, running after an error heals it."""
        if status is Status.STOPPED and self.status is not Status.STOPPED:
            self.stopped_at = now
        elif status is not Status.STOPPED:
            self.stopped_at = None
        if (
            status is Status.RUNNING
            and self.error_at is not None
            and self.recovered_at is None
            and now > self.error_at  # not the batch that brought the error
        ):
            self.recovered_at = now
        self.status = status

    def note_bye(self, status: Status, now: float) -> None:
        """The engine said `bye` at `now` (with `status`, error included): it stopped then."""
        self.note_status(status, now)
        if self.stopped_at is None:
            self.stopped_at = now

    def ended_at(self) -> float | None:
        """When the engine went away (stopped or disconnected); None while it is here."""
        if self.status is Status.STOPPED or self.said_bye:
            return self.stopped_at or self.disconnected_at or self.last_heartbeat
        if not self.connected:
            return self.disconnected_at or self.last_heartbeat
        return None

    def uptime(self, now: float) -> float | None:
        """Seconds since the boot started, frozen at the moment the engine went away."""
        if self.started_at is None:
            return None
        end = self.ended_at()
        return max(0.0, (now if end is None else end) - self.started_at)

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
            "error_text": self.error_text,
            "error_at": self.error_at,
            "recovered_at": self.recovered_at,
            "stopped_at": self.stopped_at,
            "state": self.state,
            "heartbeat_interval": self.heartbeat_interval,
            "gaps": self.gaps,
            "dropped": self.client_dropped,
        }

    def as_dict(self, now: float, settings: Settings, lag: LoopLag = NO_LAG) -> dict[str, Any]:
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
            "health": derive_health(self, now, settings, lag),
            "connected": self.connected,
            "boot_id": self.boot_id,
            "boots": self.boots,
            "heartbeat_interval": self.heartbeat_interval,
            "last_heartbeat_age": round(now - last, 3) if last is not None else None,
            "uptime_seconds": round(up, 3) if (up := self.uptime(now)) is not None else None,
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


def derive_health(
    engine: EngineRecord, now: float, settings: Settings, lag: LoopLag = NO_LAG
) -> Health:
    """Health at `now`: stopped > offline > stale > late > error > stalled > ok.

    Thresholds are multiples of the engine's own heartbeat interval. Time the hub's loop was
    blind (`lag`) does not count as silence: a heartbeat waiting unread in the socket is on time.
    """
    if engine.said_bye or engine.status is Status.STOPPED:
        return Health.STOPPED
    if not engine.connected:
        return Health.OFFLINE
    interval = engine.heartbeat_interval
    seen = max(engine.last_heartbeat or 0.0, engine.connected_at or 0.0)
    silence = now - seen - lag.blind(seen, now)
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
        and now - changed - lag.blind(changed, now) > settings.stalled_after * interval
    ):
        return Health.STALLED
    return Health.OK
