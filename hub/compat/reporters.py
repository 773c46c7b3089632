"""`EngineTelemetryReporter`: the first document's per-engine reporter over `EngineClient`."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from hub.client import EngineClient
from hub.compat.config import CompatConfig

__all__ = ["EngineTelemetry", "EngineTelemetryReporter"]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


@dataclass(slots=True)
class EngineTelemetry:
    """An engine's health as the first document's `{name}_engine.json` held it."""

    name: str
    mode: str
    pid: int
    status: str = "starting"
    started_at: str | None = None
    last_heartbeat: str | None = None
    loop_tick: int = 0
    universe_size: int = 0
    open_positions: int = 0
    last_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The file's JSON object."""
        return asdict(self)


_FIELDS = frozenset({"status", "loop_tick", "universe_size", "open_positions", "last_error"})


class EngineTelemetryReporter:
    """The old reporter's calls; they send to the hub instead of writing a file.

    `url` defaults to ENGINE_HUB_URL (else ws://127.0.0.1:8765), `token` to ENGINE_HUB_TOKEN.
    New code should use `hub.client.EngineClient` directly.
    """

    def __init__(
        self,
        name: str,
        mode: str,
        url: str | None = None,
        token: str | None = None,
        **client_options: Any,
    ) -> None:
        config = CompatConfig.from_environ().with_overrides(url=url, token=token)
        self._telemetry = EngineTelemetry(name, mode, os.getpid(), started_at=_iso(time.time()))
        self._beat: float | None = None
        self.client = EngineClient(
            config.url,
            engine=name,
            mode=mode,
            token=config.token,
            initial_status="starting",
            **client_options,
        ).start()

    @property
    def telemetry(self) -> EngineTelemetry:
        """What the old reporter would have written to `{name}_engine.json` now."""
        if self._beat is not None:
            self._telemetry.last_heartbeat = _iso(self._beat)  # formatted on read, not per beat
        return self._telemetry

    def heartbeat(self, **fields: Any) -> None:
        """Update health fields: status, loop_tick, universe_size, open_positions, last_error."""
        telemetry = self._telemetry
        if "status" not in fields and telemetry.status == "starting":
            fields["status"] = "running"  # the old reporter's first heartbeat meant "running"
        for key, value in fields.items():
            if key in _FIELDS:
                setattr(telemetry, key, value)
        self._beat = time.time()
        self.client.heartbeat(**fields)

    def mark_stopped(self) -> None:
        """Report status `stopped`, deliver what is buffered and close the connection."""
        self._telemetry.status = "stopped"
        self._beat = time.time()
        self.client.close()

    def close(self) -> None:
        """Same as `mark_stopped` (for `with`-less code paths that only close)."""
        self.mark_stopped()
