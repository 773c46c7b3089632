"""What the bridge already forwarded, so that each record goes to the hub once (sans-I/O)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hub.bridge.files import EngineReport, MetricValue, RecordKind

__all__ = ["Ledger"]

MAX_KEYS = 10_000  # record keys remembered per (engine, directory): above the documents' retention
MAX_ENGINES = 256
VERSION = 1


class Ledger:
    """Records sent per engine and directory, counter values sent, and each engine's last beat.

    It is saved (by the runner) only after the hub acknowledged what it lists, so a restarted
    bridge neither resends what the hub has nor skips what it never got.
    """

    def __init__(self) -> None:
        self.records: dict[str, dict[str, set[str]]] = {}  # engine -> directory -> keys
        self.counters: dict[str, dict[str, float]] = {}  # engine -> "name|tags" -> value sent
        self.beats: dict[str, list[Any]] = {}  # engine -> [pid, started_at, last_heartbeat, status]

    # Records.

    def unsent(self, engine: str, kind: RecordKind, keys: Iterable[str]) -> list[str]:
        """The keys of `kind` not forwarded yet, oldest first (the names sort by time)."""
        sent = self.records.get(engine, {}).get(kind.value, set())
        return sorted(k for k in keys if k not in sent)

    def mark_sent(self, engine: str, kind: RecordKind, key: str) -> None:
        """`key` was handed to the client."""
        if engine in self.records or len(self.records) < MAX_ENGINES:
            self.records.setdefault(engine, {}).setdefault(kind.value, set()).add(key)

    def forget_missing(self, engine: str, kind: RecordKind, present: set[str]) -> None:
        """Drop keys whose files are gone (rotated out), keeping the ledger as small as the disk."""
        sent = self.records.get(engine, {}).get(kind.value)
        if sent is not None:
            sent &= present
            if len(sent) > MAX_KEYS:
                sent.difference_update(sorted(sent)[: len(sent) - MAX_KEYS])

    # Counters: metrics.json holds totals; the hub takes increments.

    def counter_delta(self, engine: str, metric: MetricValue) -> float:
        """What to add on the hub for a counter total; a smaller total is a reset (a new session)."""
        key = f"{metric.name}|{sorted(metric.tags.items())}"
        sent = self.counters.setdefault(engine, {})
        before = sent.get(key, 0.0)
        delta = metric.value - before if metric.value >= before else metric.value
        if key in sent or len(sent) < 5000:
            sent[key] = metric.value
        return delta

    # Engine files: a heartbeat per new last_heartbeat, one bye per stopped boot.

    def beat_is_new(self, report: EngineReport) -> bool:
        """True unless this exact heartbeat (boot, time and status) was forwarded already."""
        return self.beats.get(report.name) != [*report.boot, report.beat, report.status]

    def mark_beat(self, report: EngineReport) -> None:
        """The report's heartbeat was handed to the client."""
        if report.name in self.beats or len(self.beats) < MAX_ENGINES:
            self.beats[report.name] = [*report.boot, report.beat, report.status]

    def stopped(self, report: EngineReport) -> bool:
        """True when this boot's stop was already forwarded (a restarted bridge says no bye twice)."""
        last = self.beats.get(report.name)
        return last is not None and last[:2] == list(report.boot) and last[3] == "stopped"

    # Persistence.

    def to_json(self) -> dict[str, Any]:
        """A JSON-able copy."""
        return {
            "version": VERSION,
            "records": {
                e: {d: sorted(keys) for d, keys in dirs.items()} for e, dirs in self.records.items()
            },
            "counters": self.counters,
            "beats": self.beats,
        }

    @classmethod
    def from_json(cls, data: Any) -> Ledger:
        """A ledger from `to_json` output; anything unreadable starts an empty one."""
        ledger = cls()
        if not isinstance(data, dict) or data.get("version") != VERSION:
            return ledger
        try:
            ledger.records = {
                str(e): {str(d): {str(k) for k in keys} for d, keys in dirs.items()}
                for e, dirs in data.get("records", {}).items()
            }
            ledger.counters = {
                str(e): {str(k): float(v) for k, v in values.items()}
                for e, values in data.get("counters", {}).items()
            }
            ledger.beats = {str(e): list(v)[:4] for e, v in data.get("beats", {}).items()}
        except (AttributeError, TypeError, ValueError):
            return cls()
        return ledger
