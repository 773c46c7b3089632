"""The dashboard fast path: pre-framed WebSocket frames written straight to uvicorn's socket.

Below ASGI, this reads uvicorn's websockets-sansio connection object, which is not a public API:
`frame_writer` checks the exact shape it relies on and falls back to `NO_WRITER` (plain ASGI
`send`) for anything else. pyproject.toml bounds uvicorn for it, tests/test_fastwrite.py fails if
the pinned uvicorn no longer gets the direct writer, and the `dashboard_direct_writes` setting
turns it off (docs/dashboard.md).

Compress-once: `DashboardWebSockets` is uvicorn's protocol offering permessage-deflate on
`/ws/dashboard` only, with `server_no_context_takeover` (RFC 7692 lets a server require it), so
a frame compressed once (`Wire.deflated`) is valid on every such socket. Engine sockets never
negotiate it. The `dashboard_deflate` setting turns it off.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from starlette.types import Receive
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.extensions.permessage_deflate import (
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from websockets.http11 import Request
from websockets.protocol import State

from hub.live.dashboard_fanout import NO_WRITER, FrameWriter, Wire

__all__ = ["DASHBOARD_PATH", "DashboardWebSockets", "frame_writer"]

DASHBOARD_PATH = "/ws/dashboard"

log = logging.getLogger(__name__)


class _UvicornWriter:
    """Writes framed messages straight to a uvicorn websockets-sansio socket (below ASGI).

    Per frame and browser this skips uvicorn's `send` (encode, websockets framing, copies) and
    a task wake-up: about half the hub's cost per browser (docs/benchmarks.md, Fan-out). It
    writes only while uvicorn itself would: handshake done, connection open, no close sent, and
    the transport not paused; otherwise the frame takes the ASGI path.
    """

    __slots__ = ("_deflate", "_open", "_protocol")

    def __init__(self, protocol: Any, open_state: Any, deflate: bool = False) -> None:
        self._protocol = protocol
        self._open = open_state
        self._deflate = deflate  # the socket negotiated compress-once deflate

    def write(self, wire: Wire) -> bool:
        protocol = self._protocol
        if (
            protocol.close_sent
            or not protocol.handshake_complete
            or protocol.conn.state is not self._open
            or not protocol.writable.is_set()
            or protocol.transport.is_closing()
        ):
            return False
        protocol.transport.write(wire.deflated if self._deflate else wire.plain)
        return True

    def backlog(self) -> int:
        return int(self._protocol.transport.get_write_buffer_size())

    def abort(self) -> bool:
        protocol = self._protocol
        if protocol.disconnected:  # uvicorn saw the connection end: its descriptor is closed
            return False
        # close() would wait for a browser that never reads to take the buffer, keeping the
        # descriptor forever; abort() drops the buffer and closes the socket at once.
        protocol.transport.abort()
        return True


def frame_writer(receive: Receive, send_buffer_bytes: int = 0) -> FrameWriter:
    """A direct writer if `receive` belongs to uvicorn's websockets-sansio socket, else NO_WRITER.

    With `send_buffer_bytes` the socket's kernel send buffer is capped to it (see `_cap_send_buffer`).
    """
    protocol = getattr(receive, "__self__", None)
    if not isinstance(protocol, WebSocketsSansIOProtocol):
        return NO_WRITER
    try:  # the shape this writer relies on; anything else (another uvicorn) falls back
        conn, writable, transport = protocol.conn, protocol.writable, protocol.transport
        usable = (
            isinstance(protocol.close_sent, bool)
            and isinstance(protocol.handshake_complete, bool)
            and isinstance(protocol.disconnected, bool)
            and isinstance(writable, asyncio.Event)
            and isinstance(transport, asyncio.WriteTransport)
            and isinstance(conn.state, State)
            and isinstance(conn.extensions, list)
        )
        deflate = _compress_once(conn.extensions)
    except AttributeError:
        return NO_WRITER
    if not usable or deflate is None:
        return NO_WRITER
    if send_buffer_bytes:
        _cap_send_buffer(transport, send_buffer_bytes)
    return _UvicornWriter(protocol, State.OPEN, deflate)


def _compress_once(extensions: list[Any]) -> bool | None:
    """False: no extension (plain frames); True: the deflate that `Wire.deflated` fits (no
    context takeover, the full window); None: anything else, whose framing is uvicorn's."""
    if not extensions:
        return False
    if len(extensions) == 1 and isinstance(deflate := extensions[0], PerMessageDeflate):
        window = deflate.local_max_window_bits
        if deflate.local_no_context_takeover and window in (None, 15):
            return True
    return None


class DashboardWebSockets(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol, offering compress-once deflate to dashboards.

    Only `/ws/dashboard` negotiates it, and always without context takeover on either side: the
    hub keeps no compressor per socket (a frame is compressed once for all), nor a 32 KiB window
    per browser for what browsers send (a few bytes). A browser that asks for a smaller server
    window still gets deflate, framed by uvicorn per socket (`frame_writer` gives it no direct
    writer).
    """

    def handle_connect(self, event: Request) -> None:
        if event.path.partition("?")[0] == DASHBOARD_PATH:
            self.conn.available_extensions = [
                ServerPerMessageDeflateFactory(
                    server_no_context_takeover=True, client_no_context_takeover=True
                )
            ]
        super().handle_connect(event)


def _cap_send_buffer(transport: asyncio.WriteTransport, size: int) -> None:
    """Cap the kernel send buffer of the transport's socket at `size` bytes (Linux doubles it).

    The fan-out charges a browser only for what the transport holds (`backlog`); what the kernel
    took is out of its sight, and Linux autotunes a socket's send buffer up to tcp_wmem's maximum
    (4 MiB by default), all of which a frozen browser would hold uncounted. A fixed size also
    turns that autotuning off for this socket.
    """
    sock = transport.get_extra_info("socket")
    if sock is None:  # pragma: no cover - uvicorn's TCP and Unix transports have one
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    except OSError as exc:  # pragma: no cover - the kernel clamps sizes rather than refusing them
        log.debug("could not cap a dashboard socket's send buffer: %s", exc)
