"""Alert rules and lifecycle, sans-I/O with an injected clock: every built-in rule, user rules,
pending -> firing -> resolved with `for` and the minimum resolve time."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from hub.core.alert_settings import (
    BUILTIN_RULES,
    AlertSettings,
    AlertSettingsError,
    RuleConfig,
    Severity,
    parse_alerts,
    parse_duration,
)
from hub.core.alerts import Alert, AlertBook, AlertState
from hub.core.engines import EngineRecord
from hub.core.ingested import Ingested
from hub.core.messages import Event, Heartbeat, Hello, Metric, Status
from hub.core.rules import RuleEngine
from hub.core.state import HubState
from hub.settings import Settings

T0 = 1_700_000_000.0


class World:
    """A hub state, the rules and the alert book, ticked by hand."""

    def __init__(self, alerts: AlertSettings | None = None, **rules: RuleConfig) -> None:
        alerts = alerts or AlertSettings(rules={**BUILTIN_RULES, **rules}, resolve_after=30.0)
        self.state = HubState(Settings())
        self.rules = RuleEngine(alerts)
        self.book = AlertBook(alerts.resolve_after, alerts.max_alerts, alerts.recent_resolved)
        self.problem: str | None = None
        self.seqs: dict[str, int] = {}

    def hello(self, name: str = "fno", mode: str = "live", now: float = T0) -> EngineRecord:
        record, _ = self.state.hello(
            Hello(engine=name, boot_id="b1", mode=mode), 1, now, Ingested()
        )
        return record

    def send(self, record: EngineRecord, now: float, *messages: Any) -> None:
        items = []
        for m in messages:
            seq = self.seqs.get(record.name, 0)
            seq = self.seqs[record.name] = m.seq if m.seq > seq else seq + 1
            items.append(msgspec.structs.replace(m, seq=seq))
        self.state.ingest(record, items, now)

    def beat(self, record: EngineRecord, now: float, **fields: Any) -> None:
        self.send(record, now, Heartbeat(seq=0, **fields))

    def event(self, record: EngineRecord, now: float, type: str, **payload: Any) -> None:
        raw = msgspec.Raw(msgspec.json.encode(payload))
        self.send(record, now, Event(seq=0, type=type, payload=raw, ts=now))

    def tick(self, now: float) -> list[Alert]:
        self.state.refresh(now)
        return self.book.update(self.rules.evaluate(self.state, self.problem, now), now)

    def firing(self) -> set[tuple[str, str]]:
        return {a.key for a in self.book.firing()}


def test_offline_fires_after_for_and_resolves_after_the_minimum_clear_time() -> None:
    """offline: pending for `for`, then firing once; back online it resolves once, after resolve_after."""
    w = World(offline=RuleConfig(hold=30.0, severity=Severity.CRITICAL))
    fno = w.hello()
    w.beat(fno, T0, status=Status.RUNNING)
    assert w.tick(T0) == []
    w.state.disconnected(fno, 1, T0 + 1, Ingested())
    assert w.tick(T0 + 1) == [] and w.book.active[("offline", "fno")].state is AlertState.PENDING
    assert w.tick(T0 + 30.9) == []
    fired = w.tick(T0 + 31)
    assert [(a.rule, a.state, a.severity) for a in fired] == [
        ("offline", AlertState.FIRING, Severity.CRITICAL)
    ]
    assert w.tick(T0 + 40) == []  # firing stays firing: no second notice
    w.hello(now=T0 + 50)
    assert w.tick(T0 + 50) == [] and w.firing() == {("offline", "fno")}
    assert w.tick(T0 + 79) == []
    resolved = w.tick(T0 + 80)
    assert [(a.rule, a.state) for a in resolved] == [("offline", AlertState.RESOLVED)]
    assert not w.book.active and w.book.recent[0].resolved_at == T0 + 80


def test_a_short_outage_never_fires() -> None:
    """A condition that clears before `for` leaves no alert at all (pending is dropped)."""
    w = World()
    fno = w.hello()
    w.state.disconnected(fno, 1, T0, Ingested())
    w.tick(T0)
    w.hello(now=T0 + 10)
    assert w.tick(T0 + 10) == [] and not w.book.active and not w.book.recent


def test_flapping_engine_stays_one_firing_alert() -> None:
    """Flapping faster than resolve_after: one firing, no resolve in between."""
    w = World(offline=RuleConfig(hold=0.0))
    fno = w.hello()
    changes = []
    for i in range(10):
        t = T0 + i * 10
        w.state.disconnected(fno, 1, t, Ingested())
        changes += w.tick(t)
        fno = w.hello(now=t + 5)
        changes += w.tick(t + 5)
    assert [(a.rule, a.state) for a in changes] == [("offline", AlertState.FIRING)]


def test_stale() -> None:
    """stale: no heartbeat for stale_after x interval while connected."""
    w = World()
    fno = w.hello()
    w.beat(fno, T0, status=Status.RUNNING, interval=1.0)
    assert w.tick(T0 + 5) == []
    assert [a.rule for a in w.tick(T0 + 7)] == ["stale"]


def test_stalled() -> None:
    """stalled: heartbeats flow, loop_tick does not move, for `for`."""
    w = World(stalled=RuleConfig(hold=5.0))
    fno = w.hello()
    for i in range(0, 40):
        w.beat(fno, T0 + i, status=Status.RUNNING, loop_tick=7, interval=1.0)
        fired = w.tick(T0 + i)
        if fired:
            break
    assert [a.rule for a in fired] == ["stalled"]
    assert i == 6 + 5 + 1  # stalled after 6 intervals (derive_health), then `for` 5 s


def test_status_error() -> None:
    """status_error: the engine reports status error."""
    w = World()
    fno = w.hello()
    w.beat(fno, T0, status=Status.ERROR)
    assert [a.rule for a in w.tick(T0)] == ["status_error"]


def test_error_burst() -> None:
    """error_burst: `threshold` error events within `window`; older ones age out."""
    w = World(error_burst=RuleConfig(hold=0.0, threshold=3, window=60.0))
    fno = w.hello()
    for i in range(2):
        w.event(fno, T0 + i, "error", message="boom")
    assert w.tick(T0 + 2) == []
    w.event(fno, T0 + 3, "error", message="boom")
    assert [a.rule for a in w.tick(T0 + 3)] == ["error_burst"]
    assert ("error_burst", "fno") not in w.rules.evaluate(w.state, None, T0 + 62)


def test_reject_rate() -> None:
    """reject_rate: rejected / orders over the window, once `minimum` orders were seen."""
    w = World(reject_rate=RuleConfig(hold=0.0, threshold=0.5, window=600.0, minimum=4))
    fno = w.hello()
    for status in ("fill", "reject", "reject"):
        w.event(fno, T0, "order_event", order_id="1", status=status)
    assert w.tick(T0) == []  # 3 orders: below the minimum
    w.event(fno, T0 + 1, "order_event", order_id="2", status="rejected")
    fired = w.tick(T0 + 1)
    assert [a.rule for a in fired] == ["reject_rate"] and "3 of 4" in fired[0].summary
    assert ("reject_rate", "fno") not in w.rules.evaluate(w.state, None, T0 + 700)


def test_no_fills_only_during_trading_hours() -> None:
    """no_fills: trading_hours_active and no fill for `window`; outside trading hours, nothing."""
    w = World(no_fills=RuleConfig(hold=0.0, window=100.0))
    fno = w.hello()
    w.beat(fno, T0, status=Status.RUNNING, state={"trading_hours_active": False})
    assert ("no_fills", "fno") not in w.rules.evaluate(w.state, None, T0 + 500)
    w.beat(fno, T0 + 500, state={"trading_hours_active": True})
    w.tick(T0 + 500)
    w.event(fno, T0 + 550, "order_event", order_id="1", status="fill")
    w.beat(fno, T0 + 640)
    assert w.tick(T0 + 640) == []
    w.beat(fno, T0 + 651)
    assert [a.rule for a in w.tick(T0 + 651)] == ["no_fills"]


def test_universe_collapse() -> None:
    """universe_collapse: universe_size falls by more than threshold % of its recent peak."""
    w = World(universe_collapse=RuleConfig(hold=0.0, threshold=50.0, window=600.0))
    fno = w.hello()
    w.beat(fno, T0, universe_size=100)
    w.tick(T0)
    w.beat(fno, T0 + 1, universe_size=60)
    assert w.tick(T0 + 1) == []
    w.beat(fno, T0 + 2, universe_size=40)
    assert [a.rule for a in w.tick(T0 + 2)] == ["universe_collapse"]


def test_client_drops_and_gaps() -> None:
    """client_drops: a gap in seq (or client-reported drops) within the window."""
    w = World(client_drops=RuleConfig(hold=0.0, threshold=1, window=60.0))
    fno = w.hello()
    w.beat(fno, T0)
    assert w.tick(T0) == []
    w.send(fno, T0 + 1, Heartbeat(seq=w.seqs["fno"] + 5))  # four messages never arrived
    assert [a.rule for a in w.tick(T0 + 1)] == ["client_drops"]
    assert ("client_drops", "fno") not in w.rules.evaluate(w.state, None, T0 + 62)
    w.beat(fno, T0 + 70, dropped={"buffer_full": 3})
    assert ("client_drops", "fno") in w.rules.evaluate(w.state, None, T0 + 70)


def test_clock_skew() -> None:
    """clock_skew: the engine's timestamps are more than `threshold` s from hub time."""
    w = World(clock_skew=RuleConfig(hold=0.0, threshold=5.0))
    fno = w.hello()
    w.beat(fno, T0, ts=T0 + 3)
    assert w.tick(T0) == []
    w.beat(fno, T0 + 1, ts=T0 - 20)
    fired = w.tick(T0 + 1)
    assert [a.rule for a in fired] == ["clock_skew"] and "-21.0 s" in fired[0].summary


def test_store_failing_is_a_hub_alert() -> None:
    """store_failing: the history store reports a problem for `for`; engine "" and mode "hub"."""
    w = World(store_failing=RuleConfig(hold=10.0, severity=Severity.CRITICAL))
    w.problem = "disk full"
    assert w.tick(T0) == []
    fired = w.tick(T0 + 10)
    assert [(a.rule, a.engine, a.mode) for a in fired] == [("store_failing", "", "hub")]


def test_disabled_rule_never_fires() -> None:
    """enabled = false turns a built-in rule off."""
    w = World(status_error=RuleConfig(enabled=False))
    fno = w.hello()
    w.beat(fno, T0, status=Status.ERROR)
    assert w.tick(T0) == []


def _user_world(toml_rules: dict[str, Any]) -> World:
    return World(parse_alerts({"rules": toml_rules}))


def test_user_rule_gauge_value_scoped_by_engine_glob_mode_and_tags() -> None:
    """A gauge threshold fires only for engines matching the glob and mode, on matching tags."""
    w = _user_world(
        {
            "drawdown": {
                "metric": "pnl.drawdown",
                "threshold": 0.1,
                "engine": "f*",
                "mode": "live",
                "tags": {"book": "main"},
            }
        }
    )
    fno, fut, eq = w.hello("fno"), w.hello("fut", mode="paper"), w.hello("equity")
    for record in (fno, fut, eq):
        w.send(
            record,
            T0,
            Metric(seq=0, op="set", name="pnl.drawdown", value=0.5, tags={"book": "main"}),
        )
    w.send(fno, T0, Metric(seq=0, op="set", name="pnl.drawdown", value=0.9, tags={"book": "side"}))
    assert {(a.rule, a.engine) for a in w.tick(T0)} == {("drawdown", "fno")}


def test_user_rule_counter_rate() -> None:
    """A counter rate over the rule's window."""
    w = _user_world(
        {
            "rejects": {
                "metric": "orders.rejected",
                "aggregate": "rate",
                "threshold": 1,
                "window": "10s",
            }
        }
    )
    fno = w.hello()
    w.send(fno, T0, Metric(seq=0, op="inc", name="orders.rejected", value=1))
    assert w.tick(T0) == []
    w.send(fno, T0 + 5, Metric(seq=0, op="inc", name="orders.rejected", value=2))
    assert w.tick(T0 + 5) == []  # 2 in 5 s
    w.send(fno, T0 + 10, Metric(seq=0, op="inc", name="orders.rejected", value=20))
    assert [a.rule for a in w.tick(T0 + 10)] == ["rejects"]


def test_user_rule_histogram_p95_with_for() -> None:
    """A histogram p95 threshold that must hold for `for`."""
    w = _user_world(
        {"slow": {"metric": "latency", "aggregate": "p95", "threshold": 0.5, "for": "5s"}}
    )
    fno = w.hello()
    for _ in range(20):
        w.send(fno, T0, Metric(seq=0, op="observe", name="latency", value=2.0))
    assert w.tick(T0) == []
    assert [a.rule for a in w.tick(T0 + 5)] == ["slow"]


def test_ack_marks_a_firing_alert() -> None:
    """Acknowledging records who; only firing alerts can be acknowledged."""
    w = World()
    fno = w.hello()
    w.beat(fno, T0, status=Status.ERROR)
    (alert,) = w.tick(T0)
    assert w.book.ack(alert.id, "ann", T0 + 1) is alert and alert.acked_by == "ann"
    assert w.book.ack(999, "ann", T0) is None


def test_max_alerts_bounds_the_book() -> None:
    """More conditions than max_alerts are counted, not kept."""
    w = World(AlertSettings(max_alerts=2))
    for name in ("a", "b", "c"):
        w.beat(w.hello(name), T0, status=Status.ERROR)
    w.tick(T0)
    assert len(w.book.active) == 2 and w.book.refused == 1


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"rules": {"offline": {"for": "soon"}}}, "duration"),
        ({"rules": {"nope": {}}}, "built-in"),
        ({"rules": {"offline": {"colour": 1}}}, "unknown keys"),
        ({"receivers": [{"name": "x", "type": "pager", "url": "https://a"}]}, "type"),
        ({"receivers": [{"name": "x", "url": "ftp://a"}]}, "http"),
        ({"routes": [{"receiver": "ghost"}]}, "ghost"),
        ({"receivers": [{"name": "t", "type": "telegram"}]}, "token"),
        ({"max_alerts": -1}, "max_alerts"),
        ({"receivers": [{"name": "x", "url": "https://a", "attempts": "many"}]}, "many"),
    ],
)
def test_bad_alert_settings_say_what_to_fix(raw: dict[str, Any], words: str) -> None:
    """A bad [alerts] table raises AlertSettingsError naming the problem."""
    with pytest.raises(AlertSettingsError, match=words):
        parse_alerts(raw)


def test_durations() -> None:
    """Durations read 250ms, 30s, 5m, 4h, 1d and plain seconds."""
    assert [parse_duration("x", d) for d in ("250ms", "30s", "5m", "4h", "1d", 7)] == [
        0.25,
        30.0,
        300.0,
        14400.0,
        86400.0,
        7.0,
    ]


def test_drops_already_counted_when_first_seen_are_not_news() -> None:
    """An engine whose gaps were restored (hub restart) does not fire client_drops for them."""
    w = World(client_drops=RuleConfig(hold=0.0, threshold=1, window=60.0))
    fno = w.hello()
    fno.gaps = 7
    assert ("client_drops", "fno") not in w.rules.evaluate(w.state, None, T0)
