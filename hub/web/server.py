"""Running the app under uvicorn: CLI serving and an in-process server for tests and the demo.

The server also owns what the hub changes for the whole process: while it runs a store that asks
for a shorter GIL switch interval (the SQLite writer thread, hub/stores/sqlite.py), it sets that
interval at startup and gives the process its previous one back once the store has closed.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
import socket
import sys
import threading
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from hub.settings import Settings, SettingsError
from hub.stores import check_store
from hub.web.admin import Reload, reload_credentials
from hub.web.app import create_app
from hub.web.collector import COLLECTOR
from hub.web.exposure import anonymous_warning, serving_problem
from hub.web.fastwrite import DashboardWebSockets
from hub.web.guards import AcceptErrors, ConnectionGuard
from hub.web.hosts import check_hosts
from hub.web.limits import budget, fit_caps
from hub.web.redaction import redact_query_strings
from hub.web.runtime import Hub

__all__ = [
    "HubServer",
    "bind",
    "exit_cleanly_on_sigterm",
    "raise_open_file_limit",
    "serve",
    "startup_problems",
    "uvicorn_config",
]

log = logging.getLogger(__name__)


def uvicorn_config(
    app: Starlette, settings: Settings, http: type[asyncio.Protocol] | str = "auto"
) -> uvicorn.Config:
    """uvicorn settings that enforce the hub's WebSocket limits (`http`: HubServer's guarded h11).

    uvicorn's own X-Forwarded-* handling is off (it trusts 127.0.0.1 by default): the app reads
    those headers only from `trusted_proxies` (hub/web/proxies.py), whatever server runs it.
    """
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        http=http,
        # Compress-once deflate for dashboards needs the direct writer: through ASGI every
        # socket would compress every frame itself (hub/web/fastwrite.py).
        ws=DashboardWebSockets
        if settings.dashboard_deflate and settings.dashboard_direct_writes
        else "websockets-sansio",
        ws_max_size=settings.max_frame_bytes,
        ws_ping_interval=settings.ws_ping_interval,
        ws_ping_timeout=settings.ws_ping_timeout,
        ws_per_message_deflate=False,
        proxy_headers=False,
        timeout_graceful_shutdown=int(settings.graceful_timeout) or None,
        log_level=settings.log_level,
        log_config=None,
        access_log=False,
    )


class HubServer(uvicorn.Server):
    """uvicorn's server that tells the hub to close engine sockets and streams on exit.

    `reload` loads the settings afresh (SIGHUP under `serve`, POST /api/admin/reload). The
    connection caps are fitted to the process's open-file limit (hub/web/limits.py) and every
    connection passes the guard (hub/web/guards.py) until its request head is in.
    """

    def __init__(self, settings: Settings, reload: Reload | None = None) -> None:
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if nofile != resource.RLIM_INFINITY:
            settings, warning = fit_caps(settings, nofile)
            if warning is not None:
                log.warning("%s", warning)
        connections = budget(nofile) if nofile != resource.RLIM_INFINITY else 1 << 20
        self.guard = ConnectionGuard(settings, connections)
        self.app = create_app(settings)
        self.app.state.reload_settings = reload  # what /api/admin/reload calls
        self.settings = settings
        self._switch_interval: float | None = None  # held for the store while serving
        self._thaw_interval: float | None = None  # the collector's freeze policy, while serving
        redact_query_strings()  # embed tokens ride in WebSocket query strings
        super().__init__(uvicorn_config(self.app, settings, self.guard.http_protocol()))

    @property
    def hub(self) -> Hub | None:
        """The running hub (None before startup)."""
        return getattr(self.app.state, "hub", None)

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's serve; afterwards (the store closed) the process gets its switch interval and
        its garbage collector's own policy back."""
        accept_errors = AcceptErrors()  # asyncio's, logged at most once a minute while serving
        logging.getLogger("asyncio").addFilter(accept_errors)
        try:
            await super().serve(sockets=sockets)
        finally:
            # asyncio's accept retry may still fire once after the server closed (within its
            # one-second delay, even while asyncio.run shuts down): keep the filter until then.
            asyncio.get_running_loop().call_later(
                AcceptErrors.LINGER, logging.getLogger("asyncio").removeFilter, accept_errors
            )
            if self._switch_interval is not None:
                _SWITCH_INTERVAL.release(self._switch_interval)
                self._switch_interval = None
            if self._thaw_interval is not None:
                COLLECTOR.release(self._thaw_interval)
                self._thaw_interval = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's startup (the lifespan starts the hub and its store), then the switch interval
        the store asks for and the collector's freeze policy (hub/web/collector.py)."""
        await super().startup(sockets=sockets)
        if self.settings.gc_thaw_interval > 0 and self._thaw_interval is None:
            self._thaw_interval = self.settings.gc_thaw_interval
            COLLECTOR.hold(self._thaw_interval)
        hub = self.hub
        if hub is not None:  # what the guard counted from here on shows with the hub's drops
            hub.state.stats.drops.update(self.guard.counts)
            self.guard.counts = hub.state.stats.drops
        if hub is not None and hub.store.switch_interval is not None:
            self._switch_interval = hub.store.switch_interval
            _SWITCH_INTERVAL.hold(self._switch_interval)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """SIGINT/SIGTERM: start the hub's own shutdown, then uvicorn's."""
        hub = self.hub
        if hub is not None:
            asyncio.get_event_loop().call_soon_threadsafe(hub.begin_shutdown)
        super().handle_exit(sig, frame)

    def reload(self) -> None:
        """SIGHUP: take the credentials of freshly loaded settings; a bad file keeps the old ones."""
        hub, reload = self.hub, self.app.state.reload_settings
        if hub is None or reload is None:
            log.warning("SIGHUP ignored: the hub has not started, or has no settings to reload")
            return
        try:
            reload_credentials(hub, reload, actor="SIGHUP")
        except (ValueError, OSError) as exc:  # SettingsError is a ValueError
            log.error("reloading settings failed; the previous credentials stay in force: %s", exc)

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


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (connections need descriptors); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, hard, exc)
            return soft
    return hard


def startup_problems(settings: Settings) -> list[str]:
    """Secure by default, checked before anything listens (serve and demo): who may see
    (sign-in) and which host names the hub answers (no DNS rebinding); every problem at once."""
    problems = [serving_problem(settings)]
    try:
        check_hosts(settings)
    except SettingsError as exc:
        problems.append(str(exc))
    return [problem for problem in problems if problem]


def serve(settings: Settings, reload: Reload | None = None) -> int:
    """Serve until SIGINT/SIGTERM; returns the process exit code (StoreError for a bad db file).

    With `reload` (what loads these settings again), SIGHUP reloads the credentials.
    """
    check_store(settings)
    problems = startup_problems(settings)
    if problems:
        for problem in problems:
            log.error("%s", problem)
        return 2
    if (warning := anonymous_warning(settings)) is not None:
        log.warning("%s", warning)
    raise_open_file_limit()
    server = HubServer(settings, reload)
    try:
        sock = bind(settings.host, settings.port)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc.strerror)
        return 2
    exit_cleanly_on_sigterm()
    host, port = sock.getsockname()[:2]
    log.info("engine hub on http://%s:%d (engines: ws://%s:%d/ws/engine)", host, port, host, port)
    asyncio.run(_serve(server, sock, reload_on_sighup=reload is not None))
    log.info("engine hub stopped")
    return 0


async def _serve(server: HubServer, sock: socket.socket, reload_on_sighup: bool) -> None:
    """Serve; meanwhile SIGHUP reloads the credentials (`serve` runs in the main thread)."""
    if not reload_on_sighup:
        await server.serve(sockets=[sock])
        return
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, server.reload)
    try:
        await server.serve(sockets=[sock])
    finally:
        loop.remove_signal_handler(signal.SIGHUP)


def exit_cleanly_on_sigterm() -> None:
    """Make a SIGTERM end the process with status 0 once uvicorn has shut down gracefully.

    uvicorn re-raises the signal after its graceful shutdown; this handler then does nothing
    instead of the default "killed by signal".
    """
    signal.signal(signal.SIGTERM, _stopped)


def _stopped(sig: int, frame: FrameType | None) -> None:
    """SIGTERM after the graceful shutdown: nothing left to do."""
