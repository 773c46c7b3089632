"""One sending task per receiver, each behind its own bounded queue.

`Notifier.offer` never blocks: the message is rendered at once (a snapshot of the alerts) and
queued; when the queue is full the oldest message is dropped and counted. The task sends with a
timeout and retries with exponential backoff, so a receiver that hangs or fails delays only its
own queue: never ingest, the dashboard or another receiver.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hub.core.alert_settings import ReceiverConfig
from hub.core.alerts import AlertKey, AlertState
from hub.core.routes import Outgoing
from hub.core.throttles import LogThrottle
from hub.web.receivers import DeliveryError, post_json, render

__all__ = ["Delivery", "Notifier"]

log = logging.getLogger(__name__)
MAX_BACKOFF = 60.0


@dataclass(frozen=True, slots=True)
class Delivery:
    """How one message ended: sent (after `attempts`) or given up, and about which engines."""

    receiver: str
    ok: bool
    attempts: int
    alerts: int
    status: str
    engines: tuple[str, ...]
    error: str = ""
    sent: tuple[tuple[AlertKey, bool], ...] = ()  # each alert's key and whether it said firing


@dataclass(slots=True)
class _Message:
    url: str = field(repr=False)
    body: bytes = field(repr=False)
    alerts: int
    status: str
    engines: tuple[str, ...]
    sent: tuple[tuple[AlertKey, bool], ...]


class Notifier:
    """Sends one receiver's messages in order, in its own task."""

    def __init__(
        self,
        receiver: ReceiverConfig,
        done: Callable[[Delivery], None],
        external_url: str = "",
        may_send: Callable[[], bool] = lambda: True,
    ) -> None:
        self.receiver = receiver
        self._done = done
        self._may_send = may_send  # the alert lease: a node that lost it sends nothing more
        self._external_url = external_url
        self._queue: deque[_Message] = deque()
        self._wake = asyncio.Event()
        self.sent = 0  # messages delivered
        self.failed = 0  # attempts that failed (each retry counts)
        self.dropped = 0  # messages given up after every attempt, or pushed out of a full queue
        self.last_error = ""
        self.last_sent: float | None = None
        self._log = LogThrottle(60.0, 1)  # a dead receiver logs one line a minute, not one a try

    def offer(self, out: Outgoing) -> None:
        """Queue a message for `out` (never blocks; a full queue drops its oldest)."""
        url, body = render(self.receiver, out, self._external_url)
        engines = tuple(sorted({a.engine for a in out.alerts}))
        sent = tuple((a.key, a.state is AlertState.FIRING) for a in out.alerts)
        if len(self._queue) >= self.receiver.queue:
            self._queue.popleft()
            self.dropped += 1
            log.warning("receiver %r: queue full; dropped its oldest message", self.receiver.name)
        self._queue.append(_Message(url, body, len(out.alerts), str(out.status), engines, sent))
        self._wake.set()

    def clear(self) -> int:
        """Forget what is queued (the lease moved: its next holder sends what was not delivered)."""
        count = len(self._queue)
        self._queue.clear()
        return count

    @property
    def queued(self) -> int:
        """Messages waiting."""
        return len(self._queue)

    def status(self) -> dict[str, Any]:
        """Counters for the API and /metrics (the receiver's URL is never part of it)."""
        return {
            "name": self.receiver.name,
            "type": str(self.receiver.kind),
            "sent": self.sent,
            "failed": self.failed,
            "dropped": self.dropped,
            "queued": self.queued,
            "last_error": self.last_error or None,
            "last_sent": self.last_sent,
        }

    async def run(self) -> None:
        """Send queued messages until cancelled."""
        while True:
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            message = self._queue.popleft()
            delivery = await self._send(message)
            if delivery is not None:
                self._done(delivery)

    async def _send(self, message: _Message) -> Delivery | None:
        """Send with retries; None if the lease moved first (the next holder sends it)."""
        name, attempts = self.receiver.name, self.receiver.attempts
        error = ""
        for attempt in range(1, attempts + 1):
            if not self._may_send():  # the lease moved while this message waited or retried
                return None
            try:
                code = await post_json(message.url, message.body, self.receiver.timeout)
                if 200 <= code < 300:
                    self.sent += 1
                    self.last_sent = time.time()
                    return Delivery(
                        name,
                        True,
                        attempt,
                        message.alerts,
                        message.status,
                        message.engines,
                        sent=message.sent,
                    )
                error = f"answered HTTP {code}"
            except DeliveryError as exc:
                error = str(exc)
            self.failed += 1
            self.last_error = error
            held = self._log.due("failed", time.time())
            if held is not None:
                log.warning(
                    "receiver %r: attempt %d of %d failed: %s (%d failures not logged before)",
                    name,
                    attempt,
                    attempts,
                    error,
                    held,
                )
            if attempt < attempts:
                await asyncio.sleep(min(self.receiver.backoff * 2 ** (attempt - 1), MAX_BACKOFF))
        self.dropped += 1
        return Delivery(
            name, False, attempts, message.alerts, message.status, message.engines, error
        )
