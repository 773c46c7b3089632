"""The dashboard fast path: pre-framed WebSocket frames written straight to uvicorn's socket.

Below ASGI, this reads uvicorn's websockets-sansio connection object, which is not a public API:
`frame_writer` checks the exact shape it relies on and falls back to `NO_WRITER` (plain ASGI
`send`) for anything else. pyproject.toml bounds uvicorn for it, tests/test_fastwrite.py fails if
the pinned uvicorn no longer gets the direct writer, and the `dashboard_direct_writes` setting
turns it off (docs/dashboard.md).
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import Receive

from hub.live.dashboard_fanout import NO_WRITER, FrameWriter

__all__ = ["frame_writer"]


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

    def backlog(self) -> int:
        return int(self._protocol.transport.get_write_buffer_size())


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
