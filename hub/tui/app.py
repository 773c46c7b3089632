"""`engine-hub tui`: the Textual app. Live from the hub's SSE stream; panels from hub/tui/panels.py."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, RichLog, Static
from textual.widgets.data_table import ColumnKey

from hub.tui.feeds import FeedError, HubFeed
from hub.tui.models import MAX_LOGS, MAX_SIGNALS, Link, Monitor
from hub.tui.panels import (
    clean,
    engine_row,
    link_text,
    log_text,
    signal_row,
    status_text,
    status_title,
)

__all__ = ["MonitorApp"]

log = logging.getLogger(__name__)

LOG_LINES = 200  # lines of the picked engine's log asked for per pull
PULL_GAP = 0.5  # seconds between two pulls at most: a burst of events costs one pull
HEARTBEAT_PULL = 2.0  # loop ticks and state travel in heartbeats, which the stream does not carry
REDRAW_GAP = 0.4  # seconds: a burst of stream events between two redraws costs one redraw
SIGNALS_GAP = 0.5  # seconds between two rebuilds of the signal table (the costliest panel)
SIGNAL_ROWS = 30  # rows the table shows: sizing its columns costs per row on every rebuild
BACKOFF = (0.2, 5.0)  # reconnect delay: first, most
EXPORT_WINDOW = 3600.0  # `E` exports the last hour, like `engine-hub export`
_FILE_SAFE = re.compile(r"[^A-Za-z0-9_.-]")

HELP = """\
Engine Hub terminal monitor

  Q, Esc      quit
  R           refresh now (engines, log, signals)
  E           export the picked engine's incident bundle (last hour) to a JSON file
  N / P       next / previous engine (or pick one in the engine list)
  1 .. 9      pick the engine at that place in the list
  Tab         move between the engine list, the signals and the log
  Up / Down   scroll the focused table or log (PgUp / PgDn, Home / End too)
  F1          this help (Esc or F1 closes it)

Signals, errors, cycles and health changes arrive live over the hub's stream
(/api/telemetry/stream). Heartbeat fields and the log are read after every change
and every 2 s. When the hub goes away the monitor says "disconnected" and
reconnects by itself.
"""


class HelpScreen(ModalScreen[None]):
    """The key list."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,f1,q", "dismiss_help", "Close"),
    ]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Static { width: auto; max-width: 90%; height: auto; border: round $accent; padding: 0 2; background: $panel; }
    """

    def compose(self) -> ComposeResult:
        yield Static(Text(HELP), id="help")

    def action_dismiss_help(self) -> None:
        """Close the help."""
        self.dismiss(None)


class MonitorApp(App[int]):
    """Follows one hub: an engine list, the picked engine's status, signals and log."""

    TITLE = "Engine Hub monitor"
    ENABLE_COMMAND_PALETTE = False  # every action has its key (F1 lists them)
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (140, "-wide")]  # side by side from 140 columns
    CSS = """
    #top { height: 1; padding: 0 1; background: $panel; }
    #upper { height: auto; }
    #engines { width: 28; height: 100%; border: round $primary; }
    #status { width: 1fr; height: auto; border: round $primary; padding: 0 1; }
    #lower { height: 1fr; }
    #signals { height: 1fr; min-height: 4; border: round $primary; }
    #log { height: 1fr; min-height: 4; border: round $primary; }
    .-wide #lower { layout: horizontal; }
    .-wide #signals { width: 1fr; height: 100%; }
    .-wide #log { width: 1fr; height: 100%; }
    .-wide #engines { width: 36; }
    #message { height: auto; max-height: 4; padding: 0 1; }
    DataTable:focus, RichLog:focus { border: round $accent; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit_monitor", "Quit"),
        Binding("escape", "quit_monitor", "Quit", show=False),
        Binding("r", "refresh_now", "Refresh"),
        Binding("e", "export", "Export"),
        Binding("n", "step(1)", "Next engine"),
        Binding("p", "step(-1)", "Prev engine", show=False),
        Binding("f1", "help", "Help"),
        *(Binding(str(i), f"pick({i})", show=False) for i in range(1, 10)),
    ]

    def __init__(
        self,
        url: str,
        *,
        engine: str | None = None,
        token: str = "",
        export_dir: Path | None = None,
        feed: HubFeed | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.url = url
        self.monitor = Monitor(engine)
        self.feed = feed or HubFeed(url, token)
        self.export_dir = export_dir or Path.cwd()
        self.clock = clock
        self.exported: Path | None = None  # the last export's file
        self._pull_wanted = asyncio.Event()
        self._updated = asyncio.Event()
        self._redraw_due = False
        self._dirty_engines = self._dirty_signals = True
        self._snapshots: set[str] = set()  # engines whose recent signals were read on this link
        self._shown_log: tuple[str | None, int] = (None, -1)  # engine, newest line id shown
        # What is on screen already: redraws skip what did not change.
        self._listed: list[str] = []
        self._engine_columns: list[ColumnKey] = []
        self._shown_top = self._shown_status = Text()
        self._shown_title: Text | None = None
        self._signals_drawn = -SIGNALS_GAP
        self._streaming: str | None = None  # the engine whose events are streamed
        self._drawn_at = 0.0

    # Layout.

    def compose(self) -> ComposeResult:
        yield Static(id="top")
        with Horizontal(id="upper"):
            yield DataTable(id="engines", cursor_type="row", zebra_stripes=False)
            yield Static(id="status")
        with Vertical(id="lower"):
            yield DataTable(id="signals", cursor_type="row")
            yield RichLog(id="log", max_lines=MAX_LOGS, wrap=False, markup=False, highlight=False)
        yield Static(id="message")
        yield Footer()

    def on_mount(self) -> None:
        """Name the panels, then start following the hub."""
        engines = self.query_one("#engines", DataTable)
        self._engine_columns = engines.add_columns("engine", "health")
        engines.border_title = "Engines"
        signals = self.query_one("#signals", DataTable)
        signals.add_columns("time", "symbol", "side", "entry", "strategy", "status")
        signals.border_title = "Recent signals"
        self.query_one("#log", RichLog).border_title = "Live log"
        self.query_one("#status", Static).border_title = "Status"
        engines.focus()
        self.run_worker(self._follow(), name="stream", exclusive=True, group="stream")
        self._ensure_engine_stream()
        self.run_worker(self._puller(), name="pull", group="pull")
        self.set_interval(HEARTBEAT_PULL, self._pull_wanted.set)
        self.set_interval(1.0, self._tick)  # countdowns and uptime move every second
        self._redraw()

    # The stream.

    async def _follow(self) -> None:
        """Follow health changes of every engine; this link is the one the top line reports.

        On a drop it says so and reconnects with backoff; each new connection starts afresh.
        """
        delay = BACKOFF[0]
        while True:
            try:
                async with self.feed.stream(event_type="hub.health") as messages:
                    self.monitor.link, self.monitor.link_detail = Link.LIVE, ""
                    self.monitor.forget_history()  # a restarted hub numbers its events afresh
                    self._snapshots.clear()
                    self._shown_log = (None, -1)
                    self._dirty_signals = True
                    self._pull_wanted.set()
                    self._changed()
                    delay = BACKOFF[0]
                    async for message in messages:
                        self._stream_message(message.event, message.data)
                detail = "the hub closed the stream"
            except FeedError as exc:
                detail = str(exc)
            self.monitor.link, self.monitor.link_detail = Link.DISCONNECTED, f"{detail}; retrying"
            self._changed()
            await asyncio.sleep(delay)  # backoff before reconnecting, not synchronization
            delay = min(delay * 2, BACKOFF[1])

    async def _follow_engine(self, name: str) -> None:
        """Follow every event of the picked engine (only its: the others' cost nothing here)."""
        delay = BACKOFF[0]
        while True:
            try:
                async with self.feed.stream(engine=name) as messages:
                    # What happened while this stream was down comes from a fresh snapshot.
                    self._snapshots.discard(name)
                    self._pull_wanted.set()
                    delay = BACKOFF[0]
                    async for message in messages:
                        self._stream_message(message.event, message.data)
            except FeedError:
                pass  # the health stream tells the user; this one just tries again
            await asyncio.sleep(delay)  # backoff before reconnecting, not synchronization
            delay = min(delay * 2, BACKOFF[1])

    def _ensure_engine_stream(self) -> None:
        """Stream the picked engine's events; a new pick replaces the previous engine's stream."""
        name = self.monitor.selected
        if name is not None and name != self._streaming:
            self._streaming = name
            self.run_worker(
                self._follow_engine(name), name="engine", group="engine", exclusive=True
            )

    def _stream_message(self, event: str, data: str) -> None:
        try:
            body: Any = json.loads(data)
        except ValueError:
            log.warning("ignored a stream message that is not JSON: %r", data[:200])
            return
        if not isinstance(body, dict):
            return
        if event == "hub.health":
            self.monitor.set_health(body)
            self._dirty_engines = True
            self._changed()
            return
        if event.startswith("hub."):
            return  # hub.reset, hub.closed: the next connection starts afresh
        engine = self.monitor.add_event(body)
        if engine == self.monitor.selected:
            self._dirty_signals = True
            self._pull_wanted.set()  # its log and heartbeat fields likely moved too
            self._changed()

    # Pulls: the engine list, the picked engine's log and its snapshot of recent signals.

    async def _puller(self) -> None:
        while True:
            await self._pull_wanted.wait()
            self._pull_wanted.clear()
            if self.monitor.link is Link.LIVE:
                try:
                    await self._pull()
                except FeedError as exc:
                    self._say(Text(clean(str(exc), 300), style="#f85149"))
            await asyncio.sleep(PULL_GAP)  # rate limit: later wishes wait and merge into one pull

    async def _pull(self) -> None:
        self.monitor.set_engines(await self.feed.engines(), self.clock())
        self._ensure_engine_stream()  # the first pick may come with the first engine list
        self._dirty_engines = True
        name = self.monitor.selected
        if name is not None and name in self.monitor.engines:
            if name not in self._snapshots:
                self._snapshots.add(name)
                for event_type, limit in (
                    ("signal_event", MAX_SIGNALS),
                    ("cycle", 1),
                    ("error", 1),
                ):
                    for event in await self.feed.events(event_type, name, limit):
                        if isinstance(event, dict):
                            self.monitor.add_event(event)
                self._dirty_signals = True
            # A full tail the first time, then only what can be new since the last read.
            lines = LOG_LINES if self.monitor.log_engine != name else LOG_LINES // 4
            tail = await self.feed.logs(name, lines)
            if len(tail) == lines < LOG_LINES and self.monitor.all_new(tail):
                tail = await self.feed.logs(name, LOG_LINES)  # more came than the short read holds
            self.monitor.set_logs(name, tail)
        self._changed()

    # Redraws.

    def _changed(self) -> None:
        """Redraw soon: changes within REDRAW_GAP are drawn once."""
        if not self._redraw_due:
            self._redraw_due = True
            self.set_timer(REDRAW_GAP, self._redraw)

    def _redraw(self) -> None:
        self._redraw_due = False
        self._drawn_at = self.clock()
        monitor = self.monitor
        top = Text.assemble(
            Text("Engine Hub monitor  ", style="bold"), link_text(monitor, self.url)
        )
        if top != self._shown_top:
            self._shown_top = top
            self.query_one("#top", Static).update(top, layout=False)
        if self._dirty_engines:
            self._dirty_engines = False
            self._draw_engines()
        self._redraw_status()
        now = self.clock()
        if self._dirty_signals and now - self._signals_drawn < SIGNALS_GAP:
            self.set_timer(SIGNALS_GAP, self._changed)  # a burst: draw its end, not every step
        elif self._dirty_signals:
            self._dirty_signals = False
            self._signals_drawn = now
            table = self.query_one("#signals", DataTable)
            table.clear()
            rows = monitor.signals.get(monitor.selected or "", ())
            for signal in itertools.islice(rows, SIGNAL_ROWS):
                table.add_row(*signal_row(signal))
        self._draw_log()
        updated, self._updated = self._updated, asyncio.Event()
        updated.set()

    def _draw_engines(self) -> None:
        table = self.query_one("#engines", DataTable)
        names = self.monitor.names()
        if names != self._listed:  # engines came or went: rebuild (rare)
            self._listed = names
            table.clear()
            for name in names:
                table.add_row(*engine_row(self.monitor.engines.get(name), name), key=name)
        else:  # the same engines: change the cells that changed only
            for name in names:
                cells = engine_row(self.monitor.engines.get(name), name)
                for column, cell in zip(self._engine_columns, cells, strict=True):
                    if table.get_cell(name, column) != cell:
                        table.update_cell(name, column, cell)
        if self.monitor.selected in names:
            place = names.index(self.monitor.selected)
            if table.cursor_row != place:
                table.move_cursor(row=place)

    def _tick(self) -> None:
        if self.clock() - self._drawn_at >= 0.9:  # a busy engine's redraws did it already
            self._redraw_status()

    def _redraw_status(self) -> None:
        status = self.query_one("#status", Static)
        title = status_title(self.monitor)
        if title != self._shown_title:
            self._shown_title = status.border_title = title
        body = status_text(self.monitor, self.clock())
        if body != self._shown_status:
            # The panel's height changes only with its number of lines: otherwise no re-layout.
            relayout = body.plain.count("\n") != self._shown_status.plain.count("\n")
            self._shown_status = body
            status.update(body, layout=relayout)

    def _draw_log(self) -> None:
        view = self.query_one("#log", RichLog)
        lines = self.monitor.logs
        engine, shown = self._shown_log
        if engine != self.monitor.selected:
            view.clear()
            shown = -1
        for line in lines:
            if line.id > shown:
                view.write(log_text(line))
        self._shown_log = (self.monitor.selected, lines[-1].id if lines else shown)

    async def next_update(self) -> None:
        """Wait for the next redraw (tests and benchmarks wait on this, never on time)."""
        await self._updated.wait()

    def _say(self, message: Text) -> None:
        self.query_one("#message", Static).update(message)

    # Picking engines.

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """Moving the cursor in the engine list picks that engine."""
        # Rebuilding the list moves the cursor through row 0 first: only the cursor's current
        # row picks, or a redraw would pick another engine and back (and pull each time).
        table = event.data_table
        if table.id == "engines" and event.cursor_row == table.cursor_row and event.row_key.value:
            self._pick(str(event.row_key.value))

    def _pick(self, name: str) -> None:
        if self.monitor.pick(name):
            self._ensure_engine_stream()
            self._dirty_signals = self._dirty_engines = True
            self._pull_wanted.set()
            self._changed()

    def action_step(self, offset: int) -> None:
        """Next or previous engine."""
        before = self.monitor.selected
        after = self.monitor.step(offset)
        if after is not None and after != before:
            self.monitor.selected = before
            self._pick(after)

    def action_pick(self, place: int) -> None:
        """The engine at `place` (1-based) in the list."""
        names = self.monitor.names()
        if 0 < place <= len(names):
            self._pick(names[place - 1])

    # Keys.

    def action_quit_monitor(self) -> None:
        """Leave the monitor."""
        self.exit(0)

    def action_refresh_now(self) -> None:
        """Read everything again now."""
        self._snapshots.discard(self.monitor.selected or "")
        self._pull_wanted.set()
        self._say(Text("refreshing\u2026", style="dim"))

    def action_help(self) -> None:
        """Show the keys."""
        self.push_screen(HelpScreen())

    def action_export(self) -> None:
        """Write the picked engine's incident bundle (last hour) to a file; show its path."""
        name = self.monitor.selected
        if name is None:
            self._say(Text("no engine to export yet", style="#d29922"))
            return
        self._say(Text(f"exporting {clean(name, 64)}\u2026", style="dim"))
        self.run_worker(self._export(name), group="export", exclusive=True)

    async def _export(self, name: str) -> None:
        now = self.clock()
        try:
            bundle = await self.feed.export(name, now - EXPORT_WINDOW, now)
        except FeedError as exc:
            self._say(Text(f"export failed: {clean(str(exc), 300)}", style="#f85149"))
            return
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
        path = self.export_dir / f"engine-hub-{_FILE_SAFE.sub('_', name)[:64]}-{stamp}.json"
        try:
            await asyncio.to_thread(path.write_bytes, bundle)
        except OSError as exc:
            self._say(Text(f"export failed: cannot write {path}: {exc.strerror}", style="#f85149"))
            return
        self.exported = path
        self._say(Text.assemble(("exported to ", "#3fb950"), str(path)))
        self._changed()

    async def on_unmount(self) -> None:
        """Close the hub connections."""
        await self.feed.aclose()
