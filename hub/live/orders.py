"""Orders folded from their events: one row per order id with its progression (sans-I/O).

Engines send one `order_event` per step (create, partial, fill, reject, cancel). Pages show one
row per order: the newest facts and the steps it went through, oldest first. Only the events the
rings still hold are folded, and at most `scan` of them per render, so memory stays bounded.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from hub.core.records import EventRecord

__all__ = ["MAX_STEPS", "OrderRow", "Stage", "fold_orders", "stage_of"]

MAX_STEPS = 8  # steps shown per order; an order that steps more shows its newest ones


class Stage(enum.Enum):
    """Where an order is, from the engine's status word (which pages still show as text)."""

    OPEN = "open"
    PARTIAL = "partial"
    FILLED = "filled"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    OTHER = "other"


_STAGES = {
    **dict.fromkeys(("create", "created", "new", "open", "submitted", "placed"), Stage.OPEN),
    **dict.fromkeys(
        ("partial", "partial_fill", "partially_filled", "partially filled"), Stage.PARTIAL
    ),
    **dict.fromkeys(("fill", "filled", "complete", "completed", "executed"), Stage.FILLED),
    **dict.fromkeys(("reject", "rejected", "error", "failed"), Stage.REJECTED),
    **dict.fromkeys(("cancel", "cancelled", "canceled", "expired"), Stage.CANCELLED),
}


def stage_of(status: Any) -> Stage:
    """The stage an engine's status word means (OTHER for words we do not know)."""
    return _STAGES.get(str(status).strip().lower(), Stage.OTHER) if status else Stage.OTHER


@dataclass(slots=True)
class OrderRow:
    """One order: its id, engine, newest facts, and steps (status words) oldest first."""

    order_id: str
    engine: str
    first_ts: float
    last_ts: float
    payload: dict[str, Any] = field(default_factory=dict)  # newest non-null value of each field
    steps: list[tuple[Stage, Any]] = field(default_factory=list)  # oldest first
    more_steps: int = 0  # older steps not shown
    ids: list[int] = field(default_factory=list)  # event ids of `steps`, newest first

    @property
    def stage(self) -> Stage:
        """The newest step's stage."""
        return self.steps[-1][0] if self.steps else Stage.OTHER

    def get(self, key: str) -> Any:
        """The newest non-null value of payload field `key` (None if no event had one)."""
        return self.payload.get(key)


def fold_orders(newest_first: Iterable[EventRecord], limit: int) -> list[OrderRow]:
    """Up to `limit` orders, newest activity first, from order events given newest first."""
    rows: dict[tuple[str, str], OrderRow] = {}
    for record in newest_first:
        payload = record.data()
        raw_id = payload.get("order_id")
        order_id = str(raw_id)[:128] if raw_id not in (None, "") else f"seq {record.seq}"
        key = (record.engine, order_id)
        row = rows.get(key)
        if row is None:
            if len(rows) >= limit:
                continue  # an older order: only its later events would matter, and none come
            row = rows[key] = OrderRow(order_id, record.engine, record.ts, record.ts)
        row.first_ts = record.ts
        for name, value in payload.items():
            if value is not None:
                row.payload.setdefault(name, value)  # newest first: the first seen is the newest
        if len(row.steps) < MAX_STEPS:
            status = payload.get("status")
            row.steps.append((stage_of(status), status))
            row.ids.append(record.id)
        else:
            row.more_steps += 1
    for row in rows.values():
        row.steps.reverse()
    return list(rows.values())
