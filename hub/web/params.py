"""Query-parameter parsing for the HTTP API: bad input becomes a 400 with a JSON reason."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import parse_qs

from starlette.requests import Request

from hub.core.messages import ENGINE_NAME_PATTERN, EVENT_TYPE_PATTERN

__all__ = [
    "BadRequest",
    "engine_param",
    "event_type_param",
    "int_param",
    "level_param",
    "parse_duration",
    "parse_when",
    "small_form",
    "time_param",
]

_ENGINE = re.compile(ENGINE_NAME_PATTERN)
_EVENT_TYPE = re.compile(EVENT_TYPE_PATTERN)
_LEVEL = re.compile(r"^[A-Za-z]{1,16}$")


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
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text[:40]!r} is not a time: use 15m, 1h, 2d, Unix seconds or ISO-8601"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def time_param(request: Request, name: str, now: float) -> float | None:
    """A time query parameter (see `parse_when`), None when absent."""
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        return parse_when(raw, now)
    except ValueError as exc:
        raise BadRequest(f"{name}: {exc}") from None


class BadRequest(Exception):
    """A query parameter is invalid; the message says which and what is allowed."""


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    """An integer parameter, clamped to `high` ("limit is capped"); 400 below `low` or not a number."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {raw[:32]!r}") from None
    if value < low:
        raise BadRequest(f"{name} must be at least {low}")
    return min(value, high)


def _pattern_param(request: Request, name: str, pattern: re.Pattern[str], what: str) -> str | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if not pattern.match(raw):
        raise BadRequest(f"{name} must be {what}")
    return raw


def engine_param(request: Request, required: bool = False) -> str | None:
    """The `engine` filter: a valid engine name, or None when absent (400 if required)."""
    value = _pattern_param(request, "engine", _ENGINE, "an engine name ([A-Za-z0-9_.-]{1,64})")
    if value is None and required:
        raise BadRequest("engine is required, e.g. ?engine=fno")
    return value


def event_type_param(request: Request) -> str | None:
    """The `event_type` filter."""
    return _pattern_param(
        request, "event_type", _EVENT_TYPE, "an event type ([A-Za-z0-9_.:-]{1,64})"
    )


def level_param(request: Request) -> str | None:
    """The minimum log `level` (DEBUG, INFO, WARNING, ERROR, CRITICAL)."""
    return _pattern_param(request, "level", _LEVEL, "a log level such as INFO or WARNING")


MAX_FORM_BYTES = 8192  # our forms hold a few short fields


async def small_form(request: Request) -> dict[str, str] | None:
    """A posted urlencoded form's fields (first value of each), or None when it is too big or
    malformed. Our forms are a few fields: no multipart parser needed."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    try:
        fields = parse_qs(body.decode(), max_num_fields=8, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        return None
    return {key: values[0] for key, values in fields.items()}
