"""The replaced systems' APIs (hub.compat) against a real hub: every documented snippet runs."""

from __future__ import annotations

import asyncio
import json
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hub.client import EngineClient
from hub.compat import EVENT_TYPES, EngineTelemetryReporter, TelemetryBus, TelemetryCollector
from hub.compat.lifetimes import fetch_lifetimes
from tests.conftest import WAIT, RunningHub, unique

# The third document's Python snippets, verbatim; only the import line is rewritten (IMPORTS).
COLLECTING = """
from src.bot.telemetry import TelemetryCollector

# Get collector instance (singleton)
telemetry = TelemetryCollector.instance()

# Increment counters
telemetry.increment("signals.long", strategy="mean_reversion")
telemetry.increment("signals.short", amount=2)

# Set gauges
telemetry.set_gauge("strategies.active", 2)
telemetry.set_gauge("bot.health_score", 95.5)

# Record timing
telemetry.record_timing("cycle.duration", 12.3)

# Record events
telemetry.record_event("cycle_start", {"timestamp": "2026-01-03T14:35:00Z"})

# Record signals
telemetry.record_signal({
    "strategy": "mean_reversion",
    "symbol": "EURUSD",
    "signal_type": "long",
    "entry_price": 1.0850
})

# Record errors
telemetry.record_error("api_connection", "Connection timeout", context={"retry": 3})
"""
RETRIEVING = """
# Get recent signals
signals = telemetry.get_recent_signals(limit=50)

# Get recent cycles
cycles = telemetry.get_recent_cycles(limit=24)

# Get all metrics
metrics = telemetry.get_all_metrics()

# Get summary
summary = telemetry.get_summary()

# Export to JSON
telemetry.export_to_json("export.json")
"""
DATA_FLOW = """
# Orchestrator records signal
telemetry.record_signal({
    'signal_type': 'long',
    'symbol': 'EURUSD',
    'price': 1.0850,
    'strategy': 'mean_reversion'
})

# Orchestrator increments counter
telemetry.increment('signals.long', amount=1)
"""
TROUBLESHOOTING = """
signals = telemetry.get_recent_signals(10)  # Show fewer signals
"""
IMPORTS = {"from src.bot.telemetry import": "from hub.compat import"}


def rewritten(snippet: str) -> str:
    """The snippet with its import line pointed at hub.compat (the one change users make)."""
    for old, new in IMPORTS.items():
        snippet = snippet.replace(old, new)
    return textwrap.dedent(snippet)


async def flushed(client: EngineClient) -> None:
    """Wait (off the event loop, which serves the hub) until the hub acked everything.

    A log line first: heartbeat fields recorded before the welcome take no seq until then, so
    only a sequenced record makes `flush` wait for the connection.
    """
    client.log("DEBUG", "test sync point")
    assert await asyncio.to_thread(client.flush, WAIT), client.stats


async def events_of(running: RunningHub, engine: str, **params: Any) -> list[dict[str, Any]]:
    found = await running.get("/api/telemetry/events", engine=engine, limit=1000, **params)
    return list(found["events"])


async def card_of(running: RunningHub, engine: str) -> dict[str, Any]:
    engines = (await running.get("/api/telemetry/engines"))["engines"]
    [card] = [e for e in engines if e["name"] == engine]
    return dict(card)


async def metrics_of(running: RunningHub, engine: str) -> dict[str, Any]:
    found = await running.get("/api/telemetry/metrics", engine=engine)
    return dict(found["engines"][engine])


def series(metrics: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    [found] = [s for s in metrics[kind] if s["name"] == name]
    return dict(found)


@pytest.fixture
def configured(hub: RunningHub, monkeypatch: pytest.MonkeyPatch) -> str:
    """ENGINE_HUB_* point the singletons at the test hub under a fresh engine name."""
    engine = unique("compat")
    monkeypatch.setenv("ENGINE_HUB_URL", hub.ws_url)
    monkeypatch.setenv("ENGINE_HUB_ENGINE", engine)
    monkeypatch.setenv("ENGINE_HUB_MODE", "live")
    TelemetryCollector.configure()
    TelemetryBus.configure()
    return engine


async def test_the_third_documents_snippets_run_and_reach_the_hub(
    hub: RunningHub, configured: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Collecting, retrieving, data-flow and troubleshooting snippets run; the hub got each call."""
    monkeypatch.chdir(tmp_path)
    scope: dict[str, Any] = {}
    for snippet in (COLLECTING, RETRIEVING, DATA_FLOW, TROUBLESHOOTING):
        exec(compile(rewritten(snippet), "<document 3>", "exec"), scope)
    telemetry = scope["telemetry"]
    assert telemetry is TelemetryCollector.instance()
    await flushed(telemetry.client)

    card = await card_of(hub, configured)
    assert card["mode"] == "live" and card["connected"]
    [signal, *_] = await events_of(hub, configured, event_type="signal_event")
    assert signal["payload"]["symbol"] == "EURUSD" and signal["payload"]["side"] == "long"
    assert signal["payload"]["price"] == 1.085
    assert signal["payload"]["strategy"] == "mean_reversion"
    assert len(await events_of(hub, configured, event_type="signal_event")) == 2
    [error] = await events_of(hub, configured, event_type="error")
    assert error["payload"]["error_type"] == "api_connection"
    assert error["payload"]["context"] == {"retry": 3}
    [start] = await events_of(hub, configured, event_type="cycle_start")
    assert start["payload"] == {"timestamp": "2026-01-03T14:35:00Z"}
    metrics = await metrics_of(hub, configured)
    longs = [s for s in metrics["counters"] if s["name"] == "signals.long"]
    assert sum(s["session"] for s in longs) == 2
    assert series(metrics, "counters", "signals.short")["session"] == 2
    assert series(metrics, "gauges", "strategies.active")["value"] == 2
    assert series(metrics, "gauges", "bot.health_score")["value"] == 95.5
    assert series(metrics, "histograms", "cycle.duration")["session"]["count"] == 1

    # The read side answers from the local buffers, in the document's shapes.
    assert [s["symbol"] for s in scope["signals"]] == ["EURUSD", "EURUSD"]
    assert scope["signals"][0]["price"] == 1.085 and "entry_price" in scope["signals"][1]
    assert scope["cycles"] == []
    assert scope["metrics"]["counters"]["signals.short"]["value"] == 2
    assert scope["metrics"]["gauges"]["bot.health_score"]["value"] == 95.5
    assert scope["metrics"]["timers"]["cycle.duration"]["count"] == 1
    assert scope["summary"]["counters"]["signals.long"] == 1  # before the data-flow snippet
    assert scope["summary"]["errors"] == 1
    exported = json.loads((tmp_path / "export.json").read_text())
    assert exported["metrics"]["counters"]["signals.long"]["value"] == 1
    assert exported["errors"][0]["message"] == "Connection timeout"
    await asyncio.to_thread(telemetry.client.close)


async def test_collector_state_calls_ride_on_the_heartbeat(
    hub: RunningHub, configured: str
) -> None:
    """set_bot_state, set_next_cycle_time, set_trading_hours_active and record_cycle reach state."""
    telemetry = TelemetryCollector.instance()
    telemetry.set_bot_state(run_interval_minutes=5, sync_second=15, is_running=True)
    telemetry.set_next_cycle_time("2026-01-07T14:40:15+00:00")
    telemetry.set_trading_hours_active(True, window="06:00-19:00 UTC")
    telemetry.record_cycle({"duration_seconds": 12.3, "success": True, "signals": 1})
    await flushed(telemetry.client)
    state = (await card_of(hub, configured))["state"]
    # Delegated to the client's helpers: the keys the dashboard and the monitor read, in seconds.
    assert state["next_cycle_at"] == datetime(2026, 1, 7, 14, 40, 15, tzinfo=UTC).timestamp()
    assert "next_cycle_time" not in state
    assert telemetry.get_summary()["state"]["next_cycle_time"] == "2026-01-07T14:40:15+00:00"
    assert state["trading_hours_active"] is True and state["trading_hours"] == "06:00-19:00 UTC"
    assert state["run_interval_minutes"] == 5
    assert telemetry.get_summary()["state"]["last_cycle_time"].endswith("+00:00")
    [cycle] = await events_of(hub, configured, event_type="cycle")
    assert cycle["payload"]["duration"] == 12.3 and cycle["payload"]["success"] is True
    assert telemetry.get_recent_cycles(5)[0]["duration_seconds"] == 12.3
    await asyncio.to_thread(telemetry.client.close)


def test_collector_rings_keep_the_documents_sizes() -> None:
    """Signals 500, cycles 100, errors 200, events 1000: older records are evicted, newest first."""
    client = EngineClient("ws://127.0.0.1:9", engine="rings", enabled=False)
    telemetry = TelemetryCollector(client)
    for i in range(1200):
        telemetry.record_signal({"symbol": f"S{i}", "signal_type": "long"})
        telemetry.record_cycle({"duration": i})
        telemetry.record_error("e", str(i))
        telemetry.record_event("tick", {"i": i})
    assert len(telemetry.get_recent_signals(10_000)) == 500
    assert len(telemetry.get_recent_cycles(10_000)) == 100
    assert len(telemetry.get_recent_errors(10_000)) == 200
    assert len(telemetry.events) == 1000
    assert telemetry.get_recent_signals(2)[0]["symbol"] == "S1199"
    assert telemetry.get_recent_signals(0) == [] and telemetry.get_recent_signals(-3) == []


def test_bad_record_arguments_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """record_signal/record_cycle with a non-mapping log why and return (the engine keeps going)."""
    client = EngineClient("ws://127.0.0.1:9", engine="bad", enabled=False)
    telemetry = TelemetryCollector(client)
    telemetry.record_signal("EURUSD long")  # type: ignore[arg-type]
    telemetry.record_cycle(None)  # type: ignore[arg-type]
    assert "record_signal needs a mapping" in caplog.text
    assert "record_cycle needs a mapping" in caplog.text
    assert telemetry.get_recent_signals() == [] and telemetry.get_recent_cycles() == []


async def test_reporter_sends_the_first_documents_fields(
    hub: RunningHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """heartbeat(**fields) and mark_stopped() show on /api/telemetry/engines as the file did."""
    monkeypatch.setenv("ENGINE_HUB_URL", hub.ws_url)  # url=None: taken from the environment
    name = unique("fno")
    reporter = EngineTelemetryReporter(name, "paper", flush_interval=0.02)
    reporter.heartbeat(loop_tick=100, universe_size=5, open_positions=2)
    await flushed(reporter.client)
    card = await card_of(hub, name)
    assert (card["status"], card["loop_tick"], card["universe_size"]) == ("running", 100, 5)
    assert card["open_positions"] == 2 and card["mode"] == "paper"
    reporter.heartbeat(status="error", last_error="feed down")
    await flushed(reporter.client)
    card = await card_of(hub, name)
    assert (card["status"], card["last_error"]) == ("error", "feed down")
    assert reporter.telemetry.last_error == "feed down" and reporter.telemetry.loop_tick == 100
    await asyncio.to_thread(reporter.mark_stopped)
    card = await card_of(hub, name)
    assert card["status"] == "stopped" and reporter.telemetry.status == "stopped"
    assert reporter.telemetry.to_dict()["name"] == name


async def test_bus_publishes_every_documented_type(hub: RunningHub, configured: str) -> None:
    """publish() and the eight helpers reach the hub; the local buffer answers events and stats."""
    bus = TelemetryBus.instance()
    assert bus is TelemetryBus.get_instance()
    for event_type in EVENT_TYPES:
        getattr(bus, f"publish_{event_type}")({"n": 1}, source="helper")
    bus.publish("order_event", {"order_id": "A1", "status": "fill", "price": 101.5})
    await flushed(bus.client)
    seen = await events_of(hub, configured)
    assert sorted({e["type"] for e in seen}) == sorted(EVENT_TYPES)
    [fill] = [e for e in seen if e["payload"].get("order_id") == "A1"]
    assert fill["payload"]["status"] == "fill"
    [helper] = [e for e in seen if e["type"] == "decision_trace"]
    assert helper["payload"] == {"n": 1, "source": "helper"}
    recent = bus.get_recent_events(event_type="order_event", limit=100)
    assert [e["payload"].get("order_id") for e in recent] == ["A1", None]
    assert len(bus.get_recent_events(limit=3)) == 3
    stats = bus.get_stats()
    assert stats["total_events"] == 9 and stats["event_counts"]["order_event"] == 2
    assert stats["buffer_size"] == 9 and stats["max_buffer_size"] == 5000
    await asyncio.to_thread(bus.client.close)


def test_bus_buffer_is_bounded() -> None:
    """The buffer keeps its size; get_stats still counts every event."""
    bus = TelemetryBus(EngineClient("ws://127.0.0.1:9", engine="b", enabled=False), buffer_size=10)
    for i in range(25):
        bus.publish("signal_event", {"i": i})
    assert bus.get_stats()["buffer_size"] == 10 and bus.get_stats()["total_events"] == 25
    assert bus.get_recent_events(limit=100)[0]["payload"] == {"i": 24}


async def test_reset_on_startup_chooses_session_or_lifetime_counters(
    hub: RunningHub, configured: str
) -> None:
    """reset_on_startup false: counters continue from earlier boots (read back from the hub)."""
    first = TelemetryCollector.instance()
    first.increment("signals.long", amount=10)
    await flushed(first.client)
    await asyncio.to_thread(first.client.close)

    # Before the next boot's hello, the hub's session is the old boot's: all of it is earlier.
    earlier = await asyncio.to_thread(fetch_lifetimes, hub.ws_url, configured, "next-boot", None)
    assert earlier == {"signals.long": 10}

    TelemetryCollector.configure(reset_on_startup=False)
    lifetime = TelemetryCollector.instance()
    assert lifetime is not first and lifetime.client is not first.client
    assert await asyncio.to_thread(lifetime.seeded.wait, WAIT)
    lifetime.increment("signals.long")
    counters = lifetime.get_all_metrics()["counters"]
    assert counters["signals.long"]["value"] == 11 and counters["signals.long"]["session"] == 1
    assert lifetime.get_summary()["counters"]["signals.long"] == 11
    assert lifetime.get_summary()["metrics"] == "lifetime"
    await flushed(lifetime.client)  # the hub's session is now this boot's: 1 of its 11
    mine = await asyncio.to_thread(
        fetch_lifetimes, hub.ws_url, configured, lifetime.client.boot_id, None
    )
    assert mine == {"signals.long": 10}

    lifetime.set_bot_state(reset_on_startup=True)  # the old collector's switch, at runtime
    assert lifetime.get_all_metrics()["counters"]["signals.long"]["value"] == 1
    await asyncio.to_thread(lifetime.client.close)
    TelemetryCollector.configure(reset_on_startup=True)
