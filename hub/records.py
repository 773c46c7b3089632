"""Stored and served records: what the hub keeps of accepted events and log lines."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

__all__ = ["EventRecord", "LogRecord", "utc"]


def utc(ts: float) -> datetime:
    """Unix seconds as an aware UTC datetime (the API's timestamp format)."""
    return datetime.fromtimestamp(ts, UTC)


class EventRecord(msgspec.Struct, frozen=True, gc=False):
    """One accepted engine event; `id` is hub-wide, increasing, and the SSE event id."""

    id: int
    type: str
    timestamp: datetime
    engine: str
    seq: int
    boot_id: str
    payload: dict[str, Any]


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
