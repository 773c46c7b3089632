"""The monitor's sans-I/O parts: SSE parsing, the model and the panels' text (no sockets)."""

from __future__ import annotations

import pytest

from hub.core.engines import Health
from hub.tui.models import MAX_SIGNALS, Monitor
from hub.tui.panels import clean, countdown, span, status_text
from hub.tui.streams import SSEParser, StreamTooLarge


def test_sse_parser_joins_split_chunks_and_skips_comments() -> None:
    """A message split anywhere arrives once, whole; comments and retry are ignored."""
    parser = SSEParser()
    assert parser.feed("retry: 1000\n: connected\n\nid: 7\nevent: sig") == []
    assert parser.feed('nal_event\ndata: {"a"\r\ndata: :1}\n') == []
    (message,) = parser.feed("\n")
    assert (message.event, message.data, message.id) == ("signal_event", '{"a"\n:1}', "7")


def test_sse_parser_bounds_a_line() -> None:
    """A line without end beyond the limit is refused, not buffered forever."""
    parser = SSEParser(max_bytes=64)
    with pytest.raises(StreamTooLarge):
        parser.feed("data: " + "x" * 100)


def test_signals_are_newest_first_deduplicated_and_bounded() -> None:
    """Snapshot and stream overlap without doubles; older snapshot rows go below; at most 100."""
    monitor = Monitor("fno")

    def signal(ident: int) -> dict[str, object]:
        payload = {"symbol": f"S{ident}", "signal_type": "long", "entry_price": 1.5}
        return {"id": ident, "type": "signal_event", "engine": "fno", "payload": payload}

    for ident in (10, 11, 11, 5):
        monitor.add_event(signal(ident))
    assert [s.id for s in monitor.signals["fno"]] == [11, 10, 5]
    assert monitor.signals["fno"][0].side == "long" and monitor.signals["fno"][0].price == 1.5
    for ident in range(100, 100 + MAX_SIGNALS + 5):
        monitor.add_event(signal(ident))
    assert len(monitor.signals["fno"]) == MAX_SIGNALS


def test_engine_list_survives_garbage_and_health_changes_apply() -> None:
    """Entries without a name are skipped, an unknown health reads offline; hub.health updates."""
    monitor = Monitor()
    monitor.set_engines(
        {
            "engines": [
                {"name": "b", "health": "ok"},
                {"name": 3},
                "x",
                {"name": "a", "health": "??"},
            ]
        },
        0.0,
    )
    assert monitor.names() == ["a", "b"] and monitor.selected == "a"
    assert monitor.engines["a"].health is Health.OFFLINE
    monitor.set_health({"engine": "b", "health": "stalled"})
    assert monitor.engines["b"].health is Health.STALLED
    with pytest.raises(ValueError, match="--url"):
        monitor.set_engines(["not", "a", "hub"], 0.0)


def test_logs_merge_by_id_and_restart_for_another_engine() -> None:
    """A tail read twice adds only new lines; picking another engine starts its log afresh."""
    monitor = Monitor("fno")
    lines = [{"id": i, "level": "INFO", "message": f"m{i}"} for i in (1, 2, 3)]
    assert monitor.set_logs("fno", lines[:2]) == 2
    assert monitor.set_logs("fno", lines) == 1
    assert monitor.set_logs("equity", lines[:1]) == 1 and len(monitor.logs) == 1


def test_clean_makes_controls_visible_and_bounds_length() -> None:
    """Escape sequences and bidi overrides become ⟨U+XXXX⟩; long text ends in an ellipsis."""
    assert clean("\x1b[2Jx\u202e") == "\u27e8U+001B\u27e9[2Jx\u27e8U+202E\u27e9"
    assert clean("a" * 50, 10) == "a" * 9 + "\u2026"


def test_status_reads_state_keys_and_counts_down() -> None:
    """Next cycle counts down to the second; uptime keeps counting while the engine is here."""
    monitor = Monitor("fno")
    engine = {
        "name": "fno",
        "health": "ok",
        "uptime_seconds": 100,
        "state": {"next_cycle_time": "2026-01-07T14:40:15+00:00"},
    }
    monitor.set_engines({"asof": "2026-01-07T14:37:30+00:00", "engines": [engine]}, 0.0)
    now = monitor.engines["fno"].asof + 10
    text = status_text(monitor, now).plain
    assert "00:02:35" in text and "1m 50s" in text
    assert countdown(now - 5, now) == "due (5.0s late)" and span(2 * 86400 + 3700) == "2d 1h 01m"
