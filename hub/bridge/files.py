"""What the replaced systems wrote, parsed into typed values or a reason to skip (sans-I/O)."""

from __future__ import annotations

import gzip
import json
import math
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hub.core.messages import ENGINE_NAME_PATTERN

__all__ = [
    "MAX_FILE_BYTES",
    "EngineReport",
    "MetricValue",
    "RecordKind",
    "Skip",
    "decode",
    "engine_report",
    "metric_values",
    "record_key",
    "state_fields",
]

MAX_FILE_BYTES = 1024 * 1024  # the documents' files are a few KiB; anything bigger is not theirs
MAX_TAGS = 15

_ENGINE = re.compile(ENGINE_NAME_PATTERN)
_MODE = re.compile(r"[A-Za-z0-9_-]{1,16}")
_STATUSES = ("starting", "running", "stopped", "error")


class RecordKind(Enum):
    """A record directory of the third document's `telemetry_data/` layout."""

    SIGNAL = "signals"
    CYCLE = "cycles"
    ERROR = "errors"


_RECORD_NAME = {
    kind: re.compile(rf"{kind.value[:-1]}_[A-Za-z0-9_.-]{{1,96}}\.json(\.gz)?")
    for kind in RecordKind
}


@dataclass(frozen=True, slots=True)
class Skip:
    """Why a file was not forwarded (logged, throttled)."""

    reason: str


@dataclass(frozen=True, slots=True)
class EngineReport:
    """One `{name}_engine.json` of the first document."""

    name: str
    mode: str
    boot: tuple[Any, Any]  # (pid, started_at): a new pair is a new engine process
    beat: Any  # last_heartbeat: a new value is a new heartbeat
    status: str
    fields: dict[str, Any] = field(default_factory=dict)  # the heartbeat's fields


@dataclass(frozen=True, slots=True)
class MetricValue:
    """One entry of metrics.json: kind (counter, gauge, timer), name, value, tags, timestamp."""

    kind: str
    name: str
    value: float
    tags: dict[str, str]
    stamp: Any


def decode(data: bytes, gzipped: bool) -> Any:
    """The JSON in `data` (gunzipped first if `gzipped`), or a `Skip` saying what is wrong."""
    if len(data) > MAX_FILE_BYTES:
        return Skip(f"larger than {MAX_FILE_BYTES} bytes")
    if gzipped:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            return Skip("not a complete gzip file")
        if len(data) > MAX_FILE_BYTES:
            return Skip(f"larger than {MAX_FILE_BYTES} bytes once decompressed")
    if not data.strip():
        return Skip("empty (still being written?)")
    try:
        value = json.loads(data, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return Skip("not valid JSON (half-written or garbage)")
    return value if isinstance(value, dict) else Skip("not a JSON object")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if math.isfinite(value) and value == int(value) else None


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def engine_report(data: Mapping[str, Any], file_name: str) -> EngineReport | Skip:
    """A `{name}_engine.json` object as heartbeat fields; the name falls back to the file's."""
    name = data.get("name")
    if not isinstance(name, str) or not _ENGINE.fullmatch(name):
        name = file_name.removesuffix("_engine.json")
        if not _ENGINE.fullmatch(name):
            return Skip("no valid engine name (want [A-Za-z0-9_.-]{1,64})")
    mode = data.get("mode")
    status = data.get("status")
    if status not in _STATUSES:
        return Skip(f"status must be one of {', '.join(_STATUSES)}")
    fields: dict[str, Any] = {"status": status}
    for key in ("loop_tick", "universe_size", "open_positions"):
        if (number := _int(data.get(key))) is not None:
            fields[key] = number
    error = data.get("last_error")
    fields["last_error"] = None if error is None else str(error)[:4096]
    fields["engine_pid"] = _int(data.get("pid"))
    fields["engine_started_at"] = _text(data.get("started_at"))
    return EngineReport(
        name=name,
        mode=mode if isinstance(mode, str) and _MODE.fullmatch(mode) else "paper",
        boot=(fields["engine_pid"], fields["engine_started_at"]),
        beat=_text(data.get("last_heartbeat")),
        status=status,
        fields=fields,
    )


def _text(value: Any) -> Any:
    return value if isinstance(value, str | int | float) and not isinstance(value, bool) else None


def _tags(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or len(value) > MAX_TAGS:
        return {}
    return {str(k): str(v) for k, v in value.items()}


def metric_values(data: Mapping[str, Any]) -> list[MetricValue]:
    """Counters, gauges and timers (histograms too) of metrics.json; malformed entries are left out."""
    found: list[MetricValue] = []
    for section, kind in (
        ("counters", "counter"),
        ("gauges", "gauge"),
        ("timers", "timer"),
        ("histograms", "timer"),
    ):
        entries = data.get(section)
        if not isinstance(entries, Mapping):
            continue
        for key, entry in entries.items():
            if not isinstance(entry, Mapping):
                continue
            name = entry.get("name", key)
            value = _finite(entry.get("value"))
            if isinstance(name, str) and value is not None:
                found.append(
                    MetricValue(kind, name, value, _tags(entry.get("tags")), entry.get("timestamp"))
                )
    return found


def state_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """state.json as heartbeat fields: its keys go to `state`, `is_running` also sets the status."""
    fields: dict[str, Any] = {str(k): v for k, v in list(data.items())[:64] if k != "timestamp"}
    if data.get("is_running") is True:
        fields["status"] = "running"
    elif data.get("is_running") is False:
        fields["status"] = "stopped"
    return fields


def record_key(kind: RecordKind, file_name: str) -> str | None:
    """The record a file holds (`signal_x.json` and its rotated `signal_x.json.gz` are one), or None."""
    if not _RECORD_NAME[kind].fullmatch(file_name):
        return None
    return file_name.removesuffix(".gz")
