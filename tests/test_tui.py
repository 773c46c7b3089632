"""`engine-hub tui` driven by Textual's pilot against real hubs on port 0."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

from textual.geometry import Region
from textual.widget import Widget

from hub.core.access import ApiToken, Role, digest, new_token
from hub.tui.app import HelpScreen, MonitorApp
from hub.tui.models import Link
from tests.conftest import WAIT, RunningHub, connect_engine, run_cli, running_hub, unique


def shown(widget: Widget) -> str:
    """What `widget` puts on the screen now, as plain text lines."""
    width, height = widget.outer_size
    strips = widget.render_lines(Region(0, 0, width, height))
    return "\n".join("".join(segment.text for segment in strip) for strip in strips)


def styles_of(widget: Widget, needle: str) -> set[str]:
    """The styles the segments holding `needle` are drawn with."""
    width, height = widget.outer_size
    found = set()
    for strip in widget.render_lines(Region(0, 0, width, height)):
        for segment in strip:
            if needle in segment.text:
                found.add(str(segment.style))
    return found


async def until(app: MonitorApp, predicate: Callable[[], bool]) -> None:
    """Wait (on the app's redraws, bounded) until `predicate` holds."""
    async with asyncio.timeout(WAIT):
        while not predicate():
            await app.next_update()


def url(running: RunningHub) -> str:
    return f"http://127.0.0.1:{running.port}"


async def test_follows_an_engine_live_with_status_signals_and_log(tmp_path: Path) -> None:
    """Status (health, next cycle, hours, strategies, last cycle, loop, positions, last error),
    a signal sent while the monitor watches, and a log line appear without pressing a key."""
    async with running_hub() as running:
        name = unique("fx")
        engine = await connect_engine(running, name)
        now = time.time()
        state = {
            "next_cycle_at": now + 165,
            "trading_hours_active": True,
            "trading_hours": "06:00-19:00 UTC",
            "active_strategies": ["mean_reversion", "breakout"],
            "strategies_total": 2,
            "last_cycle": {"ok": True, "duration": 12.3, "at": now - 5},
        }
        await engine.send(
            {
                "kind": "heartbeat",
                "ts": now,
                "status": "running",
                "loop_tick": 4200,
                "open_positions": 3,
                "last_error": "quote feed stale",
                "state": state,
            },
        )
        await engine.wait_acked()
        app = MonitorApp(url(running), engine=name, export_dir=tmp_path)
        async with app.run_test(size=(80, 24)):
            status = app.query_one("#status")
            await until(app, lambda: "4,200" in shown(status))
            text = shown(status)
            for expected in (
                "ok",
                "00:02:4",
                "active (06:00-19:00 UTC)",
                "2/2",
                "mean_reversion",
                "12.3s",
                "3",
                "quote feed stale",
            ):
                assert expected in text, (expected, text)
            assert app.monitor.link is Link.LIVE and "live" in shown(app.query_one("#top"))
            await engine.send(
                {
                    "kind": "event",
                    "ts": time.time(),
                    "type": "signal_event",
                    "payload": {
                        "symbol": "EURUSD",
                        "side": "long",
                        "price": 1.085,
                        "strategy": "mean_reversion",
                    },
                },
                {
                    "kind": "log",
                    "ts": time.time(),
                    "level": "WARNING",
                    "logger": "x",
                    "message": "spread wide",
                },
            )
            signals, log = app.query_one("#signals"), app.query_one("#log")
            await until(app, lambda: "EURUSD" in shown(signals) and "spread wide" in shown(log))
            assert "LONG" in shown(signals) and "1.085" in shown(signals)
        await engine.close()


async def test_engine_text_with_markup_and_escapes_stays_literal(tmp_path: Path) -> None:
    """A log line with `[bold red]` and an escape sequence, and a signal symbol with markup,
    are shown as typed (escape made visible), never styled by their own text."""
    async with running_hub() as running:
        name = unique("mk")
        engine = await connect_engine(running, name)
        await engine.send(
            {
                "kind": "log",
                "ts": time.time(),
                "level": "INFO",
                "logger": "x",
                "message": "[bold red]boom[/] \x1b[31mred",
            },
            {
                "kind": "event",
                "ts": time.time(),
                "type": "signal_event",
                "payload": {"symbol": "[reverse]X", "side": "[blink]buy", "strategy": "s"},
            },
        )
        await engine.wait_acked()
        app = MonitorApp(url(running), engine=name, export_dir=tmp_path)
        async with app.run_test(size=(120, 30)):
            log, signals = app.query_one("#log"), app.query_one("#signals")
            await until(app, lambda: "boom" in shown(log) and "X" in shown(signals))
            assert "[bold red]boom[/] \u27e8U+001B\u27e9[31mred" in shown(log)
            assert not any("bold" in s or "red" in s for s in styles_of(log, "boom"))
            assert "[reverse]X" in shown(signals)
            assert not any("reverse" in s for s in styles_of(signals, "[reverse]X"))
        await engine.close()


async def test_keys_export_help_switch_and_quit(tmp_path: Path) -> None:
    """E writes the picked engine's bundle and shows its path; F1 opens help and Esc closes it;
    N picks the next engine, whose new signals then arrive live; Q quits."""
    async with running_hub() as running:
        first, second = sorted((unique("ka"), unique("kb")))
        engines = [await connect_engine(running, n) for n in (first, second)]
        await engines[0].send(
            {"kind": "event", "ts": time.time(), "type": "cycle", "payload": {"n": 1}}
        )
        await engines[0].wait_acked()
        app = MonitorApp(url(running), engine=first, export_dir=tmp_path)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(app, lambda: first in shown(app.query_one("#status")))
            await pilot.press("e")
            await until(app, lambda: app.exported is not None)
            assert app.exported is not None and app.exported.parent == tmp_path
            bundle = json.loads(app.exported.read_bytes())
            assert bundle["engine"] == first and len(bundle["events"]) == 1
            message = "".join(line.strip() for line in shown(app.query_one("#message")).split("\n"))
            assert str(app.exported) in message
            await pilot.press("f1")
            assert isinstance(app.screen, HelpScreen)
            assert "incident bundle" in shown(app.screen.query_one("#help"))
            await pilot.press("escape")
            assert not isinstance(app.screen, HelpScreen)
            await pilot.press("n")
            await until(app, lambda: second in shown(app.query_one("#status")))
            assert app.monitor.selected == second
            await engines[1].send(
                {
                    "kind": "event",
                    "ts": time.time(),
                    "type": "signal_event",
                    "payload": {"symbol": "XAUUSD", "side": "buy", "price": 2045.3},
                }
            )
            await until(app, lambda: "XAUUSD" in shown(app.query_one("#signals")))
            await pilot.press("q")
        assert app.return_value == 0
        for engine in engines:
            await engine.close()


async def test_says_disconnected_and_reconnects_when_the_hub_restarts(tmp_path: Path) -> None:
    """Stopping the hub shows "disconnected"; a new hub on the same port is followed again, and
    a signal sent to it appears."""
    name = unique("rs")
    async with running_hub() as first:
        port = first.port
        app = MonitorApp(url(first), engine=name, export_dir=tmp_path)
        async with app.run_test(size=(80, 24)):
            await until(app, lambda: app.monitor.link is Link.LIVE)
            await first.server.stop()  # the rest of the context manager's exit is harmless
            await until(app, lambda: app.monitor.link is Link.DISCONNECTED)
            assert "disconnected" in shown(app.query_one("#top"))
            async with running_hub(port=port) as second:
                engine = await connect_engine(second, name)
                await until(app, lambda: app.monitor.link is Link.LIVE)
                await engine.send(
                    {
                        "kind": "event",
                        "ts": time.time(),
                        "type": "signal_event",
                        "payload": {"symbol": "GBPUSD", "side": "short", "price": 1.265},
                    },
                )
                await until(app, lambda: "GBPUSD" in shown(app.query_one("#signals")))
                await engine.close()


async def test_signs_in_with_an_api_token(tmp_path: Path) -> None:
    """Without a token a hub with sign-in on is reported with how to fix it; with one, it is live."""
    token = new_token("ehv_")
    async with running_hub(api_tokens=(ApiToken(digest(token), Role.VIEWER, "tui"),)) as running:
        refused = MonitorApp(url(running), export_dir=tmp_path)
        async with refused.run_test(size=(80, 24)):
            await until(refused, lambda: refused.monitor.link is Link.DISCONNECTED)
            assert "--token" in shown(refused.query_one("#top"))
        allowed = MonitorApp(url(running), token=token, export_dir=tmp_path)
        async with allowed.run_test(size=(80, 24)):
            await until(allowed, lambda: allowed.monitor.link is Link.LIVE)


async def test_cli_refuses_bad_arguments_without_a_traceback() -> None:
    """A URL that is not http(s), a bad engine name or a missing export dir: exit 2, one line."""
    for args in (
        ("--url", "ftp://x"),
        ("--engine", "no spaces"),
        ("--export-dir", "/nonexistent/x"),
    ):
        code, _, err = await run_cli("tui", *args)
        assert code == 2 and "engine-hub tui:" in err and "Traceback" not in err, err
