"""`/ws/dashboard`: one socket per page; the hub pushes `hx-swap-oob` fragments of its view.

An ASGI app rather than a function endpoint: it needs the server's own `receive` callable to find
uvicorn's socket (see hub/web/fastwrite.py) and sends queued frames with the raw ASGI `send`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from hub.core.messages import CloseCode
from hub.live.dashboard_fanout import NO_WRITER, FrameWriter, Viewer
from hub.live.listing import ListFilter, ListOrder, page_of
from hub.live.views import ViewKey, ViewKind
from hub.web.fastwrite import frame_writer
from hub.web.hosts import same_origin
from hub.web.runtime import Hub

__all__ = ["dashboard_endpoint"]

log = logging.getLogger(__name__)
CLOSE_TIMEOUT = 5.0  # a frozen browser may never take the close frame


def _view(websocket: WebSocket) -> ViewKey | None:
    params = websocket.query_params
    kind = params.get("view", "overview")
    if kind == "overview":  # a big hub's list: its page and order (malformed: the defaults)
        page, order = page_of(params.get("page", "")), ListOrder.parse(params.get("sort", ""))
        return ViewKey(ViewKind.OVERVIEW, page=page, order=order, only=ListFilter.parse(params))
    raw = params.get("id", "")
    if kind in ("engine", "embed") and raw.isdigit() and len(raw) < 10:
        return ViewKey(ViewKind(kind), int(raw))
    return None


def _origin_ok(websocket: WebSocket, hub: Hub) -> bool:
    """A page may connect from the hub's own origin (public_url, or scheme://Host of this request,
    whose Host the host check allowed) or from an allowlisted embedding origin."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return True  # not a browser
    return (
        same_origin(origin, websocket.scope, hub.settings) or origin in hub.settings.embed_origins
    )


class _DashboardEndpoint:
    """Serve one dashboard page's live updates until it goes away."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        websocket = WebSocket(scope, receive, send)
        hub: Hub = websocket.app.state.hub
        view = _view(websocket)
        if view is None:
            await websocket.close(
                CloseCode.POLICY_VIOLATION,
                "unknown view: use ?view=overview (&page=N&sort=health|name), "
                "or view=engine|embed&id=N",
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
        direct = hub.settings.dashboard_direct_writes
        cap = hub.settings.dashboard_socket_buffer_bytes
        viewer.writer = frame_writer(receive, cap) if direct else NO_WRITER
        if viewer.writer is NO_WRITER and not hub.fanout.noted_asgi_path:
            hub.fanout.noted_asgi_path = True
            _note_asgi_path(direct)
        sender = asyncio.create_task(_send(send, viewer), name=f"dashboard-{viewer.id}")
        receiver = asyncio.create_task(_receive(websocket, hub), name=f"dashboard-rx-{viewer.id}")
        given_up = asyncio.create_task(viewer.gone.wait(), name=f"dashboard-gone-{viewer.id}")
        tasks = (sender, receiver, given_up)
        writer = viewer.writer  # kept past the fan-out: it can still free a stuck socket
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
            # A frozen browser never answers the close, nor takes the bytes queued before it:
            # past CLOSE_TIMEOUT its socket is dropped, so its descriptor does not stay open.
            loop = asyncio.get_running_loop()
            loop.call_later(CLOSE_TIMEOUT, _abort_if_open, writer, hub.state.stats.drops)
            await _close(websocket, viewer)


dashboard_endpoint = _DashboardEndpoint()


def _note_asgi_path(direct: bool) -> None:
    """Say once per hub that dashboards take the slower ASGI path, and why."""
    if not direct:
        log.info(
            "dashboard sockets use the ASGI send path because the setting dashboard_direct_writes "
            "is off: each dashboard costs more CPU per update (docs/dashboard.md); said once"
        )
        return
    log.info(
        "a dashboard socket uses the ASGI send path, not uvicorn's socket directly (another "
        "server or WebSocket implementation, or compression): each dashboard costs more "
        "CPU per update (docs/dashboard.md); said once"
    )


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


def _abort_if_open(writer: FrameWriter, drops: Counter[str]) -> None:
    """The close handshake did not end within CLOSE_TIMEOUT: drop the socket, and count it."""
    if writer.abort():
        drops["dashboard_close_aborted"] += 1


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
