"""Silences: for a while, alerts of an engine (glob) and rule send nothing (they still show).

Kept by the history store so they survive a restart; `Silences.load` takes them back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from hub.core.alerts import Alert
from hub.core.records import utc

__all__ = ["BadSilence", "Silence", "Silences"]

_PATTERN = re.compile(r"^[A-Za-z0-9_.*?-]{1,64}$")
MAX_COMMENT = 500


class BadSilence(ValueError):
    """A silence the hub refuses; the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class Silence:
    """Alerts of `engine` (glob) and `rule` (glob) send nothing from `starts` until `ends`."""

    id: int
    engine: str
    rule: str
    starts: float
    ends: float
    comment: str
    author: str

    def covers(self, alert: Alert, now: float) -> bool:
        """Whether this silence mutes `alert` at `now`."""
        return (
            self.starts <= now < self.ends
            and fnmatchcase(alert.engine, self.engine)
            and fnmatchcase(alert.rule, self.rule)
        )

    def view(self) -> dict[str, Any]:
        """The API shape."""
        return {
            "id": self.id,
            "engine": self.engine,
            "rule": self.rule,
            "starts": utc(self.starts),
            "ends": utc(self.ends),
            "comment": self.comment,
            "author": self.author,
        }


class Silences:
    """The silences in force, bounded in number and length."""

    def __init__(self, limit: int, longest: float) -> None:
        self.limit = limit
        self.longest = longest
        self.by_id: dict[int, Silence] = {}
        self._next = 1

    def load(self, silences: Iterable[Silence], now: float) -> None:
        """Take back silences kept by the store (expired ones are left out)."""
        for s in silences:
            self._next = max(self._next, s.id + 1)
            if s.ends > now and len(self.by_id) < self.limit:
                self.by_id[s.id] = s

    def add(
        self, engine: str, rule: str, duration: float, comment: str, author: str, now: float
    ) -> Silence:
        """A new silence from `now` for `duration` seconds; raises BadSilence."""
        for what, value in (("engine", engine), ("rule", rule)):
            if not _PATTERN.match(value):
                raise BadSilence(
                    f"{what} must be a name or glob of [A-Za-z0-9_.*?-], 1..64 characters "
                    f"(use * for any); got {value[:80]!r}"
                )
        if not 0 < duration <= self.longest:
            raise BadSilence(
                f"duration must be above 0 and at most {self.longest:.0f} s (got {duration:g})"
            )
        self.expire(now)
        if len(self.by_id) >= self.limit:
            raise BadSilence(f"{self.limit} silences are in force; delete one first")
        silence = Silence(
            self._next, engine, rule, now, now + duration, comment[:MAX_COMMENT], author[:64]
        )
        self._next += 1
        self.by_id[silence.id] = silence
        return silence

    def remove(self, silence_id: int, now: float) -> Silence | None:
        """End a silence now; returns it as kept (ending now), or None if there is none."""
        silence = self.by_id.pop(silence_id, None)
        if silence is None:
            return None
        return Silence(
            silence.id,
            silence.engine,
            silence.rule,
            silence.starts,
            now,
            silence.comment,
            silence.author,
        )

    def expire(self, now: float) -> None:
        """Drop silences that ended."""
        for key in [k for k, s in self.by_id.items() if s.ends <= now]:
            del self.by_id[key]

    def covers(self, alert: Alert, now: float) -> bool:
        """Whether any silence mutes `alert` at `now`."""
        return any(s.covers(alert, now) for s in self.by_id.values())
