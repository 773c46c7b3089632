"""Keep the hub's long-lived objects out of CPython's full garbage collections.

A full (generation 2) collection walks every tracked object with the event loop stopped. A hub
with 10,000 dashboards open holds ~1.5 M of them (~150 per socket: its tasks, their coroutine
frames, uvicorn's and websockets' protocol objects), and each full collection then blinds the loop
for ~1 s: no engine is read, every page waits (`benchmarks/scale.py` scenario c, p99 1.1-2.2 s
in runs where one fell in the window). CPython starts one whenever what survived younger
collections grows by a quarter, so a crowd of browsers connecting after a restart pays it again
and again.

After each full collection its survivors, the hub's long-lived state, are frozen (`gc.freeze`):
the next full collection walks only what is younger (tens of ms). Reference counting still frees
frozen objects; only garbage *cycles* among them wait, so every `gc_thaw_interval` seconds they
are thawed and the next full collection walks everything once. A cycle that outlives its
socket is thus kept at most that long. `gc_thaw_interval = 0` leaves CPython's own policy.

The collector is one per process and servers may overlap (tests, the demo), so they share one
record: the first hold installs the callback, the last release removes it and thaws.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["COLLECTOR", "FreezePolicy"]


class FreezePolicy:
    """Freeze the survivors of each full collection; thaw them every `interval` seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._held: list[float] = []
        self._thawed = 0.0
        self.freezes = 0  # full collections whose survivors were frozen
        self.thaws = 0

    @property
    def interval(self) -> float | None:
        """The thaw interval in force (None: CPython's own policy)."""
        with self._lock:
            return min(self._held) if self._held else None

    def hold(self, interval: float) -> None:
        """Freeze after full collections, thawing at least every `interval` s, until released."""
        with self._lock:
            if not self._held:
                self._thawed = self._clock()
                gc.callbacks.append(self._after_collection)
            self._held.append(interval)

    def release(self, interval: float) -> None:
        """Drop one hold; with none left the callback goes and everything is thawed."""
        with self._lock:
            self._held.remove(interval)
            if self._held:
                return
            gc.callbacks.remove(self._after_collection)
        gc.unfreeze()

    def _after_collection(self, phase: str, info: dict[str, Any]) -> None:
        # Called by the collector itself, after it finished (gc.callbacks): never raises.
        if phase != "stop" or info.get("generation") != 2 or not self._held:
            return
        now = self._clock()
        if now - self._thawed >= min(self._held):
            self._thawed = now
            self.thaws += 1
            gc.unfreeze()  # the next full collection walks everything once, then freezes again
            return
        self.freezes += 1
        gc.freeze()


COLLECTOR = FreezePolicy()
