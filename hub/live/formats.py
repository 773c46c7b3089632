"""Values formatted by type for pages: fixed precision, durations with units, tags as chips, and
an engine's free-form state read as words (known keys) plus a tidy table (the rest)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup

__all__ = [
    "amount",
    "StateItem",
    "StateView",
    "chips",
    "duration",
    "fixed",
    "read_state",
    "schedule",
    "side",
    "visible",
    "timestamp",
    "without",
]

# Characters that would hide or reorder engine text: C0 controls but tab and newline (HTML shows
# those as spaces), DEL, C1 controls, the bidi marks, embeddings, overrides and isolates.
_INVISIBLE = (
    [c for c in range(0x20) if c not in (0x09, 0x0A)]
    + list(range(0x7F, 0xA0))
    + [0x061C, 0x200E, 0x200F]
    + list(range(0x202A, 0x202F))
    + list(range(0x2066, 0x206A))
)
_SHOWN = {c: f"\u27e8U+{c:04X}\u27e9" for c in _INVISIBLE}  # e.g. ⟨U+202E⟩


def visible(text: str) -> str:
    """`text` with control and bidi-override characters replaced by a visible ⟨U+XXXX⟩."""
    return text.translate(_SHOWN)


_MAX_CHIPS = 12
_MAX_CHIP = 80
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
_TIME_KEY = re.compile(r"(_at|_time|_ts|timestamp)$")
# Unix seconds between 2001 and 2096: anything else under a time-like key stays a number.
_EPOCH = (1e9, 4e9)


def _finite(value: Any) -> float | None:
    """`value` as a finite float if it is a real number (not a bool, not a numeric string)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _shown(value: Any, limit: int = _MAX_CHIP) -> str:
    """Any value as short plain text, control and bidi characters made visible."""
    if isinstance(value, float):
        text = f"{value:,.2f}" if abs(value) >= 1000 else f"{value:.4g}"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    else:
        text = str(value)
    text = visible(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


_BUY = frozenset(("long", "buy", "BUY", "LONG", "Buy", "Long"))
_SELL = frozenset(("short", "sell", "SELL", "SHORT", "Sell", "Short"))


def side(value: Any) -> str:
    """A trade side as our class word: buy, sell or other (engine text never becomes a class)."""
    if isinstance(value, str):
        return "buy" if value in _BUY else "sell" if value in _SELL else "other"
    return "other"


def fixed(value: Any, digits: int = 2) -> str:
    """A number with thousands separators and exactly `digits` decimals (a column's precision)."""
    number = _finite(value)
    if number is None:
        return "" if value is None else _shown(value)
    return f"{number:,.{digits}f}"


def amount(value: Any, digits: int = 2) -> str:
    """A quantity: whole numbers as 1,234, others with up to `digits` decimals."""
    number = _finite(value)
    if number is None:
        return "" if value is None else _shown(value)
    if number.is_integer() and abs(number) < 1e15:
        return f"{int(number):,}"
    return f"{number:,.{digits}f}".rstrip("0").rstrip(".")


def duration(value: Any) -> str:
    """Seconds with a unit that fits: 850 µs, 12.3 ms, 1.24 s, 4m 05s, 2h 03m, 3d 4h."""
    seconds = _finite(value)
    if seconds is None:
        return "" if value is None else _shown(value)
    sign, size = ("-" if seconds < 0 else ""), abs(seconds)
    if size < 1e-3:
        text = f"{size * 1e6:.0f} µs"
    elif size < 1:
        text = f"{size * 1e3:.3g} ms"
    elif size < 60:
        text = f"{size:.3g} s"
    else:
        whole = int(size)
        days, hours, minutes = whole // 86400, whole % 86400 // 3600, whole % 3600 // 60
        text = (
            f"{days}d {hours}h"
            if days
            else f"{hours}h {minutes:02d}m"
            if hours
            else f"{minutes}m {whole % 60:02d}s"
        )
    return sign + text


def chips(tags: Any, limit: int = _MAX_CHIPS) -> Markup:
    """A mapping as key=value chips (one level of nesting flattened to a.b=value), escaped."""
    if not isinstance(tags, Mapping):
        return Markup("") if tags is None else Markup("<bdi>{}</bdi>").format(_shown(tags))
    pairs: list[tuple[str, Any]] = []
    for key, value in tags.items():
        if isinstance(value, Mapping):
            pairs.extend((f"{key}.{inner}", v) for inner, v in value.items())
        else:
            pairs.append((str(key), value))
    shown = [
        Markup('<span class="chip"><b>{}</b>=<bdi>{}</bdi></span>').format(_shown(k, 32), _shown(v))
        for k, v in pairs[:limit]
    ]
    if len(pairs) > limit:
        shown.append(Markup('<span class="chip more">+{}</span>').format(len(pairs) - limit))
    return Markup(" ").join(shown)


def without(mapping: Any, keys: list[str]) -> Any:
    """`mapping` without `keys` (what a section's columns already show)."""
    if not isinstance(mapping, Mapping):
        return mapping
    return {k: v for k, v in mapping.items() if k not in keys}


def timestamp(value: Any, key: str = "") -> float | None:
    """Unix seconds if `value` is a time: an ISO-8601 string, or Unix seconds under a time key."""
    if isinstance(value, str) and 10 <= len(value) <= 40 and _ISO.match(value):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    number = _finite(value)
    if number is not None and _TIME_KEY.search(key) and _EPOCH[0] <= number <= _EPOCH[1]:
        return number
    return None


@dataclass(frozen=True, slots=True)
class StateItem:
    """One state entry: a label, and the value as a time (`ts`), words, or raw value."""

    label: str
    value: Any
    ts: float | None = None
    words: str = ""


@dataclass(frozen=True, slots=True)
class StateView:
    """An engine's state: known keys said in words, the rest as (key, item) rows."""

    known: list[StateItem]
    rest: list[StateItem]


# Known keys (what the replaced systems' engines send), in the order they are shown.
_NEXT_CYCLE = ("next_cycle_at", "next_cycle_time", "next_cycle")
_LAST_CYCLE = ("last_cycle_at", "last_cycle_time", "last_cycle")
_STARTED = ("bot_start_time", "started_at")
_HOURS = ("trading_hours_active",)
_HOURS_TEXT = ("trading_hours",)
_STRATEGIES = ("strategies", "active_strategies", "strategies_active", "strategies.active")
_STRATEGIES_TOTAL = ("strategies_total",)
_RUNNING = ("is_running",)


def _in(seconds: float) -> str:
    if abs(seconds) < 1:
        return "due now"
    return f"in {duration(seconds)}" if seconds > 0 else f"{duration(-seconds)} ago"


def _cycle_result(result: Mapping[str, Any], now: float) -> StateItem:
    """`{"ok", "duration", "at", "error"}` in words: "ok, 12.3 s, 4m 05s ago"."""
    ok = result.get("ok")
    parts = ["ok" if ok is True else "failed" if ok is False else _shown(ok, 20)]
    if (took := _finite(result.get("duration"))) is not None:
        parts.append(duration(took))
    if (at := timestamp(result.get("at"), "_at")) is not None:
        parts.append(_in(at - now))
    words = ", ".join(parts)
    if result.get("error"):
        words += f": {_shown(result['error'], 120)}"
    return StateItem("last cycle", result, None, words)


def read_state(state: Mapping[str, Any], now: float) -> StateView:
    """Known keys (next cycle, trading hours, strategies, ...) as words; the rest typed."""
    known: list[StateItem] = []
    used: set[str] = set()

    def first(keys: tuple[str, ...]) -> tuple[str, Any] | None:
        for key in keys:
            if key in state:
                used.add(key)
                return key, state[key]
        return None

    for label, keys in (("next cycle", _NEXT_CYCLE), ("last cycle", _LAST_CYCLE)):
        if (found := first(keys)) is not None:
            if isinstance(found[1], Mapping):  # a result: set_last_cycle / record_cycle
                known.append(_cycle_result(found[1], now))
                continue
            ts = timestamp(found[1], "_at")
            words = _in(ts - now) if ts is not None else ""
            known.append(StateItem(label, found[1], ts, words))
    if (found := first(_STARTED)) is not None:
        known.append(StateItem("started", found[1], timestamp(found[1], "_at")))
    if (found := first(_HOURS)) is not None:
        value = found[1]
        words = "open" if value is True else "closed" if value is False else _shown(value)
        if (text := first(_HOURS_TEXT)) is not None:
            words += f" ({_shown(text[1], 80)})"
        known.append(StateItem("trading hours", value, None, words))
    elif (found := first(_HOURS_TEXT)) is not None:
        known.append(StateItem("trading hours", found[1]))
    if (found := first(_STRATEGIES)) is not None:
        value = found[1]
        if isinstance(value, (list, tuple)):
            words = ", ".join(_shown(v, 40) for v in value[:12]) or "none"
            words += f" (+{len(value) - 12})" if len(value) > 12 else ""
        elif isinstance(value, Mapping):
            words = ", ".join(_shown(k, 40) for k in list(value)[:12]) or "none"
        else:
            words = _shown(value, 80)
        count = len(value) if isinstance(value, (list, tuple, Mapping)) else _finite(value)
        if (total := first(_STRATEGIES_TOTAL)) is not None and count is not None:
            words = f"{amount(count)}/{_shown(total[1], 20)}" + (
                f": {words}" if isinstance(value, (list, tuple, Mapping)) else ""
            )
        known.append(StateItem("strategies", value, None, words))
    if (found := first(_RUNNING)) is not None:
        value = found[1]
        words = "yes" if value is True else "no" if value is False else _shown(value)
        known.append(StateItem("running", value, None, words))
    rest = [
        StateItem(key, value, timestamp(value, key))
        for key, value in sorted(state.items())
        if key not in used
    ]
    return StateView(known, rest)


_SCHEDULE_KEYS = (*_NEXT_CYCLE, *_HOURS, *_HOURS_TEXT)


def schedule(state: Mapping[str, Any], now: float) -> list[StateItem]:
    """Just the next cycle (a countdown) and the trading hours, for an engine's card."""
    return read_state({k: state[k] for k in _SCHEDULE_KEYS if k in state}, now).known
