"""Drained records in, validated and encoded protocol messages out (the sender's side of the core)."""

from __future__ import annotations

import math
import re
from collections.abc import Hashable, Mapping
from typing import Any

import msgspec

from hub.client.intake import SeriesKey
from hub.client.options import ClientOptions
from hub.client.payloads import json_hook, log_extra, make_encoder, plain, truncate
from hub.core.messages import (
    EVENT_TYPE_PATTERN,
    METRIC_NAME_PATTERN,
    TAG_KEY_PATTERN,
    Bye,
    Event,
    Heartbeat,
    Hello,
    Log,
    Metric,
)

__all__ = ["MessageBuilder", "Series"]

_METRIC = re.compile(METRIC_NAME_PATTERN)
_TAG_KEY = re.compile(TAG_KEY_PATTERN)
_EVENT_TYPE = re.compile(EVENT_TYPE_PATTERN)
_LEVEL = re.compile(r"[A-Za-z]{1,16}")
_NOT_LETTERS = re.compile(r"[^A-Za-z]")
_MAX_TAG_VALUE = 256
_MAX_LOGGER = 256
_MAX_CACHE = 20_000
_MISSING: Any = object()

Series = tuple[str, tuple[tuple[str, str], ...]]  # (name, sorted tags): one metric series


class MessageBuilder:
    """Validates what engines recorded the way the hub would, so bad input is dropped client-side.

    A `None` result means "invalid": the core counts it and never sends it.
    """

    def __init__(self, options: ClientOptions) -> None:
        self._options = options
        self._encoder = make_encoder()
        self._series: dict[Hashable, Series | None] = {}
        self._event_types: set[str] = set()

    def encode(self, message: Hello | Heartbeat | Event | Metric | Log | Bye) -> bytes | None:
        """JSON for `message`; values JSON cannot hold are degraded, None if even that fails."""
        try:
            return self._encoder.encode(message)
        except Exception:
            try:
                return self._encoder.encode(plain(msgspec.to_builtins(message, enc_hook=json_hook)))
            except Exception:
                return None

    def event(
        self, seq: int, ts: float, kind: Any, payload: Any, chain: Any = msgspec.UNSET
    ) -> Event | None:
        """An `event`, if `kind` is a valid event type and `payload` a mapping; `chain` is a
        `ChainLink` the recorder made (it checked its values)."""
        if not isinstance(kind, str):
            return None
        if kind not in self._event_types:
            if not _EVENT_TYPE.fullmatch(kind):
                return None
            if len(self._event_types) > _MAX_CACHE:
                self._event_types.clear()
            self._event_types.add(kind)
        if not isinstance(payload, Mapping):
            return None
        try:  # the wire form keeps payloads as raw JSON objects
            raw = self._encoder.encode(payload)
        except Exception:
            try:
                raw = self._encoder.encode(
                    plain(msgspec.to_builtins(dict(payload), enc_hook=json_hook))
                )
            except Exception:
                return None
        return Event(seq, kind, ts, msgspec.Raw(raw), chain)

    def log(
        self,
        seq: int,
        ts: float,
        level: str,
        logger: str,
        message: str,
        exc: str | None,
        record: Any,
    ) -> Log:
        """A `log` message; long text is cut with a marker, odd level names are reduced to letters."""
        limit = self._options.max_log_bytes
        if not isinstance(message, str):
            message = str(message)
        level = level if isinstance(level, str) else "INFO"
        if not _LEVEL.fullmatch(level):
            level = _NOT_LETTERS.sub("", level)[:16] or "LOG"
        extra = log_extra(record) if record is not None else {}
        exc = truncate(exc, limit) if exc else None
        return Log(seq, truncate(message, limit), level, logger[:_MAX_LOGGER], ts, exc, extra)

    def metric(self, seq: int, op: Any, key: SeriesKey, value: Any) -> Metric | None:
        """A `metric`, if the series is valid and the value a finite number."""
        series = self.series(key)
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        if series is None or not math.isfinite(number):
            return None
        name, tags = series
        return Metric(seq, op, name, number, dict(tags))

    def series(self, key: SeriesKey) -> Series | None:
        """The normalized series of a raw key (tags sorted, values as strings), None if invalid."""
        try:
            series = self._series.get(key, _MISSING)
        except TypeError:  # a tag value that cannot be hashed (a list, a dict)
            return None
        if series is _MISSING:
            series = _validate_series(key, self._options.max_tags)
            if len(self._series) > _MAX_CACHE:
                self._series.clear()
            self._series[key] = series
        return series  # type: ignore[no-any-return]


def _validate_series(key: SeriesKey, max_tags: int) -> Series | None:
    """(name, sorted tags) if the hub would accept the series, else None."""
    raw_tags: tuple[tuple[Any, Any], ...]
    if isinstance(key, str):
        name, raw_tags = key, ()
    elif isinstance(key, tuple) and len(key) == 2:
        name, raw_tags = key
    else:
        return None
    if not isinstance(name, str) or not _METRIC.fullmatch(name) or len(raw_tags) > max_tags:
        return None
    tags: list[tuple[str, str]] = []
    for tag, value in raw_tags:
        text = value if isinstance(value, str) else str(value)
        if not isinstance(tag, str) or not _TAG_KEY.fullmatch(tag) or len(text) > _MAX_TAG_VALUE:
            return None
        tags.append((tag, text))
    return name, tuple(sorted(tags))
