"""engine-hub bridge against a real hub: the old systems' files become engines, metrics, signals."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from hub.bridge import Bridge
from hub.bridge.files import RecordKind, Skip, decode, engine_report, record_key
from hub.client import EngineClient
from tests.conftest import WAIT, RunningHub, run_cli, running_hub, sse, unique

FAST = {"flush_interval": 0.02, "backoff_base": 0.05, "backoff_max": 0.2, "close_timeout": 3.0}


def write_json(path: Path, data: Any) -> None:
    """Write as the documents do: a temp file, then an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def engine_file(name: str, **fields: Any) -> dict[str, Any]:
    """A `{name}_engine.json` body as the first document shows it."""
    return {
        "name": name,
        "mode": "paper",
        "pid": 3596,
        "status": "running",
        "started_at": "2025-11-20T06:27:25.096454",
        "last_heartbeat": "2025-11-20T06:27:25.096590",
        "loop_tick": 100,
        "universe_size": 5,
        "open_positions": 2,
        "last_error": None,
        **fields,
    }


def signal_file(n: int, symbol: str = "EURUSD") -> dict[str, Any]:
    return {
        "timestamp": f"2026-01-07T14:35:{n:02d}.123456+00:00",
        "signal_type": "long",
        "symbol": symbol,
        "price": 1.0850,
        "strategy": "mean_reversion",
        "indicators": {"rsi": 28.5, "bb_position": -1.8},
    }


def metrics_file(longs: float) -> dict[str, Any]:
    ts = "2026-01-07T14:35:20+00:00"
    return {
        "timestamp": "2026-01-07T14:35:20.000000+00:00",
        "counters": {
            "signals.long": {
                "name": "signals.long",
                "type": "counter",
                "value": longs,
                "timestamp": ts,
                "tags": {},
            },
        },
        "gauges": {
            "strategies.active": {
                "name": "strategies.active",
                "type": "gauge",
                "value": 2,
                "timestamp": ts,
                "tags": {},
            },
        },
        "histograms": {},
        "timers": {},
    }


STATE = {
    "timestamp": "2026-01-07T14:35:20.000000+00:00",
    "bot_start_time": "2026-01-07T14:30:00.000000+00:00",
    "next_cycle_time": "2026-01-07T14:40:15+00:00",
    "last_cycle_time": "2026-01-07T14:35:15+00:00",
    "is_running": True,
    "trading_hours_active": True,
    "run_interval_minutes": 5,
    "sync_second": 15,
}


def manifest(signals: list[str]) -> dict[str, Any]:
    return {
        "last_updated": "2026-01-07T14:35:20+00:00",
        "signal_count": len(signals),
        "latest_signals": signals[-1:],
        "latest_cycles": [],
        "latest_errors": [],
    }


async def scanned(bridge: Bridge) -> int:
    """One scan off the event loop (the hub runs on it); it returns once the hub acked records."""
    return await asyncio.to_thread(bridge.scan)


async def delivered(client: EngineClient) -> None:
    """Everything the client holds is stored (a log line makes flush wait for the welcome)."""
    client.log("DEBUG", "test sync point")
    assert await asyncio.to_thread(client.flush, WAIT), client.stats


async def card_of(running: RunningHub, engine: str) -> dict[str, Any]:
    engines = (await running.get("/api/telemetry/engines"))["engines"]
    [card] = [e for e in engines if e["name"] == engine]
    return dict(card)


async def events_of(running: RunningHub, engine: str, event_type: str) -> list[dict[str, Any]]:
    found = await running.get(
        "/api/telemetry/events", engine=engine, event_type=event_type, limit=1000
    )
    return list(found["events"])


async def counter(running: RunningHub, engine: str, name: str) -> dict[str, Any]:
    metrics = (await running.get("/api/telemetry/metrics", engine=engine))["engines"][engine]
    [found] = [s for s in metrics["counters"] if s["name"] == name]
    return dict(found)


async def test_engine_files_become_engines_with_their_status(
    hub: RunningHub, tmp_path: Path
) -> None:
    """*_engine.json (in DIR and artifacts/telemetry) show as engines; error and stop follow."""
    fno, equity = unique("fno"), unique("equity")
    write_json(tmp_path / f"{fno}_engine.json", engine_file(fno))
    write_json(tmp_path / "artifacts/telemetry" / f"{equity}_engine.json", engine_file(equity))
    bridge = Bridge(tmp_path, url=hub.ws_url, client_options=FAST)
    await scanned(bridge)
    await delivered(bridge.clients[fno])
    await delivered(bridge.clients[equity])
    card = await card_of(hub, fno)
    assert (card["status"], card["loop_tick"], card["universe_size"]) == ("running", 100, 5)
    assert card["open_positions"] == 2 and card["state"]["engine_pid"] == 3596
    assert (await card_of(hub, equity))["connected"]

    write_json(
        tmp_path / f"{fno}_engine.json",
        engine_file(
            fno, status="error", last_error="feed down", last_heartbeat="2025-11-20T06:27:30"
        ),
    )
    await scanned(bridge)
    await delivered(bridge.clients[fno])
    card = await card_of(hub, fno)
    assert (card["status"], card["last_error"]) == ("error", "feed down")

    write_json(
        tmp_path / f"{fno}_engine.json",
        engine_file(fno, status="stopped", last_heartbeat="2025-11-20T06:27:31"),
    )
    await scanned(bridge)  # the stop closes this engine's client: bye after the final heartbeat
    card = await card_of(hub, fno)
    assert card["status"] == "stopped" and not card["connected"]
    await asyncio.to_thread(bridge.close)

    boots = card["boots"]
    again = Bridge(tmp_path, url=hub.ws_url, client_options=FAST)
    again.load()
    await scanned(again)
    assert fno not in again.clients  # this boot's stop was forwarded already: no reconnect
    await delivered(again.clients[equity])
    assert (await card_of(hub, fno))["boots"] == boots
    await asyncio.to_thread(again.close)


async def test_telemetry_data_is_forwarded_once_across_restarts(
    hub: RunningHub, tmp_path: Path
) -> None:
    """Signals (also .gz), cycles, errors, metrics and state arrive; a restart resends nothing."""
    engine = unique("bot")
    data = tmp_path / "telemetry_data"
    write_json(data / "metrics.json", metrics_file(12.0))
    write_json(data / "state.json", STATE)
    write_json(data / "signals/signal_20260107_143520_001.json", signal_file(20))
    (data / "signals/signal_20260107_143518_000.json.gz").write_bytes(
        gzip.compress(json.dumps(signal_file(18, "GBPUSD")).encode())
    )
    write_json(data / "cycles/cycle_20260107_143530_001.json", {"duration_seconds": 12.3})
    write_json(
        data / "errors/error_20260107_144032_001.json",
        {"error_type": "api_connection", "message": "Connection timeout", "context": {"retry": 3}},
    )
    write_json(data / "manifest.json", manifest(["signals/signal_20260107_143520_001.json"]))
    bridge = Bridge(tmp_path, url=hub.ws_url, engine=engine, client_options=FAST)
    assert await scanned(bridge) == 4
    await delivered(bridge.clients[engine])
    signals = await events_of(hub, engine, "signal_event")
    assert [s["payload"]["symbol"] for s in signals] == ["EURUSD", "GBPUSD"]  # newest first
    assert signals[0]["payload"]["price"] == 1.085 and signals[0]["payload"]["side"] == "long"
    [cycle] = await events_of(hub, engine, "cycle")
    assert cycle["payload"]["duration"] == 12.3
    [error] = await events_of(hub, engine, "error")
    assert error["payload"]["context"] == {"retry": 3}
    assert (await counter(hub, engine, "signals.long"))["session"] == 12
    card = await card_of(hub, engine)
    assert card["state"]["next_cycle_time"] == "2026-01-07T14:40:15+00:00"
    assert card["status"] == "running"

    write_json(data / "signals/signal_20260107_143525_002.json", signal_file(25, "XAUUSD"))
    write_json(data / "metrics.json", metrics_file(13.0))
    write_json(data / "manifest.json", manifest(["signals/signal_20260107_143525_002.json"]))
    assert await scanned(bridge) == 1
    assert (await counter(hub, engine, "signals.long"))["session"] == 13
    await asyncio.to_thread(bridge.close)

    # Rotation compresses a sent file: the same record, not a new one.
    plain = data / "signals/signal_20260107_143520_001.json"
    plain.with_name(plain.name + ".gz").write_bytes(gzip.compress(plain.read_bytes()))
    plain.unlink()
    again = Bridge(tmp_path, url=hub.ws_url, engine=engine, client_options=FAST)
    again.load()
    assert await scanned(again) == 0
    await delivered(again.clients[engine])
    assert len(await events_of(hub, engine, "signal_event")) == 3
    assert (await counter(hub, engine, "signals.long"))["lifetime"] == 13
    await asyncio.to_thread(again.close)


async def test_garbage_and_half_written_files_are_skipped_with_a_reason(
    hub: RunningHub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Broken files are logged once with why, never a traceback; a finished file is then sent."""
    engine = unique("bot")
    signals = tmp_path / "signals"
    signals.mkdir()
    half = signals / "signal_20260107_143520_001.json"
    half.write_text('{"symbol": "EURUSD", "signal_')
    (signals / "signal_20260107_143521_002.json.gz").write_bytes(b"\x1f\x8b garbage")
    (signals / "signal_20260107_143522_003.json").write_text("[1, 2, 3]")
    (tmp_path / "metrics.json").write_text("NaN")
    (tmp_path / "x_engine.json").write_bytes(b"\xff\xfe not json")
    bridge = Bridge(tmp_path, url=hub.ws_url, engine=engine, client_options=FAST)
    with caplog.at_level(logging.WARNING, logger="hub.bridge"):
        assert await scanned(bridge) == 0
        assert await scanned(bridge) == 0  # nothing changed: nothing read or logged again
    reasons = [r.getMessage() for r in caplog.records]
    assert sum("half-written or garbage" in m for m in reasons) == 3, reasons
    assert sum("not a complete gzip file" in m for m in reasons) == 1
    assert sum("not a JSON object" in m for m in reasons) == 1
    assert not any(r.exc_info for r in caplog.records)

    # A file rewritten in place, still broken, is read again; its reason is not logged again.
    caplog.clear()
    (signals / "signal_20260107_143522_003.json").write_text("[1, 2, 3, 4]")
    with caplog.at_level(logging.WARNING, logger="hub.bridge"):
        assert await scanned(bridge) == 0
    assert not caplog.records
    (signals / "signal_20260107_143522_003.json").write_text(json.dumps(signal_file(22, "X")))
    assert await scanned(bridge) == 1  # completed in place: no rename, no manifest, still seen

    write_json(half, signal_file(20))
    assert await scanned(bridge) == 1
    assert [s["payload"]["symbol"] for s in await events_of(hub, engine, "signal_event")] == [
        "EURUSD",
        "X",
    ]
    await asyncio.to_thread(bridge.close)


async def test_nothing_unacknowledged_is_remembered_as_sent(tmp_path: Path) -> None:
    """With the hub away, records wait in the client; the saved ledger does not list them."""
    async with running_hub() as gone:
        url = gone.ws_url
    write_json(tmp_path / "signals/signal_20260107_143520_001.json", signal_file(20))
    write_json(tmp_path / "fno_engine.json", engine_file("fno"))
    bridge = Bridge(tmp_path, url=url, engine="bot", ack_timeout=0.2, client_options=FAST)
    assert await scanned(bridge) == 2  # handed to the clients, not acknowledged
    write_json(tmp_path / "fno_engine.json", engine_file("fno", last_heartbeat="later"))
    assert await scanned(bridge) == 1  # a heartbeat alone must not save the unacked signal
    saved = json.loads((tmp_path / ".engine-hub-bridge.json").read_text())
    assert saved["records"] == {} and "fno" in saved["beats"]  # from before the signal
    bridge.ack_timeout = 0.01
    await asyncio.to_thread(bridge.close)


def test_file_parsing_rules() -> None:
    """Record names, engine names and sizes are checked before anything is sent."""
    assert record_key(RecordKind.SIGNAL, "signal_20260107_143520_001.json.gz") == (
        "signal_20260107_143520_001.json"
    )
    assert record_key(RecordKind.SIGNAL, "signal_x.json.tmp") is None
    assert record_key(RecordKind.CYCLE, "signal_x.json") is None
    assert decode(b" ", False) == Skip("empty (still being written?)")
    assert isinstance(decode(b"{" * 2_000_000, False), Skip)
    report = engine_report({"name": "bad name!", "status": "running"}, "fno_engine.json")
    assert not isinstance(report, Skip) and report.name == "fno"
    assert isinstance(engine_report({"status": "exploded"}, "fno_engine.json"), Skip)
    assert isinstance(engine_report({"status": "running"}, "<b>_engine.json"), Skip)


async def test_cli_bridge_forwards_a_new_signal_file(hub: RunningHub, tmp_path: Path) -> None:
    """`engine-hub bridge DIR` sends a signal file written while it runs; SIGTERM exits 0."""
    engine = unique("bot")
    (tmp_path / "signals").mkdir()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub",
        "bridge",
        str(tmp_path),
        "--url",
        hub.ws_url,
        "--engine",
        engine,
        "--interval",
        "0.05",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(WAIT):
            assert b"forwarding" in await proc.stdout.readline()
        async with sse(hub, engine=engine, event_type="signal_event") as reader:
            write_json(tmp_path / "signals/signal_20260107_143520_001.json", signal_file(20))
            event = await reader.next()
        assert event.data["payload"]["symbol"] == "EURUSD"
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(WAIT):
            assert await proc.wait() == 0
        assert (tmp_path / ".engine-hub-bridge.json").exists()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_cli_bridge_refuses_bad_arguments(tmp_path: Path) -> None:
    """A missing directory or a bad engine name is a one-line error and exit 2."""
    code, _, err = await run_cli("bridge", str(tmp_path / "nope"))
    assert code == 2 and "is not a directory" in err and "Traceback" not in err
    code, _, err = await run_cli("bridge", str(tmp_path), "--engine", "bad name!")
    assert code == 2 and "must match" in err and "Traceback" not in err
