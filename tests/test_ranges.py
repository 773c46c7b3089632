"""Time ranges (hub/core/ranges.py): parsed from a query, validated, and rendered back to one."""

from __future__ import annotations

import pytest

from hub.core.ranges import AROUND_SPAN, MAX_SPAN, PRESETS, TimeRange, format_duration

NOW = 1_763_736_000.0


@pytest.mark.parametrize("preset", PRESETS)
def test_a_preset_is_the_last_span_up_to_now_and_stays_relative(preset: str) -> None:
    """range=1h is [now - 1h, now), live, and its link says range=1h (the last hour, later too)."""
    window = TimeRange.parse(NOW, range=preset)
    spans = {"15m": 900, "1h": 3600, "6h": 21_600, "24h": 86_400, "7d": 604_800}
    assert (window.since, window.until) == (NOW - spans[preset], NOW)
    assert window.query() == {"range": preset}
    assert window.live(NOW)
    assert TimeRange.parse(NOW + 60, **window.query()).span == window.span


def test_no_parameters_mean_the_last_hour() -> None:
    """An empty query (or empty values, as a GET form sends them) is the last hour."""
    assert TimeRange.parse(NOW) == TimeRange.parse(NOW, "", "", "", "") == TimeRange.last(3600, NOW)


def test_around_is_five_minutes_either_side_unless_range_widens_it() -> None:
    """around=TS is ±5 min; with range=1h it is ±30 min; both render back to the same query."""
    moment = NOW - 7200.25
    narrow = TimeRange.parse(NOW, around=str(moment))
    assert (narrow.since, narrow.until) == (moment - AROUND_SPAN / 2, moment + AROUND_SPAN / 2)
    assert narrow.query() == {"around": "1763728799.75"}
    wide = TimeRange.parse(NOW, around=str(moment), range="1h")
    assert (wide.since, wide.until) == (moment - 1800, moment + 1800)
    assert wide.query() == {"around": "1763728799.75", "range": "1h"}
    for window in (narrow, wide):
        assert TimeRange.parse(NOW + 999, **window.query()) == window
    assert not narrow.live(NOW)


def test_a_custom_window_takes_parse_when_forms_and_round_trips() -> None:
    """since/until take Unix seconds, ISO-8601 or "2h" (before now); the link pins the window."""
    window = TimeRange.parse(NOW, since="2025-11-21T13:00:00Z", until="1763733600")
    assert (window.since, window.until) == (1_763_730_000.0, 1_763_733_600.0)
    assert window.query() == {"since": "1763730000", "until": "1763733600"}
    assert TimeRange.parse(NOW + 5000, **window.query()) == window
    relative = TimeRange.parse(NOW, since="2h")
    assert (relative.since, relative.until) == (NOW - 7200, NOW)
    only_until = TimeRange.parse(NOW, until=str(NOW - 100))
    assert (only_until.since, only_until.until) == (NOW - 3700, NOW - 100)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"range": "yesterday"}, "range 'yesterday' is not a duration: use 15m, 1h, 6h, 24h, 7d"),
        ({"range": "1s"}, "range must be between 10s and 31d"),
        ({"range": "90d"}, "range must be between 10s and 31d"),
        ({"range": "1h", "since": "2h"}, "use range= or since=/until=, not both"),
        ({"around": "1", "until": "2"}, "use around= (with range= for its width) or since="),
        ({"around": "soon"}, "'soon' is not a time: use 15m, 1h, 2d, Unix seconds or ISO-8601"),
        ({"since": "nan"}, "'nan' is not a time: use a finite number of Unix seconds"),
        ({"since": "inf"}, "'inf' is not a time: use a finite number"),
        ({"since": "100", "until": "50"}, "since must be before until"),
        (
            {"since": "0", "until": "1763736000"},
            "the range is 20413.6 days long; the most is 31 days",
        ),
    ],
)
def test_bad_input_says_what_is_allowed(query: dict[str, str], message: str) -> None:
    """Every bad range is a ValueError whose message says how to fix it."""
    with pytest.raises(ValueError) as caught:
        TimeRange.parse(NOW, **query)
    assert str(caught.value).startswith(message), str(caught.value)


def test_zones_cut_the_range_and_wider_zooms_out_within_the_maximum() -> None:
    """Zones are equal, adjacent custom windows; wider() keeps the centre, capped at MAX_SPAN."""
    window = TimeRange.parse(NOW, range="1h")
    zones = window.zones(6)
    assert [(z.since, z.until) for z in zones] == [
        (NOW - 3600 + 600 * i, NOW - 3000 + 600 * i) for i in range(6)
    ]
    assert zones[0].query() == {"since": str(int(NOW - 3600)), "until": str(int(NOW - 3000))}
    assert TimeRange.between(NOW - 20, NOW).zones(6) == []  # too narrow to cut
    out = window.wider()
    assert (out.since + out.until) / 2 == NOW - 1800 and out.span == 4 * 3600
    assert TimeRange.parse(NOW, range="7d").wider(10).span == MAX_SPAN


def test_durations_format_as_the_picker_writes_them() -> None:
    """format_duration picks the largest exact unit."""
    assert [format_duration(s) for s in (900, 3600, 86_400, 604_800, 90, 601.4)] == [
        "15m",
        "1h",
        "1d",
        "7d",
        "90s",
        "601s",
    ]
