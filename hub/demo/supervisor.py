"""`engine-hub demo`: a hub plus three simulated engine processes, with incidents now and then.

The engines are real processes using the client library (`hub.simulator`). Every
`incident_every` seconds the supervisor causes one incident so every health state shows up:
a stalled loop, a frozen process (late, then stale), an error, a graceful restart (stopped) and
a crash (offline). Crashed or stopped engines are started again a few seconds later.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hub.settings import Settings
from hub.stores import check_store
from hub.web.server import HubServer, bind

__all__ = ["ENGINES", "Supervisor", "run_demo"]

log = logging.getLogger(__name__)

ENGINES = ("fno", "equity", "options")
FREEZE_SECONDS = 14.0  # with 2 s heartbeats: late after 4 s, stale after 12 s
RESPAWN_SECONDS = 5.0
INCIDENTS = (
    ("stall", "fno"),
    ("freeze", "equity"),
    ("error", "options"),
    ("restart", "fno"),
    ("crash", "equity"),
)


@dataclass
class Supervisor:
    """Owns the engine processes: starts them, injects incidents, restarts them, stops them."""

    url: str
    engines: tuple[str, ...] = ENGINES
    incident_every: float = 40.0
    procs: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def spawn(self, name: str) -> None:
        """Start the simulated engine `name`."""
        self.procs[name] = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hub.demo.simulator",
            "--engine",
            name,
            "--url",
            self.url,
            stdin=asyncio.subprocess.DEVNULL,
        )
        log.info("started engine %s (pid %d)", name, self.procs[name].pid)

    def _later(self, delay: float, action: Callable[[], object]) -> None:
        async def run() -> None:
            await asyncio.sleep(delay)
            result = action()
            if asyncio.iscoroutine(result):
                await result

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def incident(self, kind: str, name: str) -> None:
        """Cause one incident on engine `name`."""
        proc = self.procs.get(name)
        if proc is None or proc.returncode is not None:
            return
        log.warning("demo incident: %s %s", kind, name)
        if kind == "stall":
            proc.send_signal(signal.SIGUSR1)
        elif kind == "error":
            proc.send_signal(signal.SIGUSR2)
        elif kind == "freeze":
            proc.send_signal(signal.SIGSTOP)

            def thaw() -> None:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGCONT)

            self._later(FREEZE_SECONDS, thaw)
        elif kind in ("restart", "crash"):
            proc.send_signal(signal.SIGTERM if kind == "restart" else signal.SIGKILL)
            self._later(RESPAWN_SECONDS, lambda: self.spawn(name))

    async def run(self) -> None:
        """Start every engine, then cause incidents until cancelled."""
        for name in self.engines:
            await self.spawn(name)
        if self.incident_every <= 0:
            await asyncio.Event().wait()
        for kind, name in itertools.cycle(INCIDENTS):
            await asyncio.sleep(self.incident_every)
            if name in self.engines:
                self.incident(kind, name)

    async def stop(self) -> None:
        """Stop every engine gracefully (killing any that do not stop within 5 s)."""
        for task in self._tasks:
            task.cancel()
        for proc in self.procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
        for proc in self.procs.values():
            try:
                await asyncio.wait_for(proc.wait(), 5.0)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def demo_alerts(webhook: str | None) -> dict[str, Any]:
    """The demo's `[alerts]` table: short `for`s so its incidents fire and resolve alerts within
    seconds, and with `webhook`, a receiver that hears every alert (the demo's engines are paper)."""
    table: dict[str, Any] = {
        "rules": {
            "offline": {"for": "5s"},
            "stalled": {"for": "3s"},
            "clock_skew": {"enabled": False},
        },
        "resolve_after": "5s",
        "quiet_after_resolve": "30s",
    }
    if webhook:
        table["receivers"] = [{"name": "demo", "type": "webhook", "url": webhook, "attempts": 3}]
        table["routes"] = [{"receiver": "demo", "repeat_interval": "10m"}]
    return table


async def run_demo(
    settings: Settings, on_ready: Callable[[str], None], incident_every: float = 40.0
) -> None:
    """Serve a hub and run the simulated engines until the server stops (Ctrl-C or SIGTERM)."""
    check_store(settings)
    server = HubServer(settings)
    sock = bind(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    supervisor = Supervisor(f"ws://{host}:{port}/ws/engine", incident_every=incident_every)
    engines = asyncio.create_task(supervisor.run())
    on_ready(f"http://{host}:{port}/")
    try:
        await serving
    finally:
        engines.cancel()
        await asyncio.gather(engines, return_exceptions=True)
        await supervisor.stop()
        sock.close()
    log.info("demo stopped (pid %d)", os.getpid())
