"""The I/O shell of hub/web/limits.py: a guard around uvicorn's HTTP protocol, and the accept-error log.

`ConnectionGuard.http_protocol()` is the class uvicorn builds for every accepted connection: it
wraps uvicorn's own `H11Protocol` (its constructor, the asyncio.Protocol methods and its h11
connection's `their_state`) and adds a deadline for every request head, the per-address cap on
first heads in progress and the descriptor budget.

The deadline (`handshake_timeout`) runs from a connection's first byte to the end of its request
head; on a keep-alive connection again from the first byte of each later request (while h11 waits
for one) to the end of that head. A WebSocket upgrade has to be answered within the same deadline:
after the head uvicorn hands the transport to its WebSocket protocol, and if the app has neither
accepted nor refused by then, the guard answers 503 and closes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, ClassVar

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from hub.core.throttles import LogThrottle
from hub.settings import Settings
from hub.web.limits import Handshakes, RequestHead

__all__ = ["AcceptErrors", "ConnectionGuard"]

log = logging.getLogger(__name__)


def _response(status: str, text: str, retry_after: int | None = None) -> bytes:
    """A whole HTTP/1.1 response that closes the connection."""
    body = text.encode()
    retry = f"Retry-After: {retry_after}\r\n" if retry_after is not None else ""
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n{retry}Connection: close\r\n\r\n"
    )
    return head.encode() + body


TIMED_OUT = _response("408 Request Timeout", "request head not sent in time\n")
REFUSED = _response("503 Service Unavailable", "too many connections; try again later\n", 5)
NOT_ACCEPTED = _response("503 Service Unavailable", "WebSocket not accepted in time\n", 5)


class ConnectionGuard:
    """Deadlines and caps for connections still sending their request head; one per server."""

    def __init__(self, settings: Settings, max_connections: int) -> None:
        self.timeout = settings.handshake_timeout
        self.handshakes: Handshakes[_GuardedH11] = Handshakes(
            settings.max_pending_per_ip, max_connections
        )
        self.counts: Counter[str] = Counter()  # the hub's drops once it runs (HubServer.startup)

    def http_protocol(self) -> type[asyncio.Protocol]:
        """The protocol class for uvicorn's `http` setting, bound to this guard."""
        return type("GuardedH11", (_GuardedH11,), {"guard": self})


class _GuardedH11(asyncio.Protocol):
    """uvicorn's H11Protocol behind a request-head deadline and the guard's caps."""

    guard: ClassVar[ConnectionGuard]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._inner = H11Protocol(config, server_state, app_state, _loop)
        self._connections = server_state.connections
        self._head = RequestHead()
        self._timer: asyncio.TimerHandle | None = None
        self._transport: asyncio.Transport | None = None  # set once uvicorn's protocol has it

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        guard = self.guard
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) else ""
        admission = guard.handshakes.admit(self, ip, len(self._connections))
        for victim in admission.evicted:
            guard.counts["handshake_evicted"] += 1
            victim._give_up(TIMED_OUT)
        if admission.refused:
            guard.counts["connection_refused"] += 1
            transport.write(REFUSED)
            transport.close()
            return
        self._transport = transport
        self._timer = asyncio.get_running_loop().call_later(guard.timeout, self._expired)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._timer is None and self._between_requests():
            # The next request on a keep-alive connection: its head has the same deadline.
            self._head = RequestHead()
            self._timer = asyncio.get_running_loop().call_later(self.guard.timeout, self._expired)
        if self._timer is None or self._head.complete or not self._head.feed(data):
            self._inner.data_received(data)
            return
        self.guard.handshakes.done(self)
        self._inner.data_received(data)  # may hand the transport to uvicorn's WebSocket protocol
        if transport.get_protocol() is self:
            self._settled()
        # Else an upgrade: the deadline runs on until the app accepts or refuses (`_expired`).

    def eof_received(self) -> None:
        self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._settled()
        if self._transport is not None:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def _settled(self) -> None:
        """The head is complete or the connection gone: no deadline, no longer counted."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.guard.handshakes.done(self)

    def _between_requests(self) -> bool:
        """Whether h11 waits for a new request: bytes now start the next request head."""
        conn = getattr(self._inner, "conn", None)
        return self._head.complete and getattr(conn, "their_state", None) is h11.IDLE

    def _expired(self) -> None:
        """The deadline passed before the head was complete, or the upgrade answered."""
        self._timer = None
        if not self._head.complete:
            self.guard.counts["handshake_timeout"] += 1
            self._give_up(TIMED_OUT)
            return
        transport = self._transport
        upgraded = transport.get_protocol() if transport is not None else None
        if getattr(upgraded, "handshake_complete", True):  # accepted or refused in time
            return
        # Not the client's doing (an overloaded loop, a stuck app): counted, not logged per socket.
        self.guard.counts["upgrade_timeout"] += 1
        self._give_up(NOT_ACCEPTED)

    def _give_up(self, response: bytes) -> None:
        """Answer `response` and close (the head is incomplete, so uvicorn has answered nothing)."""
        self._settled()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(response)
            self._transport.close()


class AcceptErrors(logging.Filter):
    """Collapses asyncio's "accept() out of system resource" errors to one line per interval.

    asyncio already backs off (it stops accepting for a second after EMFILE/ENFILE), but logs an
    ERROR with a traceback each time; this keeps the first of each interval, with a count. The
    retry asyncio scheduled may fire after the server closed its socket (at shutdown), where it
    fails with a ValueError traceback that means nothing: that one is dropped.
    """

    MESSAGE = "socket.accept() out of system resource"
    RETRY = "Exception in callback BaseSelectorEventLoop._start_serving("
    LINGER = 1.5  # seconds to keep filtering after the server closed: asyncio retries after 1 s

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._throttle = LogThrottle(interval, max_keys=1)
        self._clock = clock

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith(self.RETRY):
            error = record.exc_info[1] if record.exc_info else None
            return not isinstance(error, ValueError)  # the listening socket is gone already
        if not message.startswith(self.MESSAGE):
            return True
        held = self._throttle.due("accept", self._clock())
        if held is None:
            return False
        error = record.exc_info[1] if record.exc_info else None
        record.msg = (
            "cannot accept connections: %s (%d times since last logged; asyncio retries every second). "
            "Raise the open-file limit (systemd LimitNOFILE=, ulimit -n) or lower "
            "max_engine_connections, max_dashboards and max_sse_clients"
        )
        record.args = (error, held + 1)
        record.exc_info = record.exc_text = None
        return True
