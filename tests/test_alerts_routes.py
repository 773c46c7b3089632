"""Routing by mode and severity, repeat interval, quiet time after resolve, ack and silences (sans-I/O)."""

from __future__ import annotations

import pytest

from hub.core.alert_settings import (
    AlertSettings,
    Match,
    ReceiverConfig,
    ReceiverKind,
    Route,
    Severity,
    parse_alerts,
)
from hub.core.alerts import Alert, AlertState
from hub.core.routes import Dispatcher, routes_for
from hub.core.silences import BadSilence, Silences

T0 = 1_700_000_000.0


def alert(engine: str = "fno", mode: str = "live", rule: str = "offline", **kw: object) -> Alert:
    fields: dict[str, object] = dict(severity=Severity.CRITICAL, summary="", since=T0)
    fields.update(kw)
    return Alert(1, rule, engine, mode, state=AlertState.FIRING, **fields)  # type: ignore[arg-type]


def receivers(*names: str) -> tuple[ReceiverConfig, ...]:
    return tuple(ReceiverConfig(n, ReceiverKind.WEBHOOK, "https://x.invalid/h") for n in names)


def never(_: Alert) -> bool:
    return False


def test_default_routes_page_live_engines_and_the_hub_only() -> None:
    """Without routes: live engines and hub alerts go to every receiver; paper ones to none."""
    d = Dispatcher(AlertSettings(receivers=receivers("ops", "chat")))
    sent = d.plan([alert("fno", "live"), alert("eq", "paper")], [], never, T0)
    assert sorted((o.receiver, [a.engine for a in o.alerts]) for o in sent) == [
        ("chat", ["fno"]),
        ("ops", ["fno"]),
    ]
    assert [o.receiver for o in d.plan([alert("", "hub", "store_failing")], [], never, T0)] == [
        "ops",
        "chat",
    ]


def test_routes_match_engine_glob_severity_rule_and_continue() -> None:
    """First match wins unless `continue`; every field of match narrows it."""
    settings = parse_alerts(
        {
            "receivers": [{"name": n, "url": "https://x.invalid/h"} for n in ("a", "b", "c")],
            "routes": [
                {
                    "match": {"engine": "f*", "severity": "critical"},
                    "receiver": "a",
                    "continue": True,
                },
                {"match": {"rule": ["stale", "offline"]}, "receiver": "b"},
                {"receiver": "c"},
            ],
        }
    )
    routes = settings.effective_routes()
    assert [r.receiver for r in routes_for(routes, alert("fno"))] == ["a", "b"]
    assert [r.receiver for r in routes_for(routes, alert("eq"))] == ["b"]
    assert [r.receiver for r in routes_for(routes, alert("eq", rule="clock_skew"))] == ["c"]
    warning = alert("fno", rule="clock_skew", severity=Severity.WARNING)
    assert [r.receiver for r in routes_for(routes, warning)] == ["c"]


def _one_route(repeat: float = 100.0, quiet: float = 50.0) -> Dispatcher:
    route = Route(Match(), "ops", repeat_interval=repeat)
    return Dispatcher(
        AlertSettings(receivers=receivers("ops"), routes=(route,), quiet_after_resolve=quiet)
    )


def test_repeat_interval_and_resolve_once() -> None:
    """A firing alert is sent once, repeated after repeat_interval; its resolve is sent once."""
    d, a = _one_route(), alert()
    assert len(d.plan([a], [], never, T0)) == 1
    assert d.plan([a], [], never, T0 + 99) == []
    assert len(d.plan([a], [], never, T0 + 100)) == 1
    a.state = AlertState.RESOLVED
    (out,) = d.plan([], [a], never, T0 + 101)
    assert out.status is AlertState.RESOLVED
    assert d.plan([], [a], never, T0 + 102) == []


def test_flapping_alert_pages_once_per_repeat_interval() -> None:
    """Fire, resolve, fire again soon: the second firing waits for quiet time and repeat interval."""
    d, a = _one_route(repeat=100.0, quiet=50.0), alert()
    firings = 0
    for i in range(0, 100, 10):
        firings += len(d.plan([a], [], never, T0 + i))
        d.plan([], [a], never, T0 + i + 5)
    assert firings == 1
    assert len(d.plan([a], [], never, T0 + 100)) == 1


def test_acknowledged_alert_stops_repeating() -> None:
    """An acknowledged firing alert is not repeated."""
    d, a = _one_route(), alert()
    d.plan([a], [], never, T0)
    a.acked_by = "ann"
    assert d.plan([a], [], never, T0 + 500) == []


def test_silenced_alert_sends_nothing() -> None:
    """A silence covering the alert: no message, firing or resolved."""
    d, a = _one_route(), alert()
    silences = Silences(10, 3600)
    silences.add("f*", "*", 600, "maintenance", "ann", T0)
    assert d.plan([a], [], lambda x: silences.covers(x, T0), T0) == []
    assert d.plan([], [a], never, T0 + 1) == []  # never fired to anyone, so no resolve either
    assert not silences.covers(a, T0 + 600)


def test_silences_validate_expire_remove_and_load() -> None:
    """Silences refuse bad patterns and durations, end on delete, and load back only live ones."""
    s = Silences(2, 3600)
    with pytest.raises(BadSilence, match="engine"):
        s.add("<b>", "*", 60, "", "ann", T0)
    with pytest.raises(BadSilence, match="duration"):
        s.add("fno", "*", 7200, "", "ann", T0)
    one = s.add("fno", "offline", 60, "x" * 900, "ann", T0)
    s.add("eq", "*", 60, "", "ann", T0)
    with pytest.raises(BadSilence, match="in force"):
        s.add("op", "*", 60, "", "ann", T0)
    assert len(one.comment) == 500
    ended = s.remove(one.id, T0 + 10)
    assert ended is not None and ended.ends == T0 + 10 and one.id not in s.by_id
    again = Silences(5, 3600)
    again.load([one, ended], T0 + 30)
    assert list(again.by_id) == [one.id]
    assert again.add("x", "*", 10, "", "bob", T0).id == one.id + 1
