"""Who hears of an alert, and when: routes, repeat intervals, quiet time after resolve.

A small Alertmanager route tree: routes are tried in order, the first that matches takes the
alert unless it says `continue`. Per (receiver, alert) `Dispatcher` remembers what it sent, so a
firing alert is sent once and repeated at most every `repeat_interval` (not at all once
acknowledged), its resolve is sent once, and an alert that fires again soon after resolving
waits for `quiet_after_resolve` and the repeat interval: a flapping engine pages once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from hub.core.alert_settings import AlertSettings, Route
from hub.core.alerts import Alert, AlertKey, AlertState
from hub.core.handovers import Mark

__all__ = ["Dispatcher", "Outgoing", "routes_for"]


def routes_for(routes: Iterable[Route], alert: Alert) -> list[Route]:
    """The routes `alert` takes, in order (first match, plus those after a `continue`)."""
    taken: list[Route] = []
    for route in routes:
        m = route.match
        if (
            (not m.mode or alert.mode in m.mode)
            and (not m.engine or fnmatchcase(alert.engine, m.engine))
            and (not m.severity or alert.severity in m.severity)
            and (not m.rule or alert.rule in m.rule)
        ):
            taken.append(route)
            if not route.keep_going:
                break
    return taken


@dataclass(slots=True)
class _Sent:
    firing_at: float
    open: bool = True  # a firing was sent and its resolve was not (yet)
    resolved_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message for one receiver: the alerts of this tick that it should hear about."""

    receiver: str
    alerts: tuple[Alert, ...]

    @property
    def status(self) -> AlertState:
        """Firing while any alert in it fires (Alertmanager's group status)."""
        firing = any(a.state is AlertState.FIRING for a in self.alerts)
        return AlertState.FIRING if firing else AlertState.RESOLVED


class Dispatcher:
    """Decides, once per tick, which receivers get which alerts."""

    def __init__(self, settings: AlertSettings) -> None:
        self.settings = settings
        self.routes = settings.effective_routes()
        self._sent: dict[tuple[str, AlertKey], _Sent] = {}

    def plan(
        self,
        firing: Iterable[Alert],
        resolved: Iterable[Alert],
        silenced: Callable[[Alert], bool],
        now: float,
    ) -> list[Outgoing]:
        """Messages to send at `now`: one per receiver with something due (grouped by tick)."""
        if not self.routes:
            return []
        quiet = self.settings.quiet_after_resolve
        due: dict[str, list[Alert]] = {}
        for alert in firing:
            if silenced(alert):
                continue
            for route in routes_for(self.routes, alert):
                key = (route.receiver, alert.key)
                sent = self._sent.get(key)
                if sent is None:
                    ready = True
                elif sent.open:
                    ready = not alert.acked_by and now >= sent.firing_at + route.repeat_interval
                else:
                    ready = now >= max(
                        sent.firing_at + route.repeat_interval, sent.resolved_at + quiet
                    )
                if ready:
                    self._sent[key] = _Sent(now)
                    due.setdefault(route.receiver, []).append(alert)
        for alert in resolved:
            for route in routes_for(self.routes, alert):
                sent = self._sent.get((route.receiver, alert.key))
                if sent is not None and sent.open:
                    sent.open, sent.resolved_at = False, now
                    due.setdefault(route.receiver, []).append(alert)
        if len(self._sent) > 4 * self.settings.max_alerts:
            self._prune(now)
        return [Outgoing(name, tuple(alerts)) for name, alerts in due.items()]

    def adopt(
        self, marks: Iterable[Mark], firing: Iterable[Alert], recent: Iterable[Alert]
    ) -> list[Outgoing]:
        """Take over from another node: what it delivered (`marks`) becomes what this one sent;
        returns the resolves it never delivered (`recent` resolved alerts, newest first).
        The next `plan` sends every firing alert without a mark."""
        self._sent = {}
        for mark in marks:
            key = (mark.receiver, (mark.rule, mark.engine))
            self._sent[key] = _Sent(mark.at) if mark.firing else _Sent(mark.at, False, mark.at)
        still = {alert.key for alert in firing}
        latest: dict[AlertKey, Alert] = {}
        for alert in recent:
            latest.setdefault(alert.key, alert)
        due: dict[str, list[Alert]] = {}
        for (receiver, alert_key), sent in self._sent.items():
            resolved = latest.get(alert_key)
            if sent.open and alert_key not in still and resolved is not None:
                sent.open, sent.resolved_at = False, resolved.resolved_at or sent.firing_at
                due.setdefault(receiver, []).append(resolved)
        return [Outgoing(name, tuple(alerts)) for name, alerts in due.items()]

    def _prune(self, now: float) -> None:
        """Forget resolved alerts old enough that forgetting changes nothing."""
        longest = max((r.repeat_interval for r in self.routes), default=0.0)
        horizon = now - max(longest, self.settings.quiet_after_resolve)
        for key in [k for k, s in self._sent.items() if not s.open and s.firing_at < horizon]:
            del self._sent[key]
