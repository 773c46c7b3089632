"""`EngineTelemetryReporter`: the first document's per-engine reporter over `EngineClient`."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from hub.client import EngineClient
from hub.client.intake import DropReason
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


_now = time.time
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
        self._fields: dict[str, Any] = {}
        self._first = True
        self.client = EngineClient(
            config.url,
            engine=name,
            mode=mode,
            token=config.token,
            initial_status="starting",
            **client_options,
        ).start()
        # Bound once, the client's intake itself (what `client.heartbeat` does, without
        # packing the fields into keywords again): the per-beat path stays short.
        self._update = self.client.intake.update_health

    @property
    def telemetry(self) -> EngineTelemetry:
        """What the old reporter would have written to `{name}_engine.json` now."""
        telemetry = self._telemetry
        for key in _FIELDS & self._fields.keys():
            setattr(telemetry, key, self._fields[key])
        if self._beat is not None:
            telemetry.last_heartbeat = _iso(self._beat)  # formatted on read, not per beat
        return telemetry

    def heartbeat(self, **fields: Any) -> None:
        """Update health fields: status, loop_tick, universe_size, open_positions, last_error."""
        if self._first:
            self._first = False
            if "status" not in fields:
                fields["status"] = "running"  # the old reporter's first heartbeat meant this
        known = self._fields
        known.update(fields)
        if len(known) > 256:  # unknown keys (they go to state) are not kept past this many
            self._fields = {k: known[k] for k in _FIELDS & known.keys()}
        self._beat = _now()
        try:
            self._update(fields)
        except Exception:  # as the client's heartbeat: counted, never raised into the engine
            self.client.intake.count_drop(DropReason.INVALID)

    def mark_stopped(self) -> None:
        """Report status `stopped`, deliver what is buffered and close the connection."""
        self._fields["status"] = "stopped"
        self._beat = time.time()
        self.client.close()

    def close(self) -> None:
        """Same as `mark_stopped` (for `with`-less code paths that only close)."""
        self.mark_stopped()
