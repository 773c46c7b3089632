"""Query-parameter parsing for the HTTP API: bad input becomes a 400 with a JSON reason."""

from __future__ import annotations

import re
from urllib.parse import parse_qs

from starlette.requests import Request

from hub.core.messages import ENGINE_NAME_PATTERN, EVENT_TYPE_PATTERN
from hub.core.ranges import TimeRange, parse_duration, parse_when

__all__ = [
    "BadRequest",
    "ENGINE_RE",
    "engine_param",
    "event_type_param",
    "int_param",
    "level_param",
    "parse_duration",
    "parse_when",
    "small_form",
    "time_param",
    "window_bounds",
    "window_param",
]

_ENGINE = ENGINE_RE = re.compile(ENGINE_NAME_PATTERN)
_EVENT_TYPE = re.compile(EVENT_TYPE_PATTERN)
_LEVEL = re.compile(r"^[A-Za-z]{1,16}$")


def time_param(request: Request, name: str, now: float) -> float | None:
    """A time query parameter (see `parse_when`), None when absent."""
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        return parse_when(raw, now)
    except ValueError as exc:
        raise BadRequest(f"{name}: {exc}") from None


_WINDOW_PARAMS = ("range", "around", "since", "until")


def window_param(request: Request, now: float) -> TimeRange | None:
    """The time range a request asks for (`range=`, `around=`, `since=`/`until=`, see
    hub/core/ranges.py), None when it names none."""
    raw = {name: request.query_params.get(name, "") for name in _WINDOW_PARAMS}
    if not any(raw.values()):
        return None
    try:
        return TimeRange.parse(now, **raw)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def window_bounds(request: Request, now: float) -> tuple[float | None, float | None]:
    """(since, until) for a history API: a `range=`/`around=` window, else `since`/`until` as
    given (either may be absent: an open end)."""
    if request.query_params.get("range") or request.query_params.get("around"):
        window = window_param(request, now)
        assert window is not None
        return window.since, window.until
    return time_param(request, "since", now), time_param(request, "until", now)


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
