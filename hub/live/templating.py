"""The Jinja2 environment that renders every page and pushed fragment (autoescape always on)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import jinja2
from markupsafe import Markup

from hub.live import formats
from hub.live.formats import visible
from hub.live.resources import templates_dir

__all__ = ["create_environment", "sparkline_points"]

_MAX_CELL = 120


def _cell(value: Any, limit: int = _MAX_CELL) -> str:
    """Any JSON value as short display text (escaping is the environment's job)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, (dict, list)):
        import json

        text = json.dumps(value, separators=(",", ":"), default=str)
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(value: Any, limit: int = _MAX_CELL) -> Markup:
    """Engine text for HTML: short (as `cell`), controls made visible, bidi-isolated in <bdi>."""
    return Markup("<bdi>{}</bdi>").format(visible(_cell(value, limit)))


def _svg_text(value: Any, limit: int = _MAX_CELL) -> str:
    """Engine text for SVG <text>/<title>: as `text` but without <bdi>, which SVG does not
    render (controls still made visible; escaping is the environment's job)."""
    return visible(_cell(value, limit))


def _skew(seconds: float | None) -> str:
    """A signed clock difference: +0.120 s, -3.5 min, -19692 d ("—" when unknown)."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    size = abs(seconds)
    if size < 60:
        return f"{seconds:+.3f} s"
    if size < 7200:
        return f"{seconds / 60:+.1f} min"
    if size < 2 * 86400:
        return f"{seconds / 3600:+.1f} h"
    return f"{seconds / 86400:+,.0f} d"


def _clock(value: datetime | float | None) -> Markup:
    """A timestamp (datetime or Unix seconds) as `<time>` showing HH:MM:SS UTC.

    `data-ts` lets the page's script show it in the viewer's local time when they ask for it.
    """
    if value is None:
        return Markup("")
    if not isinstance(value, datetime):
        if not math.isfinite(value):
            return Markup("")
        value = datetime.fromtimestamp(value, UTC)
    elif value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # the hub keeps naive datetimes in UTC
    value = value.astimezone(UTC)
    return Markup('<time datetime="{}" data-ts="{}">{}</time>').format(
        value.strftime("%Y-%m-%dT%H:%M:%SZ"), f"{value.timestamp():.3f}", value.strftime("%H:%M:%S")
    )


def _duration(seconds: float | None) -> str:
    """A length of time as the page's script writes it: 42m 07s, 3h 05m, 2d 4h."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    s = max(0, int(seconds))
    d, h, m = s // 86400, s % 86400 // 3600, s % 3600 // 60
    return f"{d}d {h}h" if d else f"{h}h {m:02d}m" if h else f"{m}m {s % 60:02d}s"


def _ago(seconds: float | None) -> str:
    """An age as the page's script writes it: just now, 12 s ago, 4 min ago, 3 h ago."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    s = max(0.0, seconds)
    if s < 1:
        return "just now"
    if s < 90:
        return f"{int(s)} s ago"
    return f"{int(s // 60)} min ago" if s < 5400 else f"{int(s // 3600)} h ago"


def _signed(value: float | None, digits: int = 2) -> str:
    """A signed amount with thousands separators: +1,234.50, -12.00 ("—" when unknown)."""
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:+,.{digits}f}"


def _number(value: float | int | None, digits: int = 2) -> str:
    """A compact number: thousands separators for ints, `digits` decimals for floats."""
    if value is None:
        return "—"
    if isinstance(value, int) or (
        isinstance(value, float) and value.is_integer() and abs(value) < 1e15
    ):
        return f"{int(value):,}"
    if not math.isfinite(value):
        return "—"
    return f"{value:,.{digits}f}"


def sparkline_points(values: Iterable[float], width: int = 100, height: int = 20) -> str:
    """SVG polyline points for `values`, scaled to the box; numbers only, built by our code."""
    data = [v for v in values if math.isfinite(v)]
    if len(data) < 2:
        return ""
    low, high = min(data), max(data)
    span = (high - low) or 1.0
    step = width / (len(data) - 1)
    return " ".join(
        f"{i * step:.1f},{height - (v - low) / span * (height - 2) - 1:.1f}"
        for i, v in enumerate(data)
    )


def create_environment() -> jinja2.Environment:
    """Environment for pages and fragments: autoescape on, undefined names are errors."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.filters["ago"] = _ago
    env.filters["cell"] = _cell
    env.filters["clock"] = _clock
    env.filters["duration"] = _duration
    env.filters["signed"] = _signed
    env.filters["number"] = _number
    env.filters["skew"] = _skew
    env.filters["text"] = _text
    env.filters["svgtext"] = _svg_text
    env.globals["sparkline_points"] = sparkline_points
    env.filters.update(fixed=formats.fixed, seconds=formats.duration, chips=formats.chips)
    env.filters.update(amount=formats.amount, side=formats.side, without=formats.without)
    return env
