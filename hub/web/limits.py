"""Connection limits below HTTP, sans-I/O: the descriptor budget, request heads and handshakes per address.

The hub's connection caps must fit in its open-file limit with room to spare, or accept() fails
with EMFILE and nothing new (not even /healthz) gets in. `fit_caps` lowers caps that do not fit.
`Handshakes` keeps the connections still sending their request head, oldest first: at the
per-address cap or at the descriptor budget a new connection pushes out the oldest of them, since
a real client sends its head in milliseconds and the oldest is the likeliest to be stuck or hostile.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Generic, TypeVar

from hub.settings import Settings

__all__ = ["CAPS", "HEADROOM", "Admission", "Handshakes", "RequestHead", "budget", "fit_caps"]

HEADROOM = (
    64  # descriptors for the store (db, WAL, shm), logs, the listening socket, stdio, threads
)
CAPS = ("max_engine_connections", "max_dashboards", "max_sse_clients")

K = TypeVar("K")


def budget(nofile: int) -> int:
    """How many connections the hub lets in at once under an open-file limit of `nofile`."""
    return max(nofile - HEADROOM, 8)


def fit_caps(settings: Settings, nofile: int) -> tuple[Settings, str | None]:
    """`settings` with the connection caps lowered to fit `nofile` descriptors, and a warning if lowered.

    The caps may use three quarters of the budget; the rest is for connections still in their
    handshake and plain HTTP requests (pages, /healthz, the API).
    """
    room = budget(nofile) * 3 // 4
    wanted = {name: int(getattr(settings, name)) for name in CAPS}
    total = sum(wanted.values())
    if total <= room:
        return settings, None
    fitted = {name: max(1, value * room // total) for name, value in wanted.items()}
    said = ", ".join(f"{name} {wanted[name]} -> {fitted[name]}" for name in CAPS)
    warning = (
        f"the open-file limit ({nofile}) cannot hold {total} connections, so the caps are lowered: "
        f"{said}. To keep them, raise the limit to at least {total * 4 // 3 + HEADROOM} "
        "(systemd LimitNOFILE=, ulimit -n) or set these settings lower yourself"
    )
    return settings.replace(**fitted), warning


class RequestHead:
    """Whether a connection's first request head is complete: its blank line has arrived."""

    __slots__ = ("_tail", "complete")

    def __init__(self) -> None:
        self._tail = b""
        self.complete = False

    def feed(self, data: bytes) -> bool:
        """Take received bytes; True once the head is complete (h11 also ends lines with a bare LF)."""
        if not self.complete:
            seen = self._tail + data
            self.complete = b"\n\r\n" in seen or b"\n\n" in seen
            self._tail = seen[-2:]
        return self.complete


@dataclass(frozen=True, slots=True)
class Admission(Generic[K]):
    """What to do with a new connection: close `evicted` (oldest in their handshake) and maybe it."""

    evicted: tuple[K, ...] = ()
    refused: bool = False


class Handshakes(Generic[K]):
    """Connections still sending their request head, per address and in all, oldest first."""

    def __init__(self, max_per_ip: int, max_connections: int) -> None:
        self.max_per_ip = max_per_ip
        self.max_connections = max_connections
        self._pending: dict[K, str] = {}  # insertion order is age
        self._per_ip: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._pending)

    def admit(self, conn: K, ip: str, open_connections: int) -> Admission[K]:
        """Take `conn` from `ip` while `open_connections` others are open; who has to go for it."""
        evicted: list[K] = []
        if self._per_ip[ip] >= self.max_per_ip:
            evicted.append(next(c for c, addr in self._pending.items() if addr == ip))
            self.done(evicted[-1])
        if open_connections - len(evicted) >= self.max_connections:
            if not self._pending:
                return Admission(tuple(evicted), refused=True)
            evicted.append(next(iter(self._pending)))
            self.done(evicted[-1])
        self._pending[conn] = ip
        self._per_ip[ip] += 1
        return Admission(tuple(evicted))

    def done(self, conn: K) -> None:
        """`conn` sent its head, or closed: it no longer counts (a no-op if it did not)."""
        ip = self._pending.pop(conn, None)
        if ip is not None:
            self._per_ip[ip] -= 1
            if not self._per_ip[ip]:
                del self._per_ip[ip]
