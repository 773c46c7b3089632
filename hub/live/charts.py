"""Server-rendered line and area charts, sans-I/O: `SeriesLine`s in, a `Chart` of SVG geometry out.

Everything a chart draws is computed here from numbers (coordinates, tick labels, hover titles);
`templates/partials/_chart.html` turns it into inline SVG with autoescaping, so engine text (metric
names, tag values, a currency) only ever reaches the page as escaped text in `<title>` elements
and the HTML legend, never in an id, class or attribute. Bounded: at most `MAX_LINES` lines of at
most `MAX_POINTS` points each (longer lines are thinned by merging neighbouring steps).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from hub.live.axes import Axis, Tick, clock, time_ticks, value_axis
from hub.live.formats import visible

__all__ = ["MAX_LINES", "MAX_POINTS", "Band", "Chart", "Line", "Trace", "render_chart"]

MAX_LINES = 8  # distinguishable colours (one CSS class each); more lines are listed as left out
MAX_POINTS = 400  # per line: about one point per 2 px of a chart's width
MAX_LABEL = 80  # characters of a line's label (engine text)
WIDTH, HEIGHT = 720, 200  # the SVG's viewBox; CSS scales it to the panel
LEFT, RIGHT, TOP, BOTTOM = 64, 20, 8, 22  # margins of the plot area (axis labels live there)

_Scale = Callable[[float], float]


class Line(Protocol):
    """What a chart draws of one line: `hub.stores.base.SeriesLine` (live stays below stores)."""

    @property
    def name(self) -> str: ...
    @property
    def tags(self) -> dict[str, str]: ...
    @property
    def stat(self) -> str: ...
    @property
    def unit(self) -> str | None: ...
    @property
    def points(self) -> list[tuple[float, float | None]]: ...


@dataclass(frozen=True, slots=True)
class Trace:
    """One line: its label, its colour class, polylines between gaps, lone points as dots."""

    label: str
    tone: int
    segments: tuple[str, ...]  # SVG points of each run of consecutive values
    areas: tuple[str, ...]  # the same runs closed down to the baseline (area charts)
    dots: tuple[tuple[float, float], ...]  # values with a gap on both sides
    points: int  # values drawn (segment vertices + dots)


@dataclass(frozen=True, slots=True)
class Band:
    """A vertical strip over one step: hovering it shows its time and every line's value."""

    x: float
    width: float
    title: str


@dataclass(frozen=True, slots=True)
class Chart:
    """Everything `_chart.html` draws; coordinates are in the viewBox `WIDTH` x `HEIGHT`."""

    title: str
    unit: str  # the value axis' unit as shown ("ms", "/s", "INR", "")
    time_unit: str  # the time axis' caption ("UTC, every 5 min")
    traces: tuple[Trace, ...]
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    bands: tuple[Band, ...]
    baseline: float | None  # y of the zero line when the value axis crosses zero
    left_out: int  # lines not drawn (over MAX_LINES)
    empty: bool  # no value at all in the range
    width: int = WIDTH
    height: int = HEIGHT
    plot_left: int = LEFT
    plot_right: int = WIDTH - RIGHT
    plot_top: int = TOP
    plot_bottom: int = HEIGHT - BOTTOM


def render_chart(
    title: str,
    lines: Sequence[Line],
    since: float,
    until: float,
    step: float,
    *,
    currency: str | None = None,
    area: bool = False,
    labels: Sequence[str] | None = None,
) -> Chart:
    """The chart of `lines` over [since, until) at `step` seconds a point.

    Rates, counts and area charts keep zero on the value axis; a `currency` labels the values
    (P&L); `labels` name the lines (default: what tells them apart). Non-finite values are gaps.
    """
    if not until > since:
        raise ValueError("a chart needs since < until")
    shown = list(lines[:MAX_LINES])
    longest = max((len(line.points) for line in shown), default=0)
    merge = max(1, math.ceil(longest / MAX_POINTS))  # the same for every line: points stay aligned
    columns = [_thin(line.points, merge) for line in shown]
    stride = step * merge
    values = [v for column in columns for _, v in column if v is not None]
    unit_kind = shown[0].unit if shown else None
    zero = area or unit_kind == "/s" or any(line.stat == "count" for line in shown)
    axis = value_axis(values, unit_kind, currency, zero)
    x_of = _time_scale(since, until)
    y_of = _value_scale(axis)
    labels = _labels(shown) if labels is None else [_short(text) for text in labels[:MAX_LINES]]
    base = y_of(max(axis.low, min(axis.high, 0.0))) if area else None  # where areas close
    traces = tuple(
        _trace(label, tone, column, stride, x_of, y_of, base)
        for tone, (label, column) in enumerate(zip(labels, columns, strict=True))
    )
    x_ticks, time_unit = time_ticks(since, until)
    return Chart(
        title=title,
        unit=axis.unit,
        time_unit=time_unit,
        traces=traces,
        x_ticks=tuple(Tick(x_of(t.at), t.label) for t in x_ticks),
        y_ticks=tuple(Tick(y_of(t.at), t.label) for t in axis.ticks),
        bands=_bands(labels, columns, stride, x_of, axis),
        baseline=y_of(0.0) if axis.low < 0 < axis.high else None,
        left_out=max(0, len(lines) - MAX_LINES),
        empty=not values,
    )


def _thin(points: Sequence[tuple[float, float | None]], k: int) -> list[tuple[float, float | None]]:
    """Runs of `k` neighbouring steps merged into one point (the mean of their values)."""
    clean = [(t, v if v is not None and math.isfinite(v) else None) for t, v in points]
    if k <= 1:
        return clean
    out: list[tuple[float, float | None]] = []
    for i in range(0, len(clean), k):
        group = [v for _, v in clean[i : i + k] if v is not None]
        out.append((clean[i][0], math.fsum(group) / len(group) if group else None))
    return out


def _time_scale(since: float, until: float) -> _Scale:
    width = WIDTH - RIGHT - LEFT

    def x(t: float) -> float:
        return round(LEFT + min(1.0, max(0.0, (t - since) / (until - since))) * width, 1)

    return x


def _value_scale(axis: Axis) -> _Scale:
    height = HEIGHT - BOTTOM - TOP

    def y(v: float) -> float:
        return round(TOP + (axis.high - v) / (axis.high - axis.low) * height, 1)

    return y


def _trace(
    label: str,
    tone: int,
    column: list[tuple[float, float | None]],
    stride: float,
    x_of: _Scale,
    y_of: _Scale,
    base: float | None,
) -> Trace:
    runs: list[list[tuple[float, float]]] = [[]]
    for t, v in column:
        if v is None:
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append((x_of(t + stride / 2), y_of(v)))
    runs = [run for run in runs if run]
    segments = tuple(" ".join(f"{x},{y}" for x, y in run) for run in runs if len(run) > 1)
    areas = tuple(
        f"{run[0][0]},{base} " + " ".join(f"{x},{y}" for x, y in run) + f" {run[-1][0]},{base}"
        for run in runs
        if len(run) > 1 and base is not None
    )
    dots = tuple(run[0] for run in runs if len(run) == 1)
    return Trace(label, tone, segments, areas, dots, sum(len(run) for run in runs))


def _bands(
    labels: list[str],
    columns: list[list[tuple[float, float | None]]],
    stride: float,
    x_of: _Scale,
    axis: Axis,
) -> tuple[Band, ...]:
    """One hover strip per step that has a value: its time (UTC) and each line's value."""
    rows: dict[float, list[str]] = {}
    for label, column in zip(labels, columns, strict=True):
        for t, v in column:
            if v is not None:
                rows.setdefault(t, []).append(f"{label}: {axis.format(v)}")
    bands = []
    for t, values in sorted(rows.items()):
        left, right = x_of(t), x_of(t + stride)
        if right > left:
            title = "\n".join([f"{clock(t, stride)} UTC", *values])
            bands.append(Band(left, round(right - left, 1), title))
    return tuple(bands)


def _labels(lines: Sequence[Line]) -> list[str]:
    """What tells the lines apart: the statistic when they differ in it, the tags when they do."""
    stats = len({line.stat for line in lines}) > 1
    tags = len({tuple(sorted(line.tags.items())) for line in lines}) > 1
    labels = []
    for line in lines:
        parts: list[str] = [line.stat] if stats or not tags else []
        if tags:
            parts.append(",".join(f"{k}={v}" for k, v in sorted(line.tags.items())) or "(no tags)")
        labels.append(_short(" ".join(parts) or line.name))
    return labels


def _short(text: str) -> str:
    """A label as shown: controls made visible, at most MAX_LABEL characters."""
    text = visible(text)
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"
