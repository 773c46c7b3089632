"""Stored and served records: what the hub keeps of accepted events and log lines."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

__all__ = [
    "BootChange",
    "EventRecord",
    "EventView",
    "LogRecord",
    "LogView",
    "MetricsSnapshot",
    "Transition",
    "utc",
]


_decode_payload = msgspec.json.Decoder(dict[str, Any]).decode


def utc(ts: float) -> datetime:
    """Unix seconds as an aware UTC datetime (the API's timestamp format)."""
    return datetime.fromtimestamp(ts, UTC)


class EventView(msgspec.Struct, frozen=True, gc=False):
    """An event as the API, streams and exports show it (ISO-8601 timestamp, payload verbatim)."""

    id: int
    type: str
    timestamp: datetime
    received: datetime | None  # when the hub received it (None: stored before it kept that)
    engine: str
    seq: int
    boot_id: str
    payload: msgspec.Raw


def _utc_or_none(ts: float | None) -> datetime | None:
    return None if ts is None else utc(ts)


class EventRecord(msgspec.Struct, frozen=True, gc=False):
    """One accepted engine event; `id` is hub-wide, increasing, and the SSE event id.

    The payload stays the engine's raw JSON (validated on the way in): it is stored and served
    verbatim and decoded only where a page renders it. `received` is when its frame reached
    the hub (one clock read per frame, not per event); None in history kept before it was.
    """

    id: int
    type: str
    ts: float
    engine: str
    seq: int
    boot_id: str
    payload: msgspec.Raw
    received: float | None = None

    def view(self) -> EventView:
        """The output form."""
        return EventView(
            self.id,
            self.type,
            utc(self.ts),
            _utc_or_none(self.received),
            self.engine,
            self.seq,
            self.boot_id,
            self.payload,
        )

    def data(self) -> dict[str, Any]:
        """The decoded payload (an object, as the decoder checked)."""
        value: dict[str, Any] = _decode_payload(self.payload)
        return value


class LogView(msgspec.Struct, frozen=True, gc=False):
    """A log line as the API and exports show it: the engine's time, then the hub's."""

    id: int
    engine: str
    seq: int
    timestamp: datetime
    received: datetime | None
    level: str
    logger: str
    message: str
    exc: str | None
    extra: dict[str, Any]


class LogRecord(msgspec.Struct, frozen=True, gc=False):
    """One accepted engine log line; `received` as on EventRecord (None in older history)."""

    id: int
    engine: str
    seq: int
    timestamp: datetime
    level: str
    logger: str
    message: str
    exc: str | None = None
    extra: dict[str, Any] = {}
    received: float | None = None

    def view(self) -> LogView:
        """The output form."""
        return LogView(
            self.id,
            self.engine,
            self.seq,
            self.timestamp,
            _utc_or_none(self.received),
            self.level,
            self.logger,
            self.message,
            self.exc,
            self.extra,
        )


class BootChange(msgspec.Struct, frozen=True, gc=False):
    """An engine boot started, resumed or ended; `how` says how it ended (None while running)."""

    engine: str
    boot_id: str
    pid: int | None
    mode: str
    started: float | None
    ended: float | None = None
    how: str | None = None
    meta: dict[str, Any] = {}


class Transition(msgspec.Struct, frozen=True, gc=False):
    """An engine's hub-derived health changed at `at` (kept for the timeline)."""

    engine: str
    at: float
    health: str  # a hub.core.engines.Health value
    previous: str


class MetricsSnapshot(msgspec.Struct, frozen=True, gc=False):
    """An engine's metric series and last reported card facts, serialized for the store."""

    engine: str
    boot_id: str
    series: list[dict[str, Any]]
    card: dict[str, Any] = {}


class AuditRecord(msgspec.Struct, frozen=True, gc=False):
    """Who did what to the hub, and when: sign-ins, failures, tokens, forgets, silences.

    `detail` never holds a secret: callers pass names, never passwords or tokens.
    """

    ts: float
    actor: str  # a user or token name, "proxy:NAME", an address for failures, or "hub"
    action: str  # e.g. "sign_in", "sign_in_failed", "credentials_reloaded", "engine_forgotten"
    detail: str = ""
    engine: str = ""  # the engine it concerns, "" for the hub as a whole

    def view(self) -> dict[str, Any]:
        """As the API and exports show it."""
        return {
            "timestamp": utc(self.ts),
            "actor": self.actor,
            "action": self.action,
            "detail": self.detail,
            "engine": self.engine or None,
        }
