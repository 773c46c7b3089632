"""`/ws/engine` against a real uvicorn: handshake, ingest, rejections, close codes, replacement."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest
import websockets
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from hub.core.throttles import LogThrottle
from hub.settings import KNOWN_EVENT_TYPES
from hub.web.redaction import FrameFaultLines
from tests.conftest import WAIT, RunningHub, connect_engine, running_hub, sse, unique

EVENT_TYPES = list(KNOWN_EVENT_TYPES)


def every_kind() -> list[dict[str, object]]:
    """One heartbeat, every known event type, three metric ops and a log line."""
    messages: list[dict[str, object]] = [
        {
            "kind": "heartbeat",
            "ts": time.time(),
            "status": "running",
            "loop_tick": 10,
            "universe_size": 5,
            "open_positions": 2,
        }
    ]
    messages += [
        {"kind": "event", "type": t, "ts": time.time(), "payload": {"n": i}}
        for i, t in enumerate(EVENT_TYPES)
    ]
    messages += [
        {
            "kind": "metric",
            "op": "inc",
            "name": "signals.long",
            "value": 2,
            "tags": {"strategy": "mr"},
        },
        {"kind": "metric", "op": "set", "name": "pnl", "value": -12.5},
        {"kind": "metric", "op": "observe", "name": "cycle.seconds", "value": 0.25},
        {
            "kind": "log",
            "ts": time.time(),
            "level": "INFO",
            "logger": "engine",
            "message": "cycle done",
        },
    ]
    return messages


async def closed_with(ws: websockets.ClientConnection) -> tuple[int | None, str]:
    """Wait for the hub to close `ws`; returns (code, reason)."""
    with pytest.raises(ConnectionClosed) as info:
        async with asyncio.timeout(WAIT):
            while True:
                await ws.recv()
    received = info.value.rcvd
    return (received.code, received.reason) if received else (None, "")


@pytest.mark.parametrize("batch", [False, True], ids=["single", "batched"])
async def test_engine_publishes_everything(hub: RunningHub, batch: bool) -> None:
    """Hello, heartbeat, every event type, metrics and logs arrive in single and batched frames."""
    name = unique("all")
    engine = await connect_engine(hub, name)
    assert engine.welcome["last_seq"] == 0
    await engine.send(*every_kind(), batch=batch)
    await engine.wait_acked()
    assert engine.errors == []

    [card] = [e for e in (await hub.get("/api/telemetry/engines"))["engines"] if e["name"] == name]
    assert (card["status"], card["loop_tick"], card["universe_size"], card["open_positions"]) == (
        "running",
        10,
        5,
        2,
    )
    assert card["health"] == "ok" and card["connected"] is True and card["pid"] == 4242
    events = (await hub.get("/api/telemetry/events", engine=name, limit=50))["events"]
    assert sorted(e["type"] for e in events) == sorted(EVENT_TYPES)
    assert [e["seq"] for e in events] == sorted((e["seq"] for e in events), reverse=True)
    logs = (await hub.get("/api/telemetry/engine_logs", engine=name))["lines"]
    assert [line["message"] for line in logs] == ["cycle done"]
    metrics = (await hub.get("/api/telemetry/metrics", engine=name))["engines"][name]
    assert metrics["counters"][0]["value"] == 2
    assert metrics["gauges"][0]["value"] == -12.5
    assert metrics["histograms"][0]["session"]["count"] == 1
    await engine.close()


async def test_malformed_message_gets_error_and_connection_keeps_working(hub: RunningHub) -> None:
    """A bad message is answered with an error; later messages on the same socket still land."""
    name = unique("bad")
    engine = await connect_engine(hub, name)
    await engine.ws.send("this is not json")
    error = await engine.next_error()
    assert error["code"] == "bad_json" and "Traceback" not in error["detail"]
    await engine.ws.send('{"kind":"event","seq":1,"type":"signal_event","payload":{"x":NaN}}')
    error = await engine.next_error()
    assert (error["code"], error["seq"]) == ("bad_number", 1)
    engine.seq = 1
    await engine.send(
        {"kind": "event", "type": "signal_event", "payload": {"ok": True}},
        {"kind": "teleport"},
        {"kind": "event", "type": "signal_event", "payload": {"ok": 2}},
        batch=True,
    )
    error = await engine.next_error()
    assert (error["code"], error["index"]) == ("unknown_kind", 1)
    await engine.wait_acked()
    payloads = [
        e["payload"] for e in (await hub.get("/api/telemetry/events", engine=name))["events"]
    ]
    assert payloads == [{"ok": 2}, {"ok": True}]
    await engine.close()


async def test_second_engine_unaffected_by_bad_input(hub: RunningHub) -> None:
    """Garbage and fatal frames on one engine's socket leave another engine's data intact."""
    good = await connect_engine(hub, unique("good"))
    bad = await connect_engine(hub, unique("evil"))
    await good.send({"kind": "event", "type": "order_event", "payload": {"id": 1}})
    await bad.ws.send("[" * 5000)
    await bad.ws.send(b"\x00binary")
    code, reason = await closed_with(bad.ws)
    assert code == 1003 and "binary" in reason
    await good.send({"kind": "event", "type": "order_event", "payload": {"id": 2}})
    await good.wait_acked()
    ids = [
        e["payload"]["id"]
        for e in (await hub.get("/api/telemetry/events", engine=good.name))["events"]
    ]
    assert ids == [2, 1]
    await good.close()


def send_raw_text(ws: websockets.ClientConnection, payload: bytes) -> None:
    """Send `payload` as one text frame as it is (websockets would refuse bytes that are not UTF-8)."""
    ws.protocol.send_frame(Frame(Opcode.TEXT, payload))
    ws.send_data()


async def test_invalid_utf8_frames_close_1007_with_one_log_line(
    hub: RunningHub, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two engines sending text frames that are not UTF-8: each closed with 1007, both counted,
    one WARNING line in the log and no traceback; a third engine keeps being acked."""
    (faults,) = [
        f for f in logging.getLogger("uvicorn.error").filters if isinstance(f, FrameFaultLines)
    ]
    monkeypatch.setattr(faults, "throttle", LogThrottle(60.0))  # a fresh interval for this test
    caplog.set_level(logging.INFO)
    counted = hub.hub.state.stats.drops["invalid_utf8"]
    good = await connect_engine(hub, unique("good"))
    for _ in range(2):
        bad = await connect_engine(hub, unique("utf8"))
        send_raw_text(bad.ws, b'{"kind":"log","seq":1,"message":"\xff\xfe"}')
        code, _ = await closed_with(bad.ws)
        assert code == 1007
    await good.send({"kind": "event", "type": "order_event", "payload": {"id": 1}})
    await good.wait_acked()
    assert hub.hub.state.stats.drops["invalid_utf8"] == counted + 2
    lines = [r for r in caplog.records if "UTF-8" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].levelno == logging.WARNING and lines[0].exc_info is None
    assert "Traceback" not in caplog.text and "\n" not in lines[0].getMessage()
    await good.close()


async def test_oversize_frame_closes_with_1009() -> None:
    """A frame over the frame limit closes the socket with 1009 and a readable reason."""
    async with running_hub(max_frame_bytes=64 * 1024, max_message_bytes=16 * 1024) as running:
        engine = await connect_engine(running, unique("big"))
        await engine.ws.send(json.dumps({"kind": "log", "seq": 1, "message": "x" * 100_000}))
        code, _ = await closed_with(engine.ws)
        assert code == 1009


async def test_hello_deadline_and_hello_required() -> None:
    """Messages before hello are rejected; without hello the socket closes with 1008 at the deadline."""
    async with running_hub(hello_timeout=0.5) as running:
        ws = await websockets.connect(running.ws_url)
        await ws.send(json.dumps({"kind": "heartbeat", "seq": 1}))
        async with asyncio.timeout(WAIT):
            error = json.loads(await ws.recv())
        assert (error["code"], error["seq"]) == ("hello_required", 1)
        code, reason = await closed_with(ws)
        assert code == 1008 and "hello" in reason


async def test_replay_after_reconnect_is_deduplicated(hub: RunningHub) -> None:
    """Reconnecting with the same boot gets last_seq; replayed messages are stored once."""
    name = unique("replay")
    engine = await connect_engine(hub, name, boot_id="boot-a")
    await engine.send(
        *({"kind": "event", "type": "cycle", "payload": {"n": n}} for n in range(5)), batch=True
    )
    await engine.wait_acked()
    await engine.close()
    again = await connect_engine(hub, name, boot_id="boot-a")
    assert again.welcome["last_seq"] == 5
    again.seq = 3  # pretend acks 4 and 5 were lost: resend them, then new ones
    await again.send(
        *({"kind": "event", "type": "cycle", "payload": {"n": n}} for n in (3, 4, 5, 6)), batch=True
    )
    await again.wait_acked()
    events = (await hub.get("/api/telemetry/events", engine=name))["events"]
    assert [e["payload"]["n"] for e in events] == [6, 5, 4, 3, 2, 1, 0]
    stats = await hub.get("/api/telemetry/stats")
    assert stats["drops"]["duplicate"] >= 2
    await again.close()


async def test_client_gap_is_recorded(hub: RunningHub) -> None:
    """A jump in seq (the client dropped messages) is counted as a gap on the engine."""
    name = unique("gap")
    engine = await connect_engine(hub, name)
    await engine.send({"kind": "heartbeat", "status": "running"})
    engine.seq = 10
    await engine.send({"kind": "heartbeat", "loop_tick": 1})
    await engine.wait_acked()
    [card] = [e for e in (await hub.get("/api/telemetry/engines"))["engines"] if e["name"] == name]
    assert card["gaps"] == 9
    await engine.close()


async def test_new_boot_replaces_old_socket(hub: RunningHub) -> None:
    """A restarted engine (new boot_id) replaces its old socket, which closes with a reason."""
    name = unique("restart")
    old = await connect_engine(hub, name, boot_id="first")
    await old.send({"kind": "heartbeat", "status": "running", "loop_tick": 1})
    await old.wait_acked()
    new = await connect_engine(hub, name, boot_id="second")
    assert new.welcome["last_seq"] == 0
    code, reason = await closed_with(old.ws)
    assert code == 4001 and "replaced" in reason
    await new.send({"kind": "heartbeat", "status": "running", "loop_tick": 2})
    await new.wait_acked()
    [card] = [e for e in (await hub.get("/api/telemetry/engines"))["engines"] if e["name"] == name]
    assert (card["boot_id"], card["connected"], card["replaced"], card["loop_tick"]) == (
        "second",
        True,
        1,
        2,
    )
    await new.close()


async def test_health_follows_silence_disconnect_and_bye() -> None:
    """Silence turns an engine late then stale; a dropped socket offline; bye stopped."""
    async with running_hub(view_tick=0.05) as running:
        quiet = unique("quiet")
        async with sse(running, engine=quiet, event_type="hub.health") as stream:
            engine = await connect_engine(running, quiet, heartbeat_interval=0.2)
            await engine.send({"kind": "heartbeat", "status": "running", "loop_tick": 1})
            assert (await stream.next()).data["health"] == "late"
            assert (await stream.next()).data["health"] == "stale"
            await engine.close()
            assert (await stream.next()).data["health"] == "offline"

        polite = unique("polite")
        async with sse(running, engine=polite, event_type="hub.health") as stream:
            engine = await connect_engine(running, polite, heartbeat_interval=5)
            await engine.send(
                {"kind": "heartbeat", "status": "running"}, {"kind": "bye", "status": "stopped"}
            )
            change = await stream.next()
            assert (change.data["engine"], change.data["health"]) == (polite, "stopped")
            await engine.close()
        cards = {
            e["name"]: e["health"] for e in (await running.get("/api/telemetry/engines"))["engines"]
        }
        assert cards == {quiet: "offline", polite: "stopped"}


async def test_stalled_when_loop_tick_stops() -> None:
    """Heartbeats that keep arriving with the same loop_tick make the engine stalled."""
    async with running_hub(
        view_tick=0.05, stalled_after=2, late_after=20, stale_after=30
    ) as running:
        name = unique("stall")
        async with sse(running, engine=name, event_type="hub.health") as stream:
            engine = await connect_engine(running, name, heartbeat_interval=0.1)
            await engine.send({"kind": "heartbeat", "status": "running", "loop_tick": 7})
            waiter = asyncio.create_task(stream.next())
            while not waiter.done():  # keep heartbeating with the same tick until the hub notices
                await engine.send({"kind": "heartbeat", "loop_tick": 7})
                await engine.wait_acked()
            assert waiter.result().data["health"] == "stalled"
            await engine.close()


async def test_engine_connections_are_capped() -> None:
    """Beyond max_engine_connections a new socket is refused and counted; existing ones keep working."""
    async with running_hub(max_engine_connections=1) as running:
        first = await connect_engine(running, unique("first"))
        with pytest.raises(websockets.exceptions.InvalidStatus):
            await websockets.connect(running.ws_url)
        await first.send({"kind": "event", "type": "cycle"})
        await first.wait_acked()
        stats = await running.get("/api/telemetry/stats")
        assert stats["drops"]["engine_connection_refused"] == 1
