"""Card and hub-status models: errors in time, frozen uptime, a shape per health, P&L, the title."""

from __future__ import annotations

import pytest

from hub.core.engines import Health
from hub.core.ingested import Ingested
from hub.core.messages import Heartbeat, Status
from hub.live.cards import HEALTH_ICONS
from hub.live.views import FragmentKey, Part, Views
from tests.test_views import T0, connect, event, make_views


@pytest.fixture
def views() -> Views:
    return make_views()


def test_card_shows_an_error_as_current_then_past_with_its_time(views: Views) -> None:
    """An error event is current and timed; a later running heartbeat makes it past, still shown."""
    fno = connect(views, "fno")
    views.state.ingest(fno, [Heartbeat(seq=1, status=Status.RUNNING, loop_tick=1)], T0)
    views.state.ingest(fno, [event(2, "error", {"message": "no quote for TCS"})], T0 + 10)
    error = views.card_model(fno, T0 + 12)["error"]
    assert (error["text"], error["at"], error["age"], error["past"]) == (
        "no quote for TCS",
        T0 + 10,
        2,
        False,
    )
    views.state.ingest(fno, [Heartbeat(seq=3, status=Status.RUNNING, loop_tick=2)], T0 + 11)
    card = views.card_model(fno, T0 + 731)
    assert card["error"]["past"] and card["error"]["recovered_age"] == 720
    assert card["errors_recent"] == 1
    assert views.card_model(fno, T0 + 10 + 16 * 60)["errors_recent"] == 0
    html = views.render(FragmentKey(Part.CARD, fno.index), T0 + 731, oob=False)
    assert 'class="last-error past"' in html and "recovered" in html and "12 min ago" in html


def test_card_renders_ages_and_a_frozen_uptime_itself(views: Views) -> None:
    """First paint needs no script: ages and uptime are text; an offline card's uptime stands still."""
    fno = connect(views, "fno")
    views.state.ingest(fno, [Heartbeat(seq=1, status=Status.RUNNING, loop_tick=1)], T0 + 5)
    live = views.render(FragmentKey(Part.CARD, fno.index), T0 + 65, oob=False)
    assert ">1m 05s</span>" in live and ">60 s ago</span>" in live
    views.state.disconnected(fno, 1, T0 + 100, Ingested())
    first, later = (
        views.render(FragmentKey(Part.CARD, fno.index), T0 + dt, oob=False) for dt in (110, 500)
    )
    for html in (first, later):
        assert "offline since" in html and ">1m 40s</span>" in html  # uptime froze at T0 + 100
    assert views.card_model(fno, T0 + 500)["uptime"] == views.card_model(fno, T0 + 110)["uptime"]


def test_every_health_has_its_own_icon() -> None:
    """No two health states share an icon (the shape that is not a colour)."""
    assert set(HEALTH_ICONS) == set(Health)
    assert len(set(HEALTH_ICONS.values())) == len(Health)


def test_hub_status_counts_problems_in_the_title_and_totals_pnl_per_mode(views: Views) -> None:
    """Title: (n) with the worst first; P&L totals never mix paper and live."""
    assert views.hub_model(T0)["title"] == "Engine Hub"
    pnl = {"pnl": {"realized": 10.0, "unrealized": 5.0, "currency": "INR"}}
    for conn_id, (name, mode) in enumerate((("a", "paper"), ("b", "paper"), ("c", "live")), 1):
        record = connect(views, name, conn_id=conn_id, mode=mode)
        views.state.ingest(record, [Heartbeat(seq=1, status=Status.RUNNING, state=pnl)], T0)
    views.state.ingest(views.state.engines["b"], [Heartbeat(seq=2, status=Status.ERROR)], T0)
    views.state.disconnected(views.state.engines["c"], 3, T0, Ingested())
    hub = views.hub_model(T0 + 1)
    assert hub["title"] == "(2) Engine Hub \u2014 1 error, 1 offline"
    assert [(t.mode, t.currency, t.total, t.engines) for t in hub["pnl_totals"]] == [
        ("LIVE", "INR", 15.0, 1),
        ("PAPER", "INR", 30.0, 2),
    ]


def test_card_shows_the_next_cycle_countdown_and_trading_hours(views: Views) -> None:
    """State next_cycle_at and trading hours read as words on the card, engine text escaped."""
    fno = connect(views, "fno")
    state = {"next_cycle_at": T0 + 165, "trading_hours_active": True, "trading_hours": "<b>6-19"}
    views.state.ingest(fno, [Heartbeat(seq=1, status=Status.RUNNING, state=state)], T0)
    html = views.render(FragmentKey(Part.CARD, fno.index), T0, oob=False)
    assert "<dt>next cycle</dt>" in html and "in 2m 45s" in html
    assert "open (&lt;b&gt;6-19)" in html and "<b>6-19" not in html
