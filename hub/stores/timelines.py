"""Timeline markers: what each stored record becomes on the timeline, shared by both stores.

The stores find the rows (events of the marker types, health transitions, boots, gaps, alert
audit entries) in a window; this module turns them into `TimelineItem`s and keeps the newest.
`read_timeline` is the SQLite store's query; the memory store filters what it holds.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Iterable
from itertools import chain
from typing import Any

import msgspec

from hub.core.records import AuditRecord, EventRecord, Transition
from hub.stores.base import TimelineItem, TimelineKind, TimelineQuery
from hub.stores.chunks import CHUNK_COLUMNS, decode_chunk

__all__ = [
    "ALERT_ACTIONS",
    "CHAIN_TYPES",
    "DETAIL_CHARS",
    "MARKER_TYPES",
    "alert_item",
    "boot_items",
    "bounds",
    "event_item",
    "gap_item",
    "is_alert",
    "newest",
    "read_timeline",
    "transition_item",
]

# Event types that are markers: the rest (indicators, cycles, scans) would bury them.
MARKER_TYPES = ("signal_event", "decision_trace", "order_event", "error")
CHAIN_TYPES = frozenset({"signal_event", "decision_trace", "order_event"})  # open /chain
ALERT_ACTIONS = ("alert.", "silence.")  # audit actions hub/web/alerting.py writes
DETAIL_CHARS = 160  # a marker's excerpt; the event itself is one click away
_LABELS = {"signal_event": "signal", "decision_trace": "decision", "error": "error"}


class _Order(msgspec.Struct):
    status: Any = None


_order = msgspec.json.Decoder(_Order).decode


def bounds(query: TimelineQuery) -> tuple[float, float]:
    """The window to read: [since, until), cut at the page cursor."""
    until = query.until if query.before is None else min(query.until, query.before)
    return query.since, until


def _excerpt(text: str | bytes) -> str:
    if isinstance(text, bytes):
        text = text[: DETAIL_CHARS * 4].decode(errors="replace")
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 1] + "…"


def event_item(event: EventRecord) -> TimelineItem:
    """A signal, decision, order (labelled with its status: fill, reject...) or error event."""
    kind = TimelineKind.ERROR if event.type == "error" else TimelineKind.EVENT
    label = _LABELS.get(event.type, event.type)
    if event.type == "order_event":
        try:
            status = _order(event.payload).status
        except msgspec.DecodeError:
            status = None
        label = f"order {str(status)[:24]}" if isinstance(status, str) and status else "order"
    return TimelineItem(
        event.ts, event.engine, kind, label, _excerpt(bytes(event.payload)), event.id, event.type
    )


def transition_item(change: Transition) -> TimelineItem:
    """A health transition, e.g. "ok → stale"."""
    label = f"{change.previous} → {change.health}"
    return TimelineItem(change.at, change.engine, TimelineKind.HEALTH, label)


def boot_items(
    engine: str,
    boot: dict[str, Any],
    first_start: float | None,
    since: float,
    until: float,
) -> list[TimelineItem]:
    """A boot's start (a restart unless it is the engine's first) and end, where in the window."""
    items = []
    started, ended = boot.get("started"), boot.get("ended")
    pid = boot.get("pid")
    if started is not None and since <= started < until:
        label = "boot" if first_start is None or started <= first_start else "restart"
        items.append(TimelineItem(started, engine, TimelineKind.BOOT, label, f"pid {pid}"))
    if ended is not None and since <= ended < until:
        how = str(boot.get("how") or "ended")
        items.append(TimelineItem(ended, engine, TimelineKind.STOP, f"stop ({how[:24]})"))
    return items


def gap_item(engine: str, first: int, last: int, reason: str, at: float) -> TimelineItem:
    """Messages first..last never stored."""
    detail = f"seq {first}–{last} ({last - first + 1} messages)"
    return TimelineItem(at, engine, TimelineKind.GAP, f"gap: {reason}", detail)


def is_alert(record: AuditRecord) -> bool:
    """An audit entry about an engine's alert or silence."""
    return bool(record.engine) and record.action.startswith(ALERT_ACTIONS)


def alert_item(record: AuditRecord) -> TimelineItem:
    """An alert firing, resolve, ack, silence or delivery."""
    return TimelineItem(
        record.ts, record.engine, TimelineKind.ALERT, record.action, _excerpt(record.detail)
    )


_RANK = {kind: rank for rank, kind in enumerate(TimelineKind)}


def _key(item: TimelineItem) -> tuple[float, int, int]:
    return item.ts, -_RANK[item.kind], item.event_id or 0


def newest(items: Iterable[TimelineItem], limit: int) -> list[TimelineItem]:
    """The `limit` newest markers, newest first (ties: a fixed order, so pages are stable)."""
    return heapq.nlargest(limit, items, key=_key)


def read_timeline(conn: sqlite3.Connection, query: TimelineQuery) -> list[TimelineItem]:
    """Markers of an SQLite history (hub/stores/schema.py), newest first, at most `limit`."""
    since, until = bounds(query)
    if since >= until:
        return []
    names = query.engines
    only = f" AND engine IN ({', '.join('?' * len(names))})" if names else ""
    items = _chunk_events(conn, query.limit, since, until, only, names)
    items += (
        transition_item(Transition(*row))
        for row in conn.execute(
            "SELECT engine, at, health, previous FROM transitions WHERE at >= ? AND at < ?"
            f"{only} ORDER BY at DESC LIMIT ?",
            (since, until, *names, query.limit),
        )
    )
    firsts = dict(
        conn.execute(f"SELECT engine, min(started) FROM boots WHERE 1{only} GROUP BY engine", names)
    )
    columns = ("boot_id", "pid", "started", "ended", "how")
    for engine, *row in conn.execute(
        "SELECT engine, boot_id, pid, started, ended, how FROM boots WHERE "
        f"((started >= ? AND started < ?) OR (ended >= ? AND ended < ?)){only}",
        (since, until, since, until, *names),
    ):
        boot = dict(zip(columns, row, strict=True))
        items += boot_items(engine, boot, firsts.get(engine), since, until)
    items += (
        gap_item(*row)
        for row in conn.execute(
            "SELECT engine, first_seq, last_seq, reason, at FROM gaps WHERE at >= ? AND at < ?"
            f"{only} ORDER BY at DESC LIMIT ?",
            (since, until, *names, query.limit),
        )
    )
    items += (
        alert_item(AuditRecord(*row))
        for row in conn.execute(
            "SELECT ts, actor, action, detail, engine FROM audit WHERE ts >= ? AND ts < ? "
            f"AND engine != '' AND (action LIKE 'alert.%' OR action LIKE 'silence.%'){only} "
            "ORDER BY ts DESC LIMIT ?",
            (since, until, *names, query.limit),
        )
    )
    return newest(items, query.limit)


def _chunk_events(
    conn: sqlite3.Connection,
    limit: int,
    since: float,
    until: float,
    only: str,
    names: tuple[str, ...],
) -> list[TimelineItem]:
    """Marker events in the window, through the `event_chunks_ts` index, type by type: first the
    few chunks that end after the window but start in or before it, then those ending in it,
    newest end first, until `limit` are kept and no chunk left can hold a newer one."""
    kept: list[tuple[float, int, EventRecord]] = []  # a min-heap of the newest `limit`
    head = f"SELECT {CHUNK_COLUMNS}, ts_max FROM event_chunks INDEXED BY event_chunks_ts WHERE type = ?"
    straddling = f"{head} AND ts_max >= ? AND ts_min < ?{only}"
    ending = f"{head} AND ts_max >= ? AND ts_max < ?{only} ORDER BY ts_max DESC"
    for kind in MARKER_TYPES:
        rows = chain(
            conn.execute(straddling, (kind, until, until, *names)),
            conn.execute(ending, (kind, since, until, *names)),
        )
        for _, *chunk, ts_max in rows:
            if len(kept) >= limit and ts_max < kept[0][0]:
                break  # the straddling chunks all end after the window: only `ending` stops
            for event in decode_chunk(*chunk):
                if since <= event.ts < until:
                    entry = (event.ts, event.id, event)
                    if len(kept) < limit:
                        heapq.heappush(kept, entry)
                    elif entry[:2] > kept[0][:2]:
                        heapq.heapreplace(kept, entry)
    return [event_item(event) for _, _, event in kept]
