"""Turning whatever an engine hands us into JSON the hub accepts (in the sender, off the hot path)."""

from __future__ import annotations

import logging
import numbers
from collections.abc import Mapping
from typing import Any

import msgspec

__all__ = ["json_hook", "log_extra", "make_encoder", "plain", "truncate"]

# Attributes every LogRecord has; anything else on a record came from `extra=` or a filter.
_STANDARD_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
_MAX_DEPTH = 16
_TRUNCATED = "… [truncated {} bytes]"


def json_hook(obj: Any) -> Any:
    """msgspec calls this for types it cannot encode natively (numpy scalars, custom objects)."""
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        return float(obj)
    return str(obj)


def make_encoder() -> msgspec.json.Encoder:
    """A JSON encoder that degrades unknown objects to numbers or strings instead of failing."""
    return msgspec.json.Encoder(enc_hook=json_hook)


def plain(value: Any, depth: int = 0) -> Any:
    """A deep JSON-safe copy: str keys, valid UTF-8 strings, lists; used when encoding failed."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth >= _MAX_DEPTH:
        return plain(repr(value))
    if isinstance(value, Mapping):
        return {plain(str(key)): plain(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(item, depth + 1) for item in value]
    return plain(json_hook(value))


def truncate(text: str, limit: int) -> str:
    """Cut `text` to at most `limit` UTF-8 bytes, with a marker saying how much was cut."""
    if len(text) * 4 <= limit:
        return text
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    kept = data[:limit].decode("utf-8", "ignore")
    return kept + _TRUNCATED.format(len(data) - len(kept.encode("utf-8")))


def log_extra(record: logging.LogRecord | dict[str, Any]) -> dict[str, Any]:
    """The record's non-standard attributes (what the caller passed as `extra=`), or `client.log`'s."""
    if isinstance(record, dict):
        return record
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _STANDARD_RECORD_ATTRS and not key.startswith("_")
    }
