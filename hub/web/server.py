"""Running the app under uvicorn: CLI serving and an in-process server for tests and the demo.

The server also owns what the hub changes for the whole process: while it runs a store that asks
for a shorter GIL switch interval (the SQLite writer thread, hub/stores/sqlite.py), it sets that
interval at startup and gives the process its previous one back once the store has closed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
import threading
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from hub.settings import Settings
from hub.stores import check_store
from hub.web.app import create_app
from hub.web.exposure import anonymous_warning, serving_problem
from hub.web.runtime import Hub

__all__ = ["HubServer", "bind", "exit_cleanly_on_sigterm", "serve", "uvicorn_config"]

log = logging.getLogger(__name__)


def uvicorn_config(app: Starlette, settings: Settings) -> uvicorn.Config:
    """uvicorn settings that enforce the hub's WebSocket limits."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        ws="websockets-sansio",
        ws_max_size=settings.max_frame_bytes,
        ws_ping_interval=settings.ws_ping_interval,
        ws_ping_timeout=settings.ws_ping_timeout,
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=int(settings.graceful_timeout) or None,
        log_level=settings.log_level,
        log_config=None,
        access_log=False,
    )


class HubServer(uvicorn.Server):
    """uvicorn's server that tells the hub to close engine sockets and streams on exit."""

    def __init__(self, settings: Settings) -> None:
        self.app = create_app(settings)
        self.settings = settings
        self._switch_interval: float | None = None  # held for the store while serving
        super().__init__(uvicorn_config(self.app, settings))

    @property
    def hub(self) -> Hub | None:
        """The running hub (None before startup)."""
        return getattr(self.app.state, "hub", None)

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's serve; afterwards (the store closed) the process gets its switch interval back."""
        try:
            await super().serve(sockets=sockets)
        finally:
            if self._switch_interval is not None:
                _SWITCH_INTERVAL.release(self._switch_interval)
                self._switch_interval = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's startup (the lifespan starts the hub and its store), then the switch interval
        the store asks for."""
        await super().startup(sockets=sockets)
        hub = self.hub
        if hub is not None and hub.store.switch_interval is not None:
            self._switch_interval = hub.store.switch_interval
            _SWITCH_INTERVAL.hold(self._switch_interval)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """SIGINT/SIGTERM: start the hub's own shutdown, then uvicorn's."""
        hub = self.hub
        if hub is not None:
            asyncio.get_event_loop().call_soon_threadsafe(hub.begin_shutdown)
        super().handle_exit(sig, frame)

    async def stop(self) -> None:
        """Shut down from inside the loop (tests, demo)."""
        hub = self.hub
        if hub is not None:
            hub.begin_shutdown()
        self.should_exit = True


class _SwitchInterval:
    """The interpreter's switch interval, shortened while a running server's store asks for it.

    It is process-wide and servers may overlap (tests, the demo), so they share this record: the
    first hold saves the process's own value and the last release puts it back, in any order.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # servers may run on loops in different threads
        self._held: list[float] = []
        self._own = sys.getswitchinterval()

    def hold(self, interval: float) -> None:
        """Shorten the switch interval to `interval` (never lengthen it) until released."""
        with self._lock:
            if not self._held:
                self._own = sys.getswitchinterval()
            self._held.append(interval)
            sys.setswitchinterval(min([self._own, *self._held]))

    def release(self, interval: float) -> None:
        """Drop one hold of `interval`; with none left the process's own value is back."""
        with self._lock:
            self._held.remove(interval)
            sys.setswitchinterval(min([self._own, *self._held]))


_SWITCH_INTERVAL = _SwitchInterval()


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0 picks a free one), ready before the server starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(settings: Settings) -> int:
    """Serve until SIGINT/SIGTERM; returns the process exit code (StoreError for a bad db file)."""
    check_store(settings)
    problem = serving_problem(settings)  # secure by default: checked before anything listens
    if problem is not None:
        log.error("%s", problem)
        return 2
    if (warning := anonymous_warning(settings)) is not None:
        log.warning("%s", warning)
    server = HubServer(settings)
    try:
        sock = bind(settings.host, settings.port)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc.strerror)
        return 2
    exit_cleanly_on_sigterm()
    host, port = sock.getsockname()[:2]
    log.info("engine hub on http://%s:%d (engines: ws://%s:%d/ws/engine)", host, port, host, port)
    asyncio.run(server.serve(sockets=[sock]))
    log.info("engine hub stopped")
    return 0


def exit_cleanly_on_sigterm() -> None:
    """Make a SIGTERM end the process with status 0 once uvicorn has shut down gracefully.

    uvicorn re-raises the signal after its graceful shutdown; this handler then does nothing
    instead of the default "killed by signal".
    """
    signal.signal(signal.SIGTERM, _stopped)


def _stopped(sig: int, frame: FrameType | None) -> None:
    """SIGTERM after the graceful shutdown: nothing left to do."""
