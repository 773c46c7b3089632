"""/ws/dashboard over real uvicorn: frames written straight to the socket, the ASGI fallback and
slow browsers, on both paths."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest
import websockets

from hub.core.messages import CloseCode
from hub.live.dashboard_fanout import NO_WRITER
from hub.live.views import TABLE_ROWS
from hub.web import dashboard_ws
from tests.conftest import (
    PUSH_PATHS,
    WAIT,
    RunningHub,
    connect_engine,
    dashboard,
    open_frozen,
    received,
    running_hub,
    unique,
    use_push_path,
)


@pytest.mark.parametrize("path", ["direct", "other server", "off by setting"])
async def test_the_slower_asgi_path_is_logged_once(
    path: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Dashboards that cannot be written to directly are named in the log, once per hub, with
    the reason: a server the fast path does not recognise, or the setting that turned it off."""
    if path == "other server":
        monkeypatch.setattr(dashboard_ws, "frame_writer", lambda receive, cap: NO_WRITER)
    caplog.set_level(logging.INFO, logger="hub.web.dashboard_ws")
    async with running_hub(dashboard_direct_writes=path != "off by setting") as running:
        for _ in range(2):
            async with dashboard(running):
                pass
    said = [r.getMessage() for r in caplog.records if "ASGI send path" in r.getMessage()]
    if path == "direct":
        assert said == []
    elif path == "other server":
        assert len(said) == 1 and "not uvicorn's socket directly" in said[0], said
    else:
        assert len(said) == 1 and "dashboard_direct_writes is off" in said[0], said


def shown_signals(frame: str) -> list[int] | None:
    """The signal numbers of the #signals table in `frame`, top to bottom (None: not in it)."""
    start = frame.find('<section id="signals"')
    if start < 0:
        return None
    table = frame[start : frame.find("</section>", start)]
    return [int(n) for n in re.findall(r"<td><bdi>SIG(\d+)</bdi></td>", table)]


@pytest.mark.parametrize("path", PUSH_PATHS)
async def test_frames_arrive_whole_and_in_order(
    path: str, hub: RunningHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Signals sent in order show up in order: each table frame is whole, newest first, and
    never older than the one before; the last shows exactly the newest TABLE_ROWS."""
    use_push_path(path, hub, monkeypatch)
    engine = await connect_engine(hub, unique("order"))
    total = 3 * TABLE_ROWS
    async with dashboard(hub) as ws:
        for n in range(total):
            payload = {"symbol": f"SIG{n}", "side": "long"}
            await engine.send({"kind": "event", "type": "signal_event", "payload": payload})
        newest = -1
        async with asyncio.timeout(WAIT):
            while newest < total - 1:
                shown = shown_signals(str(await ws.recv()))
                if shown is None:
                    continue
                assert shown == sorted(shown, reverse=True)
                assert shown[0] >= newest
                newest = shown[0]
        assert shown == list(range(total - 1, total - 1 - TABLE_ROWS, -1))
    await engine.close()


@pytest.mark.parametrize("path", PUSH_PATHS)
async def test_a_frozen_dashboard_is_cut_off_while_others_keep_receiving(
    path: str,
) -> None:
    """A browser that stops reading is coalesced (its backlog dropped, nothing more queued) and,
    still not reading after the stuck time, disconnected as slow; the other browser never stalls."""
    settings = {"dashboard_queue_bytes": 200_000, "view_tick": 0.02, "table_refresh": 0.02}
    async with running_hub(**settings, dashboard_direct_writes=path == "direct") as running:
        drops = running.hub.state.stats.drops
        engine = await connect_engine(running, unique("flood"))
        frozen = await open_frozen(running.port)
        try:
            async with dashboard(running) as ws, asyncio.timeout(3 * WAIT):
                # About 100 KB per frame (the 50-line log tail); the frozen socket's buffers
                # and then its queue budget fill up within a few MB.
                line = "x" * 1990
                for n in range(1000):
                    if drops["dashboard_slow_disconnect"]:
                        break
                    logs = [
                        {
                            "kind": "log",
                            "level": "INFO",
                            "logger": "flood",
                            "message": f"{n} {line}",
                        }
                        for _ in range(10)
                    ]
                    await engine.send(*logs, batch=True)
                    await engine.wait_acked()
                    await ws.recv()  # the healthy dashboard keeps getting frames meanwhile
                assert drops["dashboard_slow_disconnect"] == 1, dict(drops)
                assert drops["dashboard_backlog_replaced"] == 1  # then it stayed behind
                assert running.hub.fanout.count == 1  # the frozen one's slot is free
                await engine.send({"kind": "heartbeat", "loop_tick": 424242})
                while "424,242" not in str(await ws.recv()):
                    pass
        finally:
            frozen.close()
            await engine.close()


async def test_a_compressed_bomb_from_a_browser_is_refused_and_nothing_else_changes(
    hub: RunningHub,
) -> None:
    """A page that negotiated deflate and sends 8 MiB that deflate to a few KiB is closed for
    its size (the inflated size counts, 1009), another page and the hub carry on; a small
    compressed message over the browser limit is closed 1009 by the hub itself."""
    async with dashboard(hub) as calm:
        for size, reason in ((8 * 1024 * 1024, None), (5000, "message too big")):
            async with dashboard(hub) as hostile:
                assert hostile.protocol.extensions, "the page did not negotiate deflate"
                await hostile.send("a" * size)
                async with asyncio.timeout(WAIT):
                    with pytest.raises(websockets.ConnectionClosed):
                        while True:
                            await hostile.recv()
                assert hostile.close_code == CloseCode.MESSAGE_TOO_BIG
                if reason is not None:
                    assert hostile.close_reason == reason
        name = unique("after-bomb")
        engine = await connect_engine(hub, name)
        await received(calm, name)
        await engine.close()
    health = await hub.http.get("/healthz")
    assert health.status_code == 200
