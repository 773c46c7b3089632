"""Reading the watched files: only when changed, JSON objects or a logged reason (throttled)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from hub.bridge.files import Skip, decode

__all__ = ["Reader", "Stamp", "stamp_of"]

log = logging.getLogger("hub.bridge")

Stamp = tuple[int, int]  # (mtime_ns, size): a file or directory changed when this did
SAY_AGAIN = 60.0  # seconds before the same skip reason for the same file is logged again
MAX_SEEN = 50_000


def stamp_of(path: Path) -> Stamp | None:
    """The path's (mtime_ns, size), or None when it is not there."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class Reader:
    """Reads a file once per change; a broken one is skipped with its reason until it changes."""

    def __init__(self) -> None:
        self._seen: dict[Path, Stamp] = {}  # files read at this stamp (forwarded or skipped)
        self._said: dict[tuple[Path, str], float] = {}

    def read(self, path: Path, gzipped: bool = False) -> dict[str, Any] | None:
        """The file's JSON object if it changed since it was last read; None otherwise."""
        stamp = stamp_of(path)
        if stamp is None or self._seen.get(path) == stamp:
            return None
        if len(self._seen) >= MAX_SEEN:
            self._seen.clear()  # bounded; re-reading costs a read and the ledger still decides
        self._seen[path] = stamp
        try:
            data = decode(path.read_bytes(), gzipped)
        except OSError as exc:
            data = Skip(f"unreadable: {exc.strerror}")
        if isinstance(data, Skip):
            self.say(path, data.reason)
            return None
        result: dict[str, Any] = data
        return result

    def say(self, path: Path, reason: str) -> None:
        """Log why `path` was skipped, at most once a minute per file and reason."""
        now = time.monotonic()
        key = (path, reason)
        if now - self._said.get(key, -SAY_AGAIN) < SAY_AGAIN:
            return
        if len(self._said) > 1000:
            self._said.clear()
        self._said[key] = now
        log.warning("bridge skipped %r: %s", str(path), reason)
