"""`/ws/dashboard`: one socket per page; the hub pushes `hx-swap-oob` fragments of its view.

An ASGI app rather than a function endpoint: it needs the server's own `receive` callable to find
uvicorn's socket (see `frame_writer`) and sends queued frames with the raw ASGI `send`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from hub.core.messages import CloseCode
from hub.live.dashboard_fanout import NO_WRITER, FrameWriter, Viewer
from hub.live.views import OVERVIEW, ViewKey, ViewKind
from hub.web.runtime import Hub

__all__ = ["dashboard_endpoint", "frame_writer"]

log = logging.getLogger(__name__)
CLOSE_TIMEOUT = 5.0  # a frozen browser may never take the close frame


def _view(websocket: WebSocket) -> ViewKey | None:
    params = websocket.query_params
    kind = params.get("view", "overview")
    if kind == "overview":
        return OVERVIEW
    raw = params.get("id", "")
    if kind in ("engine", "embed") and raw.isdigit() and len(raw) < 10:
        return ViewKey(ViewKind(kind), int(raw))
    return None


def _origin_ok(websocket: WebSocket, hub: Hub) -> bool:
    origin = websocket.headers.get("origin")
    if origin is None:
        return True  # not a browser
    host = websocket.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}") or origin in hub.settings.embed_origins


class _UvicornWriter:
    """Writes framed messages straight to a uvicorn websockets-sansio socket (below ASGI).

    Per frame and browser this skips uvicorn's `send` (encode, websockets framing, copies) and
    a task wake-up: about half the hub's cost per browser (docs/benchmarks.md, Fan-out). It
    writes only while uvicorn itself would: handshake done, connection open, no close sent, and
    the transport not paused; otherwise the frame takes the ASGI path.
    """

    __slots__ = ("_open", "_protocol")

    def __init__(self, protocol: Any, open_state: Any) -> None:
        self._protocol = protocol
        self._open = open_state

    def write(self, wire: bytes) -> bool:
        protocol = self._protocol
        if (
            protocol.close_sent
            or not protocol.handshake_complete
            or protocol.conn.state is not self._open
            or not protocol.writable.is_set()
            or protocol.transport.is_closing()
        ):
            return False
        protocol.transport.write(wire)
        return True


def frame_writer(receive: Receive) -> FrameWriter:
    """A direct writer if `receive` belongs to uvicorn's websockets-sansio socket, else NO_WRITER."""
    try:
        from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
        from websockets.protocol import State
    except ImportError:  # pragma: no cover - uvicorn and websockets are dependencies
        return NO_WRITER
    protocol = getattr(receive, "__self__", None)
    if not isinstance(protocol, WebSocketsSansIOProtocol):
        return NO_WRITER
    try:  # the shape this writer relies on; anything else (another uvicorn) falls back
        conn, writable, transport = protocol.conn, protocol.writable, protocol.transport
        usable = (
            isinstance(protocol.close_sent, bool)
            and isinstance(protocol.handshake_complete, bool)
            and isinstance(writable, asyncio.Event)
            and isinstance(transport, asyncio.WriteTransport)
            and isinstance(conn.state, State)
            and not conn.extensions  # e.g. permessage-deflate: leave framing to uvicorn
        )
    except AttributeError:
        return NO_WRITER
    return _UvicornWriter(protocol, State.OPEN) if usable else NO_WRITER


class _DashboardEndpoint:
    """Serve one dashboard page's live updates until it goes away."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        websocket = WebSocket(scope, receive, send)
        hub: Hub = websocket.app.state.hub
        view = _view(websocket)
        if view is None:
            await websocket.close(
                CloseCode.POLICY_VIOLATION,
                "unknown view: use ?view=overview, or view=engine|embed&id=N",
            )
            return
        if not _origin_ok(websocket, hub):
            await websocket.close(CloseCode.POLICY_VIOLATION, "origin not allowed")
            return
        if hub.shutting_down:
            await websocket.close(CloseCode.SERVICE_RESTART, "hub is restarting")
            return
        viewer = hub.fanout.join(view)
        if viewer is None:
            await websocket.close(
                CloseCode.TRY_AGAIN_LATER, "too many dashboards are open; try again later"
            )
            return
        await websocket.accept()
        viewer.writer = frame_writer(receive)
        if viewer.writer is NO_WRITER and not hub.fanout.noted_asgi_path:
            hub.fanout.noted_asgi_path = True
            log.info(
                "a dashboard socket uses the ASGI send path, not uvicorn's socket directly (another "
                "server or WebSocket implementation, or compression): each dashboard costs more "
                "CPU per update (docs/dashboard.md); said once"
            )
        sender = asyncio.create_task(_send(send, viewer), name=f"dashboard-{viewer.id}")
        receiver = asyncio.create_task(_receive(websocket, hub), name=f"dashboard-rx-{viewer.id}")
        given_up = asyncio.create_task(viewer.gone.wait(), name=f"dashboard-gone-{viewer.id}")
        tasks = (sender, receiver, given_up)
        try:
            # The browser left, the socket failed, or the fan-out gave up on this (slow) browser.
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            viewer.writer = NO_WRITER
            hub.fanout.leave(viewer)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if viewer.closed:
            await _close(websocket, viewer)


dashboard_endpoint = _DashboardEndpoint()


async def _receive(websocket: WebSocket, hub: Hub) -> None:
    """Read (and ignore) what the browser sends; end when it goes away or sends too much."""
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            size = len(message.get("text") or message.get("bytes") or b"")
            if size > hub.settings.max_browser_message_bytes:
                await websocket.close(CloseCode.MESSAGE_TOO_BIG, "message too big")
                return
    except (WebSocketDisconnect, RuntimeError):
        return


async def _send(send: Send, viewer: Viewer) -> None:
    """Send what the viewer's queue holds (uvicorn waits while the socket is not writable)."""
    try:
        while not viewer.closed:
            for frame in await viewer.next_frames():
                await send({"type": "websocket.send", "text": frame})
    except (WebSocketDisconnect, RuntimeError, OSError):
        return  # the socket is gone (uvicorn raises ClientDisconnected, an OSError)


async def _close(websocket: WebSocket, viewer: Viewer) -> None:
    """Close a viewer the fan-out gave up on: 1012 at shutdown, else 1013 (too slow)."""
    if viewer.close_code == CloseCode.SERVICE_RESTART:
        code, reason = CloseCode.SERVICE_RESTART, "hub is restarting"
    else:
        code, reason = (
            CloseCode.TRY_AGAIN_LATER,
            "too slow to keep up; reconnect for a fresh snapshot",
        )
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT):  # a frozen browser may never take the frame
            await websocket.close(code, reason)
    except (TimeoutError, WebSocketDisconnect, RuntimeError, OSError):
        return
