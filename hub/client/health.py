"""The engine's last known health fields: partial updates in, heartbeat fields out."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

from hub.client.payloads import truncate
from hub.core.messages import INT64_MAX, Status

__all__ = ["HealthState"]

_RESERVED = frozenset({"kind", "seq", "ts", "interval", "dropped"})
_MAX_ERROR_BYTES = 4096
_INVALID = object()


def _as_int(value: Any, minimum: int) -> Any:
    """An int in [minimum, INT64_MAX], or `_INVALID` (bools and fractional numbers are invalid)."""
    if isinstance(value, bool):
        return _INVALID
    if isinstance(value, numbers.Integral):
        number = int(value)
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    else:
        return _INVALID
    return number if minimum <= number <= INT64_MAX else _INVALID


def _validated(key: str, value: Any) -> Any:
    """The wire value of one top-level heartbeat field, or `_INVALID`."""
    if key == "status":
        try:
            return Status(value)
        except ValueError:
            return _INVALID
    if key in ("loop_tick", "universe_size"):
        return _as_int(value, 0)
    if key == "open_positions":
        return _as_int(value, -INT64_MAX)
    if value is None:
        return None
    return truncate(value if isinstance(value, str) else str(value), _MAX_ERROR_BYTES)


class HealthState:
    """Merges partial updates; unknown keys (and the `state` mapping) go into free-form `state`.

    The merged `state` is always sent whole, so the hub shows the same thing whether it replaces
    or merges the `state` of a heartbeat.
    """

    FIELDS = ("status", "loop_tick", "universe_size", "open_positions", "last_error")

    def __init__(self, status: str, interval: float) -> None:
        self.fields: dict[str, Any] = {"status": Status(status)}
        self.state: dict[str, Any] = {}
        self.interval = interval

    def apply(self, updates: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
        """Merge `updates`; returns (the heartbeat fields that changed, how many were invalid)."""
        changed: dict[str, Any] = {}
        invalid = 0
        state_changed = False
        for key, value in updates.items():
            if key in self.FIELDS:
                checked = _validated(key, value)
                if checked is _INVALID:
                    invalid += 1
                    continue
                self.fields[key] = changed[key] = checked
            elif key == "state":
                if not isinstance(value, Mapping):
                    invalid += 1
                    continue
                self.state.update(value)
                state_changed = True
            elif key in _RESERVED or not isinstance(key, str):
                invalid += 1
            else:
                self.state[key] = value
                state_changed = True
        if state_changed:
            changed["state"] = dict(self.state)
        return changed, invalid

    def full(self) -> dict[str, Any]:
        """Every known field, for the first heartbeat of a connection and the periodic ones."""
        fields = dict(self.fields)
        fields["interval"] = self.interval
        if self.state:
            fields["state"] = dict(self.state)
        return fields

    @property
    def status(self) -> Status:
        """The status the engine reported last."""
        status: Status = self.fields["status"]
        return status
