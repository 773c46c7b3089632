"""The dashboard fast path (hub/web/fastwrite.py): frames written straight to uvicorn's socket,
and the null writer for any server or socket it does not recognise.

The fast path reads uvicorn's private connection object and quietly falls back to ASGI `send`
when it looks different, so a uvicorn upgrade could make every dashboard slower without any
error. These tests are where that shows: with the installed (pinned) uvicorn, a real dashboard
socket must get the direct writer, and the writer must rely on exactly the attributes it checks.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import os
import re
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.protocol import State
from websockets.server import ServerProtocol

from hub.live.dashboard_fanout import NO_WRITER, FrameWriter, Viewer, Wire
from hub.live.views import OVERVIEW
from hub.settings import Settings
from hub.web import dashboard_ws, fastwrite
from hub.web.server import uvicorn_config
from tests.conftest import (
    WAIT,
    RunningHub,
    connect_engine,
    dashboard,
    open_frozen,
    received,
    running_hub,
    unique,
)

_PIN = re.search(
    r"^uvicorn==(\S+)$",
    (Path(__file__).resolve().parent.parent / "constraints.txt").read_text(),
    re.MULTILINE,
)
UVICORN = f"uvicorn {uvicorn.__version__} (constraints.txt pins {_PIN and _PIN.group(1)})"
FIX = (
    f"the dashboard fast path does not fit {UVICORN}, so every dashboard frame would take the "
    "slower ASGI path: adapt hub/web/fastwrite.py to this uvicorn, or keep uvicorn below it "
    "(pyproject.toml, constraints.txt)"
)

# What `frame_writer` reads of uvicorn's protocol object and its websockets connection (`conn.`),
# with the type each has. `_UvicornWriter.write` may use only these.
SHAPE: dict[str, type] = {
    "close_sent": bool,
    "handshake_complete": bool,
    "disconnected": bool,  # abort() asks it whether the socket is still open
    "writable": asyncio.Event,
    "transport": asyncio.WriteTransport,
    "conn": ServerProtocol,
    "conn.state": State,
    "conn.extensions": list,
}


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
        assert writer.write(Wire("<p>direct</p>"))
        async with asyncio.timeout(WAIT):
            while await ws.recv() != "<p>direct</p>":
                pass
    assert not writer.write(Wire("<p>too late</p>"))  # the close handshake is done


class CountingWriter:
    """Passes frames on to a real writer and keeps the ones it wrote."""

    def __init__(self, writer: FrameWriter) -> None:
        self.writer = writer
        self.written: list[str] = []

    def write(self, wire: Wire) -> bool:
        wrote = self.writer.write(wire)
        if wrote:
            self.written.append(wire.text)
        return wrote

    def backlog(self) -> int:
        return self.writer.backlog()


async def test_a_hub_servers_dashboards_get_the_direct_writer_and_its_frames() -> None:
    """A dashboard socket of a `HubServer` gets the direct writer with the installed uvicorn, and
    the hub's own pushes (here: a new engine's card) reach the browser through it, not ASGI."""
    async with running_hub() as running, dashboard(running) as ws:
        [viewer] = overview_viewers(running)
        assert isinstance(viewer.writer, fastwrite._UvicornWriter), FIX
        counting = CountingWriter(viewer.writer)
        viewer.writer = counting
        name = unique("direct")
        engine = await connect_engine(running, name)
        frame = await received(ws, name)
        assert frame in counting.written, "the frame came through ASGI send, not the writer"
        await engine.close()


def record_reads(obj: object, prefix: str, names: set[str]) -> type:
    """From now on note in `names` each attribute hub/web/fastwrite.py reads of `obj` (as
    `prefix` + name; not what uvicorn or websockets read inside); returns its class, to restore."""
    cls = type(obj)

    def __getattribute__(self: object, name: str) -> object:
        if sys._getframe(1).f_code.co_filename == fastwrite.__file__:
            names.add(prefix + name)
        return cls.__getattribute__(self, name)

    obj.__class__ = type(f"Recording{cls.__name__}", (cls,), {"__getattribute__": __getattribute__})
    return cls


HANDSHAKE = (
    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
)
OFFER = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"  # Chromium's


async def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """`size` bytes from the non-blocking `sock`."""
    loop = asyncio.get_running_loop()
    data = b""
    async with asyncio.timeout(WAIT):
        while len(data) < size:
            chunk = await loop.sock_recv(sock, size - len(data))
            assert chunk, "the server closed the connection"
            data += chunk
    return data


@asynccontextmanager
async def uvicorn_socket(
    path: str = "/ws", extra: str = "", settings: Settings | None = None
) -> AsyncIterator[tuple[WebSocketsSansIOProtocol, Receive, socket.socket, bytes]]:
    """uvicorn's WebSocket protocol object, configured as the hub configures uvicorn, with a
    completed handshake for `path` (`extra`: more request headers) over a socket pair; yields
    it, the `receive` the app got, the peer and the response head."""
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[Receive] = loop.create_future()
    finished = asyncio.Event()

    class Endpoint:
        """An ASGI app, like the dashboard's, so that it gets uvicorn's own `receive`."""

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await send({"type": "websocket.accept"})
            accepted.set_result(receive)
            await finished.wait()

    app = Starlette(routes=[WebSocketRoute(path, Endpoint())])
    config = uvicorn_config(app, settings or Settings(log_level="warning"))
    config.load()
    kind = config.ws_protocol_class
    assert isinstance(kind, type) and issubclass(kind, WebSocketsSansIOProtocol), FIX
    state = ServerState()
    ours, peer = socket.socketpair()
    peer.setblocking(False)
    with peer:
        transport, protocol = await loop.connect_accepted_socket(
            lambda: kind(config=config, server_state=state, app_state={}), ours
        )
        try:
            key = base64.b64encode(os.urandom(16)).decode()
            request = HANDSHAKE.format(path=path, key=key, extra=extra)
            await loop.sock_sendall(peer, request.encode())
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                head += await recv_exactly(peer, 1)  # nothing past the response head
            assert b" 101 " in head.split(b"\r\n", 1)[0], head
            async with asyncio.timeout(WAIT):
                receive = await accepted
            yield protocol, receive, peer, head
        finally:
            finished.set()
            async with asyncio.timeout(WAIT):
                await asyncio.gather(*state.tasks)
            transport.close()


async def test_frame_writer_relies_on_exactly_the_shape_it_checks() -> None:
    """On a real uvicorn websockets-sansio socket `frame_writer` reads exactly the attributes
    in SHAPE, each of its listed type; the writer it returns uses none it did not check, and
    its frame reaches the peer byte for byte."""
    wire = Wire("<p>direct</p>")
    async with uvicorn_socket() as (protocol, receive, peer, _):
        reads: set[str] = set()
        conn_class = record_reads(protocol.conn, "conn.", reads)
        protocol_class = record_reads(protocol, "", reads)
        try:
            writer = fastwrite.frame_writer(receive)
            checked = set(reads)
            reads.clear()
            wrote = writer.write(wire)
            used = set(reads)
        finally:
            protocol.__class__ = protocol_class
            protocol.conn.__class__ = conn_class
        assert isinstance(writer, fastwrite._UvicornWriter) and wrote, FIX
        assert checked == set(SHAPE), FIX
        assert used <= checked, f"write() relies on {used - checked}, unchecked: {FIX}"
        for name, kind in SHAPE.items():
            value = functools.reduce(getattr, name.split("."), protocol)
            assert isinstance(value, kind), f"{name} is {value!r}: {FIX}"
        # An open connection as uvicorn keeps it, which is when the writer may write.
        assert protocol.handshake_complete and not protocol.close_sent
        assert protocol.conn.state is State.OPEN and protocol.conn.extensions == []
        assert protocol.writable.is_set() and not protocol.transport.is_closing()
        assert await recv_exactly(peer, len(wire.plain)) == wire.plain


async def test_a_dashboard_that_offers_deflate_gets_each_frame_compressed_once() -> None:
    """/ws/dashboard negotiates permessage-deflate without context takeover on either side, and
    its direct writer sends the frame's one compressed copy; the same Wire still gives a plain
    socket plain bytes."""
    wire = Wire("<div class=card>" + "<b>ok</b>" * 200 + "</div>")
    async with uvicorn_socket("/ws/dashboard", OFFER) as (_, receive, peer, head):
        offered = head.decode().lower()
        assert "permessage-deflate; server_no_context_takeover; client_no_context_takeover" in (
            offered
        ), head
        writer = fastwrite.frame_writer(receive)
        assert isinstance(writer, fastwrite._UvicornWriter) and writer.write(wire), FIX
        assert await recv_exactly(peer, len(wire.deflated)) == wire.deflated
        assert len(wire.deflated) < len(wire.plain) / 10
    async with uvicorn_socket("/ws/dashboard") as (_, receive, peer, head):
        assert b"sec-websocket-extensions" not in head.lower()  # nothing offered, nothing used
        compressed = wire.deflated
        assert fastwrite.frame_writer(receive).write(wire) and wire.deflated is compressed
        assert await recv_exactly(peer, len(wire.plain)) == wire.plain


async def test_deflate_is_not_offered_to_engines_nor_when_turned_off() -> None:
    """Engines keep plain frames (no zlib on the ingest path), and `dashboard_deflate = false`
    (or `dashboard_direct_writes = false`, which compress-once needs) leaves dashboards plain."""
    async with uvicorn_socket("/ws/engine", OFFER) as (_, receive, _peer, head):
        assert b"sec-websocket-extensions" not in head.lower()
    for off in ({"dashboard_deflate": False}, {"dashboard_direct_writes": False}):
        settings = Settings(log_level="warning", **off)
        async with uvicorn_socket("/ws/dashboard", OFFER, settings) as (_, _r, _p, head):
            assert b"sec-websocket-extensions" not in head.lower(), off


async def test_a_browser_asking_a_smaller_window_gets_deflate_framed_by_uvicorn() -> None:
    """A client that limits the hub's window (server_max_window_bits=10) cannot take the one
    compressed copy: it still gets deflate, but through ASGI send (the null writer)."""
    offer = "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n"
    async with uvicorn_socket("/ws/dashboard", offer) as (_, receive, _peer, head):
        assert b"server_max_window_bits=10" in head
        assert fastwrite.frame_writer(receive) is NO_WRITER


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
    protocol.disconnected = False
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
            await received(ws, name)
            await engine.close()


def close_code(stream: bytes) -> int | None:
    """The code of the close frame that ends `stream` (server frames, unmasked), if it ends so."""
    at, code = 0, None
    while at + 2 <= len(stream):
        opcode, size, at = stream[at] & 0x0F, stream[at + 1] & 0x7F, at + 2
        if size >= 126:
            width = 2 if size == 126 else 8
            size, at = int.from_bytes(stream[at : at + width], "big"), at + width
        payload, at = stream[at : at + size], at + size
        code = int.from_bytes(payload[:2], "big") if opcode == 0x8 else None
    return code if at == len(stream) else None


async def test_a_frozen_dashboard_on_the_fast_path_is_disconnected_and_counted() -> None:
    """A browser that stops reading on the direct path is closed as too slow (1013) and counted,
    while another keeps getting frames; all the hub ever accepted for the frozen socket stays
    within its budget plus the capped kernel send buffer, not the MiBs Linux autotunes it to."""
    budget, cap = 256 * 1024, 64 * 1024
    settings = {"dashboard_queue_bytes": budget, "dashboard_socket_buffer_bytes": cap}
    async with running_hub(**settings, view_tick=0.02, table_refresh=0.02) as running:
        engine = await connect_engine(running, unique("frozen"))
        frozen = await open_frozen(running.port)
        try:
            [viewer] = overview_viewers(running)
            async with dashboard(running) as ws, asyncio.timeout(2 * WAIT):
                writer = viewer.writer  # set by now: the second socket was accepted after it
                assert isinstance(writer, fastwrite._UvicornWriter), FIX
                server_sock = writer._protocol.transport.get_extra_info("socket")
                # Linux doubles the size asked for (its bookkeeping) and no longer autotunes it.
                assert server_sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) <= 2 * cap
                # About 100 KB per frame (the 50-line log tail of the overview).
                line = "x" * 1990
                frames = 0
                while not viewer.gone.is_set():
                    logs = [
                        {"kind": "log", "level": "INFO", "logger": "flood", "message": line}
                        for _ in range(10)
                    ]
                    await engine.send(*logs, batch=True)
                    await engine.wait_acked()
                    await ws.recv()  # the healthy dashboard keeps getting frames meanwhile
                    frames += 1
                drops = (await running.get("/api/telemetry/stats"))["drops"]
                assert drops["dashboard_slow_disconnect"] == 1, drops
                assert drops["dashboard_backlog_replaced"] == 1, drops
                await engine.send({"kind": "heartbeat", "loop_tick": 424242})
                while "424,242" not in str(await ws.recv()):
                    pass
            # Everything the hub accepted for the frozen socket, read at last: it ends with the
            # close frame, which the browser answers (masked, RFC 6455 5.3); then the stream ends.
            loop = asyncio.get_running_loop()
            received = bytearray()
            async with asyncio.timeout(WAIT):
                while close_code(bytes(received)) is None:
                    chunk = await loop.sock_recv(frozen, 1 << 16)
                    assert chunk, f"the stream ended without a close frame after {len(received)} B"
                    received += chunk
                await loop.sock_sendall(frozen, b"\x88\x82\0\0\0\0" + (1000).to_bytes(2, "big"))
                assert await loop.sock_recv(frozen, 1) == b""
            assert close_code(bytes(received)) == 1013
            window = frozen.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            # Budget (queue + transport) + kernel send buffer + the browser's receive window,
            # with room for one more frame and the close frame; uncapped, Linux takes MiBs.
            bound = budget + 2 * cap + window + 128 * 1024
            assert len(received) <= bound, (len(received), bound, frames)
        finally:
            frozen.close()
            await engine.close()


async def test_a_frozen_dashboard_that_never_reads_is_dropped_at_the_close_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A browser disconnected as slow that never reads again (so never takes the close frame,
    nor answers it) does not keep its socket: CLOSE_TIMEOUT after the close began the hub drops
    it, the server-side descriptor is closed and the connection gone, and it is counted."""
    monkeypatch.setattr(dashboard_ws, "CLOSE_TIMEOUT", 0.5)
    settings = {"dashboard_queue_bytes": 256 * 1024, "dashboard_socket_buffer_bytes": 64 * 1024}
    async with running_hub(**settings, view_tick=0.02, table_refresh=0.02) as running:
        engine = await connect_engine(running, unique("stuck"))
        frozen = await open_frozen(running.port)
        try:
            [viewer] = overview_viewers(running)
            writer = viewer.writer
            assert isinstance(writer, fastwrite._UvicornWriter), FIX
            protocol = writer._protocol
            server_sock = protocol.transport.get_extra_info("socket")
            lost = asyncio.Event()
            connection_lost = protocol.connection_lost

            def noted(exc: Exception | None) -> None:
                connection_lost(exc)
                lost.set()

            protocol.connection_lost = noted  # the transport calls this once the socket is gone
            logs = [
                {"kind": "log", "level": "INFO", "logger": "flood", "message": "x" * 1990}
                for _ in range(10)
            ]
            async with asyncio.timeout(2 * WAIT):
                while not viewer.gone.is_set():
                    await engine.send(*logs, batch=True)
                    await engine.wait_acked()
                await lost.wait()  # the frozen client still has not read a byte
            assert server_sock.fileno() == -1  # the descriptor is closed, not merely "closing"
            assert protocol not in running.server.server_state.connections
            drops = (await running.get("/api/telemetry/stats"))["drops"]
            assert drops["dashboard_slow_disconnect"] == 1, drops
            assert drops["dashboard_close_aborted"] == 1, drops
        finally:
            frozen.close()
            await engine.close()
