"""derive_health: precedence of the health rules and thresholds relative to heartbeat_interval."""

from __future__ import annotations

from typing import Any

import pytest

from hub.core.engines import EngineRecord, Health, RecentCount, derive_health
from hub.core.ingested import Ingested
from hub.core.messages import Bye, Heartbeat, Hello, Status
from hub.core.records import utc
from hub.core.state import HubState
from hub.settings import Settings

T0 = 1_700_000_000.0
SETTINGS = Settings()  # late after 2x, stale after 6x, stalled after 6x the interval


def engine(**fields: Any) -> EngineRecord:
    """A connected, running engine that beat and ticked at T0 with a 5 s interval."""
    defaults: dict[str, Any] = {
        "status": Status.RUNNING,
        "connected": True,
        "connected_at": T0 - 100,
        "last_heartbeat": T0,
        "loop_tick": 1,
        "tick_changed_at": T0,
        "heartbeat_interval": 5.0,
    }
    return EngineRecord("fno", T0 - 100, **{**defaults, **fields})


def health(record: EngineRecord, at: float, settings: Settings = SETTINGS) -> Health:
    return derive_health(record, at, settings)


def test_fresh_heartbeat_is_ok() -> None:
    """A connected engine with a recent heartbeat and advancing tick is ok."""
    assert health(engine(), T0 + 1) is Health.OK


@pytest.mark.parametrize(
    ("silence", "expected"),
    [(10.0, Health.OK), (10.01, Health.LATE), (30.0, Health.LATE), (30.01, Health.STALE)],
)
def test_late_and_stale_thresholds(silence: float, expected: Health) -> None:
    """Late past late_after x interval and stale past stale_after x interval (strictly after)."""
    assert health(engine(), T0 + silence) is expected


@pytest.mark.parametrize(
    ("interval", "silence", "expected"),
    [(1.0, 2.5, Health.LATE), (1.0, 6.5, Health.STALE), (30.0, 59.0, Health.OK)],
)
def test_thresholds_scale_with_heartbeat_interval(
    interval: float, silence: float, expected: Health
) -> None:
    """The same silence means different health for engines with different intervals."""
    assert health(engine(heartbeat_interval=interval), T0 + silence) is expected


def test_thresholds_follow_settings() -> None:
    """late_after and stale_after multiples come from Settings."""
    settings = Settings(late_after=1.0, stale_after=3.0)
    assert health(engine(), T0 + 6, settings) is Health.LATE
    assert health(engine(), T0 + 16, settings) is Health.STALE


def test_connect_time_counts_as_seen_before_any_heartbeat() -> None:
    """A freshly connected engine that has not beaten yet is judged from its connect time."""
    record = engine(last_heartbeat=None, connected_at=T0, tick_changed_at=None)
    assert health(record, T0 + 5) is Health.OK
    assert health(record, T0 + 11) is Health.LATE


def test_reconnect_resets_silence() -> None:
    """A reconnect newer than the last heartbeat restarts the silence clock."""
    record = engine(last_heartbeat=T0 - 100, connected_at=T0)
    assert health(record, T0 + 1) is Health.OK


def test_disconnected_is_offline() -> None:
    """A dropped socket without bye is offline, even with a fresh heartbeat."""
    assert health(engine(connected=False), T0) is Health.OFFLINE


def test_bye_is_stopped_even_when_disconnected() -> None:
    """After bye the engine is stopped, not offline, and never late."""
    record = engine(said_bye=True, connected=False, status=Status.ERROR)
    assert health(record, T0 + 1000) is Health.STOPPED


def test_stopped_status_is_stopped() -> None:
    """An engine reporting status stopped is stopped even before saying bye."""
    assert health(engine(status=Status.STOPPED), T0 + 1000) is Health.STOPPED


def test_error_status_is_error() -> None:
    """An engine reporting status error is in error while its heartbeats are on time."""
    assert health(engine(status=Status.ERROR), T0 + 1) is Health.ERROR


def test_lateness_beats_error() -> None:
    """A late or stale engine is reported late or stale even if its last status was error."""
    record = engine(status=Status.ERROR)
    assert health(record, T0 + 11) is Health.LATE
    assert health(record, T0 + 31) is Health.STALE


def test_frozen_tick_is_stalled() -> None:
    """Heartbeats on time but loop_tick unchanged past stalled_after x interval is stalled."""
    assert health(engine(tick_changed_at=T0 - 30), T0) is Health.OK
    assert health(engine(tick_changed_at=T0 - 31), T0) is Health.STALLED


def test_stalled_threshold_scales_with_interval() -> None:
    """The stalled threshold is relative to the heartbeat interval too."""
    record = engine(heartbeat_interval=1.0, last_heartbeat=T0 + 7, tick_changed_at=T0)
    assert health(record, T0 + 7) is Health.STALLED


def test_stalled_only_while_running() -> None:
    """A starting engine whose tick has not moved is not stalled."""
    record = engine(status=Status.STARTING, last_heartbeat=T0 + 100, tick_changed_at=T0)
    assert health(record, T0 + 100) is Health.OK


def test_error_beats_stalled() -> None:
    """An engine in error whose tick froze reports error."""
    record = engine(status=Status.ERROR, last_heartbeat=T0 + 100, tick_changed_at=T0)
    assert health(record, T0 + 100) is Health.ERROR


def test_stale_beats_stalled() -> None:
    """When heartbeats stop as well, the engine is stale, not stalled."""
    assert health(engine(), T0 + 100) is Health.STALE


def test_as_dict_derives_health_at_now() -> None:
    """The API shape carries the health derived at `now` and the heartbeat age."""
    data = engine(started_at=T0 - 60).as_dict(T0 + 11, SETTINGS)
    assert data["health"] is Health.LATE
    assert data["last_heartbeat_age"] == 11
    assert data["uptime_seconds"] == 71
    assert data["status"] is Status.RUNNING


def test_new_boot_forgets_per_boot_facts() -> None:
    """new_boot resets the tick, errors, state and gaps and starts at the given seq."""
    record = engine(last_error="boom", state={"k": 1}, gaps=4, hwm=9, loop_rate=2.0)
    record.new_boot("boot-2", 3)
    assert (record.boot_id, record.boots, record.hwm, record.gaps) == ("boot-2", 1, 3, 0)
    assert (record.loop_tick, record.loop_rate, record.tick_changed_at) == (None, None, None)
    assert (record.last_error, record.state, record.status) == (None, {}, Status.STARTING)


def test_clock_skew_is_the_heartbeat_ts_minus_the_hub_receive_time() -> None:
    """A heartbeat's own ts is kept beside the hub's receive time; the API shows both and the
    skew, and a 1970 ts shows as a skew of decades; a heartbeat without ts leaves it unknown."""
    state = HubState(SETTINGS)
    record, _ = state.hello(Hello(engine="fno", boot_id="b1"), 1, T0, Ingested())
    assert record.as_dict(T0, SETTINGS)["clock_skew"] is None
    state.ingest(record, [Heartbeat(seq=1, ts=T0 + 1.25)], T0 + 1.0)
    data = record.as_dict(T0 + 2, SETTINGS)
    assert data["clock_skew"] == 0.25
    assert data["last_heartbeat"] == utc(T0 + 1.0)  # the hub's receive time
    assert data["last_heartbeat_ts"] == utc(T0 + 1.25)  # the engine's own time
    state.ingest(record, [Heartbeat(seq=2, ts=86_400.0)], T0 + 3)
    assert record.clock_skew == 86_400.0 - (T0 + 3)
    state.ingest(record, [Heartbeat(seq=3)], T0 + 4)
    assert (
        record.clock_skew is None and record.as_dict(T0 + 4, SETTINGS)["last_heartbeat_ts"] is None
    )


# -- what the card shows: errors in time, recovery, the moment it went away ----------------------


def test_recent_count_counts_a_trailing_window_in_bounded_memory() -> None:
    """RecentCount keeps one bucket per minute of its window, however many events arrive."""
    recent = RecentCount(window=15 * 60)
    for i in range(1000):
        recent.add(T0 + i)  # ~17 minutes of one event a second
    assert len(recent._buckets) <= 16
    assert recent.count(T0 + 999) < 1000
    assert 14 * 60 <= recent.count(T0 + 999) <= 15 * 60 + 60
    assert recent.count(T0 + 999 + 16 * 60) == 0


def test_an_error_is_timed_and_healed_by_a_later_running_status() -> None:
    """note_error stamps the error; running at a later time marks it recovered, not the same batch."""
    record = engine()
    record.note_error("feed down", T0 + 1)
    record.note_status(Status.RUNNING, T0 + 1)  # the batch that brought the error
    assert (record.error_at, record.recovered_at) == (T0 + 1, None)
    record.note_status(Status.ERROR, T0 + 2)
    assert record.recovered_at is None
    record.note_status(Status.RUNNING, T0 + 3)
    assert record.recovered_at == T0 + 3
    record.note_status(Status.RUNNING, T0 + 4)
    assert record.recovered_at == T0 + 3  # the first healthy report, not the latest
    assert record.recent_errors.count(T0 + 4) == 1
    record.note_error("again", T0 + 5)
    assert (record.error_text, record.recovered_at) == ("again", None)


def test_uptime_freezes_when_the_engine_goes_away() -> None:
    """Uptime counts while connected, stops at the disconnect or the stop, and stays there."""
    record = engine(started_at=T0 - 60)
    assert record.uptime(T0 + 10) == 70
    assert record.ended_at() is None
    record.connected, record.disconnected_at = False, T0 + 20
    assert record.uptime(T0 + 30) == record.uptime(T0 + 3000) == 80
    stopped = engine(started_at=T0 - 60)
    stopped.note_status(Status.STOPPED, T0 + 5)
    assert stopped.ended_at() == T0 + 5
    assert stopped.uptime(T0 + 500) == 65
    stopped.new_boot("b2", 0)
    assert stopped.stopped_at is None


def test_heartbeats_and_error_events_time_the_error_through_hub_state() -> None:
    """An error event counts; a heartbeat's changed last_error is timed but not counted twice."""
    state = HubState(SETTINGS)
    record, _ = state.hello(Hello(engine="fno", boot_id="b1"), 1, T0, Ingested())
    state.ingest(record, [Heartbeat(seq=1, status=Status.RUNNING, loop_tick=1)], T0)
    state.ingest(record, [Heartbeat(seq=2, status=Status.ERROR, last_error="E: boom")], T0 + 1)
    assert (record.error_text, record.error_at, record.recent_errors.count(T0 + 1)) == (
        "E: boom",
        T0 + 1,
        0,
    )
    state.ingest(record, [Heartbeat(seq=3, status=Status.ERROR, last_error="E: boom")], T0 + 2)
    assert record.error_at == T0 + 1  # the same error repeated is not a new one
    state.ingest(record, [Heartbeat(seq=4, status=Status.RUNNING, last_error=None)], T0 + 3)
    assert (record.last_error, record.error_text, record.recovered_at) == (None, "E: boom", T0 + 3)
    state.ingest(record, [Bye(seq=5, status=Status.ERROR)], T0 + 4)  # a failed exit stops too
    assert record.ended_at() == T0 + 4
