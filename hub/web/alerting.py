"""The hub's alerting: rules once per tick, alert history, SSE `hub.alert`, and the notifiers.

`Alerting.tick(state, store_problem, now)` runs in the runtime's ticker: the rules (sans-I/O)
say what holds, the book says what fired or resolved, the dispatcher says who hears of it, and
each receiver's `Notifier` sends in its own task. People act through `ack`, `silence` and
`unsilence`; every firing, resolve, ack, silence and delivery goes to the audit trail (history,
the engine's incident export).

In a cluster every node evaluates the rules and keeps the book (panels, API, SSE), but only the
holder of the alert lease plans and sends notifications. A node that takes the lease first reads
what the previous holders delivered (`Dispatcher.adopt`), so it sends what is firing and not yet
delivered, and the resolves nobody delivered, and repeats nothing (docs/alerts.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from hub.cluster import Lease, LocalLease
from hub.core.alerts import Alert, AlertBook, AlertState
from hub.core.handovers import Mark
from hub.core.ingested import Ingested
from hub.core.routes import Dispatcher, Outgoing
from hub.core.rules import RuleEngine
from hub.core.silences import Silence, Silences
from hub.core.state import HubState
from hub.settings import Settings
from hub.web.notifiers import Delivery, Notifier

__all__ = ["ALERT_EVENT", "Alerting"]

log = logging.getLogger(__name__)
_encode = msgspec.json.Encoder().encode
ALERT_EVENT = "hub.alert"

Audit = Callable[[str, str, str, str], None]  # (actor, action, detail, engine)
Publish = Callable[[str, bytes], None]  # (engine, SSE frame)
Keep = Callable[[Ingested], None]  # hands records to the history store


class Alerting:
    """Owns the rule engine, the alert book, silences, routes and one notifier per receiver."""

    def __init__(
        self,
        settings: Settings,
        audit: Audit,
        publish: Publish,
        keep: Keep,
        lease: Lease | None = None,
    ) -> None:
        alerts = settings.alerts
        self.lease: Lease = lease or LocalLease()
        self.term: int | None = None  # the lease term whose handover this node made
        self.settings = alerts
        self.rules = RuleEngine(alerts)
        self.book = AlertBook(alerts.resolve_after, alerts.max_alerts, alerts.recent_resolved)
        self.dispatcher = Dispatcher(alerts)
        self.silences = Silences(alerts.max_silences, alerts.max_silence)
        self.notifiers = {
            r.name: Notifier(r, self._delivered, settings.public_url.rstrip("/"), self._sending)
            for r in alerts.receivers
        }
        self.changes = 0  # bumps whenever what the panel shows changed
        self._audit, self._publish, self._keep = audit, publish, keep
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, silences: Iterable[Silence], now: float) -> None:
        """Take back stored silences and start one sending task per receiver."""
        self.silences.load(silences, now)
        for name, notifier in self.notifiers.items():
            self._tasks.append(asyncio.create_task(notifier.run(), name=f"alerts-{name}"))
        if self.notifiers:
            self._tasks.append(asyncio.create_task(self._follow_lease(), name="alerts-lease"))

    def _sending(self) -> bool:
        """Whether this node sends notifications: it holds the lease and took this term over."""
        return self.lease.held and self.term == self.lease.term

    async def _follow_lease(self) -> None:
        """Each time this node takes the lease: read the delivery marks, then take over."""
        lease = self.lease
        while True:
            if lease.held and self.term != lease.term:
                term = lease.term
                marks = await lease.marks()
                if marks is None:
                    await asyncio.sleep(1.0)  # Redis away: the lease will not last either
                    continue
                if lease.held and lease.term == term:
                    self.take_over(marks, term)
                continue
            await lease.wait_changed()

    def take_over(self, marks: list[Mark], term: int) -> None:
        """Start sending for lease `term`: what the holders delivered counts as sent here."""
        log.info("alert lease taken (term %d): %d delivery marks read", term, len(marks))
        self.term = term
        self.send(self.dispatcher.adopt(marks, self.book.firing(), self.book.recent))

    async def stop(self) -> None:
        """Cancel the sending tasks (what is still queued is not sent)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def tick(self, state: HubState, store_problem: str | None, now: float) -> None:
        """Evaluate every rule once, record what changed and hand notifications out."""
        changed = self.book.update(self.rules.evaluate(state, store_problem, now), now)
        for alert in changed:
            self._audit(
                "hub", f"alert.{alert.state}", f"{alert.rule}: {alert.summary}", alert.engine
            )
            self._announce(alert, now)
        self.silences.expire(now)
        resolved = [a for a in changed if a.state is AlertState.RESOLVED]
        if changed:
            self.changes += 1
        if not self._sending():
            self._hand_over()
            return  # another node sends (or the next holder will: docs/alerts.md)
        self.send(self.dispatcher.plan(self.book.firing(), resolved, self.silenced_at(now), now))

    def _hand_over(self) -> None:
        """The lease is not ours (any more): drop what is queued; its next holder sends it."""
        if self.term is None:
            return
        self.term = None
        dropped = sum(notifier.clear() for notifier in self.notifiers.values())
        log.info("alert lease lost: %d queued messages left to the next holder", dropped)

    def send(self, outgoing: Iterable[Outgoing]) -> None:
        """Queue each message on its receiver's notifier."""
        for out in outgoing:
            notifier = self.notifiers.get(out.receiver)
            if notifier is not None:
                notifier.offer(out)

    def silenced_at(self, now: float) -> Callable[[Alert], bool]:
        """Whether an alert is silenced at `now`."""
        return lambda alert: self.silences.covers(alert, now)

    def _announce(self, alert: Alert, now: float) -> None:
        """SSE `hub.alert` for subscribers (filtered by engine like every event)."""
        data = _encode(alert.view(self.silences.covers(alert, now)))
        self._publish(alert.engine, b"event: %s\ndata: %s\n\n" % (ALERT_EVENT.encode(), data))

    def _delivered(self, delivery: Delivery) -> None:
        """A message was sent or given up: history keeps it for each engine it was about."""
        outcome = (
            f"delivered after {delivery.attempts} attempt(s)"
            if delivery.ok
            else f"failed after {delivery.attempts} attempt(s): {delivery.error}"
        )
        detail = f"receiver {delivery.receiver!r}: {delivery.alerts} alert(s) {delivery.status} {outcome}"
        for engine in delivery.engines:
            self._audit("hub", "alert.delivery", detail, engine)
        if delivery.ok:
            at = time.time()
            self.lease.delivered(
                [
                    Mark(delivery.receiver, rule, engine, firing, at)
                    for (rule, engine), firing in delivery.sent
                ]
            )

    # -- people ------------------------------------------------------------------------------

    def ack(self, alert_id: int, actor: str, now: float) -> Alert | None:
        """Acknowledge a firing alert (it stops repeating); None when no such alert fires."""
        alert = self.book.ack(alert_id, actor, now)
        if alert is not None:
            self._audit(actor, "alert.ack", f"{alert.rule}: acknowledged", alert.engine)
            self._announce(alert, now)
            self.changes += 1
        return alert

    def silence(
        self, engine: str, rule: str, duration: float, comment: str, actor: str, now: float
    ) -> Silence:
        """Add a silence (raises BadSilence), keep it in history and audit it."""
        silence = self.silences.add(engine, rule, duration, comment, actor, now)
        self._store(silence)
        detail = f"silence {silence.id}: engine {engine!r} rule {rule!r} for {duration:.0f} s: {comment[:200]!r}"
        self._audit(actor, "silence.add", detail, "" if "*" in engine or "?" in engine else engine)
        self.changes += 1
        return silence

    def unsilence(self, silence_id: int, actor: str, now: float) -> Silence | None:
        """End a silence now; None when there is no such silence in force."""
        ended = self.silences.remove(silence_id, now)
        if ended is not None:
            self._store(ended)
            self._audit(actor, "silence.delete", f"silence {silence_id} ended", "")
            self.changes += 1
        return ended

    def _store(self, silence: Silence) -> None:
        changes = Ingested()
        changes.silences.append(silence)
        self._keep(changes)

    # -- views -------------------------------------------------------------------------------

    def view(self, now: float, engine: str | None = None) -> dict[str, Any]:
        """Firing, pending and recently resolved alerts (optionally of one engine), receivers."""
        covers = self.silenced_at(now)

        def shown(alerts: Iterable[Alert]) -> list[dict[str, Any]]:
            return [a.view(covers(a)) for a in alerts if engine is None or a.engine == engine]

        pending = [a for a in self.book.active.values() if a.state is AlertState.PENDING]
        return {
            "firing": shown(self.book.firing()),
            "pending": shown(pending),
            "resolved": shown(self.book.recent),
            "receivers": [n.status() for n in self.notifiers.values()],
            "refused": self.book.refused,
        }
