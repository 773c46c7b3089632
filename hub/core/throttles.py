"""At most one log line per key per interval, sans-I/O (`now` is passed in).

A refused engine that retries (or a stranger probing the port) must not fill the hub's log: the
first refusal from an address is logged, later ones within the interval are only counted, and the
next line says how many were held back.
"""

from __future__ import annotations

__all__ = ["LogThrottle"]


class LogThrottle:
    """Decides whether a line for `key` is due; remembers at most `max_keys` keys."""

    def __init__(self, interval: float = 60.0, max_keys: int = 1024) -> None:
        if interval < 0 or max_keys < 1:
            raise ValueError("LogThrottle needs interval >= 0 and max_keys >= 1")
        self.interval = interval
        self.max_keys = max_keys
        self._keys: dict[str, tuple[float, int]] = {}  # key -> (when last logged, held back since)

    def due(self, key: str, now: float) -> int | None:
        """None to stay quiet; else log now, with how many lines for `key` were held back."""
        entry = self._keys.get(key)
        if entry is not None and now - entry[0] < self.interval:
            self._keys[key] = (entry[0], entry[1] + 1)
            return None
        if entry is None and len(self._keys) >= self.max_keys:
            self._forget(now)
        self._keys.pop(key, None)  # re-inserted: the dict stays ordered by when each was logged
        self._keys[key] = (now, 0)
        return entry[1] if entry is not None else 0

    def _forget(self, now: float) -> None:
        """Make room: drop keys whose interval passed, else the oldest (bounded memory)."""
        expired = [k for k, (at, _) in self._keys.items() if now - at >= self.interval]
        for key in expired:
            del self._keys[key]
        if len(self._keys) >= self.max_keys:
            del self._keys[next(iter(self._keys))]
