"""Refill a fresh hub state from stored history, so a restarted hub shows the same picture at once."""

from __future__ import annotations

from typing import Any

from hub.core.engines import EngineRecord
from hub.core.messages import Status
from hub.core.records import EventRecord
from hub.core.state import HubState
from hub.core.stats import Topic
from hub.stores.base import Restored

__all__ = ["restore"]


def restore(state: HubState, restored: Restored, now: float) -> None:
    """Engines come back offline (or stopped) until they reconnect; rings, tails and metrics refill.

    An engine an admin forgot stays forgotten: its boot, events and log lines from before the
    forget are not brought back (its history stays in the store); a later boot comes back as usual.
    """
    state.continue_ids(restored.next_event_id, restored.next_log_id)
    forgotten = restored.forgotten

    def before_forget(engine: str, ts: float | None) -> bool:
        at = forgotten.get(engine)
        return at is not None and (ts is None or ts <= at)

    for boot in restored.boots:
        if before_forget(boot["engine"], boot["started"]):
            continue
        engine = state.engines.get(boot["engine"]) or state.add_engine(boot["engine"], now)
        engine.boot_id = boot["boot_id"]
        engine.boots = 1
        engine.hwm = engine.committed = boot["last_seq"] or 0
        engine.pid = boot["pid"]
        engine.mode = boot["mode"] or engine.mode
        engine.meta = boot["meta"]
        engine.started_at = boot["started"]
        engine.disconnected_at = boot["ended"] or now
        how = boot["how"] or ""
        engine.said_bye = how.startswith("bye")
        engine.status = (
            Status.ERROR
            if how == "bye:error"
            else Status.STOPPED
            if engine.said_bye
            else Status.RUNNING
        )
    kept: dict[int, EventRecord] = {}
    for record in restored.events:
        if before_forget(record.engine, record.received or record.ts):
            continue
        kept[record.id] = record
        state.rings.append(record)
        owner = state.engines.get(record.engine)
        if owner is not None:
            owner.events += 1
            owner.errors += record.type == "error"
    for link in restored.links:  # so restored rows still link to their chains
        if link.event_id in kept:
            state.chains.add(link, kept[link.event_id])
    for line in restored.logs:
        if before_forget(line.engine, line.received or line.timestamp.timestamp()):
            continue
        state.logs.append(line)
        owner = state.engines.get(line.engine)
        if owner is not None:
            owner.logs += 1
    for row in restored.metrics:
        owner = state.engines.get(row["engine"])
        if owner is None and row["engine"] in forgotten:
            continue
        same_boot = owner is not None and owner.boot_id == row["boot_id"]
        state.metrics.restore_rows(row["engine"], row["series"], same_boot)
        if owner is not None and same_boot:
            _card(owner, row.get("card") or {})
    state.dirty.mark(Topic.ENGINES)


def _card(engine: EngineRecord, card: dict[str, Any]) -> None:
    """Last reported facts (status stays what the boot's end says, unless it was error)."""
    engine.last_heartbeat = card.get("last_heartbeat")
    engine.loop_tick = card.get("loop_tick")
    engine.loop_rate = card.get("loop_rate")
    engine.universe_size = card.get("universe_size")
    engine.open_positions = card.get("open_positions")
    engine.last_error = card.get("last_error")
    engine.error_text = card.get("error_text", engine.last_error)
    engine.error_at = card.get("error_at")
    engine.recovered_at = card.get("recovered_at")
    engine.stopped_at = card.get("stopped_at") or engine.stopped_at
    engine.state = card.get("state") or {}
    engine.heartbeat_interval = card.get("heartbeat_interval") or engine.heartbeat_interval
    engine.gaps = card.get("gaps") or 0
    engine.client_dropped = card.get("dropped") or {}
    if not engine.said_bye and card.get("status") == "error":
        engine.status = Status.ERROR
