"""Search requests and results (sans-I/O): filters, hits, the page cursor and the merge of sources.

Log lines and events are two sources, each read newest first by its own id. A page merges what
both return by time and the cursor keeps each source's position (the id below which it goes on,
or that it is done), so paging returns every hit exactly once however the two interleave.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Literal

from hub.core.logs import level_number
from hub.core.records import EventRecord, LogRecord
from hub.core.searches import SearchQuery

__all__ = [
    "DONE",
    "BadCursor",
    "Cursor",
    "SearchHit",
    "SearchPage",
    "SearchRequest",
    "event_hit",
    "log_hit",
    "merge",
    "payload_text",
]

DONE = 0  # a source position: nothing is left below it
_CURSOR = re.compile(r"^v1:(\d{0,19}):(\d{0,19})$")


class BadCursor(ValueError):
    """A cursor this hub did not hand out."""


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next page starts in each source: ids below `logs` / `events` (None: newest)."""

    logs: int | None = None
    events: int | None = None

    def encode(self) -> str:
        """The opaque form handed to clients."""
        raw = f"v1:{'' if self.logs is None else self.logs}:{'' if self.events is None else self.events}"
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """A cursor from its opaque form; raises BadCursor."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raw = ""
        match = _CURSOR.match(raw) if len(text) <= 64 else None
        if match is None:
            raise BadCursor("cursor is not one this hub handed out: start again without it")
        logs, events = (int(g) if g else None for g in match.groups())
        return cls(logs, events)


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """One page of a search: the query, filters, page size and where to start."""

    query: SearchQuery
    limit: int
    engine: str | None = None
    min_level: int | None = None  # given: log lines only
    event_type: str | None = None  # given: events only
    since: float | None = None
    until: float | None = None
    cursor: Cursor = Cursor()

    @property
    def wants_logs(self) -> bool:
        """Whether log lines are searched at all."""
        return self.event_type is None and self.cursor.logs != DONE

    @property
    def wants_events(self) -> bool:
        """Whether events are searched at all."""
        return self.min_level is None and self.cursor.events != DONE

    def log_ok(self, r: LogRecord) -> bool:
        """The filters (not the query) hold for a log line."""
        ts, before = r.timestamp.timestamp(), self.cursor.logs
        return (
            (self.engine is None or r.engine == self.engine)
            and (self.min_level is None or level_number(r.level) >= self.min_level)
            and (self.since is None or ts >= self.since)
            and (self.until is None or ts < self.until)
            and (before is None or r.id < before)
        )

    def event_ok(self, e: EventRecord) -> bool:
        """The filters (not the query) hold for an event."""
        before = self.cursor.events
        return (
            (self.engine is None or e.engine == self.engine)
            and (self.event_type is None or e.type == self.event_type)
            and (self.since is None or e.ts >= self.since)
            and (self.until is None or e.ts < self.until)
            and (before is None or e.id < before)
        )


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A log line or event the query matched; `text` is what was searched (message or payload)."""

    kind: Literal["log", "event"]
    id: int
    engine: str
    ts: float
    label: str  # the log level or the event type
    text: str
    logger: str = ""
    exc: str | None = None


def log_hit(r: LogRecord) -> SearchHit:
    """A matched log line as a hit."""
    ts = r.timestamp.timestamp()
    return SearchHit("log", r.id, r.engine, ts, r.level, r.message, r.logger, r.exc)


def event_hit(e: EventRecord) -> SearchHit:
    """A matched event as a hit (its payload is the text searched)."""
    return SearchHit("event", e.id, e.engine, e.ts, e.type, payload_text(e))


def payload_text(e: EventRecord) -> str:
    """An event's payload as the JSON text that search reads."""
    return bytes(e.payload).decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class SearchPage:
    """A page of hits, newest first, and the cursor of the next page (None: no more)."""

    hits: list[SearchHit]
    next: Cursor | None
    partial: bool = False  # some recent records were not searched (docs/history.md)


def _position(
    found: list[SearchHit], taken: list[SearchHit], full: bool, start: int | None
) -> int | None:
    """A source's next position: below the oldest hit taken, done, or where it was."""
    if not full and len(taken) == len(found):
        return DONE
    if taken:
        return min(h.id for h in taken)
    return start


def merge(
    request: SearchRequest, logs: list[SearchHit], events: list[SearchHit], partial: bool = False
) -> SearchPage:
    """One page from each source's newest `request.limit + 1` hits (fewer: that source is done)."""
    limit, cursor = request.limit, request.cursor
    # Each source is newest first by id; taking the newer head each time takes a prefix of each,
    # which is what lets one id per source say where the next page starts.
    kept_logs: list[SearchHit] = []
    kept_events: list[SearchHit] = []
    both: list[SearchHit] = []
    i = j = 0
    while len(both) < limit and (i < len(logs) or j < len(events)):
        if j >= len(events) or (i < len(logs) and logs[i].ts >= events[j].ts):
            kept_logs.append(logs[i])
            both.append(logs[i])
            i += 1
        else:
            kept_events.append(events[j])
            both.append(events[j])
            j += 1
    nxt = Cursor(
        _position(logs, kept_logs, len(logs) > limit, cursor.logs) if request.wants_logs else DONE,
        _position(events, kept_events, len(events) > limit, cursor.events)
        if request.wants_events
        else DONE,
    )
    done = nxt.logs == DONE and nxt.events == DONE
    return SearchPage(both, None if done else nxt, partial)
