"""The loop-lag monitor, health that discounts the loop's blind time, and the fan-out cadence."""

from __future__ import annotations

from typing import Any

import msgspec

from hub.core.cadence import Cadence
from hub.core.engines import EngineRecord, Health, derive_health
from hub.core.ingested import Ingested
from hub.core.lag import NO_LAG, LoopLag
from hub.core.messages import Event, Heartbeat, Hello, Status
from hub.core.stats import Topic
from hub.live.views import OVERVIEW, FragmentKey, Part
from hub.settings import Settings
from hub.stores import MemoryStore
from hub.web.runtime import Hub
from tests.test_engines import SETTINGS, T0
from tests.test_engines import engine as running_engine


def engine(**fields: Any) -> EngineRecord:
    """A connected, running engine that beat and ticked at T0 with a 1 s interval."""
    return running_engine(**{"heartbeat_interval": 1.0, **fields})


# -- LoopLag -------------------------------------------------------------------------------------


def test_a_late_wake_is_a_blind_window() -> None:
    """A timer 1.5 s late means the loop read nothing for those 1.5 s, and only those."""
    lag = LoopLag()
    lag.observe(1.5, T0 + 3.0)  # blind from T0 + 1.5 to T0 + 3
    assert lag.blind(T0, T0 + 3.0) == 1.5
    assert lag.blind(T0 + 2.0, T0 + 3.0) == 1.0  # only the part after `since`
    assert lag.blind(T0 + 3.0, T0 + 4.0) == 0.0  # none after it ended
    assert lag.total_blind == 1.5


def test_jitter_is_not_blind_time_and_windows_add_up() -> None:
    """Wakes a few ms late are not blind time; separate late wakes add up; overlaps count once."""
    lag = LoopLag()
    lag.observe(0.01, T0 + 1.0)
    assert lag.blind(T0, T0 + 1.0) == 0.0
    lag.observe(0.5, T0 + 2.0)
    lag.observe(0.5, T0 + 4.0)
    lag.observe(0.7, T0 + 4.2)  # overlaps the previous window: blind from T0 + 3.5 to T0 + 4.2
    assert round(lag.blind(T0, T0 + 5.0), 6) == 0.5 + 0.7
    assert round(lag.blind(T0 + 3.0, T0 + 5.0), 6) == 0.7


def test_the_window_list_is_bounded() -> None:
    """Past its bound the monitor forgets its oldest windows, never the recent ones."""
    lag = LoopLag(windows=8)
    for i in range(100):
        lag.observe(0.1, T0 + i)
    assert len(lag._ends) <= 8
    assert round(lag.blind(T0 + 94, T0 + 99), 6) == 0.5  # windows end at T0 + 95 .. T0 + 99
    assert round(lag.total_blind, 3) == 10.0


def test_lagging_is_said_while_behind_and_for_a_while_after() -> None:
    """The hub says it lags (its worst recent lag) from a late wake until `hold` after the last."""
    lag = LoopLag(lagging_after=0.5, hold=5.0)
    assert lag.lagging(T0) is None
    lag.observe(0.2, T0)
    assert lag.lagging(T0) is None  # late, but not lagging
    lag.observe(1.4, T0 + 1)
    lag.observe(0.9, T0 + 2)
    assert lag.lagging(T0 + 2) == 1.4
    assert lag.lagging(T0 + 6.9) == 1.4
    assert lag.lagging(T0 + 7.1) is None
    lag.observe(0.6, T0 + 20)  # a new episode reports its own worst
    assert lag.lagging(T0 + 20) == 0.6


def test_the_null_monitor_never_lags() -> None:
    """NO_LAG (derive_health's default) ignores what it is told."""
    NO_LAG.observe(3.0, T0)
    assert NO_LAG.blind(T0 - 10, T0) == 0.0 and NO_LAG.lagging(T0) is None


# -- derive_health discounts blind time -----------------------------------------------------------


def test_a_heartbeat_waiting_in_a_blind_loop_is_not_missing() -> None:
    """2.5 s after the last heartbeat an engine with a 1 s interval is late, unless the hub's
    loop was blind for 1.5 s of them: then only 1 s of silence counts and it is ok."""
    record = engine()
    assert derive_health(record, T0 + 2.5, SETTINGS) is Health.LATE
    lag = LoopLag()
    lag.observe(1.5, T0 + 2.5)
    assert derive_health(record, T0 + 2.5, SETTINGS, lag) is Health.OK


def test_blind_time_delays_stale_and_stalled_but_does_not_hide_them() -> None:
    """Blind time is subtracted once; silence beyond it still turns an engine late, then stale."""
    lag = LoopLag()
    lag.observe(3.0, T0 + 4.0)  # blind from T0 + 1 to T0 + 4
    record = engine()
    assert derive_health(record, T0 + 6.5, SETTINGS) is Health.STALE
    assert derive_health(record, T0 + 6.5, SETTINGS, lag) is Health.LATE  # 3.5 s of silence
    assert derive_health(record, T0 + 9.5, SETTINGS, lag) is Health.STALE  # 6.5 s
    ticking = engine(last_heartbeat=T0 + 6.5, tick_changed_at=T0)  # beats, but the tick is stuck
    assert derive_health(ticking, T0 + 7.0, SETTINGS) is Health.STALLED
    assert derive_health(ticking, T0 + 7.0, SETTINGS, lag) is Health.OK  # 4 s of it count
    ticking.last_heartbeat = T0 + 9.0
    assert derive_health(ticking, T0 + 9.5, SETTINGS, lag) is Health.STALLED  # 6.5 s


def test_state_refresh_reports_no_transition_for_blind_time() -> None:
    """HubState.refresh (the source of SSE hub.health) discounts the lag the runtime observed."""
    hub = Hub(Settings(heartbeat_interval=1.0), MemoryStore())
    state = hub.state
    record, _ = state.hello(Hello(engine="fno", boot_id="b"), 1, T0, Ingested())
    state.ingest(record, [Heartbeat(seq=1, status=Status.RUNNING, loop_tick=1)], T0)
    assert state.refresh(T0 + 0.1) == []
    state.lag.observe(6.0, T0 + 7.0)  # the loop was blind from T0 + 1 to T0 + 7
    assert state.refresh(T0 + 7.0) == []
    assert record.health is Health.OK
    assert [c.health for c in state.refresh(T0 + 9.5)] == [Health.LATE]  # real silence counts


# -- Cadence and the table refresh ---------------------------------------------------------------


def test_cadence_runs_every_tick_and_rests_only_while_the_loop_is_late() -> None:
    """The next run is the next tick, also after a long run (it yielded as it went); while the
    loop is late the fan-out rests as long as the lag, at most `max_rest` (ticks skipped, their
    marks coalesced), and is busy (tables at their cadence) after a long run or a late loop."""
    cadence = Cadence(tick=0.1, table_refresh=0.25, max_rest=1.0)
    assert cadence.ran(10.0, 0.01, lag=0.0) == 10.1 and not cadence.busy
    assert cadence.ran(10.1, 0.3, lag=0.0) == 10.2 and cadence.busy
    assert round(cadence.ran(11.0, 0.2, lag=0.6), 6) == 11.8 and cadence.busy
    assert cadence.skipped == 7
    assert round(cadence.ran(12.0, 0.2, lag=5.0), 6) == 13.2  # at most max_rest
    assert cadence.ran(14.0, 0.01, lag=0.0) == 14.1 and not cadence.busy


def test_tables_go_out_every_run_when_idle_and_at_their_cadence_when_busy() -> None:
    """Idle: tables render in every run; busy: at most every `table_refresh`."""
    cadence = Cadence(tick=0.1, table_refresh=0.25)
    assert all(cadence.tables_now(10.0 + i * 0.1) for i in range(5))
    cadence.ran(10.5, 0.3, lag=0.0)  # busy now
    assert cadence.tables_now(10.8)
    assert not cadence.tables_now(10.9)
    assert cadence.tables_now(11.06)


def event(seq: int) -> Event:
    """A signal event as the decoder makes it: the payload kept as raw JSON."""
    return Event(seq=seq, type="signal_event", payload=msgspec.Raw(b'{"symbol": "X"}'))


def test_an_event_reaches_the_page_in_the_same_run_when_idle() -> None:
    """At low load an event is dirtied and its table rendered in the very next run, even right
    after a table was sent (no 250 ms table cadence while idle)."""
    hub = Hub(Settings(), MemoryStore())
    record, _ = hub.state.hello(Hello(engine="fno", boot_id="b"), 1, T0, Ingested())
    viewer = hub.fanout.join(OVERVIEW)
    assert viewer is not None
    hub.push_views(T0)  # the snapshot
    hub.state.ingest(record, [event(1)], T0 + 0.05)
    hub.push_views(T0 + 0.1)
    hub.state.ingest(record, [event(2)], T0 + 0.15)
    hub.push_views(T0 + 0.2)  # 0.1 s after the last table: still sent at once
    signals = hub.views.render(FragmentKey(Part.SIGNALS), T0 + 0.2, oob=True)
    assert viewer.queue[-1] == signals and not hub.state.dirty.keys
    # Under load the same event waits for the table cadence (and stays dirty until then).
    hub.cadence.ran(T0, 0.3, lag=0.0)
    hub.state.ingest(record, [event(3)], T0 + 0.25)
    hub.push_views(T0 + 0.3)
    assert viewer.queue[-1] == signals and hub.state.dirty.keys


def test_a_fanout_run_yields_to_the_loop_every_few_viewers() -> None:
    """A run over 130 viewers of a dirtied view steps back to the loop at least twice, so engine
    sockets are read in between; every viewer still gets the frame."""
    hub = Hub(Settings(), MemoryStore())
    hub.state.hello(Hello(engine="fno", boot_id="b"), 1, T0, Ingested())
    viewers = [hub.fanout.join(OVERVIEW) for _ in range(130)]
    hub.push_views(T0)  # snapshots
    hub.state.dirty.mark(Topic.HUB)
    steps = sum(1 for _ in hub.pushing(T0 + 0.1))
    assert steps >= 2
    assert all(v is not None and len(v.queue) == 2 for v in viewers)
