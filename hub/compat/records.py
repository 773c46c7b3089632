"""The replaced systems' record dicts mapped onto the typed client's calls (sans-I/O)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

__all__ = ["SignalArgs", "cycle_payload", "json_time", "signal_args"]

_SIDE_KEYS = ("signal_type", "side", "direction", "type", "action")
_DURATION_KEYS = ("duration", "duration_seconds", "duration_s", "elapsed", "elapsed_seconds")

SignalArgs = tuple[str, str, float | None, str | None, dict[str, Any]]


def _first(data: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = data.get(key)
        if value is not None:
            return value
    return None


def _number(value: Any) -> float | None:
    """A finite float, or None (the hub rejects NaN and infinities)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def signal_args(data: Mapping[str, Any]) -> SignalArgs:
    """`record_signal({...})` of the third document as `EngineClient.record_signal` arguments.

    symbol, side (`side`, else `signal_type`, ...), price (`price`, else `entry_price`) and
    strategy are the signal table's columns; every other key travels as it was sent.
    """
    extra = dict(data)
    symbol = extra.pop("symbol", None)
    strategy = extra.pop("strategy", None)
    side = extra.pop("side", None)
    if side is None:
        side = _first(extra, _SIDE_KEYS)
    price = extra.pop("price", None)
    if price is None:
        price = extra.get("entry_price")
    return (
        "" if symbol is None else str(symbol),
        "" if side is None else str(side),
        price if type(price) is float else _number(price),
        None if strategy is None else str(strategy),
        extra,
    )


def cycle_payload(data: Mapping[str, Any]) -> dict[str, Any]:
    """A cycle record as a `cycle` event payload: `duration` (seconds) plus every key sent."""
    payload = dict(data)
    if type(payload.get("duration")) is not float and _number(payload.get("duration")) is None:
        duration = _number(_first(data, _DURATION_KEYS))
        if duration is not None:
            payload["duration"] = duration
    return payload


def json_time(value: Any) -> Any:
    """A datetime as ISO-8601 text (JSON has no time type); anything else unchanged."""
    return value.isoformat() if isinstance(value, datetime) else value
