"""Fan-out of rendered view frames to dashboard sockets, one bounded queue per browser.

A frame is framed as a WebSocket message once (a `Wire`; deflated once more for the sockets that
negotiated compression: compress-once) and written straight to every socket that takes it now
(its `FrameWriter`: only while the socket is writable and nothing older is queued); the others
get it through their queue and the ASGI sender task, under the policy below.

Policy for a browser that falls behind (docs/dashboard.md, "Slow browsers"): when its queue, plus
what its writer still holds (bytes the socket has not taken), would exceed its budget (characters),
the backlog is dropped and nothing more is queued for it: it is coalesced. Once it has caught up
(nothing queued, its socket holds at most `RESYNC_AT` of the budget) it gets one fresh snapshot of
its view (resynced) and deltas again. Only a browser that has not caught up for `stuck_seconds` is
disconnected. Snapshots are sized from what a page shows (one page of the engine list), and a
frame offered to a browser holding nothing always goes, so a page that reads always recovers.
Nothing here ever waits for a browser.
"""

from __future__ import annotations

import asyncio
import itertools
import zlib
from collections import Counter, deque
from collections.abc import Iterable
from typing import Protocol

from hub.core.messages import CloseCode
from hub.live.views import ViewKey

__all__ = [
    "NO_WRITER",
    "RESYNC_AT",
    "STUCK_SECONDS",
    "DashboardFanout",
    "FrameWriter",
    "Viewer",
    "Wire",
    "deflated_frame",
    "text_frame",
]

RESYNC_AT = 0.25  # of the budget: a lagging browser is resynced once its socket holds less
STUCK_SECONDS = 10.0  # a browser that has not caught up for this long is disconnected


_TEXT = 0x81  # FIN + text opcode
_DEFLATED = 0xC1  # FIN + RSV1 (compressed, RFC 7692) + text opcode
_TAIL = b"\x00\x00\xff\xff"  # what every sync flush ends with; RFC 7692 7.2.1 drops it
DEFLATE_LEVEL = 6  # zlib's default: most of the gain on HTML fragments, paid once per frame


def _framed(first: int, data: bytes) -> bytes:
    size = len(data)
    if size < 126:
        return bytes((first, size)) + data
    if size < 65536:
        return bytes((first, 126)) + size.to_bytes(2, "big") + data
    return bytes((first, 127)) + size.to_bytes(8, "big") + data


def text_frame(text: str) -> bytes:
    """`text` as one final, unmasked WebSocket text frame (RFC 6455 5.2), as a server sends it."""
    return _framed(_TEXT, text.encode())


def deflated_frame(text: str) -> bytes:
    """`text` as one final text frame compressed by permessage-deflate without context takeover
    (RFC 7692: raw deflate, a 32 KiB window, sync-flushed, its empty-block tail dropped, RSV1
    set). Nothing in it depends on the socket, so the same bytes serve every socket that
    negotiated `server_no_context_takeover` with the default window."""
    compressor = zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    data = compressor.compress(text.encode()) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return _framed(_DEFLATED, data.removesuffix(_TAIL) or b"\x00")


class Wire:
    """One rendered frame as it goes on the wire: framed once, and deflated once only if a
    socket that negotiated compression takes it (hub/web/fastwrite.py)."""

    __slots__ = ("_deflated", "_plain", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._plain: bytes | None = None
        self._deflated: bytes | None = None

    @property
    def plain(self) -> bytes:
        """The frame as is (`text_frame`)."""
        if self._plain is None:
            self._plain = text_frame(self.text)
        return self._plain

    @property
    def deflated(self) -> bytes:
        """The frame compressed (`deflated_frame`)."""
        if self._deflated is None:
            self._deflated = deflated_frame(self.text)
        return self._deflated


class FrameWriter(Protocol):
    """Writes a framed message to a browser's socket without waiting, if the socket takes it now."""

    def write(self, wire: Wire) -> bool:
        """Write `wire` whole (plain or deflated, as the socket negotiated) and return True, or
        write nothing and return False."""

    def backlog(self) -> int:
        """Bytes written but not yet taken by the socket (they count against the viewer's budget)."""

    def abort(self) -> bool:
        """Drop the socket now, unsent bytes and all, if it is still open; True if it was."""


class _NoWriter:
    """The null writer: every frame goes through the queue and the ASGI sender."""

    def write(self, wire: Wire) -> bool:
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
        "waiting_since",
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
        self.snapshots = 0  # consecutive resyncs forced by overflow (for the record)
        self.waiting_since: float | None = None  # since when it has been catching up
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

    def offer(self, viewer: Viewer, frame: str, wire: Wire | None = None) -> None:
        """Write `frame` (framed: `wire`) to the socket now, else queue it; coalesce if behind."""
        if viewer.closed or viewer.needs_snapshot:
            return
        held = viewer.queued_chars + viewer.writer.backlog()
        # A frozen browser's bytes pile up in the transport on the direct path: they count too.
        # A browser holding nothing takes any frame, so one bigger than the budget cannot wedge it.
        behind = held + len(frame) > self._max_chars and (held > 0 or viewer.sending)
        # Straight to the socket only when nothing older is still on its way, so order holds.
        if not behind and not viewer.queue and not viewer.sending:
            if viewer.writer.write(Wire(frame) if wire is None else wire):
                viewer.snapshots = 0
                return
        if behind:  # coalesce: drop the backlog; one snapshot replaces it once it caught up
            viewer.queue.clear()
            viewer.queued_chars = 0
            viewer.snapshots += 1
            viewer.needs_snapshot = True
            self._drops["dashboard_backlog_replaced"] += 1
            viewer.wake()
            return
        viewer.queue.append(frame)
        viewer.queued_chars += len(frame)
        viewer.wake()

    def resyncable(
        self, viewers: Iterable[Viewer], now: float, stuck_seconds: float = STUCK_SECONDS
    ) -> list[Viewer]:
        """Viewers awaiting a snapshot that can take one now; cut off those stuck too long."""
        ready = []
        for viewer in viewers:
            if not viewer.needs_snapshot or viewer.closed:
                continue
            caught_up = not viewer.queue and not viewer.sending
            if caught_up and viewer.writer.backlog() <= self._max_chars * RESYNC_AT:
                viewer.waiting_since = None
                ready.append(viewer)
            elif viewer.waiting_since is None:
                viewer.waiting_since = now
            elif now - viewer.waiting_since > stuck_seconds:
                viewer.closed = True
                viewer.gone.set()
                viewer.wake()
                self._drops["dashboard_slow_disconnect"] += 1
        return ready

    def offer_all(self, viewers: Iterable[Viewer], frame: str) -> None:
        """Offer one rendered frame to each of `viewers`, framed for the wire once."""
        wire = Wire(frame)
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
