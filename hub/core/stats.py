"""Hub-wide bookkeeping: counters (every drop with a reason) and the dirty marks live views read."""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = ["KINDS", "Dirty", "DirtySet", "Stats", "Topic"]

KINDS = ("hello", "heartbeat", "event", "metric", "log", "bye")


@dataclass(slots=True)
class Stats:
    """Hub-wide counters; every drop anywhere is counted with a reason."""

    frames: int = 0
    events_per_second: float = 0.0
    messages: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    rejected: Counter[str] = field(default_factory=Counter)
    drops: Counter[str] = field(default_factory=Counter)


class Topic(enum.Enum):
    """What part of the hub state a change touched."""

    ENGINES = "engines"  # the set of engines: one joined or was forgotten
    ENGINE = "engine"  # one engine's card facts (name: the engine)
    EVENTS = "events"  # the live ring of one event type (name: the type)
    LOGS = "logs"  # one engine's log tail (name: the engine)
    METRICS = "metrics"  # one engine's metrics (name: the engine)
    HUB = "hub"  # hub-wide figures (events/s, store health)
    ALERTS = "alerts"  # what the alerts panels show (fired, resolved, acked, silenced)
    SERIES = "series"  # one engine's stored metric series gained buckets (name: the engine)


class Dirty(NamedTuple):
    """One dirty mark: a topic and, where the topic has many, which one."""

    topic: Topic
    name: str = ""


class DirtySet:
    """Marks of what changes touched, e.g. Dirty(Topic.ENGINE, "fno"); live views drain them per tick."""

    __slots__ = ("keys",)

    def __init__(self) -> None:
        self.keys: set[Dirty] = set()

    def mark(self, topic: Topic, name: str = "") -> None:
        """Note that `topic` (`name`) changed and what shows it needs a re-render."""
        self.keys.add(Dirty(topic, name))

    def drain(self) -> set[Dirty]:
        """Take every key marked since the last drain."""
        keys, self.keys = self.keys, set()
        return keys
