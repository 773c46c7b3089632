"""The monitor's panels as Rich `Text`: engine strings are only ever plain text, never markup."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from rich.text import Text

from hub.core.engines import Health
from hub.tui.models import EngineView, Link, LogLine, Monitor, Signal, seconds

__all__ = [
    "HEALTH_STYLES",
    "clean",
    "engine_row",
    "link_text",
    "log_text",
    "signal_row",
    "status_text",
    "status_title",
]

# The dashboard's words, colours and shapes (static/css/hub.css, hub/live/cards.py).
HEALTH_STYLES: dict[Health, tuple[str, str]] = {
    Health.OK: ("\u25cf", "#3fb950"),
    Health.LATE: ("\u25d1", "#d29922"),
    Health.STALE: ("\u25cb", "#f0883e"),
    Health.STALLED: ("\u2016", "#bc8cff"),
    Health.OFFLINE: ("\u2715", "#ff7b72"),
    Health.STOPPED: ("\u25a0", "#6e7681"),
    Health.ERROR: ("\u25b2", "bold #f85149"),
}
_LEVELS = {
    "DEBUG": "dim",
    "INFO": "",
    "WARNING": "#d29922",
    "WARN": "#d29922",
    "ERROR": "#f85149",
    "CRITICAL": "bold #f85149",
    "FATAL": "bold #f85149",
}
_BUY = frozenset(("long", "buy"))
_SELL = frozenset(("short", "sell"))
# Control characters (an escape sequence would drive the terminal) and bidi overrides (they
# reorder what is shown) become a visible ⟨U+XXXX⟩; a tab becomes a space.
_INVISIBLE = (
    [c for c in range(0x20) if c != 0x09]
    + list(range(0x7F, 0xA0))
    + [0x061C, 0x200E, 0x200F]
    + list(range(0x202A, 0x202F))
    + list(range(0x2066, 0x206A))
)
_SHOWN: dict[int, str] = {c: f"\u27e8U+{c:04X}\u27e9" for c in _INVISIBLE}
_SHOWN[0x09] = " "


def clean(value: Any, limit: int = 200) -> str:
    """Engine text made safe to show: control characters visible, at most `limit` characters."""
    text = value if isinstance(value, str) else "" if value is None else str(value)
    text = text[: limit * 2].translate(_SHOWN)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def clock(ts: float | None, with_seconds: bool = True) -> str:
    """A local wall-clock time, or a dash."""
    if ts is None:
        return "\u2014"
    return time.strftime("%H:%M:%S" if with_seconds else "%H:%M", time.localtime(ts))


def span(total: float | None) -> str:
    """Seconds as 2d 14h 35m, 3h 05m, 4m 05s, 12.3s."""
    if total is None:
        return "\u2014"
    if total < 60:
        return f"{total:.1f}s"
    whole = int(total)
    days, hours, minutes = whole // 86400, whole % 86400 // 3600, whole % 3600 // 60
    if days:
        return f"{days}d {hours}h {minutes:02d}m"
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {whole % 60:02d}s"


def countdown(until: float, now: float) -> str:
    """HH:MM:SS to a time ahead; "due" once it passed."""
    left = until - now
    if left <= 0:
        return f"due ({span(-left)} late)" if left < -1 else "due"
    whole = int(left)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def health_text(health: Health) -> Text:
    """The health's icon and word in its colour."""
    icon, style = HEALTH_STYLES[health]
    return Text(f"{icon} {health.value}", style=style)


def link_text(monitor: Monitor, url: str) -> Text:
    """The header line: the hub, the link's state, and what the monitor follows."""
    style = {Link.LIVE: "#3fb950", Link.CONNECTING: "#d29922", Link.DISCONNECTED: "bold #f85149"}
    line = Text()
    line.append(f"\u25cf {monitor.link.value}", style=style[monitor.link])
    if monitor.link_detail:
        line.append(f" ({clean(monitor.link_detail, 120)})", style="dim")
    line.append(f"  {clean(url, 80)}", style="dim")
    return line


def engine_row(engine: EngineView | None, name: str) -> tuple[Text, Text]:
    """The engine list's cells: name (with its mode) and health."""
    label = Text(clean(name, 40))
    if engine is None:
        return label, Text("unknown", style="dim")
    if engine.mode:
        label.append(
            f" {clean(engine.mode, 8)}",
            style="bold #f85149" if engine.mode.lower() == "live" else "dim",
        )
    return label, health_text(engine.health)


def _state(state: Mapping[str, Any], *keys: str) -> Any:
    return next((state[k] for k in keys if k in state), None)


def _strategies(state: Mapping[str, Any]) -> Text:
    active = _state(
        state, "active_strategies", "strategies", "strategies_active", "strategies.active"
    )
    total = state.get("strategies_total")
    if active is None:
        return Text("\u2014", style="dim")
    names: list[str] = []
    if isinstance(active, (list, tuple)):
        count: Any = len(active)
        names = [clean(n, 30) for n in active[:8]]
    elif isinstance(active, Mapping):
        count, names = len(active), [clean(n, 30) for n in list(active)[:8]]
    else:
        count = clean(active, 12)
    text = Text(f"{count}/{clean(total, 12)}" if total is not None else f"{count}")
    if names:
        text.append(f"  {', '.join(names)}", style="dim")
    return text


def _hours(state: Mapping[str, Any]) -> Text:
    active, window = state.get("trading_hours_active"), state.get("trading_hours")
    if active is None and window is None:
        return Text("\u2014", style="dim")
    text = Text()
    if active is True:
        text.append("\u2714 active", style="#3fb950")
    elif active is False:
        text.append("\u2716 closed", style="#d29922")
    elif active is not None:
        text.append(clean(active, 20))
    if window is not None:
        text.append(f" ({clean(window, 60)})")
    return text


def _cycle(monitor: Monitor, engine: EngineView, now: float) -> Text:
    result = engine.state.get("last_cycle")
    if isinstance(result, Mapping):
        ok: Any = result.get("ok")
        took = (
            seconds(result.get("duration"))
            if isinstance(result.get("duration"), (int, float))
            else None
        )
        at = seconds(result.get("at"))
        error = result.get("error")
    elif (seen := monitor.last_cycle(engine.name)) is not None:
        at, ok, took = seen
        error = None
    else:
        at = seconds(result) if result is not None else None
        if at is None:
            return Text("\u2014", style="dim")
        return Text(f"at {clock(at)} ({span(now - at)} ago)")
    text = Text()
    if ok is True:
        text.append("\u2714 ok", style="#3fb950")
    elif ok is False:
        text.append("\u2716 failed", style="bold #f85149")
    else:
        text.append(clean(ok, 20))
    if took is not None:
        text.append(f" ({span(took)})")
    if at is not None:
        text.append(f"  {span(max(0.0, now - at))} ago", style="dim")
    if error:
        text.append(f"  {clean(error, 120)}", style="#f85149")
    return text


def status_title(monitor: Monitor) -> Text:
    """The status panel's title: the picked engine, its mode, health and reported status."""
    engine = monitor.engine
    if engine is None:
        return Text("Status")
    head = Text(clean(engine.name, 64), style="bold")
    if engine.mode:
        live = engine.mode.lower() == "live"
        head.append(
            f" {clean(engine.mode.upper(), 8)}", style="bold #f85149" if live else "#58a6ff"
        )
    head.append(" ")
    head.append_text(health_text(engine.health))
    head.append(f" ({clean(engine.status, 16)})", style="dim")
    return head


def status_text(monitor: Monitor, now: float) -> Text:
    """The status panel of the picked engine (the third document's "Bot Status", and more)."""
    engine = monitor.engine
    if engine is None:
        if monitor.selected:
            return Text(
                f"The hub does not know engine {clean(monitor.selected, 64)} (yet).", style="dim"
            )
        return Text("No engine has reported to this hub yet.", style="dim")
    state = engine.state
    rows: list[tuple[str, Text]] = []
    rows.append(("Uptime", Text(span(engine.uptime_at(now)))))
    next_at = seconds(_state(state, "next_cycle_at", "next_cycle_time", "next_cycle"))
    rows.append(
        ("Next cycle", Text(countdown(next_at, now)) if next_at else Text("\u2014", style="dim"))
    )
    rows.append(("Trading hours", _hours(state)))
    rows.append(("Strategies", _strategies(state)))
    rows.append(("Last cycle", _cycle(monitor, engine, now)))
    loop = Text("\u2014" if engine.loop_tick is None else f"{engine.loop_tick:,}")
    if engine.loop_rate is not None:
        loop.append(f" {engine.loop_rate:.1f}/s", style="dim")
    positions = "\u2014" if engine.open_positions is None else f"{engine.open_positions:,}"
    loop.append("   positions ", style="bold dim")
    loop.append(positions)
    rows.append(("Loop tick", loop))
    if engine.last_error:
        error = Text(clean(engine.last_error, 300), style="#f85149")
        if (at := monitor.error_at(engine.name)) is not None:
            error.append(f"  {span(max(0.0, now - at))} ago", style="dim")
    else:
        error = Text("none", style="dim")
    rows.append(("Last error", error))
    out = Text(no_wrap=True, overflow="ellipsis")
    for index, (label, value) in enumerate(rows):
        if index:
            out.append("\n")
        out.append(f"{label:<14}", style="bold dim")
        out.append_text(value)
    return out


def signal_row(signal: Signal) -> tuple[Text, ...]:
    """Time, symbol, side/type, entry price, strategy, status."""
    side = signal.side.lower()
    style = "#3fb950" if side in _BUY else "#f85149" if side in _SELL else ""
    price = "" if signal.price is None else f"{signal.price:,.4f}".rstrip("0").rstrip(".")
    return (
        Text(clock(signal.ts)),
        Text(clean(signal.symbol, 20), style="bold"),
        Text(clean(signal.side.upper(), 8), style=style),
        Text(price, justify="right"),
        Text(clean(signal.strategy, 24)),
        Text(clean(signal.status, 16), style="dim"),
    )


def log_text(line: LogLine) -> Text:
    """`[14:35:15] LEVEL message`, the level in its colour, the message plain."""
    level = line.level.upper()
    style = _LEVELS.get(level, "")
    text = Text(f"[{clock(line.ts)}] ", style="dim")
    text.append(f"{clean(level, 8):<7} ", style=style or "")
    text.append(
        clean(line.message, 2000), style=style if level in ("ERROR", "CRITICAL", "FATAL") else ""
    )
    return text
