"""LogTails: per-engine bounded tails, ordering, the lines cap and the level filter."""

from __future__ import annotations

import pytest

from hub.core.logs import LogTails, level_number, normalize_level
from hub.core.records import LogRecord, utc


def line(id: int, level: str = "INFO", engine: str = "fno") -> LogRecord:
    return LogRecord(id, engine, id, utc(1_700_000_000 + id), level, "engine.fno", f"line {id}")


def tails_with(*records: LogRecord, lines: int = 100) -> LogTails:
    tails = LogTails(lines)
    for record in records:
        tails.append(record)
    return tails


def ids(records: list[LogRecord]) -> list[int]:
    return [record.id for record in records]


def test_tail_is_oldest_first() -> None:
    """The tail reads like a log file: oldest line first, newest last."""
    tails = tails_with(*(line(i) for i in range(1, 6)))
    assert ids(tails.tail("fno", 100)) == [1, 2, 3, 4, 5]


def test_tail_returns_the_most_recent_lines() -> None:
    """Asking for fewer lines returns the newest ones."""
    tails = tails_with(*(line(i) for i in range(1, 6)))
    assert ids(tails.tail("fno", 2)) == [4, 5]


def test_tail_capacity_evicts_oldest_and_counts() -> None:
    """Each engine keeps at most `lines` records; older ones are evicted and counted."""
    tails = tails_with(*(line(i) for i in range(1, 8)), lines=3)
    assert ids(tails.tail("fno", 100)) == [5, 6, 7]
    assert tails.evicted == 4


def test_tails_are_per_engine() -> None:
    """One engine's flood does not evict another engine's lines."""
    tails = tails_with(line(1, engine="equity"), *(line(i) for i in range(2, 10)), lines=3)
    assert ids(tails.tail("equity", 10)) == [1]
    assert tails.tail("options", 10) == []


def test_level_filter() -> None:
    """min_level keeps records at or above it, newest `lines` of them, oldest first."""
    levels = ["DEBUG", "INFO", "WARNING", "ERROR", "INFO", "CRITICAL", "WARNING"]
    tails = tails_with(*(line(i, level) for i, level in enumerate(levels, 1)))
    assert ids(tails.tail("fno", 100, "WARNING")) == [3, 4, 6, 7]
    assert ids(tails.tail("fno", 2, "WARNING")) == [6, 7]
    assert ids(tails.tail("fno", 100, "ERROR")) == [4, 6]
    assert ids(tails.tail("fno", 100, "DEBUG")) == [1, 2, 3, 4, 5, 6, 7]


def test_level_filter_accepts_aliases_and_case() -> None:
    """The filter understands WARN, warn and FATAL as well as the canonical names."""
    tails = tails_with(line(1, "INFO"), line(2, "WARNING"), line(3, "CRITICAL"))
    assert ids(tails.tail("fno", 10, "WARN")) == [2, 3]
    assert ids(tails.tail("fno", 10, "warn")) == [2, 3]
    assert ids(tails.tail("fno", 10, "FATAL")) == [3]


def test_record_levels_are_compared_by_severity() -> None:
    """Records stored with an alias level are filtered by its severity."""
    tails = tails_with(line(1, "WARN"), line(2, "TRACE"), line(3, "ERR"))
    assert ids(tails.tail("fno", 10, "WARNING")) == [1, 3]


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("WARN", "WARNING"),
        ("warn", "WARNING"),
        ("FATAL", "CRITICAL"),
        ("TRACE", "DEBUG"),
        ("ERR", "ERROR"),
        ("info", "INFO"),
        ("Notice", "NOTICE"),
    ],
)
def test_normalize_level(given: str, normal: str) -> None:
    """Level names are upper-cased with common aliases folded."""
    assert normalize_level(given) == normal


def test_level_numbers() -> None:
    """Levels rank like the logging module; unknown names rank as INFO."""
    assert [level_number(n) for n in ("debug", "INFO", "warn", "ERROR", "fatal")] == [
        10,
        20,
        30,
        40,
        50,
    ]
    assert level_number("NOTICE") == 20


def test_zero_lines_without_filter_is_empty() -> None:
    """Asking for zero lines returns nothing."""
    assert tails_with(line(1)).tail("fno", 0) == []


def test_zero_lines_with_filter_is_empty() -> None:
    """Asking for zero lines with a level filter returns nothing too."""
    assert tails_with(line(1)).tail("fno", 0, "INFO") == []
