"""Fan-out of rendered view frames to dashboard sockets, one bounded queue per browser.

Policy for a browser that falls behind: when its queue would exceed its budget (characters) the backlog is
dropped and it is marked for a fresh snapshot instead; if it is still behind after
`stuck_after` snapshots in a row it is disconnected. Nothing here ever waits for a browser.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter, deque

from hub.views import ViewKey

__all__ = ["DashboardFanout", "Viewer"]


class Viewer:
    """One dashboard socket: its view, its outbound queue and whether it needs a snapshot."""

    __slots__ = (
        "close_code",
        "closed",
        "id",
        "needs_snapshot",
        "queue",
        "queued_chars",
        "snapshots",
        "view",
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
        self.close_code = 1013  # why the fan-out gave up: 1013 too slow, 1012 hub restarting
        self._wake = asyncio.Event()
        self.gone = asyncio.Event()  # set when the fan-out gives up on this viewer

    async def next_frames(self) -> list[str]:
        """Wait for frames (or close) and take them all."""
        await self._wake.wait()
        self._wake.clear()
        frames = list(self.queue)
        self.queue.clear()
        self.queued_chars = 0
        if frames:
            self.snapshots = 0
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

    def offer(self, viewer: Viewer, frame: str, stuck_after: int = 3) -> None:
        """Queue `frame` for `viewer`, or fall back to a snapshot / disconnect when it is behind."""
        if viewer.closed or viewer.needs_snapshot:
            return
        if viewer.queued_chars + len(frame) > self._max_chars:
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

    def publish(self, view: ViewKey, frame: str) -> None:
        """Offer one rendered frame to every viewer of `view`."""
        for viewer in self.views.get(view, ()):
            self.offer(viewer, frame)
        self.prune(view)

    def prune(self, view: ViewKey) -> None:
        """Forget viewers of `view` the fan-out gave up on, freeing their slots at once."""
        for viewer in [v for v in self.views.get(view, ()) if v.closed]:
            self.leave(viewer)

    def close(self) -> None:
        """Disconnect every viewer (hub shutdown)."""
        for viewers in self.views.values():
            for viewer in viewers:
                viewer.closed = True
                viewer.close_code = 1012
                viewer.gone.set()
                viewer.wake()
