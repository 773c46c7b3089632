"""The chart renderer and its axes, sans-I/O: tick choice, scaling, gaps, bounds and escaping."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hub.live.axes import nice_step, time_ticks, value_axis
from hub.live.charts import MAX_LINES, MAX_POINTS, Chart, render_chart
from hub.live.templating import create_environment
from hub.stores.base import SeriesLine, SeriesStat

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC).timestamp()


def line(
    values: list[float | None],
    stat: SeriesStat = "rate",
    unit: str | None = "/s",
    step: float = 10.0,
    **tags: str,
) -> SeriesLine:
    return SeriesLine("m", tags, stat, unit, [(T0 + i * step, v) for i, v in enumerate(values)])


def drawn(chart: Chart) -> list[int]:
    """Points drawn per line: polyline vertices plus dots."""
    return [
        sum(len(s.split()) for s in t.segments) + len(t.dots) for t in chart.traces
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("span", "intervals", "step"),
    [
        (1.0, 5, 0.2),
        (0.5, 5, 0.1),
        (7.0, 5, 2.0),
        (100.0, 5, 20.0),
        (12.0, 5, 2.5),
        (3e-9, 5, 1e-9),
    ],
)
def test_nice_steps_are_1_2_2_5_or_5_times_a_power_of_ten(
    span: float, intervals: int, step: float
) -> None:
    """The step is the smallest nice number that cuts the span into at most `intervals`."""
    assert nice_step(span, intervals) == pytest.approx(step)


@pytest.mark.parametrize(
    ("values", "unit", "currency", "zero", "shown", "labels"),
    [
        ([], None, None, False, "", ["0", "0.2", "0.4", "0.6", "0.8", "1.0"]),  # empty
        ([0.0], "/s", None, True, "/s", ["0", "0.2", "0.4", "0.6", "0.8", "1.0"]),  # one zero
        ([5.0], None, None, False, "", ["2", "3", "4", "5", "6", "7", "8"]),  # one point
        ([0.0123, 0.045], "s", None, False, "ms", ["10", "20", "30", "40", "50"]),
        ([2e-6, 9e-6], "s", None, False, "µs", ["2", "4", "6", "8", "10"]),
        ([0.0, 3.3], "/s", None, True, "/s", ["0", "1", "2", "3", "4"]),
        ([2e6], "/s", None, True, "M/s", ["0", "0.5", "1.0", "1.5", "2.0"]),
        ([-1234.5, 8000.0], None, "INR", False, "k INR", ["-2", "0", "2", "4", "6", "8"]),
        ([1e20, 3e20], None, None, False, "", ["1e+20", "1.5e+20", "2e+20", "2.5e+20", "3e+20"]),
        ([1e-12, 5e-12], None, None, False, "", ["1e-12", "2e-12", "3e-12", "4e-12", "5e-12"]),
        ([4.2e9], None, None, False, "billions", ["2", "3", "4", "5", "6", "7"]),
    ],
)
def test_value_axis_ticks_and_units(
    values: list[float],
    unit: str | None,
    currency: str | None,
    zero: bool,
    shown: str,
    labels: list[str],
) -> None:
    """Ticks are nice numbers in a unit that keeps them short: ms/µs for seconds, k/M for
    rates and money, e-notation for values too big or small for either."""
    axis = value_axis(values, unit, currency, zero)
    assert axis.unit == shown
    assert [t.label for t in axis.ticks] == labels
    assert axis.low <= min(values, default=axis.low) and axis.high >= max(values, default=0)


def test_value_axis_hover_text_has_the_unit() -> None:
    """Hover values carry about four significant digits and the axis' unit."""
    assert value_axis([0.0123], "s").format(0.01234) == "12.34 ms"
    assert value_axis([1500.0], "/s", zero=True).format(1500.0) == "1.5 k/s"
    assert value_axis([-80.5], None, "INR").format(-80.5) == "-80.5 INR"


@pytest.mark.parametrize(
    ("span", "caption", "count", "first"),
    [
        (40.0, "UTC, every 10 s", 5, "09:00:00"),
        (900.0, "UTC, every 5 min", 4, "09:00"),
        (3600.0, "UTC, every 10 min", 7, "09:00"),
        (6 * 3600.0, "UTC, every hour", 7, "09:00"),
        (86400.0, "UTC, every 6 h", 4, "12:00"),
        (7 * 86400.0, "UTC, every 2 days", 3, "Mar 04"),
        (30 * 86400.0, "UTC, every week", 4, "Mar 05"),
        (365 * 86400.0, "UTC, every 9 weeks", 6, "Mar 26"),
    ],
)
def test_time_ticks_are_minutes_hours_or_days_for_the_range(
    span: float, caption: str, count: int, first: str
) -> None:
    """At most six intervals at whole minutes, hours or days in UTC; the caption says which."""
    ticks, said = time_ticks(T0, T0 + span)
    assert said == caption
    assert (len(ticks), ticks[0].label) == (count, first)
    assert all(T0 <= t.at <= T0 + span for t in ticks)


def test_midnight_on_an_hour_axis_shows_the_date() -> None:
    """Crossing midnight, the tick at 00:00 says the date instead."""
    ticks, _ = time_ticks(T0 + 12 * 3600, T0 + 18 * 3600)
    assert [t.label for t in ticks] == [
        "21:00",
        "22:00",
        "23:00",
        "Mar 03",
        "01:00",
        "02:00",
        "03:00",
    ]


def test_gaps_break_the_line_and_lone_points_are_dots() -> None:
    """None values split the polyline; a value between two gaps is a dot; all are counted."""
    chart = render_chart("x", [line([1, 2, None, 3, None, 4, 5, 6])], T0, T0 + 80, 10)
    (trace,) = chart.traces
    assert [len(s.split()) for s in trace.segments] == [2, 3]
    assert len(trace.dots) == 1 and trace.points == 6
    assert len(chart.bands) == 6 and not chart.empty


@pytest.mark.parametrize("values", [[], [None, None, None]], ids=["empty series", "all None"])
def test_a_chart_without_values_is_empty_but_has_axes(values: list[float | None]) -> None:
    """No values: no lines, no hover bands, still a time axis and a 0..1 value axis."""
    chart = render_chart("x", [line(values)], T0, T0 + 3600, 10)
    assert chart.empty and drawn(chart) == [0] and chart.bands == ()
    assert len(chart.x_ticks) == 7 and chart.y_ticks[0].label == "0"


def test_one_point_is_a_dot_in_the_middle_of_the_axis() -> None:
    """A single value is drawn (as a dot) inside the value axis."""
    chart = render_chart("x", [line([7.0], stat="value", unit=None)], T0, T0 + 60, 10)
    (trace,) = chart.traces
    assert trace.segments == () and len(trace.dots) == 1
    x, y = trace.dots[0]
    assert chart.plot_left <= x <= chart.plot_right and chart.plot_top < y < chart.plot_bottom


def test_long_lines_are_thinned_and_many_lines_bounded() -> None:
    """Over MAX_POINTS points a line is merged by neighbouring steps (means); over MAX_LINES
    lines the rest are counted as left out."""
    many = [line([float(i % 7) for i in range(2000)], side=str(k)) for k in range(MAX_LINES + 3)]
    chart = render_chart("x", many, T0, T0 + 20_000, 10)
    assert len(chart.traces) == MAX_LINES and chart.left_out == 3
    assert all(n == 400 <= MAX_POINTS for n in drawn(chart))
    assert len(chart.bands) == 400


def test_area_charts_close_each_run_on_the_baseline() -> None:
    """An area is each run of values closed down to zero (the axis keeps zero); a line chart
    has none."""
    chart = render_chart("x", [line([1.0, 2.0, None, 3.0, 4.0])], T0, T0 + 50, 10, area=True)
    (trace,) = chart.traces
    assert len(trace.areas) == 2
    bottom = str(chart.plot_bottom) + ".0"
    assert all(a.split()[0].endswith("," + bottom) for a in trace.areas)
    line_only = render_chart("x", [line([1.0, 2.0, None, 3.0, 4.0])], T0, T0 + 50, 10)
    assert line_only.traces[0].areas == () and len(line_only.traces[0].segments) == 2


def test_non_finite_values_are_gaps() -> None:
    """An overflowed sum (inf) is not drawn: it is a gap."""
    chart = render_chart("x", [line([1.0, float("inf"), 2.0])], T0, T0 + 30, 10)
    assert drawn(chart) == [2] and len(chart.traces[0].dots) == 2


def test_a_backwards_range_is_an_error() -> None:
    """since must be before until."""
    with pytest.raises(ValueError, match="since < until"):
        render_chart("x", [], T0, T0, 10)


def test_engine_text_renders_as_text() -> None:
    """Tag values reach the SVG only as escaped text in <title>, the legend only through `text`."""
    hostile = '<script>alert(1)</script>"\u202e'
    chart = render_chart(
        "x", [line([1.0, 2.0], side=hostile), line([3.0, 4.0], side="b")], T0, T0 + 20, 10
    )
    env = create_environment()
    html = env.get_template("partials/_chart.html").render(
        view={"key": "pick", "metric": "m", "chart": chart, "hint": "", "found": True}, index=1
    )
    assert "<script>" not in html
    assert "side=&lt;script&gt;alert(1)&lt;/script&gt;&#34;⟨U+202E⟩" in html
    svg = html[html.index("<svg") : html.index("</svg>")]
    assert "<title>" in svg and "&lt;script&gt;" in svg  # the text is there, in <title> ...
    assert "script" not in "".join(
        part.split(">", 1)[0] for part in svg.split("<")
    )  # ... and in no tag or attribute
