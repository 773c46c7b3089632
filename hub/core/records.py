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
    "MetricsSnapshot",
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
    engine: str
    seq: int
    boot_id: str
    payload: msgspec.Raw


class EventRecord(msgspec.Struct, frozen=True, gc=False):
    """One accepted engine event; `id` is hub-wide, increasing, and the SSE event id.

    The payload stays the engine's raw JSON (validated on the way in): it is stored and served
    verbatim and decoded only where a page renders it.
    """

    id: int
    type: str
    ts: float
    engine: str
    seq: int
    boot_id: str
    payload: msgspec.Raw

    def view(self) -> EventView:
        """The output form."""
        return EventView(
            self.id, self.type, utc(self.ts), self.engine, self.seq, self.boot_id, self.payload
        )

    def data(self) -> dict[str, Any]:
        """The decoded payload (an object, as the decoder checked)."""
        value: dict[str, Any] = _decode_payload(self.payload)
        return value


class LogRecord(msgspec.Struct, frozen=True, gc=False):
    """One accepted engine log line."""

    id: int
    engine: str
    seq: int
    timestamp: datetime
    level: str
    logger: str
    message: str
    exc: str | None = None
    extra: dict[str, Any] = {}


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
