"""Chart axes, sans-I/O: 'nice' value ticks with units, and time ticks in UTC chosen for the range."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["Axis", "Tick", "clock", "nice_step", "time_ticks", "value_axis"]

VALUE_TICKS = 5  # intervals the value axis aims for
TIME_TICKS = 6  # at most this many intervals on the time axis
MAX_DECIMALS = 6  # finer steps are written in e-notation
_SECONDS = ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns"))  # largest first
_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))
_WORDS = {"T": "trillions", "G": "billions", "M": "millions", "k": "thousands"}
# (seconds, caption) of the time axis' steps: the first that needs at most TIME_TICKS intervals.
_TIME_STEPS = (
    (10, "10 s"),
    (15, "15 s"),
    (30, "30 s"),
    (60, "minute"),
    (120, "2 min"),
    (300, "5 min"),
    (600, "10 min"),
    (900, "15 min"),
    (1800, "30 min"),
    (3600, "hour"),
    (7200, "2 h"),
    (10800, "3 h"),
    (21600, "6 h"),
    (43200, "12 h"),
    (86400, "day"),
    (172800, "2 days"),
    (604800, "week"),
)


@dataclass(frozen=True, slots=True)
class Tick:
    """A tick: where (a value, a time or a coordinate) and its label."""

    at: float
    label: str


@dataclass(frozen=True, slots=True)
class Axis:
    """A value axis: its bounds (in the data's units), ticks and how values are written."""

    low: float
    high: float
    ticks: tuple[Tick, ...]
    unit: str  # as shown: "ms", "k/s", "INR", "thousands", ""
    factor: float  # data value x factor = the number shown

    def format(self, value: float) -> str:
        """A value as hover text: about four significant digits and the unit."""
        shown = value * self.factor
        digits = 0 if shown == 0 else math.floor(math.log10(abs(shown)))
        if abs(shown) >= 1e15 or (shown and digits < -MAX_DECIMALS):
            text = f"{shown:.4g}"
        else:
            text = f"{shown:,.{max(0, 3 - digits)}f}"
            text = text.rstrip("0").rstrip(".") if "." in text else text
        return f"{text} {self.unit}".rstrip()


def nice_step(span: float, intervals: int) -> float:
    """The 1, 2, 2.5 or 5 times a power of ten that cuts `span` into at most about `intervals`."""
    raw = span / max(1, intervals)
    base = 10.0 ** math.floor(math.log10(raw))
    return next(m * base for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * base >= raw * (1 - 1e-9))


def value_axis(
    values: Sequence[float], unit: str | None, currency: str | None = None, zero: bool = False
) -> Axis:
    """The axis for `values` ("s": durations, "/s": rates, `currency`: money, None: plain).

    `zero` keeps 0 on the axis (rates, counts, areas). No values: an empty 0..1 axis.
    """
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if zero:
        low, high = min(low, 0.0), max(high, 0.0)
    if low == high:
        pad = abs(low) / 2 or 1.0
        low, high = (0.0, high + pad) if zero and low >= 0 else (low - pad, high + pad)
    factor, shown_unit = _scale(max(abs(low), abs(high)), unit, currency)
    step = nice_step((high - low) * factor, VALUE_TICKS)
    first, last = math.floor(low * factor / step), math.ceil(high * factor / step)
    decimals = _decimals(step)
    ticks = tuple(
        Tick((i * step) / factor, _number(i * step, decimals)) for i in range(first, last + 1)
    )
    return Axis(first * step / factor, last * step / factor, ticks, shown_unit, factor)


def _scale(largest: float, unit: str | None, currency: str | None) -> tuple[float, str]:
    """(factor, unit as shown) so the largest value reads as 1 to 999 of the shown unit."""
    if unit == "s" and currency is None:
        size, name = next(((s, n) for s, n in _SECONDS if largest >= s), _SECONDS[-1])
        return 1 / size, name
    size, prefix = next(((s, p) for s, p in _PREFIXES if largest >= s), (1.0, ""))
    if largest >= 1e15:  # e-notation labels say the size themselves
        size, prefix = 1.0, ""
    if currency is not None:
        return 1 / size, f"{prefix} {currency}".strip()
    if unit:
        return 1 / size, f"{prefix}{unit}"
    return 1 / size, _WORDS.get(prefix, "")


def _decimals(step: float) -> int:
    """Decimals that write every multiple of `step` exactly (None: use e-notation)."""
    for decimals in range(MAX_DECIMALS + 1):
        if abs(round(step, decimals) - step) <= step * 1e-9:
            return decimals
    return -1


def _number(value: float, decimals: int) -> str:
    if decimals < 0 or abs(value) >= 1e15:
        return f"{value:.3g}"
    text = f"{value:,.{decimals}f}"
    return "0" if text.lstrip("-").strip("0.,") == "" else text


def time_ticks(since: float, until: float) -> tuple[list[Tick], str]:
    """Ticks at whole minutes, hours or days (UTC) across [since, until], and the axis caption."""
    span = until - since
    step, name = next(((s, n) for s, n in _TIME_STEPS if span / s <= TIME_TICKS), (0, ""))
    if not step:
        weeks = math.ceil(span / 604800 / TIME_TICKS)
        step, name = 604800 * weeks, f"{weeks} weeks"
    at = math.ceil(since / step) * step
    ticks = []
    while at <= until:
        ticks.append(Tick(at, _tick_label(at, step)))
        at += step
    return ticks, f"UTC, every {name}"


def _tick_label(at: float, step: float) -> str:
    moment = datetime.fromtimestamp(at, UTC)
    if step < 60:
        return moment.strftime("%H:%M:%S")
    if step < 86400 and (moment.hour or moment.minute):
        return moment.strftime("%H:%M")
    return moment.strftime("%b %d")  # days, and midnight on an hour axis: the date


def clock(at: float, step: float) -> str:
    """A moment as hover text: the date and the time to the step's precision (UTC)."""
    moment = datetime.fromtimestamp(at, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S" if step < 60 else "%Y-%m-%d %H:%M")
