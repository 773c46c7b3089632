"""Per-engine bounded log tails."""

from __future__ import annotations

from collections import deque

from hub.core.records import LogRecord

__all__ = ["LEVELS", "LogTails", "level_number", "normalize_level"]

LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL", "TRACE": "DEBUG", "ERR": "ERROR"}


def normalize_level(level: str) -> str:
    """Upper-case level name with common aliases folded (WARN -> WARNING)."""
    upper = level.upper()
    return _ALIASES.get(upper, upper)


def level_number(level: str) -> int:
    """Numeric severity of a level name; unknown names rank as INFO."""
    return LEVELS.get(normalize_level(level), 20)


class LogTails:
    """The last `lines` log records of each engine."""

    def __init__(self, lines: int) -> None:
        self._lines = lines
        self.tails: dict[str, deque[LogRecord]] = {}
        self.evicted = 0

    def append(self, record: LogRecord) -> None:
        """Keep `record` in its engine's tail, evicting the oldest line when full."""
        tail = self.tails.get(record.engine)
        if tail is None:
            tail = self.tails[record.engine] = deque(maxlen=self._lines)
        elif len(tail) == self._lines:
            self.evicted += 1
        tail.append(record)

    def tail(self, engine: str, lines: int, min_level: str | None = None) -> list[LogRecord]:
        """Up to `lines` most recent records of `engine`, oldest first, at or above `min_level`."""
        records = self.tails.get(engine)
        if not records or lines <= 0:
            return []
        if min_level is None:
            return list(records)[-lines:]
        floor = level_number(min_level)
        out: list[LogRecord] = []
        for record in reversed(records):
            if level_number(record.level) >= floor:
                out.append(record)
                if len(out) >= lines:
                    break
        out.reverse()
        return out
