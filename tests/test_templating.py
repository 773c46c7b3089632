"""The Jinja environment: autoescape and strict undefined, display filters, sparkline points."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import jinja2
import pytest

from hub.live.templating import create_environment, sparkline_points

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
ENV = create_environment()
cell, clock, number = ENV.filters["cell"], ENV.filters["clock"], ENV.filters["number"]


def test_environment_autoescapes() -> None:
    """Every template rendered by the environment escapes values."""
    assert ENV.autoescape is True
    html = ENV.from_string("<p title='{{ v }}'>{{ v }}</p>").render(v="<b>'\"&")
    assert html == "<p title='&lt;b&gt;&#39;&#34;&amp;'>&lt;b&gt;&#39;&#34;&amp;</p>"


def test_environment_rejects_undefined_names() -> None:
    """A misspelt template variable is an error, not an empty string."""
    assert ENV.undefined is jinja2.StrictUndefined
    with pytest.raises(jinja2.UndefinedError):
        ENV.from_string("{{ missing }}").render()


def test_environment_loads_the_partials() -> None:
    """The loader finds the shipped partials and the filters are registered."""
    assert ENV.get_template("partials/_card.html") is not None
    assert {"cell", "clock", "number"} <= set(ENV.filters)
    assert ENV.globals["sparkline_points"] is sparkline_points


# -- cell ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        ("NIFTY", "NIFTY"),
        (True, "true"),
        (False, "false"),
        (42, "42"),
        (0.1 + 0.2, "0.3"),
        (123456789.0, "1.23457e+08"),
        ({"a": 1, "b": [1, 2]}, '{"a":1,"b":[1,2]}'),
        ([1, "x"], '[1,"x"]'),
    ],
)
def test_cell_shows_values_as_short_text(value: object, text: str) -> None:
    """cell renders None as empty, booleans as JSON does, floats with 6 digits, JSON compactly."""
    assert cell(value) == text


def test_cell_truncates_with_a_marker() -> None:
    """Text longer than the limit is cut to exactly the limit, ending in an ellipsis."""
    assert cell("x" * 120) == "x" * 120
    cut = cell("x" * 121)
    assert len(cut) == 120 and cut.endswith("…") and cut.startswith("x" * 119)
    assert cell("abcdef", 4) == "abc…"


def test_cell_does_not_escape() -> None:
    """cell returns plain text; escaping is left to the environment (no double escaping)."""
    assert cell("<b>") == "<b>"
    assert ENV.from_string("{{ v | cell }}").render(v="<b>&") == "&lt;b&gt;&amp;"


# -- clock ---------------------------------------------------------------------------------------


@pytest.fixture
def india_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run with the process local time zone at UTC+05:30 (a POSIX TZ needs no tz database)."""
    monkeypatch.setenv("TZ", "IST-5:30")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_clock_shows_datetimes_in_utc(india_time: None) -> None:
    """An aware datetime is a <time> showing HH:MM:SS in UTC, whatever its zone; None is empty."""
    assert clock(datetime.fromtimestamp(T0, UTC)) == (
        f'<time datetime="2023-11-14T22:13:20Z" data-ts="{T0:.3f}">22:13:20</time>'
    )
    shown = clock(datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=1))))
    assert 'datetime="2024-01-02T02:04:05Z"' in shown and shown.endswith(">02:04:05</time>")
    assert clock(None) == ""


def test_clock_shows_unix_seconds_in_utc(india_time: None) -> None:
    """Unix seconds are shown in UTC, like the event and log timestamps, whatever the server zone."""
    assert time.strftime("%H:%M", time.localtime(T0)) == "03:43"  # the fixture took effect
    assert clock(T0).endswith(">22:13:20</time>")
    assert f'data-ts="{T0:.3f}"' in clock(T0)
    assert clock(float("nan")) == ""


def test_clock_is_markup_the_page_renders_as_an_element() -> None:
    """The filter's <time> is not escaped again by autoescape (it holds only our digits)."""
    html = ENV.from_string("{{ t | clock }}").render(t=T0)
    assert html.startswith("<time datetime=") and "&lt;" not in html


@pytest.mark.parametrize(
    ("seconds", "age", "length"),
    [
        (None, "—", "—"),
        (0.4, "just now", "0m 00s"),
        (42.9, "42 s ago", "0m 42s"),
        (600, "10 min ago", "10m 00s"),
        (3 * 3600 + 300, "3 h ago", "3h 05m"),
        (2 * 86400 + 4 * 3600, "52 h ago", "2d 4h"),
    ],
)
def test_ages_and_durations_read_like_the_page_script(
    seconds: float | None, age: str, length: str
) -> None:
    """`ago` and `duration` write what static/js/hub.js writes, so the first paint matches."""
    assert ENV.filters["ago"](seconds) == age
    assert ENV.filters["duration"](seconds) == length


# -- number --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "—"),
        (0, "0"),
        (1234567, "1,234,567"),
        (-42, "-42"),
        (3.0, "3"),
        (1234.5678, "1,234.57"),
        (0.125, "0.12"),
        (float("nan"), "—"),
        (float("inf"), "—"),
        (-math.inf, "—"),
        (1e16, "10,000,000,000,000,000.00"),
    ],
)
def test_number_formats_compactly(value: float | None, text: str) -> None:
    """Ints get thousands separators, floats two decimals, missing or non-finite values a dash."""
    assert number(value) == text


def test_number_takes_a_digit_count() -> None:
    """The `digits` argument sets the decimals of non-integral floats."""
    assert number(2.34567, 1) == "2.3"
    assert number(2.34567, 4) == "2.3457"
    assert ENV.from_string("{{ v | number(1) }}").render(v=1500.26) == "1,500.3"


# -- sparkline_points ----------------------------------------------------------------------------

POINT = re.compile(r"^-?\d+\.\d,-?\d+\.\d$")


def points(text: str) -> list[tuple[float, float]]:
    pairs = text.split(" ")
    assert all(POINT.match(pair) for pair in pairs), text
    return [(float(x), float(y)) for x, y in (pair.split(",") for pair in pairs)]


def test_sparkline_needs_two_finite_values() -> None:
    """Fewer than two finite values draw nothing."""
    assert sparkline_points([]) == ""
    assert sparkline_points([5.0]) == ""
    assert sparkline_points([5.0, math.nan, math.inf]) == ""


def test_sparkline_points_format_and_bounds() -> None:
    """Points are "x,y" pairs with one decimal, spanning the width, inside a 1-unit margin."""
    values = [3.0, 9.0, -2.0, 4.5, 7.25, 0.0, 12.0]
    pts = points(sparkline_points(values))
    assert len(pts) == len(values)
    xs = [x for x, _ in pts]
    assert xs[0] == 0.0 and xs[-1] == 100.0 and xs == sorted(xs)
    assert all(1.0 <= y <= 19.0 for _, y in pts)
    assert pts[values.index(12.0)][1] == 1.0  # the maximum at the top
    assert pts[values.index(-2.0)][1] == 19.0  # the minimum at the bottom


def test_sparkline_scales_to_the_box_and_skips_non_finite() -> None:
    """Width and height set the box; NaN and infinities are left out; a flat line sits low."""
    assert (
        sparkline_points([1.0, math.nan, 3.0, math.inf], width=50, height=10) == "0.0,9.0 50.0,1.0"
    )
    assert sparkline_points([2.0, 2.0, 2.0]) == "0.0,19.0 50.0,19.0 100.0,19.0"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, "—"),
        (0.1234, "+0.123 s"),
        (-0.05, "-0.050 s"),
        (-300.0, "-5.0 min"),
        (3 * 3600.0, "+3.0 h"),
        (86_400.0 - T0, "-19,675 d"),  # a 1970 heartbeat
    ],
)
def test_skew_shows_a_signed_clock_difference(seconds: float | None, shown: str) -> None:
    """Clock skew reads with its sign and a unit that fits its size."""
    assert ENV.filters["skew"](seconds) == shown


def test_text_isolates_engine_text_and_shows_its_control_characters() -> None:
    """`text` wraps in <bdi>, escapes markup, and shows C0/C1 controls and bidi controls as
    ⟨U+XXXX⟩; tab and newline (spaces to HTML) and ordinary scripts stay as they are."""
    html = ENV.from_string("{{ v | text(200) }}").render(
        v="a\u202eb\u2066c\u200fd\x1b[0m\x85\x00<i>\tשלום\n"
    )
    assert html == (
        "<bdi>a⟨U+202E⟩b⟨U+2066⟩c⟨U+200F⟩d⟨U+001B⟩[0m⟨U+0085⟩⟨U+0000⟩&lt;i&gt;\tשלום\n</bdi>"
    )
    assert ENV.from_string("{{ v | text(5) }}").render(v="abcdefgh") == "<bdi>abcd…</bdi>"
    assert ENV.from_string("{{ v | text }}").render(v=None) == "<bdi></bdi>"


def test_every_partial_renders_engine_text_through_text() -> None:
    """No partial shows a payload value or log field through `cell` alone (it neither isolates
    nor shows controls); only the hub's own store message may."""
    partials = Path(__file__).parent.parent / "templates" / "partials"
    uses = {
        p.name: re.findall(r"\{\{[^}]*\|\s*cell\b[^}]*\}\}", p.read_text())
        for p in partials.glob("_*.html")
    }
    assert {name: found for name, found in uses.items() if found} == {
        "_hub_status.html": ["{{ hub.store_problem | cell(60) }}"]
    }
