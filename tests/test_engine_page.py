"""The engine page, the overview's filters and forgetting an engine, in real Chromium on a real hub."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import msgspec
from playwright.async_api import Browser, Page, expect

from hub.core.access import ApiToken, Role, digest, new_token
from hub.core.records import EventRecord
from hub.live.filters import RowFilter
from hub.live.formats import amount, chips, duration, fixed, read_state, timestamp
from hub.live.orders import MAX_STEPS, Stage, fold_orders
from tests.conftest import (
    WAIT,
    Engine,
    RunningHub,
    connect_engine,
    running_hub,
    unique,
    watched_page,
)

MS = WAIT * 1000
CLOCK = re.compile(r"\b\d{2}:\d{2}:\d{2}\b")


def signal(symbol: str, **extra: Any) -> dict[str, Any]:
    payload = {"symbol": symbol, "side": "long", "price": 15866.63, "confidence": 0.8, **extra}
    return {"kind": "event", "type": "signal_event", "payload": payload}


def order(order_id: str, status: str, **extra: Any) -> dict[str, Any]:
    payload = {"order_id": order_id, "symbol": "NIFTY", "side": "buy", "quantity": 50}
    return {
        "kind": "event",
        "type": "order_event",
        "payload": {**payload, "status": status, **extra},
    }


async def open_live(page: Page, url: str) -> None:
    """Go to `url` and wait until its dashboard socket is live."""
    await page.goto(url)
    await expect(page.locator("#conn")).to_have_text("live", timeout=MS)


async def index_of(running: RunningHub, name: str) -> int:
    """The hub index of engine `name` (what ids and filters use)."""
    return running.hub.state.engines[name].index


async def test_engine_page_shows_only_its_engines_signals_and_one_row_per_order(
    hub: RunningHub, browser: Browser
) -> None:
    """Signals and orders of this engine only; create then fill is one row that shows the fill;
    a timestamp in state renders as a time; tags render as chips; new orders arrive live."""
    mine, other = unique("mine"), unique("other")
    a, b = await connect_engine(hub, mine), await connect_engine(hub, other)
    next_cycle = round(time.time() + 3600, 3)
    await a.send(
        {"kind": "heartbeat", "status": "running", "state": {"next_cycle_at": next_cycle}},
        {"kind": "metric", "op": "inc", "name": "signals", "tags": {"side": "long"}},
        signal("MINE-SYM"),
        order("o-1", "create"),
        order("o-1", "fill", price=598.7735),
        batch=True,
    )
    await b.send(signal("OTHER-SYM"), order("o-9", "create"), batch=True)
    await a.wait_acked()
    await b.wait_acked()
    i = await index_of(hub, mine)
    async with watched_page(browser) as watched:
        page = watched.page
        await open_live(page, f"http://127.0.0.1:{hub.port}/engines/{mine}")
        signals, orders = page.locator(f"#esignals-{i}"), page.locator(f"#eorders-{i}")
        await expect(signals.locator("tbody tr")).to_have_count(1)
        await expect(signals).to_contain_text("MINE-SYM")
        await expect(signals).to_contain_text("15,866.63")
        await expect(signals).not_to_contain_text("OTHER-SYM")
        rows = orders.locator("tbody tr")
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_contain_text("o-1")
        await expect(rows.first.locator("td.steps")).to_have_text(re.compile(r"create\s*→\s*fill"))
        await expect(rows.first.locator("td.steps .step").last).to_have_class(
            re.compile(r"\bstage-filled\b")
        )
        await expect(rows.first).to_contain_text("598.77")
        await expect(orders).not_to_contain_text("o-9")

        state = page.locator(f"#state-{i}")
        next_text = await state.locator("dt:text-is('next cycle') + dd").inner_text()
        assert CLOCK.search(next_text), next_text
        assert "e+09" not in next_text and str(int(next_cycle)) not in next_text, next_text
        await expect(state).not_to_contain_text("e+09")

        chip = page.locator(f"#metrics-{i} tr", has_text="signals").locator(".chip")
        await expect(chip).to_have_text("side=long")
        await expect(page.locator(f"#metrics-{i}")).not_to_contain_text('{"side"')

        await a.send(order("o-2", "create"), order("o-2", "reject", reason="margin exceeded"))
        await expect(rows).to_have_count(2, timeout=MS)
        rejected = rows.filter(has_text="o-2")
        await expect(rejected).to_contain_text("margin exceeded")
        await expect(rejected.locator("td.steps .step").last).to_have_class(
            re.compile(r"\bstage-rejected\b")
        )
        assert watched.problems == []
    await a.close()
    await b.close()


async def rows_of(page: Page, table: str, text: str) -> Any:
    return page.locator(f"#{table} tbody tr", has_text=text)


async def test_a_filter_in_the_url_survives_reload_and_hides_other_engines_rows(
    browser: Browser,
) -> None:
    """Picking an engine puts it in the URL; after a reload, and for rows pushed afterwards,
    only that engine's rows show; mode and text filter too; back restores the previous filter."""
    async with running_hub() as running:
        paper: Engine = await connect_engine(running, "alpha")
        live: Engine = await connect_engine(running, "beta", mode="live")
        await paper.send(signal("ALPHA-1"), batch=True)
        await live.send(signal("BETA-1"), batch=True)
        await paper.wait_acked()
        await live.wait_acked()
        alpha = await index_of(running, "alpha")
        origin = f"http://127.0.0.1:{running.port}"
        async with watched_page(browser) as watched:
            page = watched.page
            await open_live(page, origin + "/")
            await expect(await rows_of(page, "signals", "BETA-1")).to_be_visible()
            await page.locator("#filters select[name=engine]").select_option(label="alpha")
            await expect(page).to_have_url(re.compile(rf"[?&]engine={alpha}\b"))
            await expect(await rows_of(page, "signals", "BETA-1")).to_be_hidden()

            await page.reload()
            await expect(page.locator("#conn")).to_have_text("live", timeout=MS)
            engine_select = page.locator("#filters select[name=engine]")
            await expect(engine_select).to_have_value(str(alpha))
            await expect(await rows_of(page, "signals", "ALPHA-1")).to_be_visible()
            await expect(await rows_of(page, "signals", "BETA-1")).to_be_hidden()

            await live.send(signal("BETA-2"))
            await paper.send(signal("ALPHA-2"))
            await expect(await rows_of(page, "signals", "ALPHA-2")).to_be_visible(timeout=MS)
            await expect(await rows_of(page, "signals", "BETA-2")).to_have_count(1)
            await expect(await rows_of(page, "signals", "BETA-2")).to_be_hidden()

            await page.locator("#filters input[name=q]").fill("alpha-2")
            await expect(await rows_of(page, "signals", "ALPHA-1")).to_be_hidden()
            await expect(await rows_of(page, "signals", "ALPHA-2")).to_be_visible()

            await page.goto(origin + "/?mode=live")
            await expect(page.locator("#conn")).to_have_text("live", timeout=MS)
            await expect(await rows_of(page, "signals", "BETA-2")).to_be_visible()
            await expect(await rows_of(page, "signals", "ALPHA-2")).to_be_hidden()
            await page.locator("#filters select[name=mode]").select_option("paper")
            await expect(await rows_of(page, "signals", "BETA-2")).to_be_hidden()
            await page.go_back()
            await expect(page.locator("#filters select[name=mode]")).to_have_value("live")
            await expect(await rows_of(page, "signals", "BETA-2")).to_be_visible()
            assert watched.problems == []

        # Before any script runs (no JavaScript), the first paint already hides other engines.
        html = (await running.http.get("/", params={"engine": alpha})).text
        beta_row = re.search(r"<tr[^>]*>(?:(?!</tr>).)*BETA-1", html, re.S)
        alpha_row = re.search(r"<tr[^>]*>(?:(?!</tr>).)*ALPHA-1", html, re.S)
        assert beta_row and alpha_row
        assert " hidden" in beta_row.group(0).split(">")[0]
        assert " hidden" not in alpha_row.group(0).split(">")[0]
        await paper.close()
        await live.close()


async def wait_offline(running: RunningHub, name: str) -> None:
    """Wait until the hub has seen `name`'s socket close."""
    async with asyncio.timeout(WAIT):
        while running.hub.state.engines[name].connected:
            await asyncio.sleep(0.01)  # polls a condition, bounded by the timeout


async def test_an_admin_forgets_a_disconnected_engine_from_the_engine_page(
    browser: Browser,
) -> None:
    """The confirmed form refuses a connected engine; once it is offline, forgetting removes it
    from the overview and /metrics, keeps its history, and audits who did it."""
    async with running_hub() as running:
        engine = await connect_engine(running, "retired")
        await engine.send(
            signal("GONE-SYM"),
            {"kind": "metric", "op": "inc", "name": "retired_only", "tags": {"k": "v"}},
        )
        await engine.wait_acked()
        origin = f"http://127.0.0.1:{running.port}"
        async with watched_page(browser) as watched:
            page = watched.page
            await open_live(page, origin + "/engines/retired")
            form = page.locator("#forget-form")
            await form.locator("input[name=confirm]").check()
            await form.locator("button").click()
            await expect(page.locator("main")).to_contain_text("is connected; stop it")
            assert "retired" in running.hub.state.engines

            await engine.close()
            await wait_offline(running, "retired")
            await open_live(page, origin + "/")
            await expect(page.locator("#cards")).to_contain_text("retired")
            await open_live(page, origin + "/engines/retired")
            await form.locator("input[name=confirm]").check()
            await form.locator("button").click()
            await expect(page.locator("main")).to_contain_text("forgot engine 'retired'")

            await open_live(page, origin + "/")
            await expect(page.locator("#cards")).not_to_contain_text("retired")
            await expect(page.locator("#signals")).not_to_contain_text("GONE-SYM")
        metrics = (await running.http.get("/metrics")).text
        assert 'engine="retired"' not in metrics and "retired_only" not in metrics
        assert (await running.http.get("/engines/retired")).status_code == 404
        history = await running.get("/api/telemetry/events", engine="retired")
        assert [e["payload"]["symbol"] for e in history["events"]] == ["GONE-SYM"]
        audit = await running.get("/api/admin/audit", engine="retired")
        assert [a["action"] for a in audit["audit"]] == ["engine.forget"]

        again = await connect_engine(running, "retired", boot_id="next-boot")
        assert running.hub.state.engines["retired"].events == 0  # it is new to the live views
        await again.close()


async def test_forget_api_needs_an_admin_and_refuses_a_connected_engine() -> None:
    """POST /api/admin/engines/{name}/forget: 403 for a viewer, 409 while connected, then 200;
    404 for an engine the hub does not know; the dashboard form is admin-only too."""
    viewer, admin = new_token("ehv_"), new_token("ehv_")
    tokens = (
        ApiToken(digest(viewer), Role.VIEWER, "viewer"),
        ApiToken(digest(admin), Role.ADMIN, "ops"),
    )
    async with running_hub(api_tokens=tokens) as running:
        as_viewer = {"Authorization": f"Bearer {viewer}"}
        as_admin = {"Authorization": f"Bearer {admin}"}
        name = unique("api")
        engine = await connect_engine(running, name)
        path = f"/api/admin/engines/{name}/forget"
        refused = await running.http.post(path, headers=as_viewer)
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
        form = await running.http.post(
            "/admin/engines/forget", data={"index": "1", "confirm": "yes"}, headers=as_viewer
        )
        assert form.status_code == 403
        connected = await running.http.post(path, headers=as_admin)
        assert connected.status_code == 409, connected.text
        assert "is connected" in connected.json()["detail"]
        await engine.close()
        await wait_offline(running, name)
        done = await running.http.post(path, headers=as_admin)
        assert done.status_code == 200, done.text
        assert done.json()["engine"] == name
        assert name not in running.hub.state.engines
        missing = await running.http.post(path, headers=as_admin)
        assert missing.status_code == 404 and "already forgotten" in missing.json()["detail"]


# -- the sans-I/O pieces: formats, order folding, the URL filter ------------------------------


def test_values_format_by_type() -> None:
    """Fixed precision per column, durations with units, tags as escaped chips."""
    assert [fixed(v) for v in (598.7735, 15866.63, 3, None, "n/a")] == [
        "598.77",
        "15,866.63",
        "3.00",
        "",
        "n/a",
    ]
    assert [duration(v) for v in (0.00085, 0.0123, 1.24, 245, 7380, 3 * 86400 + 3600)] == [
        "850 µs",
        "12.3 ms",
        "1.24 s",
        "4m 05s",
        "2h 03m",
        "3d 1h",
    ]
    assert amount(50) == "50" and amount(12.5) == "12.5" and amount(True) == "true"
    html = str(chips({"side": "<b>", "inputs": {"rsi": 41.2}}))
    assert html.count('class="chip"') == 2 and "&lt;b&gt;" in html and "inputs.rsi" in html


def test_engine_state_reads_known_keys_as_words_and_times_as_times() -> None:
    """next_cycle_at (Unix seconds or ISO) is a time with "in ..."; hours and strategies are
    words; a time-like key in the rest is a time; other values stay as they are."""
    now = 1_796_210_000.0
    view = read_state(
        {
            "next_cycle_at": now + 245,
            "trading_hours_active": False,
            "trading_hours": "06:00-19:00 UTC",
            "strategies": ["mean_reversion", "breakout"],
            "last_fill_at": "2026-12-02T14:02:11+00:00",
            "pnl": 12.5,
            "not_a_time_at": 42,
        },
        now,
    )
    known = {item.label: item for item in view.known}
    assert known["next cycle"].ts == now + 245 and known["next cycle"].words == "in 4m 05s"
    assert known["trading hours"].words == "closed (06:00-19:00 UTC)"
    assert known["strategies"].words == "mean_reversion, breakout"
    rest = {item.label: item for item in view.rest}
    assert rest["last_fill_at"].ts == timestamp("2026-12-02T14:02:11Z")
    assert rest["pnl"].ts is None and rest["not_a_time_at"].ts is None
    assert timestamp(now, "pnl") is None and timestamp(now, "updated_ts") == now


def test_orders_fold_to_one_row_per_order_with_their_progression() -> None:
    """Events newest first become one row per (engine, order id): newest facts, steps oldest
    first, bounded; an order beyond the limit is left out."""

    def record(seq: int, engine: str, order_id: str, status: str, **extra: Any) -> EventRecord:
        payload = msgspec.json.encode({"order_id": order_id, "status": status, **extra})
        return EventRecord(seq, "order_event", float(seq), engine, seq, "b", msgspec.Raw(payload))

    events = [
        record(1, "a", "o1", "create", quantity=50, price=10.0),
        record(2, "a", "o1", "partial", price=10.5),
        record(3, "b", "o1", "create"),
        record(4, "a", "o1", "fill"),
        record(5, "a", "o2", "create"),
        record(6, "a", "o2", "rejected", reason="margin exceeded"),
    ]
    rows = fold_orders(reversed(events), limit=2)
    assert [(r.engine, r.order_id) for r in rows] == [("a", "o2"), ("a", "o1")]
    o2, o1 = rows
    assert [word for _, word in o1.steps] == ["create", "partial", "fill"]
    assert o1.stage is Stage.FILLED and o1.get("price") == 10.5 and o1.get("quantity") == 50
    assert o2.stage is Stage.REJECTED and o2.get("reason") == "margin exceeded"
    many = [record(i, "a", "o", "partial") for i in range(1, MAX_STEPS + 4)]
    [row] = fold_orders(reversed(many), limit=5)
    assert len(row.steps) == MAX_STEPS and row.more_steps == 3


def test_the_url_filter_ignores_malformed_parts() -> None:
    """engine must be digits, mode live or paper, text is capped; rows pass by index and mode."""
    f = RowFilter.from_query({"engine": "3", "mode": "live", "q": "x" * 500})
    assert (f.engine, f.mode, len(f.q)) == (3, "live", 100)
    assert f.admits((3, "live")) and not f.admits((3, "paper")) and not f.admits((4, "live"))
    loose = RowFilter.from_query({"engine": "3; drop", "mode": "LIVE<script>"})
    assert (loose.engine, loose.mode) == (None, "") and loose.admits((9, "paper"))


def test_engine_state_reads_cycle_results_and_strategy_counts() -> None:
    """A last-cycle result mapping reads "failed, 12.3 s, 1m 00s ago: why"; strategies with a
    total read "2/3: a, b"; a count with a total reads "2/2"."""
    now = 1_796_210_000.0
    view = read_state(
        {
            "last_cycle": {"ok": False, "duration": 12.3, "at": now - 60, "error": "[b]x"},
            "active_strategies": ["a", "b"],
            "strategies_total": 3,
        },
        now,
    )
    known = {item.label: item for item in view.known}
    assert known["last cycle"].words == "failed, 12.3 s, 1m 00s ago: [b]x"
    assert known["strategies"].words == "2/3: a, b"
    assert view.rest == []
    counted = read_state({"active_strategies": 2, "strategies_total": 2}, now)
    assert counted.known[0].words == "2/2"
