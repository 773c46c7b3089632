"""Time ranges for history views: a preset, a custom window or "around this moment", and back to a URL.

`TimeRange.parse` takes the raw query values (`range`, `around`, `since`, `until`) and `now`;
`query()` renders the range as the query parameters that reproduce it, so a link shows a
colleague the same picture. Preset ranges (`range=1h`) stay relative to now (a live view);
custom and "around" ranges are absolute.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = [
    "AROUND_SPAN",
    "DEFAULT_SPAN",
    "MAX_SPAN",
    "MIN_SPAN",
    "PRESETS",
    "TimeRange",
    "format_duration",
    "parse_duration",
    "parse_when",
]

PRESETS = ("15m", "1h", "6h", "24h", "7d")  # what the range picker offers
DEFAULT_SPAN = 3600.0
AROUND_SPAN = 600.0  # "around" a moment: ±5 min unless `range` says how wide
MIN_SPAN = 10.0  # narrower than this shows nothing useful on one axis
MAX_SPAN = 31 * 86_400.0  # a month: longer than any retention we ship by default
LIVE_SLACK = 5.0  # a range ending this close to now still counts as "includes now"

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds from "90d", "12h", "15m" or "30s"; raises ValueError with a readable message."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"{text[:40]!r} is not a duration: use e.g. 30s, 15m, 12h or 90d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_when(text: str, now: float) -> float:
    """Unix seconds from "1h"/"15m"/"2d" (that long before `now`), Unix seconds, or ISO-8601.

    ISO times without a timezone are taken as UTC. Raises ValueError with a readable message.
    """
    text = text.strip()
    if match := _DURATION.match(text):
        return now - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{text[:40]!r} is not a time: use a finite number of Unix seconds")
        return value
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text[:40]!r} is not a time: use 15m, 1h, 2d, Unix seconds or ISO-8601"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def format_duration(seconds: float) -> str:
    """The shortest of "7d", "6h", "15m", "90s" that says `seconds` exactly (else whole seconds)."""
    for unit in ("d", "h", "m"):
        count = seconds / _UNITS[unit]
        if count >= 1 and count == int(count):
            return f"{int(count)}{unit}"
    return f"{round(seconds)}s"


def _number(value: float) -> str:
    """Unix seconds as a URL shows them: no trailing ".0", at most millisecond precision."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text or "0"


@dataclass(frozen=True, slots=True)
class TimeRange:
    """A window [since, until) of Unix seconds and how it was asked for."""

    since: float
    until: float
    preset: str | None = None  # "1h": the last hour, relative to now
    around: float | None = None  # the moment an "around" range centres on

    @property
    def span(self) -> float:
        """Width in seconds."""
        return self.until - self.since

    def live(self, now: float) -> bool:
        """Whether the range includes now, so new markers belong in it."""
        return self.since <= now <= self.until + LIVE_SLACK

    @classmethod
    def last(cls, span: float, now: float, preset: str | None = None) -> TimeRange:
        """The `span` seconds up to now."""
        return cls(now - span, now, preset or format_duration(span))

    @classmethod
    def between(cls, since: float, until: float) -> TimeRange:
        """A custom window, validated (raises ValueError)."""
        if not since < until:
            raise ValueError("since must be before until")
        if until - since > MAX_SPAN:
            raise ValueError(
                f"the range is {(until - since) / 86_400:.1f} days long; the most is "
                f"{MAX_SPAN / 86_400:.0f} days: narrow since/until"
            )
        return cls(since, until)

    @classmethod
    def parse(
        cls,
        now: float,
        range: str | None = None,
        around: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> TimeRange:
        """The range a query asks for (empty strings count as absent); raises ValueError."""
        span = _span(range) if range else None
        if around:
            if since or until:
                raise ValueError(
                    "use around= (with range= for its width) or since=/until=, not both"
                )
            moment = parse_when(around, now)
            width = span if span is not None else AROUND_SPAN
            return cls(moment - width / 2, moment + width / 2, None, moment)
        if span is not None:
            if since or until:
                raise ValueError("use range= or since=/until=, not both")
            assert range is not None
            return cls.last(span, now, range.strip())
        if since or until:
            end = parse_when(until, now) if until else now
            start = parse_when(since, now) if since else end - DEFAULT_SPAN
            return cls.between(start, end)
        return cls.last(DEFAULT_SPAN, now)

    def query(self) -> dict[str, str]:
        """The query parameters that ask for this range again."""
        if self.around is not None:
            out = {"around": _number(self.around)}
            if self.span != AROUND_SPAN:
                out["range"] = format_duration(self.span)
            return out
        if self.preset is not None:
            return {"range": self.preset}
        return {"since": _number(self.since), "until": _number(self.until)}

    def pinned(self) -> dict[str, str]:
        """Query parameters for exactly this window, whatever the time later (a permalink)."""
        return {"since": _number(self.since), "until": _number(self.until)}

    def zones(self, count: int) -> list[TimeRange]:
        """The range cut in `count` equal parts: clicking one zooms in to it."""
        step = self.span / count
        if step < MIN_SPAN:
            return []
        return [TimeRange(self.since + i * step, self.since + (i + 1) * step) for i in range(count)]

    def wider(self, factor: float = 4.0) -> TimeRange:
        """The same centre, `factor` times as wide (bounded by MAX_SPAN): zoom out."""
        centre, width = (self.since + self.until) / 2, min(self.span * factor, MAX_SPAN)
        return TimeRange(centre - width / 2, centre + width / 2)

    def describe(self) -> str:
        """A short caption: "last 1h", "±5m around 2026-…", or the window in UTC."""
        if self.preset is not None:
            return f"last {self.preset}"
        if self.around is not None:
            return f"±{format_duration(self.span / 2)} around {_utc(self.around)}"
        return f"{_utc(self.since)} to {_utc(self.until)}"


def _span(text: str) -> float:
    """A range width, bounded to [MIN_SPAN, MAX_SPAN]."""
    try:
        span = parse_duration(text)
    except ValueError:
        raise ValueError(
            f"range {text[:40]!r} is not a duration: use {', '.join(PRESETS)} (or e.g. 2h, 30m)"
        ) from None
    if not MIN_SPAN <= span <= MAX_SPAN:
        raise ValueError(
            f"range must be between {format_duration(MIN_SPAN)} and {format_duration(MAX_SPAN)}"
        )
    return span


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
