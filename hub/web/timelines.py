"""The timeline's picture: lanes per engine on one time axis, markers, ticks, zoom zones, links.

A plain value built from the store's `TimelineItem`s; `templates/partials/_timeline.html`
draws it as inline SVG (geometry in attributes: the CSP forbids `style=`) and a list below.
Every link is built here from our own values; engine names appear only as urlencoded query
values (or not at all: an engine the hub knows is linked by its index).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from hub.core.ranges import PRESETS, TimeRange
from hub.stores.base import TimelineItem, TimelineKind
from hub.stores.timelines import CHAIN_TYPES

__all__ = [
    "Lane",
    "Marker",
    "Picture",
    "RangePicker",
    "Tick",
    "Zone",
    "picture",
]

WIDTH = 1000.0  # the SVG's user units; CSS scales it to the page
LEFT = 150.0  # lane labels live left of this
RIGHT = 990.0
LANE_HEIGHT = 28.0
TOP = 8.0  # above the first lane
AXIS = 26.0  # below the last lane: ticks and their labels
ZONES = 6

IndexOf = Callable[[str], int | None]  # an engine's hub index, None when the hub forgot it


@dataclass(frozen=True, slots=True)
class RangePicker:
    """Links for the presets and the custom form's values, keeping the page's other parameters."""

    presets: list[tuple[str, str, bool]]  # label, href, current
    keep: list[tuple[str, str]]  # hidden fields of the custom form (e.g. engine=)
    since: str  # ISO-8601 UTC for the form
    until: str
    caption: str
    permalink: str  # exactly this window, whatever the time later


@dataclass(frozen=True, slots=True)
class Lane:
    """One engine's row."""

    name: str
    y: float  # centre line
    href: str  # the engine page, or its timeline alone


@dataclass(frozen=True, slots=True)
class Marker:
    """One item on the axis."""

    x: float
    y: float
    kind: str  # a TimelineKind value: the CSS class
    href: str
    title: str  # engine text: the template escapes it


@dataclass(frozen=True, slots=True)
class Tick:
    """A time label on the axis."""

    x: float
    label: str


@dataclass(frozen=True, slots=True)
class Zone:
    """A slice of the axis; clicking it zooms in to its window."""

    x: float
    width: float
    href: str


@dataclass(frozen=True, slots=True)
class Picture:
    """Everything the timeline partial draws."""

    height: float
    lanes: list[Lane]
    markers: list[Marker]
    ticks: list[Tick]
    zones: list[Zone]
    zoom_out: str


def query_string(params: Sequence[tuple[str, str]]) -> str:
    """`?a=b&...` (urlencoded), or "?" alone."""
    return "?" + urlencode(list(params))


def range_picker(window: TimeRange, keep: Sequence[tuple[str, str]]) -> RangePicker:
    """The picker for a page showing `window`; `keep` are its other query parameters."""
    presets = [
        (p, query_string([*keep, ("range", p)]), window.preset == p and window.around is None)
        for p in PRESETS
    ]
    return RangePicker(
        presets,
        list(keep),
        _iso(window.since),
        _iso(window.until),
        window.describe(),
        query_string([*keep, *window.pinned().items()]),
    )


def item_href(item: TimelineItem, index_of: IndexOf) -> str:
    """Where a marker leads: the causal chain of a signal/decision/order, else the engine."""
    if item.event_id is not None and item.event_type in CHAIN_TYPES:
        return "/chain" + query_string([("event_id", str(item.event_id))])
    index = index_of(item.engine)
    if index is not None:
        return f"/engines/id/{index}" + ("#alerts" if item.kind is TimelineKind.ALERT else "")
    return "/timeline" + query_string([("engine", item.engine), ("around", f"{item.ts:.3f}")])


def item_title(item: TimelineItem) -> str:
    """The tooltip: time, engine, what, and the excerpt."""
    when = datetime.fromtimestamp(item.ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    detail = f" — {item.detail}" if item.detail else ""
    return f"{when} UTC · {item.engine} · {item.label}{detail}"


def picture(
    window: TimeRange,
    lanes: Sequence[str],
    items: Sequence[TimelineItem],
    index_of: IndexOf,
    keep: Sequence[tuple[str, str]],
) -> Picture:
    """Lanes in the given order, a marker per item of a lane, ticks and zones of `window`."""
    rows = {name: TOP + LANE_HEIGHT * (i + 0.5) for i, name in enumerate(lanes)}
    scale = (RIGHT - LEFT) / window.span

    def x_of(ts: float) -> float:
        return round(LEFT + (min(max(ts, window.since), window.until) - window.since) * scale, 1)

    markers = [
        Marker(x_of(i.ts), rows[i.engine], i.kind.value, item_href(i, index_of), item_title(i))
        for i in items
        if i.engine in rows
    ]
    lane_list = [Lane(name, y, _lane_href(name, index_of, window)) for name, y in rows.items()]
    bottom = TOP + LANE_HEIGHT * len(lanes)
    fmt = "%H:%M:%S" if window.span <= 900 else "%H:%M" if window.span <= 86_400 else "%m-%d %H:%M"
    edges = [window.since + window.span * i / ZONES for i in range(ZONES + 1)]
    ticks = [Tick(x_of(t), datetime.fromtimestamp(t, UTC).strftime(fmt)) for t in edges]
    zones = [
        Zone(x_of(z.since), round(x_of(z.until) - x_of(z.since), 1), _href(keep, z))
        for z in window.zones(ZONES)
    ]
    return Picture(bottom + AXIS, lane_list, markers, ticks, zones, _href(keep, window.wider()))


def _href(keep: Sequence[tuple[str, str]], window: TimeRange) -> str:
    return query_string([*keep, *window.query().items()])


def _lane_href(name: str, index_of: IndexOf, window: TimeRange) -> str:
    index = index_of(name)
    if index is not None:
        return f"/engines/id/{index}"
    return "/timeline" + query_string([("engine", name), *window.query().items()])


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
