"""The dashboard fast path (hub/web/fastwrite.py): frames written straight to uvicorn's socket,
and the null writer for any server or socket it does not recognise."""

from __future__ import annotations

import asyncio

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.server import ServerProtocol

from hub.live.dashboard_fanout import NO_WRITER, Viewer, text_frame
from hub.live.views import OVERVIEW
from hub.web import fastwrite
from tests.conftest import WAIT, RunningHub, connect_engine, dashboard, running_hub, unique


def overview_viewers(running: RunningHub) -> set[Viewer]:
    return running.hub.fanout.views.get(OVERVIEW, set())


async def test_under_uvicorn_frames_go_straight_to_the_socket(hub: RunningHub) -> None:
    """A dashboard served by uvicorn's websockets-sansio gets a direct writer, which stops
    writing once the browser has closed the connection."""
    before = set(overview_viewers(hub))
    async with dashboard(hub) as ws:
        [viewer] = overview_viewers(hub) - before
        writer = viewer.writer
        assert writer is not NO_WRITER
        assert writer.write(text_frame("<p>direct</p>"))
        async with asyncio.timeout(WAIT):
            while await ws.recv() != "<p>direct</p>":
                pass
    assert not writer.write(text_frame("<p>too late</p>"))  # the close handshake is done


async def test_frame_writer_falls_back_for_any_other_server() -> None:
    """Only uvicorn's websockets-sansio socket is written directly; any other ASGI server's
    `receive` gets the null writer, so every frame goes through ASGI `send`."""

    async def receive() -> dict[str, str]:
        return {"type": "websocket.connect"}

    class Other:
        async def receive(self) -> dict[str, str]:
            return {"type": "websocket.connect"}

    assert fastwrite.frame_writer(receive) is NO_WRITER
    assert fastwrite.frame_writer(Other().receive) is NO_WRITER


def test_frame_writer_falls_back_when_uvicorns_socket_looks_different() -> None:
    """A uvicorn whose websockets-sansio connection lacks what the writer relies on, or holds
    something else under those names, gets the null writer rather than a broken fast path."""
    protocol = WebSocketsSansIOProtocol.__new__(WebSocketsSansIOProtocol)  # no attributes at all
    assert fastwrite.frame_writer(protocol.receive) is NO_WRITER
    protocol.conn = ServerProtocol()
    protocol.transport = asyncio.Transport()
    protocol.close_sent, protocol.handshake_complete = False, True
    protocol.writable = object()  # not an asyncio.Event
    assert fastwrite.frame_writer(protocol.receive) is NO_WRITER
    protocol.writable = asyncio.Event()
    assert fastwrite.frame_writer(protocol.receive) is not NO_WRITER  # the expected shape


async def test_with_direct_writes_off_frames_take_the_asgi_path() -> None:
    """With `dashboard_direct_writes = false` a dashboard under the same uvicorn gets the null
    writer, and the hub's frames still arrive, through ASGI `send`."""
    async with running_hub(dashboard_direct_writes=False) as running:
        async with dashboard(running) as ws:
            [viewer] = overview_viewers(running)
            assert viewer.writer is NO_WRITER
            name = unique("asgi")
            engine = await connect_engine(running, name)
            async with asyncio.timeout(WAIT):
                while name not in str(await ws.recv()):
                    pass
            await engine.close()
