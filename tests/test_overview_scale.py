"""Live views at scale: heartbeat deltas, the paged engine list, and lagging pages that recover."""

from __future__ import annotations

import asyncio
import re

import websockets
from playwright.async_api import Browser, expect

from hub.live.listing import PAGE_ROWS
from hub.live.views import ViewKind
from tests.conftest import (
    WAIT,
    Engine,
    RunningHub,
    connect_engine,
    dashboard,
    open_frozen,
    running_hub,
    unique,
    watched_page,
)

MS = WAIT * 1000


def split_frames(stream: bytearray) -> list[tuple[int, bytes]]:
    """Take the whole unmasked server frames off the front of `stream`: (opcode, payload)."""
    frames = []
    while len(stream) >= 2:
        opcode, size, at = stream[0] & 0x0F, stream[1] & 0x7F, 2
        if size >= 126:
            width = 2 if size == 126 else 8
            if len(stream) < at + width:
                break
            size, at = int.from_bytes(stream[at : at + width], "big"), at + width
        if len(stream) < at + size:
            break
        frames.append((opcode, bytes(stream[at : at + size])))
        del stream[: at + size]
    return frames


async def card_html(running: RunningHub, name: str) -> str:
    response = await running.http.get(f"/fragments/engines/{name}/card")
    assert response.status_code == 200, response.text
    return response.text


async def test_a_heartbeat_that_moves_only_counters_sends_values_not_the_card() -> None:
    """After the first full card, a heartbeat changing the loop tick goes out as a fragment for
    that one value (id card-N-loop), far smaller than the card, and never the whole card."""
    async with running_hub(view_tick=0.02) as running:
        name = unique("values")
        engine = await connect_engine(running, name)
        await engine.send({"kind": "heartbeat", "status": "running", "loop_tick": 1})
        await engine.wait_acked()
        index = running.hub.state.engines[name].index
        full = await card_html(running, name)
        async with dashboard(running) as ws, asyncio.timeout(WAIT):
            frame = ""
            for tick in ("2", "12,345"):  # the first change a hub plans goes out whole
                await engine.send({"kind": "heartbeat", "loop_tick": int(tick.replace(",", ""))})
                while f"{tick} <small>" not in frame:
                    frame = str(await ws.recv())
        assert f'id="card-{index}-loop"' in frame, frame
        assert f'id="card-{index}"' not in frame and "<article" not in frame, frame
        mine = re.search(rf'<dd id="card-{index}-loop".*?</dd>', frame)
        assert mine is not None and len(mine.group(0)) * 5 < len(full), (mine, len(full))
        assert len(frame) < len(full) / 2, (len(frame), len(full))
        await engine.close()


async def test_a_page_that_stops_reading_during_its_snapshot_resyncs_with_current_data() -> None:
    """A page that stops reading mid-snapshot is coalesced (nothing queued for it, little held),
    not cut off; when it reads again it gets a fresh snapshot showing what changed meanwhile."""
    budget = 64 * 1024
    settings = {
        "dashboard_queue_bytes": budget,
        "dashboard_socket_buffer_bytes": 16 * 1024,
        "view_tick": 0.02,
        "table_refresh": 0.02,
    }
    async with running_hub(**settings) as running:
        hub = running.hub
        engine = await connect_engine(running, unique("lag"))
        await engine.send({"kind": "heartbeat", "status": "running", "loop_tick": 1})
        frozen = await open_frozen(running.port)  # reads the handshake, then not its snapshot
        loop = asyncio.get_running_loop()
        try:
            [viewer] = [v for group in hub.fanout.views.values() for v in group]
            line = "x" * 1990  # about 100 KB per frame: the overview's 50-line log tail
            drops = hub.state.stats.drops
            async with asyncio.timeout(WAIT):
                while not drops["dashboard_backlog_replaced"]:
                    logs = [{"kind": "log", "level": "INFO", "logger": "f", "message": line}] * 10
                    await engine.send(*logs, batch=True)
                    await engine.wait_acked()
            # Lagging: the hub holds no frames for it, only what its transport already had.
            assert (
                viewer.needs_snapshot
                and viewer.queued_chars == 0
                and viewer.writer.backlog() <= 2 * budget
            )
            await engine.send({"kind": "heartbeat", "loop_tick": 777777})
            await engine.wait_acked()
            stream, seen = bytearray(), ""
            async with asyncio.timeout(WAIT):
                while "777,777" not in seen:
                    chunk = await loop.sock_recv(frozen, 65536)
                    assert chunk, "the hub closed the lagging page"
                    stream += chunk
                    for opcode, payload in split_frames(stream):
                        assert opcode == 0x1, (opcode, payload[:2])  # text, never a close
                        if "777,777" not in seen:
                            seen = payload.decode()
            assert 'id="cards"' in seen  # it came in a snapshot
            assert drops["dashboard_slow_disconnect"] == 0 and not viewer.closed
        finally:
            frozen.close()
            await engine.close()


async def start_engines(running: RunningHub, count: int) -> list[Engine]:
    """`count` raw engines (hello + one heartbeat), every tenth in live mode."""
    engines = []
    for n in range(count):
        mode = "live" if n % 10 == 0 else "paper"
        engine = await connect_engine(running, f"bulk-{n:03d}", mode=mode)
        await engine.send({"kind": "heartbeat", "status": "running", "loop_tick": n})
        engines.append(engine)
    for engine in engines:
        await engine.wait_acked()
    return engines


async def test_the_overview_of_300_engines_is_one_page_of_rows_problems_first(
    browser: Browser,
) -> None:
    """300 engines: the overview is a dense list of at most one page of rows, problem engines
    first; filters hide rows; a heartbeat updates its row in place; paging keeps the URL."""
    settings = {"max_engines": 400, "heartbeat_interval": 3600.0, "view_tick": 0.05}
    async with running_hub(**settings) as running:
        engines = await start_engines(running, 300)
        for engine in engines[200:202]:  # two engines report an error
            await engine.send({"kind": "heartbeat", "status": "error", "last_error": "boom"})
            await engine.wait_acked()
        for engine in engines[250:253]:  # three vanish without bye: offline
            await engine.close()
        problems = {"bulk-200", "bulk-201", "bulk-250", "bulk-251", "bulk-252"}
        async with watched_page(browser) as watched:
            page = watched.page
            await page.goto(f"http://127.0.0.1:{running.port}/")
            rows = page.locator("#cards tbody tr")
            await expect(page.locator("#conn")).to_have_text("live", timeout=MS)
            # Errors first, then offline (once the hub noticed the closed sockets).
            await expect(page.locator("#cards tbody tr.health-offline")).to_have_count(
                3, timeout=MS
            )
            await expect(rows).to_have_count(PAGE_ROWS)
            names = await rows.locator("a.name").all_text_contents()
            assert names[:2] == ["bulk-200", "bulk-201"] and set(names[:5]) == problems, names[:8]
            assert names[5:] == sorted(names[5:]), names[5:10]
            # A heartbeat of an engine on this page updates its row in place.
            [shown] = [e for e in engines if e.name == names[7]]
            index = running.hub.state.engines[shown.name].index
            await shown.send({"kind": "heartbeat", "loop_tick": 987654})
            await expect(page.locator(f"#card-{index}-loop")).to_contain_text("987,654", timeout=MS)
            await expect(rows).to_have_count(PAGE_ROWS)
            # The mode filter hides the paper engines' rows (and keeps the URL).
            await page.select_option("#filters select[name=mode]", "live")
            await expect(page).to_have_url(re.compile(r"mode=live"))
            visible = page.locator("#cards tbody tr:not([hidden])")
            modes = await visible.evaluate_all("rows => rows.map(r => r.dataset.mode)")
            assert modes and set(modes) == {"live"}, modes
            await page.select_option("#filters select[name=mode]", "")
            # The next page: other engines, and the page number in the URL and the view.
            await page.click("#cards a[rel=next]")
            await expect(page).to_have_url(re.compile(r"page=2"))
            await expect(page.locator("#conn")).to_have_text("live", timeout=MS)
            second = await page.locator("#cards tbody tr a.name").all_text_contents()
            assert len(second) == PAGE_ROWS and not set(second) & set(names), second[:3]
            pages = {v.page for v in running.hub.fanout.views if v.kind is ViewKind.OVERVIEW}
            assert 2 in pages, pages
            # The list's own filter works on the server, over every page: problems only.
            await page.select_option(".list-filter select[name=show]", "problems")
            await page.click(".list-filter button[type=submit]")
            await expect(page).to_have_url(re.compile(r"show=problems"))
            await expect(page.locator("#conn")).to_have_text("live", timeout=MS)
            await expect(rows).to_have_count(5)
            assert set(await rows.locator("a.name").all_text_contents()) == problems
            await expect(page.locator("#cards .count")).to_contain_text("5 of 300 engines")
            # ... and it stays live: another engine's error joins the filtered list.
            await engines[10].send({"kind": "heartbeat", "status": "error", "last_error": "x"})
            await expect(rows).to_have_count(6, timeout=MS)
            assert watched.problems == [], watched.problems
        for engine in engines:
            if engine.name not in ("bulk-250", "bulk-251", "bulk-252"):
                await engine.close()


async def test_a_list_page_is_sent_only_its_own_rows() -> None:
    """A heartbeat of an engine on page 2 sends nothing to a page-1 socket of the list."""
    settings = {"max_engines": 400, "heartbeat_interval": 3600.0, "view_tick": 0.02}
    async with running_hub(**settings) as running:
        engines = await start_engines(running, 60)  # two pages, ordered by name: 0-49, 50-59
        url = f"ws://127.0.0.1:{running.port}/ws/dashboard?view=overview&page=1"
        async with websockets.connect(url, max_size=None) as ws, asyncio.timeout(WAIT):
            assert "bulk-000" in str(await ws.recv())  # the snapshot
            frames: list[str] = []
            for step in range(2):  # the first change of each goes out whole, the second as values
                await engines[55].send({"kind": "heartbeat", "loop_tick": 555555 + step})
                await engines[5].send({"kind": "heartbeat", "loop_tick": 444444 + step})
                while not frames or f"444,44{4 + step}" not in frames[-1]:
                    frames.append(str(await ws.recv()))
            index = running.hub.state.engines[engines[5].name].index
            assert f'id="card-{index}-loop"' in frames[-1], frames[-1]  # engine 5's value alone
            assert not any("555,55" in frame for frame in frames), frames
        for engine in engines:
            await engine.close()
