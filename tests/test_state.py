"""HubState, sans-I/O: registration, dedupe and gaps by seq, ingest effects, health refresh."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest

from hub.core.decoding import Rejected
from hub.core.engines import EngineRecord, Health
from hub.core.ingested import Gap, Ingested
from hub.core.messages import Bye, ErrorCode, Event, Heartbeat, Hello, Log, Metric, Status
from hub.core.records import utc
from hub.core.state import CannotForget, DirtySet, HealthChange, HubState, TooManyEngines
from hub.core.stats import Dirty, Topic
from hub.settings import Settings

T0 = 1_700_000_000.0


def connect(
    state: HubState,
    engine: str = "fno",
    boot_id: str | None = "boot-1",
    conn_id: int = 1,
    **kw: Any,
) -> EngineRecord:
    """Say hello on `conn_id` and return the engine record."""
    record, _ = state.hello(Hello(engine=engine, boot_id=boot_id, **kw), conn_id, T0, Ingested())
    return record


def event(seq: int, type: str = "signal_event", **payload: Any) -> Event:
    return Event(seq=seq, type=type, payload=msgspec.Raw(msgspec.json.encode(payload)))


def events(first: int, last: int) -> list[Any]:
    return [event(seq, n=seq) for seq in range(first, last + 1)]


def ring_seqs(state: HubState, event_type: str = "signal_event") -> list[int]:
    return [record.seq for record in state.rings.rings[event_type].items]


@pytest.fixture
def state() -> HubState:
    return HubState(Settings())


def test_hello_registers_engine(state: HubState) -> None:
    """A first hello creates a connected record with the hello's identity and no replaced socket."""
    hello = Hello(engine="fno", mode="LIVE", pid=3596, boot_id="b-1", meta={"region": "in"})
    record, replaced = state.hello(hello, 7, T0, Ingested())
    assert replaced is None
    assert state.engines == {"fno": record}
    assert (record.name, record.mode, record.pid, record.boot_id) == ("fno", "live", 3596, "b-1")
    assert (record.connected, record.conn_id, record.connected_at) == (True, 7, T0)
    assert (record.hwm, record.boots, record.meta) == (0, 1, {"region": "in"})
    assert record.started_at == T0
    assert state.dirty.drain() == {Dirty(Topic.ENGINE, "fno"), Dirty(Topic.ENGINES)}


def test_hello_without_boot_id_uses_the_connection(state: HubState) -> None:
    """Without a boot_id each connection counts as its own boot."""
    record = connect(state, boot_id=None, conn_id=9)
    assert record.boot_id == "conn-9"


def test_hello_sets_started_at_and_heartbeat_interval(state: HubState) -> None:
    """started_at (normalized seconds) and heartbeat_interval from the hello are kept."""
    record = connect(state, started_at=T0 - 3600, heartbeat_interval=2.5)
    assert record.started_at == T0 - 3600
    assert record.heartbeat_interval == 2.5


def test_ingest_applies_messages_in_order(state: HubState) -> None:
    """Accepted messages advance the high-water mark and are counted by kind."""
    engine = connect(state)
    out = state.ingest(engine, [Heartbeat(seq=1), event(2), Log(seq=3, message="m")], T0)
    assert engine.hwm == 3
    assert [record.seq for record in out.events] == [2]
    assert [log.seq for log in out.logs] == [3]
    assert (out.rejected, out.gaps) == ([], [])
    counted = {kind: n for kind, n in state.stats.messages.items() if n}
    assert counted == {"hello": 1, "heartbeat": 1, "event": 1, "log": 1}


def test_random_frames_keep_rings_totals_and_hwm_exact() -> None:
    """Frames mixing runs of types, new types past the type limit, duplicates, gaps and other
    messages leave each ring holding exactly the newest accepted events of its type, with
    `total` (and so `evicted`) counting every one, and the hwm at the highest seq seen."""
    rng = random.Random(11)
    settings = Settings(
        ring_capacities={"signal_event": 7, "cycle": 3}, ring_default_capacity=5, max_event_types=2
    )
    state = HubState(settings)
    engine = connect(state)
    kinds = ["signal_event", "cycle", "custom.a", "custom.b", "custom.c"]
    accepted: dict[str, list[int]] = {}
    highest = 0
    for _ in range(300):
        items: list[Any] = []
        for _ in range(rng.choice([1, 2, 5, 20])):
            seq = max(1, highest + rng.choice([-2, 1, 1, 1, 1, 2]))  # duplicates and gaps
            highest = max(highest, seq)
            if rng.random() < 0.15:
                items.append(rng.choice([Heartbeat(seq=seq), Log(seq=seq, message="m")]))
            else:
                items.append(event(seq, rng.choice(kinds), n=seq))
        out = state.ingest(engine, items, T0)
        for record in out.events:
            accepted.setdefault(record.type, []).append(record.seq)
    assert engine.hwm == highest
    custom = set(accepted) - {"signal_event", "cycle"}
    assert len(custom) == 2 and set(state.rings.rings) >= custom  # the third is over the limit
    assert (set(kinds) - set(accepted)).isdisjoint(state.rings.rings)
    assert engine.events == sum(len(seqs) for seqs in accepted.values())
    for kind, seqs in accepted.items():
        ring = state.rings.rings[kind]
        assert ring.total == len(seqs), kind
        assert [r.seq for r in ring.items] == seqs[-settings.ring_capacity(kind) :], kind
        assert ring.evicted == len(seqs) - len(ring.items)


def test_duplicates_are_dropped_and_counted(state: HubState) -> None:
    """A seq at or below the high-water mark is dropped as a duplicate and not applied twice."""
    engine = connect(state)
    state.ingest(engine, events(1, 3), T0)
    out = state.ingest(engine, [*events(2, 3), event(4)], T0 + 1)
    assert [record.seq for record in out.events] == [4]
    assert ring_seqs(state) == [1, 2, 3, 4]
    assert engine.events == 4
    assert state.stats.drops["duplicate"] == 2
    assert state.stats.messages["event"] == 4


def test_duplicate_within_one_frame_is_dropped(state: HubState) -> None:
    """A replayed seq inside the same frame is dropped too."""
    engine = connect(state)
    state.ingest(engine, [event(1), event(1), event(2)], T0)
    assert ring_seqs(state) == [1, 2]
    assert state.stats.drops["duplicate"] == 1


def test_seq_jump_is_recorded_as_gap(state: HubState) -> None:
    """Missing seqs are counted on the engine and in drops, and returned as a Gap."""
    engine = connect(state)
    state.ingest(engine, [event(1)], T0)
    out = state.ingest(engine, [event(5), event(6)], T0)
    assert out.gaps == [Gap("fno", "boot-1", 2, 4)]
    assert engine.gaps == 3
    assert state.stats.drops["gap"] == 3
    assert engine.hwm == 6
    assert ring_seqs(state) == [1, 5, 6]


def test_rejected_message_consumes_its_seq(state: HubState) -> None:
    """A rejected message with a seq advances the mark, so the next seq is not a gap."""
    engine = connect(state)
    bad = Rejected(ErrorCode.BAD_NUMBER, "NaN", seq=1, index=0)
    out = state.ingest(engine, [bad, event(2)], T0)
    assert out.rejected == [bad]
    assert out.gaps == []
    assert engine.hwm == 2
    assert engine.rejected == 1
    assert state.stats.rejected[ErrorCode.BAD_NUMBER] == 1


def test_rejected_message_without_seq_leaves_the_mark(state: HubState) -> None:
    """A rejection without a readable seq cannot move the high-water mark."""
    engine = connect(state)
    state.ingest(engine, [Rejected(ErrorCode.BAD_JSON, "garbage")], T0)
    assert engine.hwm == 0
    assert engine.rejected == 1


def test_replayed_rejection_is_a_duplicate(state: HubState) -> None:
    """A rejected message replayed after reconnect is dropped as a duplicate, not re-reported."""
    engine = connect(state)
    state.ingest(engine, [Rejected(ErrorCode.BAD_NUMBER, "NaN", seq=1)], T0)
    out = state.ingest(engine, [Rejected(ErrorCode.BAD_NUMBER, "NaN", seq=1)], T0)
    assert out.rejected == []
    assert state.stats.drops["duplicate"] == 1


def test_heartbeat_is_partial(state: HubState) -> None:
    """Fields a heartbeat omits keep their last value."""
    engine = connect(state)
    full = Heartbeat(
        seq=1,
        status=Status.RUNNING,
        loop_tick=10,
        universe_size=5,
        open_positions=2,
        last_error="old",
        dropped={"buffer_full": 3},
    )
    state.ingest(engine, [full, Heartbeat(seq=2, loop_tick=11)], T0)
    assert engine.status is Status.RUNNING
    assert (engine.loop_tick, engine.universe_size, engine.open_positions) == (11, 5, 2)
    assert engine.last_error == "old"
    assert engine.client_dropped == {"buffer_full": 3}
    state.ingest(engine, [Heartbeat(seq=3, last_error=None, open_positions=0)], T0)
    assert (engine.last_error, engine.open_positions, engine.universe_size) == (None, 0, 5)


def test_heartbeat_interval_updates_engine(state: HubState) -> None:
    """A heartbeat may announce a new heartbeat interval."""
    engine = connect(state)
    state.ingest(engine, [Heartbeat(seq=1, interval=1.5)], T0)
    assert engine.heartbeat_interval == 1.5


def test_state_merges_and_null_deletes(state: HubState) -> None:
    """Heartbeat state merges into the previous one; a null value deletes the key."""
    engine = connect(state)
    first = Heartbeat(seq=1, state={"next_cycle_at": "10:00", "trading_hours_active": True})
    second = Heartbeat(seq=2, state={"next_cycle_at": None, "regime": "trend"})
    state.ingest(engine, [first, second], T0)
    assert engine.state == {"trading_hours_active": True, "regime": "trend"}
    state.ingest(engine, [Heartbeat(seq=3, loop_tick=1)], T0)
    assert engine.state == {"trading_hours_active": True, "regime": "trend"}


def test_loop_rate_from_successive_heartbeats(state: HubState) -> None:
    """loop_rate is tick progress per second between heartbeats; a tick going back counts as 0."""
    engine = connect(state)
    state.ingest(engine, [Heartbeat(seq=1, loop_tick=100)], T0)
    assert engine.loop_rate is None
    state.ingest(engine, [Heartbeat(seq=2, loop_tick=150)], T0 + 5)
    assert engine.loop_rate == 10.0
    state.ingest(engine, [Heartbeat(seq=3, loop_tick=20)], T0 + 7)
    assert engine.loop_rate == 0.0
    assert list(engine.rate_history) == [10.0, 0.0]


def test_events_land_in_their_rings_and_mark_dirty(state: HubState) -> None:
    """Each event type goes to its own ring; the Dirty(Topic.EVENTS, type) view is marked dirty."""
    engine = connect(state)
    state.dirty.drain()
    stamped = Event(seq=1, type="order_event", ts=T0 - 10, payload=msgspec.Raw(b'{"id":"o1"}'))
    out = state.ingest(engine, [stamped, event(2), event(3, type="my_custom")], T0)
    assert ring_seqs(state, "order_event") == [1]
    assert ring_seqs(state, "signal_event") == [2]
    assert ring_seqs(state, "my_custom") == [3]
    order = out.events[0]
    assert (order.engine, order.boot_id, order.data()) == ("fno", "boot-1", {"id": "o1"})
    assert order.ts == T0 - 10 and order.view().timestamp == utc(T0 - 10)
    assert out.events[1].ts == T0  # no ts: the hub's receive time
    assert [record.id for record in out.events] == [1, 2, 3]
    assert state.dirty.drain() == {
        Dirty(Topic.EVENTS, "order_event"),
        Dirty(Topic.EVENTS, "signal_event"),
        Dirty(Topic.EVENTS, "my_custom"),
    }


def test_event_ids_start_where_asked() -> None:
    """first_event_id lets a restarted hub continue the id sequence of its store."""
    state = HubState(Settings(), first_event_id=500)
    out = state.ingest(connect(state), events(1, 2), T0)
    assert [record.id for record in out.events] == [500, 501]


def test_error_event_updates_last_error(state: HubState) -> None:
    """An "error" event bumps the error count and sets last_error from message or error_type."""
    engine = connect(state)
    state.dirty.drain()
    state.ingest(engine, [event(1, type="error", message="broker timeout")], T0)
    assert (engine.errors, engine.last_error) == (1, "broker timeout")
    assert Dirty(Topic.ENGINE, "fno") in state.dirty.drain()
    state.ingest(engine, [event(2, type="error", error_type="ValueError")], T0)
    assert (engine.errors, engine.last_error) == (2, "ValueError")
    state.ingest(engine, [event(3, type="error", detail="no message")], T0)
    assert (engine.errors, engine.last_error) == (3, "ValueError")


def test_too_many_event_types_is_rejected_and_consumes_seq() -> None:
    """An event type over the limit is rejected with too_many_types; its seq is still consumed."""
    state = HubState(Settings(max_event_types=1))
    engine = connect(state)
    out = state.ingest(engine, [event(1, type="a"), event(2, type="b"), event(3)], T0)
    assert [(r.code, r.seq) for r in out.rejected] == [(ErrorCode.TOO_MANY_TYPES, 2)]
    assert [record.seq for record in out.events] == [1, 3]
    assert engine.hwm == 3
    assert "b" not in state.rings.rings


def test_metrics_are_aggregated(state: HubState) -> None:
    """Metric messages reach the registry and mark the engine's metrics view dirty."""
    engine = connect(state)
    state.dirty.drain()
    metrics = [
        Metric(seq=1, op="inc", name="fills"),
        Metric(seq=2, op="inc", name="fills", value=2),
    ]
    state.ingest(engine, metrics, T0)
    [counter] = state.metrics.snapshot("fno")["counters"]
    assert counter["lifetime"] == 3.0
    assert state.dirty.drain() == {Dirty(Topic.METRICS, "fno")}


def test_metric_conflict_is_rejected_with_seq(state: HubState) -> None:
    """Using a counter's name as a gauge is rejected with metric_conflict and its seq."""
    engine = connect(state)
    metrics = [Metric(seq=1, op="inc", name="x"), Metric(seq=2, op="set", name="x", value=1)]
    out = state.ingest(engine, metrics, T0)
    assert [(r.code, r.seq) for r in out.rejected] == [(ErrorCode.METRIC_CONFLICT, 2)]
    assert state.stats.rejected[ErrorCode.METRIC_CONFLICT] == 1


def test_logs_land_in_the_tail(state: HubState) -> None:
    """Log lines go to the engine's tail with the level normalized and mark ("logs", engine)."""
    engine = connect(state)
    state.dirty.drain()
    out = state.ingest(engine, [Log(seq=1, message="careful", level="warn", logger="x")], T0)
    [line] = state.logs.tail("fno", 10)
    assert line is out.logs[0]
    assert (line.level, line.logger, line.message, line.seq) == ("WARNING", "x", "careful", 1)
    assert engine.logs == 1
    assert state.dirty.drain() == {Dirty(Topic.LOGS, "fno")}


def test_second_hello_in_a_connection_is_rejected(state: HubState) -> None:
    """A hello after the handshake is rejected with already_hello."""
    engine = connect(state)
    out = state.ingest(engine, [Hello(engine="fno", boot_id="boot-1")], T0)
    assert [r.code for r in out.rejected] == [ErrorCode.ALREADY_HELLO]


def test_bye_marks_stopped(state: HubState) -> None:
    """bye sets the status it carries and health becomes stopped."""
    engine = connect(state)
    state.ingest(engine, [Heartbeat(seq=1, status=Status.RUNNING), Bye(seq=2)], T0)
    assert engine.status is Status.STOPPED
    assert engine.said_bye
    assert state.refresh(T0) == [HealthChange("fno", Health.STOPPED, Health.OK, T0)]


def test_disconnect_only_applies_to_the_current_connection(state: HubState) -> None:
    """A stale socket closing does not take a reconnected engine offline."""
    engine = connect(state, conn_id=1)
    connect(state, conn_id=2)
    state.disconnected(engine, 1, T0 + 1, Ingested())
    assert engine.connected
    assert state.refresh(T0 + 1) == []
    state.disconnected(engine, 2, T0 + 2, Ingested())
    assert not engine.connected
    assert engine.disconnected_at == T0 + 2
    assert state.refresh(T0 + 2) == [HealthChange("fno", Health.OFFLINE, Health.OK, T0 + 2)]


def test_new_boot_resets_per_boot_fields_and_session_metrics(state: HubState) -> None:
    """A hello with a new boot_id resets per-boot facts and session metrics, not lifetime ones."""
    engine = connect(state)
    state.ingest(
        engine,
        [
            Heartbeat(seq=1, status=Status.RUNNING, loop_tick=5, last_error="x", state={"k": 1}),
            Metric(seq=2, op="inc", name="fills", value=4),
            Metric(seq=5, op="set", name="equity", value=100),
        ],
        T0,
    )
    assert engine.gaps == 2
    record, replaced = state.hello(Hello(engine="fno", boot_id="boot-2"), 2, T0 + 60, Ingested())
    assert record is engine
    assert replaced == 1
    assert (engine.boot_id, engine.boots, engine.hwm, engine.gaps) == ("boot-2", 2, 0, 0)
    assert engine.status is Status.STARTING
    assert (engine.loop_tick, engine.last_error, engine.state) == (None, None, {})
    assert engine.started_at == T0 + 60
    snapshot = state.metrics.snapshot("fno")
    [fills] = snapshot["counters"]
    assert (fills["session"], fills["lifetime"]) == (0.0, 4.0)
    [equity] = snapshot["gauges"]
    assert equity["lifetime"] == 100


def test_same_boot_reconnect_keeps_hwm_and_reports_replaced(state: HubState) -> None:
    """Reconnecting with the same boot keeps its hwm (the welcome's last_seq) and its data."""
    engine = connect(state, conn_id=1)
    state.ingest(engine, [Heartbeat(seq=1, loop_tick=3), *events(2, 4)], T0)
    record, replaced = state.hello(Hello(engine="fno", boot_id="boot-1"), 2, T0 + 1, Ingested())
    assert record is engine
    assert replaced == 1
    assert (engine.hwm, engine.boots, engine.loop_tick, engine.conn_id) == (4, 1, 3, 2)
    assert engine.replaced == 1
    assert state.stats.drops["replaced_connection"] == 1


def test_reconnect_after_disconnect_replaces_nothing(state: HubState) -> None:
    """When the old socket already closed, the new hello replaces no connection."""
    engine = connect(state, conn_id=1)
    state.disconnected(engine, 1, T0, Ingested())
    _, replaced = state.hello(Hello(engine="fno", boot_id="boot-1"), 2, T0 + 1, Ingested())
    assert replaced is None
    assert engine.connected


def test_old_boot_hwm_is_remembered(state: HubState) -> None:
    """A boot that comes back after another boot ran resumes at its own hwm."""
    engine = connect(state, boot_id="boot-a", conn_id=1)
    state.ingest(engine, events(1, 3), T0)
    connect(state, boot_id="boot-b", conn_id=2)
    state.ingest(engine, events(1, 1), T0)
    connect(state, boot_id="boot-a", conn_id=3)
    assert engine.hwm == 3
    out = state.ingest(engine, events(3, 4), T0)
    assert [record.seq for record in out.events] == [4]
    connect(state, boot_id="boot-b", conn_id=4)
    assert engine.hwm == 1


def test_max_engines_evicts_the_oldest_disconnected() -> None:
    """At the engine limit the engine that disconnected longest ago is forgotten, series and all."""
    state = HubState(Settings(max_engines=2))
    a = connect(state, "a", conn_id=1)
    b = connect(state, "b", conn_id=2)
    state.ingest(b, [Metric(seq=1, op="inc", name="fills")], T0)
    state.disconnected(b, 2, T0 + 1, Ingested())
    state.disconnected(a, 1, T0 + 2, Ingested())
    connect(state, "c", conn_id=3)
    assert set(state.engines) == {"a", "c"}
    assert state.stats.drops["engine_forgotten"] == 1
    assert "b" not in state.metrics.engines  # its series are freed with it


def test_max_engines_all_connected_raises() -> None:
    """When every slot holds a connected engine a new one raises TooManyEngines."""
    state = HubState(Settings(max_engines=2))
    connect(state, "a", conn_id=1)
    connect(state, "b", conn_id=2)
    with pytest.raises(TooManyEngines, match="max_engines"):
        connect(state, "c", conn_id=3)
    assert set(state.engines) == {"a", "b"}
    connect(state, "a", conn_id=4)  # a known engine always gets back in
    assert state.engines["a"].conn_id == 4


def test_refresh_reports_late_then_stale(state: HubState) -> None:
    """As heartbeats lapse refresh returns ok->late->stale once each, and back to ok on a beat."""
    engine = connect(state)  # default interval 5 s: late after 10 s, stale after 30 s
    state.ingest(engine, [Heartbeat(seq=1, status=Status.RUNNING, loop_tick=1)], T0)
    assert state.refresh(T0 + 10) == []
    assert state.refresh(T0 + 11) == [HealthChange("fno", Health.LATE, Health.OK, T0 + 11)]
    assert state.refresh(T0 + 20) == []
    assert state.refresh(T0 + 31) == [HealthChange("fno", Health.STALE, Health.LATE, T0 + 31)]
    assert (engine.health, engine.health_since) == (Health.STALE, T0 + 31)
    state.ingest(engine, [Heartbeat(seq=2, loop_tick=2)], T0 + 32)
    state.dirty.drain()
    assert state.refresh(T0 + 32) == [HealthChange("fno", Health.OK, Health.STALE, T0 + 32)]
    assert state.dirty.drain() == {Dirty(Topic.ENGINE, "fno")}


def test_refresh_uses_the_engine_heartbeat_interval(state: HubState) -> None:
    """Thresholds scale with the interval announced in hello."""
    engine = connect(state, heartbeat_interval=1.0)
    state.ingest(engine, [Heartbeat(seq=1)], T0)
    assert state.refresh(T0 + 2.5) == [HealthChange("fno", Health.LATE, Health.OK, T0 + 2.5)]


def test_refresh_reports_stalled_when_tick_stops(state: HubState) -> None:
    """Heartbeats that keep arriving with the same loop_tick turn a running engine stalled."""
    engine = connect(state)
    changes: list[HealthChange] = []
    for i in range(9):  # a heartbeat every 5 s, the tick frozen at 7
        now = T0 + 5 * i
        state.ingest(engine, [Heartbeat(seq=i + 1, status=Status.RUNNING, loop_tick=7)], now)
        changes += state.refresh(now)
    assert changes == [HealthChange("fno", Health.STALLED, Health.OK, T0 + 35)]
    state.ingest(engine, [Heartbeat(seq=10, loop_tick=8)], T0 + 45)
    assert state.refresh(T0 + 45) == [HealthChange("fno", Health.OK, Health.STALLED, T0 + 45)]


def test_dirty_drain_empties() -> None:
    """drain returns every marked key once and leaves the set empty."""
    dirty = DirtySet()
    dirty.mark(Topic.ENGINE, "fno")
    dirty.mark(Topic.ENGINE, "fno")
    dirty.mark(Topic.ENGINES)
    assert dirty.drain() == {Dirty(Topic.ENGINE, "fno"), Dirty(Topic.ENGINES)}
    assert dirty.drain() == set()


def test_an_unannounced_heartbeat_interval_is_the_setting() -> None:
    """An engine that declares no heartbeat interval is judged by the `heartbeat_interval` setting."""
    state = HubState(Settings(heartbeat_interval=2.0))
    engine = connect(state)
    assert engine.heartbeat_interval == 2.0
    state.ingest(engine, [Heartbeat(seq=1)], T0)
    assert [c.health for c in state.refresh(T0 + 2 * 2.0 + 0.1)] == [Health.LATE]


def test_boots_travel_in_what_ingest_returns() -> None:
    """hello, a replacing hello and bye hand their boot changes to the store in their Ingested."""
    state = HubState(Settings())
    first = Ingested()
    engine, _ = state.hello(Hello(engine="fno", boot_id="b1", pid=7), 1, T0, first)
    assert [(b.boot_id, b.pid, b.ended) for b in first.boots] == [("b1", 7, None)]
    second = Ingested()
    state.hello(Hello(engine="fno", boot_id="b2"), 2, T0 + 1, second)
    assert [(b.boot_id, b.how) for b in second.boots] == [("b1", "replaced"), ("b2", None)]
    out = state.ingest(engine, [Bye(seq=1)], T0 + 2)
    assert (out.engine, out.boot_id, out.seq) == ("fno", "b2", 1)
    assert [(b.boot_id, b.ended, b.how) for b in out.boots] == [("b2", T0 + 2, "bye:stopped")]


def test_snapshots_cover_each_changed_engine_once() -> None:
    """snapshots() returns one snapshot per engine changed since the last call, then nothing."""
    state = HubState(Settings())
    fno, equity = connect(state), connect(state, "equity", conn_id=2)
    state.ingest(fno, [Metric(seq=1, op="inc", name="orders")], T0)
    state.ingest(equity, [Heartbeat(seq=1, loop_tick=3)], T0)
    taken = state.snapshots()
    assert taken is not None and (taken.engine, taken.seq) == ("", 0)  # nothing to commit
    assert [(s.engine, s.card["loop_tick"]) for s in taken.snapshots] == [
        ("equity", 3),
        ("fno", None),
    ]
    assert [row["name"] for row in taken.snapshots[1].series] == ["orders"]
    assert state.snapshots() is None


def test_forget_drops_a_disconnected_engine_from_the_live_state() -> None:
    """forget() removes the engine, its ring events, log tail and metric series, and marks views."""
    state = HubState(Settings())
    engine = connect(state)
    other = connect(state, engine="eq", conn_id=2)
    state.ingest(
        engine,
        [
            event(1),
            event(2, "order_event", order_id="a"),
            Log(seq=3, message="hi"),
            Metric(seq=4, op="inc", name="fills"),
        ],
        T0,
    )
    state.ingest(other, [event(1)], T0)
    state.disconnected(engine, 1, T0, Ingested())
    state.dirty.drain()
    forgotten = state.forget("fno")
    assert (forgotten.events, forgotten.logs, forgotten.series) == (2, 1, 1)
    assert forgotten.index == engine.index
    assert list(state.engines) == ["eq"]
    assert [r.engine for r in state.rings.recent(10)] == ["eq"]
    assert state.rings.rings["signal_event"].evicted == 0  # released, not evicted
    assert state.logs.tail("fno", 10) == []
    assert "fno" not in state.metrics.engines
    assert {Dirty(Topic.ENGINES), Dirty(Topic.EVENTS, "order_event")} <= state.dirty.drain()
    again = connect(state, conn_id=3)  # it comes back as a new engine
    assert again.index > other.index


def test_forget_refuses_a_connected_or_unknown_engine(state: HubState) -> None:
    """A connected engine is refused with a message saying what to do; so is an unknown one."""
    connect(state)
    with pytest.raises(CannotForget, match="is connected; stop it"):
        state.forget("fno")
    assert "fno" in state.engines
    with pytest.raises(CannotForget, match="no engine named 'nope'"):
        state.forget("nope")
