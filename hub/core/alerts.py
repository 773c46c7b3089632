"""Alerts and their lifecycle: pending -> firing -> resolved, with `for` and a minimum resolve time.

`AlertBook.update(conditions, now)` takes what the rules found true this tick and returns the
alerts that started firing or resolved. A condition must hold for its rule's `for` before the
alert fires, and stay clear for `resolve_after` before it resolves, so an engine that flaps every
few seconds stays one firing alert instead of paging on each flap.
"""

from __future__ import annotations

import enum
import itertools
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from hub.core.alert_settings import Severity
from hub.core.records import utc

__all__ = ["Alert", "AlertBook", "AlertKey", "AlertState", "Condition"]

AlertKey = tuple[str, str]  # (rule, engine); engine "" for the hub itself


class AlertState(enum.StrEnum):
    """Where an alert is in its lifecycle."""

    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Condition:
    """A rule found true for one engine at this tick: what it says and how long it must hold."""

    rule: str
    engine: str
    mode: str
    severity: Severity
    summary: str
    hold: float

    @property
    def key(self) -> AlertKey:
        """The alert this condition feeds."""
        return (self.rule, self.engine)


@dataclass(slots=True)
class Alert:
    """One alert: its rule, engine, state and the times it went through."""

    id: int
    rule: str
    engine: str
    mode: str
    severity: Severity
    summary: str
    state: AlertState
    since: float  # when the condition first held
    fired_at: float | None = None
    resolved_at: float | None = None
    clear_since: float | None = None  # firing, but the condition has been clear since then
    acked_by: str = ""
    acked_at: float | None = None

    @property
    def key(self) -> AlertKey:
        """(rule, engine)."""
        return (self.rule, self.engine)

    def view(self, silenced: bool = False) -> dict[str, Any]:
        """The API and SSE shape of this alert."""
        return {
            "id": self.id,
            "rule": self.rule,
            "engine": self.engine,
            "mode": self.mode,
            "severity": self.severity,
            "state": self.state,
            "summary": self.summary,
            "since": utc(self.since),
            "fired_at": utc(self.fired_at) if self.fired_at is not None else None,
            "resolved_at": utc(self.resolved_at) if self.resolved_at is not None else None,
            "acked_by": self.acked_by or None,
            "silenced": silenced,
        }


class AlertBook:
    """Active alerts by key and a bounded list of recently resolved ones."""

    def __init__(self, resolve_after: float, max_alerts: int, recent: int) -> None:
        self.resolve_after = resolve_after
        self.max_alerts = max_alerts
        self.active: dict[AlertKey, Alert] = {}
        self.recent: deque[Alert] = deque(maxlen=recent)
        self.refused = 0  # conditions not tracked because max_alerts were active
        self._ids = itertools.count(1)

    def update(self, conditions: Mapping[AlertKey, Condition], now: float) -> list[Alert]:
        """Apply this tick's conditions at `now`; returns alerts that fired or resolved."""
        changed: list[Alert] = []
        for key, cond in conditions.items():
            alert = self.active.get(key)
            if alert is None:
                if len(self.active) >= self.max_alerts:
                    self.refused += 1
                    continue
                alert = Alert(
                    next(self._ids),
                    cond.rule,
                    cond.engine,
                    cond.mode,
                    cond.severity,
                    cond.summary,
                    AlertState.PENDING,
                    now,
                )
                self.active[key] = alert
            alert.summary, alert.mode, alert.clear_since = cond.summary, cond.mode, None
            if alert.state is AlertState.PENDING and now - alert.since >= cond.hold:
                alert.state, alert.fired_at = AlertState.FIRING, now
                changed.append(alert)
        for key in [k for k in self.active if k not in conditions]:
            alert = self.active[key]
            if alert.state is AlertState.PENDING:
                del self.active[key]  # never fired: nobody heard of it, nothing to resolve
                continue
            if alert.clear_since is None:
                alert.clear_since = now
            if now - alert.clear_since >= self.resolve_after:
                alert.state, alert.resolved_at = AlertState.RESOLVED, now
                del self.active[key]
                self.recent.appendleft(alert)
                changed.append(alert)
        return changed

    def firing(self) -> Iterator[Alert]:
        """Firing alerts, most severe then oldest first."""
        order = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}
        alerts = [a for a in self.active.values() if a.state is AlertState.FIRING]
        return iter(sorted(alerts, key=lambda a: (order[a.severity], a.fired_at or 0.0)))

    def find(self, alert_id: int) -> Alert | None:
        """The active or recent alert with `alert_id`."""
        for alert in itertools.chain(self.active.values(), self.recent):
            if alert.id == alert_id:
                return alert
        return None

    def ack(self, alert_id: int, actor: str, now: float) -> Alert | None:
        """Acknowledge a firing alert: it stops repeating until it resolves (None: not firing)."""
        alert = self.active.get(self.key_of(alert_id) or ("", ""))
        if alert is None or alert.state is not AlertState.FIRING:
            return None
        alert.acked_by, alert.acked_at = actor[:64], now
        return alert

    def key_of(self, alert_id: int) -> AlertKey | None:
        """The key of the active alert with `alert_id`."""
        return next((k for k, a in self.active.items() if a.id == alert_id), None)
