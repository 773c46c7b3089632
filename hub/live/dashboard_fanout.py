"""Fan-out of rendered view frames to dashboard sockets, one bounded queue per browser.

A frame is framed as a WebSocket message once and written straight to every socket that takes it
now (its `FrameWriter`: only while the socket is writable and nothing older is queued); the others
get it through their queue and the ASGI sender task, under the policy below.

Policy for a browser that falls behind: when its queue, plus what its writer still holds (bytes the
socket has not taken), would exceed its budget (characters) the backlog is
dropped and it is marked for a fresh snapshot instead; if it is still behind after
`stuck_after` snapshots in a row it is disconnected. Nothing here ever waits for a browser.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter, deque
from collections.abc import Iterable
from typing import Protocol

from hub.core.messages import CloseCode
from hub.live.views import ViewKey

__all__ = ["NO_WRITER", "DashboardFanout", "FrameWriter", "Viewer", "text_frame"]


def text_frame(text: str) -> bytes:
    """`text` as one final, unmasked WebSocket text frame (RFC 6455 5.2), as a server sends it."""
    data = text.encode()
    size = len(data)
    if size < 126:
        return bytes((0x81, size)) + data
    if size < 65536:
        return bytes((0x81, 126)) + size.to_bytes(2, "big") + data
    return bytes((0x81, 127)) + size.to_bytes(8, "big") + data


class FrameWriter(Protocol):
    """Writes a framed message to a browser's socket without waiting, if the socket takes it now."""

    def write(self, wire: bytes) -> bool:
        """Write `wire` whole and return True, or write nothing and return False."""

    def backlog(self) -> int:
        """Bytes written but not yet taken by the socket (they count against the viewer's budget)."""

    def abort(self) -> bool:
        """Drop the socket now, unsent bytes and all, if it is still open; True if it was."""


class _NoWriter:
    """The null writer: every frame goes through the queue and the ASGI sender."""

    def write(self, wire: bytes) -> bool:
        return False

    def backlog(self) -> int:
        return 0

    def abort(self) -> bool:
        return False  # ASGI offers no way to; uvicorn closes the socket in its own time


NO_WRITER: FrameWriter = _NoWriter()


class Viewer:
    """One dashboard socket: its view, its outbound queue and whether it needs a snapshot."""

    __slots__ = (
        "close_code",
        "closed",
        "id",
        "needs_snapshot",
        "queue",
        "queued_chars",
        "sending",
        "snapshots",
        "view",
        "writer",
        "_wake",
        "gone",
    )

    def __init__(self, viewer_id: int, view: ViewKey) -> None:
        self.id = viewer_id
        self.view = view
        self.queue: deque[str] = deque()
        self.queued_chars = 0
        self.needs_snapshot = True
        self.snapshots = 0  # consecutive snapshots forced by overflow
        self.closed = False
        # Why the fan-out gave up: too slow (try again later), or the hub is restarting.
        self.close_code = CloseCode.TRY_AGAIN_LATER
        self.writer = NO_WRITER  # set once the socket is accepted
        self.sending = False  # the sender task holds frames it has not finished sending
        self._wake = asyncio.Event()
        self.gone = asyncio.Event()  # set when the fan-out gives up on this viewer

    async def next_frames(self) -> list[str]:
        """Wait for frames (or close) and take them all; the caller sends them before calling again."""
        self.sending = False
        await self._wake.wait()
        self._wake.clear()
        frames = list(self.queue)
        self.queue.clear()
        self.queued_chars = 0
        if frames:
            self.snapshots = 0
            self.sending = True
        return frames

    def wake(self) -> None:
        """Make `next_frames` return (new frames, a snapshot request or close)."""
        self._wake.set()


class DashboardFanout:
    """Viewers grouped by view; frames are rendered once and the same string goes to each viewer."""

    def __init__(self, max_queue_chars: int, max_viewers: int, drops: Counter[str]) -> None:
        self.views: dict[ViewKey, set[Viewer]] = {}
        self._ids = itertools.count(1)
        self._max_chars = max_queue_chars
        self._max_viewers = max_viewers
        self._drops = drops
        self.count = 0
        self.noted_asgi_path = False  # whether a socket without a direct writer was logged

    def join(self, view: ViewKey) -> Viewer | None:
        """A new viewer of `view` (None when the viewer limit is reached)."""
        if self.count >= self._max_viewers:
            self._drops["dashboard_refused"] += 1
            return None
        viewer = Viewer(next(self._ids), view)
        self.views.setdefault(view, set()).add(viewer)
        self.count += 1
        return viewer

    def leave(self, viewer: Viewer) -> None:
        """Forget `viewer` (its socket closed)."""
        viewers = self.views.get(viewer.view)
        if viewers is not None and viewer in viewers:
            viewers.discard(viewer)
            self.count -= 1
            if not viewers:
                del self.views[viewer.view]

    def offer(
        self, viewer: Viewer, frame: str, wire: bytes | None = None, stuck_after: int = 3
    ) -> None:
        """Write `frame` (framed: `wire`) to the socket now, else queue it; snapshot or cut off if behind."""
        if viewer.closed or viewer.needs_snapshot:
            return
        # A frozen browser's bytes pile up in the transport on the direct path: they count too.
        behind = viewer.queued_chars + viewer.writer.backlog() + len(frame) > self._max_chars
        # Straight to the socket only when nothing older is still on its way, so order holds.
        if not behind and not viewer.queue and not viewer.sending:
            if viewer.writer.write(text_frame(frame) if wire is None else wire):
                viewer.snapshots = 0
                return
        if behind:
            viewer.queue.clear()
            viewer.queued_chars = 0
            viewer.snapshots += 1
            if viewer.snapshots > stuck_after:
                viewer.closed = True
                viewer.gone.set()
                self._drops["dashboard_slow_disconnect"] += 1
            else:
                viewer.needs_snapshot = True
                self._drops["dashboard_backlog_replaced"] += 1
            viewer.wake()
            return
        viewer.queue.append(frame)
        viewer.queued_chars += len(frame)
        viewer.wake()

    def offer_all(self, viewers: Iterable[Viewer], frame: str) -> None:
        """Offer one rendered frame to each of `viewers`, framed for the wire once."""
        wire = text_frame(frame)
        for viewer in viewers:
            self.offer(viewer, frame, wire)

    def prune(self, view: ViewKey) -> None:
        """Forget viewers of `view` the fan-out gave up on, freeing their slots at once."""
        for viewer in [v for v in self.views.get(view, ()) if v.closed]:
            self.leave(viewer)

    def close(self) -> None:
        """Disconnect every viewer (hub shutdown)."""
        for viewers in self.views.values():
            for viewer in viewers:
                viewer.closed = True
                viewer.close_code = CloseCode.SERVICE_RESTART
                viewer.gone.set()
                viewer.wake()
