"""Refill a fresh hub state from stored history, so a restarted hub shows the same picture at once."""

from __future__ import annotations

from hub.messages import Status
from hub.state import HubState
from hub.stores.base import Restored

__all__ = ["restore"]


def restore(state: HubState, restored: Restored, now: float) -> None:
    """Engines come back offline (or stopped) until they reconnect; rings, tails and metrics refill."""
    state.continue_ids(restored.next_event_id, restored.next_log_id)
    for boot in restored.boots:
        engine = state.engines.get(boot["engine"]) or state.add_engine(boot["engine"], now)
        engine.boot_id = boot["boot_id"]
        engine.boots = 1
        engine.hwm = boot["last_seq"] or 0
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
    for record in restored.events:
        state.rings.append(record)
        owner = state.engines.get(record.engine)
        if owner is not None:
            owner.events += 1
            owner.errors += record.type == "error"
    for line in restored.logs:
        state.logs.append(line)
    for row in restored.metrics:
        owner = state.engines.get(row["engine"])
        same_boot = owner is not None and owner.boot_id == row["boot_id"]
        state.metrics.restore_rows(row["engine"], row["series"], same_boot)
    state.dirty.mark("engines")
