"""The client library against a real hub: fields, outages, rejections, logs, threads, the demo."""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import httpx

import hub as hub_package
from hub.client import AsyncEngineClient, EngineClient
from tests.conftest import WAIT, RunningHub, running_hub, sse, unique
from tests.test_alerts import until

FAST = {"flush_interval": 0.02, "backoff_base": 0.05, "backoff_max": 0.2, "close_timeout": 3.0}


async def flushed(client: EngineClient) -> None:
    """Wait (off the event loop, which serves the hub) until the hub acked everything."""
    assert await asyncio.to_thread(client.flush, WAIT), client.stats


async def events_of(running: RunningHub, engine: str, **params: Any) -> list[dict[str, Any]]:
    return (await running.get("/api/telemetry/events", engine=engine, limit=1000, **params))[
        "events"
    ]


async def card_of(running: RunningHub, engine: str) -> dict[str, Any]:
    [card] = [
        e for e in (await running.get("/api/telemetry/engines"))["engines"] if e["name"] == engine
    ]
    return card


async def test_every_call_arrives_with_its_fields(hub: RunningHub) -> None:
    """Heartbeat, metrics, events and conveniences reach the hub with the documented fields."""
    name = unique("calls")
    client = EngineClient(hub.ws_url, engine=name, mode="live", **FAST).start()
    client.heartbeat(
        status="running",
        loop_tick=7,
        universe_size=12,
        open_positions=3,
        state={"next_cycle_at": 5},
    )
    client.increment("signals", strategy="mr")
    client.increment("signals", 2, strategy="mr")
    client.set_gauge("equity", 1000.5)
    client.observe("slippage", 0.25)
    with client.timer("cycle.seconds"):
        pass
    client.publish("indicator_event", {"rsi": 31.5})
    client.record_signal(
        "NIFTY", "long", price=101.5, strategy="mr", confidence=0.8, reason="oversold"
    )
    client.record_order("o-1", "NIFTY", "buy", 50, price=101.5, status="fill")
    client.record_cycle(0.012, 4)
    client.record_error("Timeout", "no quote", {"symbol": "NIFTY"})
    await flushed(client)

    card = await card_of(hub, name)
    assert (card["mode"], card["loop_tick"], card["universe_size"], card["open_positions"]) == (
        "live",
        7,
        12,
        3,
    )
    assert card["state"]["next_cycle_at"] == 5 and card["health"] == "ok"
    by_type = {e["type"]: e["payload"] for e in await events_of(hub, name)}
    assert by_type["signal_event"] == {
        "symbol": "NIFTY",
        "side": "long",
        "price": 101.5,
        "strategy": "mr",
        "confidence": 0.8,
        "reason": "oversold",
    }
    assert by_type["order_event"]["status"] == "fill" and by_type["order_event"]["quantity"] == 50
    assert by_type["cycle"]["duration"] == 0.012 and by_type["indicator_event"] == {"rsi": 31.5}
    assert by_type["error"]["error_type"] == "Timeout"
    metrics = (await hub.get("/api/telemetry/metrics", engine=name))["engines"][name]
    assert [(c["name"], c["tags"], c["value"]) for c in metrics["counters"]] == [
        ("signals", {"strategy": "mr"}, 3)
    ]
    assert metrics["gauges"][0]["value"] == 1000.5
    assert {h["name"] for h in metrics["histograms"]} == {"slippage", "cycle.seconds"}
    await asyncio.to_thread(client.close)
    assert (await card_of(hub, name))["health"] == "stopped"


async def test_hub_restart_replays_exactly_once_and_reports_gaps() -> None:
    """Across a hub restart every buffered message arrives once; what did not fit is a counted gap."""
    name = unique("outage")
    async with running_hub() as first:
        port = first.port
        client = EngineClient(first.ws_url, engine=name, max_buffer=100, **FAST).start()
        client.publish("cycle", {"n": -1})
        await flushed(client)
    # The hub is gone: calls return at once and buffer (the oldest beyond 100 are dropped).
    for n in range(250):
        client.publish("cycle", {"n": n})
    async with running_hub(port=port) as second:
        await flushed(client)
        events = await events_of(second, name)
        numbers = [e["payload"]["n"] for e in events]
        assert len(numbers) == len(set(numbers)), "nothing is stored twice"
        assert numbers == sorted(numbers, reverse=True) and numbers[0] == 249
        lost = 250 - len(numbers)
        assert lost >= 150 and sum(client.stats.dropped.values()) == lost  # counted by reason
        assert (await card_of(second, name))["gaps"] == lost
        await asyncio.to_thread(client.close)


async def test_rejected_message_does_not_break_the_client(hub: RunningHub) -> None:
    """A message the hub rejects is counted by the client and later messages still arrive."""
    name = unique("reject")
    client = EngineClient(hub.ws_url, engine=name, **FAST).start()
    client.increment("clash")
    await flushed(client)
    client.set_gauge("clash", 1.0)  # the hub refuses: the name is a counter
    client.publish("cycle", {"after": True})
    await flushed(client)
    assert client.stats.rejected == {"metric_conflict": 1}
    assert [e["payload"] for e in await events_of(hub, name)] == [{"after": True}]
    await asyncio.to_thread(client.close)


async def test_a_client_over_the_rate_limit_slows_down_and_loses_nothing() -> None:
    """Publishing faster than the hub's limit: rate_limited, then every event stored exactly once."""
    name, count = unique("limited"), 1500
    limits = {"engine_messages_per_second": 1000, "engine_message_burst": 100}
    async with running_hub(**limits, ring_default_capacity=5000, api_max_limit=5000) as running:
        client = EngineClient(running.ws_url, engine=name, max_batch=50, **FAST).start()
        for n in range(count):  # all at once: about 1.5 s of the limit
            client.publish("limited_probe", {"n": n})
        assert await asyncio.to_thread(client.flush, 3 * WAIT), client.stats
        stats = client.stats
        events = (await running.get("/api/telemetry/events", engine=name, limit=5000))["events"]
        numbers = sorted(e["payload"]["n"] for e in events)
        assert numbers == list(range(count)), "every event exactly once, none missing"
        card = await card_of(running, name)
        assert stats.rejected.get("rate_limited", 0) > 0 and card["rate_limited"] > 0
        assert not stats.dropped and card["gaps"] == 0
        drops = (await running.get("/api/telemetry/stats"))["drops"]
        assert drops["rate_limited"] == card["rate_limited"] and "gap" not in drops
        await asyncio.to_thread(client.close)


async def test_log_handler_ships_records_with_fields(hub: RunningHub) -> None:
    """Log records arrive with level, logger, message, exception text and extra fields."""
    name = unique("logs")
    client = EngineClient(hub.ws_url, engine=name, **FAST).start()
    logger = logging.getLogger(f"engine.{name}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(client.log_handler(logging.INFO))
    logger.debug("below the handler's level")
    logger.info("filled %s", "NIFTY", extra={"order_id": "o-9"})
    try:
        raise ValueError("bad tick")
    except ValueError:
        logger.exception("cycle failed")
    await flushed(client)
    lines = (await hub.get("/api/telemetry/engine_logs", engine=name))["lines"]
    assert [(line["level"], line["message"]) for line in lines] == [
        ("INFO", "filled NIFTY"),
        ("ERROR", "cycle failed"),
    ]
    assert lines[0]["logger"] == f"engine.{name}" and lines[0]["extra"]["order_id"] == "o-9"
    assert "ValueError: bad tick" in lines[1]["exc"]
    await asyncio.to_thread(client.close)


async def test_direct_log_call_ships_a_line(hub: RunningHub) -> None:
    """client.log() ships a line with its level, logger and extra fields, no `logging` involved."""
    name = unique("direct")
    client = EngineClient(hub.ws_url, engine=name, **FAST).start()
    client.log("warning", "slippage above 5 bp", logger="engine.exec", symbol="NIFTY", bp=6.5)
    client.log("INFO", "plain")
    await flushed(client)
    lines = (await hub.get("/api/telemetry/engine_logs", engine=name))["lines"]
    assert [(line["level"], line["message"]) for line in lines] == [
        ("WARNING", "slippage above 5 bp"),
        ("INFO", "plain"),
    ]
    assert lines[0]["logger"] == "engine.exec" and lines[0]["extra"] == {
        "symbol": "NIFTY",
        "bp": 6.5,
    }
    await asyncio.to_thread(client.close)


async def test_disabled_client_sends_nothing(hub: RunningHub) -> None:
    """enabled=False makes every call a no-op: the hub never hears of the engine."""
    off, on = unique("off"), unique("on")
    disabled = EngineClient(hub.ws_url, engine=off, enabled=False).start()
    enabled = EngineClient(hub.ws_url, engine=on, **FAST).start()
    for client in (disabled, enabled):
        client.heartbeat(status="running")
        client.publish("cycle", {"n": 1})
        client.increment("x")
    await flushed(enabled)  # the enabled twin proves the hub had time to hear both
    names = {e["name"] for e in (await hub.get("/api/telemetry/engines"))["engines"]}
    assert on in names and off not in names
    assert disabled.stats.sent_messages == 0
    await asyncio.to_thread(disabled.close)
    await asyncio.to_thread(enabled.close)


async def test_sync_client_from_several_threads(hub: RunningHub) -> None:
    """Four threads incrementing and publishing at once lose nothing."""
    name = unique("threads")
    client = EngineClient(hub.ws_url, engine=name, **FAST).start()

    def work(worker: int) -> None:
        for n in range(500):
            client.increment("ticks")
            if n % 50 == 0:
                client.publish("cycle", {"worker": worker, "n": n})

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    await asyncio.to_thread(lambda: [t.join() for t in threads])
    await flushed(client)
    [counter] = (await hub.get("/api/telemetry/metrics", engine=name))["engines"][name]["counters"]
    assert counter["value"] == 2000
    assert len(await events_of(hub, name)) == 40
    await asyncio.to_thread(client.close)


async def test_sync_client_in_a_plain_program(hub: RunningHub) -> None:
    """A plain script (no threads or asyncio of its own) instruments itself with a with-block."""
    name = unique("script")
    script = textwrap.dedent(
        f"""
        from hub.client import EngineClient
        with EngineClient({hub.ws_url!r}, engine={name!r}) as hub:
            hub.heartbeat(status="running", loop_tick=1)
            hub.record_signal("TCS", "short", price=3500.0)
        """
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script)
    async with asyncio.timeout(WAIT):
        assert await proc.wait() == 0
    assert [e["payload"]["symbol"] for e in await events_of(hub, name)] == ["TCS"]
    assert (await card_of(hub, name))["health"] == "stopped"


async def test_async_client(hub: RunningHub) -> None:
    """AsyncEngineClient delivers from inside an asyncio engine."""
    name = unique("aio")
    async with AsyncEngineClient(hub.ws_url, engine=name, **FAST) as client:
        client.heartbeat(status="running", loop_tick=3)
        client.record_cycle(0.5, 1)
        assert await client.flush(WAIT)
    assert [e["type"] for e in await events_of(hub, name)] == ["cycle"]
    assert (await card_of(hub, name))["status"] == "stopped"


async def test_tags_named_like_parameters_reach_the_hub(hub: RunningHub) -> None:
    """Both clients deliver tags called name, value and amount (fixed parameters are positional-only)."""
    tags = {"name": "iron_condor", "value": "v", "amount": "a"}
    sync_name, async_name = unique("tags"), unique("atags")
    sync_client = EngineClient(hub.ws_url, engine=sync_name, **FAST).start()
    async with AsyncEngineClient(hub.ws_url, engine=async_name, **FAST) as async_client:
        for client in (sync_client, async_client):
            client.increment("orders", 2, **tags)
            client.set_gauge("equity", 10.5, **tags)
            client.observe("slippage", 0.5, **tags)
            client.record_timing("fetch", 0.25, **tags)
        assert await async_client.flush(WAIT)
    await flushed(sync_client)
    await asyncio.to_thread(sync_client.close)
    for name in (sync_name, async_name):
        metrics = (await hub.get("/api/telemetry/metrics", engine=name))["engines"][name]
        series = [(m["name"], m["tags"]) for kind in metrics.values() for m in kind]
        assert sorted(series) == [(n, tags) for n in ("equity", "fetch", "orders", "slippage")]
        assert metrics["counters"][0]["value"] == 2 and metrics["gauges"][0]["value"] == 10.5


async def test_wrong_token_is_refused_without_a_storm() -> None:
    """With a hub token, a wrong token never connects; the right one does."""
    async with running_hub(token="s3cret") as running:
        bad = EngineClient(running.ws_url, engine=unique("bad"), token="nope", **FAST).start()
        good = EngineClient(running.ws_url, engine=unique("good"), token="s3cret", **FAST).start()
        good.publish("cycle", {})
        bad.publish("cycle", {})
        await flushed(good)
        assert not await asyncio.to_thread(bad.flush, 0.5)
        assert bad.stats.connects == 0
        stats = await running.get("/api/telemetry/stats")
        assert stats["drops"]["unauthorized"] == 1  # one attempt, then a long back-off
        await asyncio.to_thread(bad.close, 0.2)
        await asyncio.to_thread(good.close)


def test_client_does_not_import_the_server_stack() -> None:
    """Importing hub.client pulls in no Starlette, Jinja2 or uvicorn."""
    code = "import sys, hub.client; print(sorted(m for m in ('starlette', 'jinja2', 'uvicorn') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_the_package_is_marked_typed_at_its_top_level() -> None:
    """PEP 561: py.typed sits in `hub` itself, which hub.client imports (hub, hub.core.messages)."""
    package = Path(hub_package.__file__).parent
    assert (package / "py.typed").is_file(), f"{package}/py.typed is missing: users' mypy sees Any"


async def test_demo_brings_up_three_engines() -> None:
    """`engine-hub demo` prints the dashboard URL and its three engines report to it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub",
        "demo",
        "--port",
        "0",
        "--incident-every",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(WAIT):
            while not (
                match := re.search(
                    rb"open (http://127\.0\.0\.1:(\d+)/)", await proc.stdout.readline()
                )
            ):
                pass
        port = int(match.group(2))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WAIT) as http:
            demo_hub = RunningHub(server=None, port=port, http=http)  # type: ignore[arg-type]
            seen: set[str] = set()
            async with sse(demo_hub) as stream:
                while len(seen) < 3:
                    seen.add((await stream.next()).data["engine"])
            assert seen == {"fno", "equity", "options"}
            # The simulated engines report state through the client's helpers, as a real one would.
            wanted = {"active_strategies", "trading_hours_active", "next_cycle_at", "last_cycle"}
            body = await until(
                demo_hub,
                lambda b: all(wanted <= set(e["state"]) for e in b["engines"]),
                "/api/telemetry/engines",
            )
        fno = next(e for e in body["engines"] if e["name"] == "fno")
        assert fno["state"]["active_strategies"] == ["momentum", "breakout"]
        assert fno["state"]["trading_hours"] == "09:15-15:30 IST"
    finally:
        proc.terminate()
        async with asyncio.timeout(WAIT):
            assert await proc.wait() == 0
