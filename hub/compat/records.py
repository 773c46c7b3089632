"""The replaced systems' record dicts mapped onto the typed client's calls (sans-I/O)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

__all__ = ["SignalArgs", "cycle_payload", "json_time", "signal_args"]

_SIDE_KEYS = ("signal_type", "side", "direction", "type", "action")
_PRICE_KEYS = ("entry_price", "price")
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

    symbol and side (`signal_type`) and price (`entry_price` or `price`) and strategy are the
    signal table's columns; every other key travels as it was sent.
    """
    symbol = data.get("symbol")
    side = _first(data, _SIDE_KEYS)
    strategy = data.get("strategy")
    extra = {
        str(k): v
        for k, v in data.items()
        if k not in ("symbol", "side", "price", "strategy", "confidence", "reason")
    }
    for key in ("confidence", "reason"):
        if data.get(key) is not None:
            extra[key] = data[key]
    return (
        "" if symbol is None else str(symbol),
        "" if side is None else str(side),
        _number(_first(data, _PRICE_KEYS)),
        None if strategy is None else str(strategy),
        extra,
    )


def cycle_payload(data: Mapping[str, Any]) -> dict[str, Any]:
    """A cycle record as a `cycle` event payload: `duration` (seconds) plus every key sent."""
    payload = {str(k): v for k, v in data.items()}
    duration = _number(_first(data, _DURATION_KEYS))
    if duration is not None:
        payload["duration"] = duration
    return payload


def json_time(value: Any) -> Any:
    """A datetime as ISO-8601 text (JSON has no time type); anything else unchanged."""
    return value.isoformat() if isinstance(value, datetime) else value
