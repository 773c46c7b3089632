"""Hub-wide bookkeeping: counters (every drop with a reason) and the dirty marks live views read."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = ["KINDS", "DirtySet", "Stats"]

KINDS = ("hello", "heartbeat", "event", "metric", "log", "bye")


@dataclass(slots=True)
class Stats:
    """Hub-wide counters; every drop anywhere is counted with a reason."""

    frames: int = 0
    events_per_second: float = 0.0
    messages: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    rejected: Counter[str] = field(default_factory=Counter)
    drops: Counter[str] = field(default_factory=Counter)


class DirtySet:
    """Keys of the views a change touched, e.g. ("engine", "fno"); live views drain them per tick."""

    __slots__ = ("keys",)

    def __init__(self) -> None:
        self.keys: set[tuple[str, str]] = set()

    def mark(self, kind: str, name: str = "") -> None:
        """Note that the view (`kind`, `name`) needs a re-render."""
        self.keys.add((kind, name))

    def drain(self) -> set[tuple[str, str]]:
        """Take every key marked since the last drain."""
        keys, self.keys = self.keys, set()
        return keys
