"""The live dashboard in real Chromium: pages, live pushes, health, reconnects and escaping."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, Locator, Page, Route, expect

from hub.core.alert_settings import AlertSettings
from hub.core.engines import EngineRecord, Health
from hub.core.messages import Status
from hub.live.views import TABLE_ROWS
from hub.web import fastwrite
from tests.conftest import (
    PUSH_PATHS,
    WAIT,
    RunningHub,
    WatchedPage,
    connect_engine,
    running_hub,
    unique,
    use_push_path,
    watched_page,
)

MS = WAIT * 1000
RESTART_MS = 15_000  # hx-ws reconnects with backoff (0.5 s doubling, ±30 %)

# Records CSP violations from the page itself; Playwright injects this outside the page's CSP.
CSP_RECORDER = """
window.__csp = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
"""


def origin_of(url: str) -> str:
    """scheme://host:port of `url`."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


HTMX = "/static/vendor/htmx-4.0.1/htmx.min.js"
EXTENSIONS = ("/static/vendor/htmx-4.0.1/ext/hx-ws.min.js", "/static/js/hub.js")


@asynccontextmanager
async def live_page(
    browser: Browser, url: str, frames: list[str] | None = None
) -> AsyncIterator[WatchedPage]:
    """A watched page at `url` whose dashboard socket is connected; `frames` collects its pushes."""
    async with watched_page(browser) as watched:
        await watched.page.add_init_script(CSP_RECORDER)
        if frames is not None:
            watched.page.on(
                "websocket", lambda ws: ws.on("framereceived", lambda f: frames.append(str(f)))
            )
        await watched.page.goto(url)
        await expect(watched.page.locator("#conn")).to_have_text("live", timeout=MS)
        yield watched


# Resolves once htmx has executed and a timer queued after its setTimeout(init) has fired. (Not
# wait_for_function: Playwright may evaluate its predicate with eval, which the hub's CSP refuses.)
AFTER_HTMX_TIMERS = """
() => new Promise((resolve) => {
  const check = () => (typeof htmx === "undefined" ? setTimeout(check, 10) : setTimeout(resolve));
  check();
})
"""


async def test_page_connects_when_htmx_loads_before_its_extensions(
    hub: RunningHub, browser: Browser
) -> None:
    """A page goes live even when hx-ws.min.js arrives after htmx.min.js has run."""
    origin = f"http://127.0.0.1:{hub.port}"
    async with watched_page(browser) as watched:
        page = watched.page

        async def late(route: Route) -> None:
            # Deliver hx-ws only after htmx has executed and the timers it queued have run.
            try:
                async with asyncio.timeout(WAIT):
                    await page.evaluate(AFTER_HTMX_TIMERS)
            finally:
                await route.continue_()

        await page.route(f"{origin}{EXTENSIONS[0]}", late)
        await page.goto(origin + "/")  # returns after the load event
        assert await page.locator("#live[data-htmx-powered]").count() == 1, (
            "htmx initialized without the hx-ws extension; the page will never connect"
        )
        await expect(page.locator("#conn")).to_have_text("live", timeout=MS)


def card(page: Page, name: str) -> Locator:
    """The card of engine `name`."""
    exact = re.compile(rf"^{re.escape(name)}$")
    return page.locator("article.card").filter(has=page.locator("a.name", has_text=exact))


def field(card: Locator, label: str) -> Locator:
    """The value cell next to `label` on a card."""
    return card.locator(f"dt:text-is('{label}') + dd")


def starts(text: str) -> re.Pattern[str]:
    """Matches a cell whose text begins with `text` as a whole word."""
    return re.compile(rf"^{re.escape(text)}\b")


async def assert_clean(watched: WatchedPage, origin: str) -> None:
    """No console errors, page errors or CSP violations, and every request stayed on `origin`."""
    assert watched.problems == [], watched.problems
    assert await watched.page.evaluate("window.__csp") == []
    foreign = [url for url in watched.requests if not url.startswith(origin + "/")]
    assert foreign == [], foreign


async def test_overview_loads_clean_and_goes_live(hub: RunningHub, browser: Browser) -> None:
    """The overview renders with no console errors or CSP violations, same-origin only, and goes live."""
    origin = f"http://127.0.0.1:{hub.port}"
    async with live_page(browser, origin + "/") as watched:
        page = watched.page
        await expect(page.locator("#conn")).to_have_class(re.compile(r"\bconn-live\b"))
        await expect(page.locator("#hub-status")).to_contain_text("events/s")
        for panel in ("#cards", "#signals", "#orders", "#errors", "#logs"):
            await expect(page.locator(panel)).to_be_visible()
        scripts = await page.evaluate("Array.from(document.scripts, (s) => s.src)")
        assert [urlsplit(src).path for src in scripts] == [
            "/static/vendor/htmx-4.0.1/htmx.min.js",
            "/static/vendor/htmx-4.0.1/ext/hx-ws.min.js",
            "/static/js/hub.js",
            "/static/js/filters.js",
        ]
        await assert_clean(watched, origin)


async def test_new_engine_card_appears_without_reload(hub: RunningHub, browser: Browser) -> None:
    """An engine that connects after the page went live gets a card pushed into #cards."""
    async with live_page(browser, f"http://127.0.0.1:{hub.port}/") as watched:
        page = watched.page
        await page.evaluate("window.__sameDocument = true")
        name = unique("newcard")
        engine = await connect_engine(hub, name, mode="live", pid=777)
        the_card = card(page, name)
        await expect(the_card).to_be_visible(timeout=MS)
        await expect(the_card.locator(".badge")).to_have_text("LIVE")
        await expect(field(the_card, "pid")).to_have_text("777")
        assert await page.locator("#cards").locator(the_card).count() == 1
        assert await page.evaluate("window.__sameDocument") is True  # no reload happened
        await engine.close()
        await assert_clean(watched, f"http://127.0.0.1:{hub.port}")


async def test_chromium_takes_frames_compressed_once(browser: Browser) -> None:
    """Chromium offers permessage-deflate: its dashboard socket gets the hub's compress-once
    writer, and the compressed pushes (a new card, then its heartbeat values) render."""
    async with (
        running_hub() as running,
        live_page(browser, f"http://127.0.0.1:{running.port}/") as watched,
    ):
        [viewer] = [v for viewers in running.hub.fanout.views.values() for v in viewers]
        assert isinstance(viewer.writer, fastwrite._UvicornWriter) and viewer.writer._deflate
        name = unique("deflated")
        engine = await connect_engine(running, name)
        the_card = card(watched.page, name)
        await expect(the_card).to_be_visible(timeout=MS)
        await engine.send({"kind": "heartbeat", "loop_tick": 4321})
        await expect(field(the_card, "loop")).to_have_text(starts("4,321"), timeout=MS)
        await engine.close()
        await assert_clean(watched, f"http://127.0.0.1:{running.port}")


async def test_heartbeats_move_the_loop_tick(hub: RunningHub, browser: Browser) -> None:
    """Each heartbeat's loop_tick, universe and positions show up on the card within a tick."""
    name = unique("tick")
    engine = await connect_engine(hub, name)
    await engine.send({"kind": "heartbeat", "status": "running", "loop_tick": 100})
    await engine.wait_acked()
    async with live_page(browser, f"http://127.0.0.1:{hub.port}/") as watched:
        the_card = card(watched.page, name)
        loop = field(the_card, "loop")
        await expect(loop).to_have_text(starts("100"), timeout=MS)
        await expect(field(the_card, "status")).to_have_text("running")
        for tick in (250, 1234):
            await engine.send(
                {"kind": "heartbeat", "loop_tick": tick, "universe_size": 5, "open_positions": 2}
            )
            await expect(loop).to_have_text(starts(f"{tick:,}"), timeout=MS)
        await expect(loop).to_contain_text("/s")  # a rate once two heartbeats arrived
        await expect(field(the_card, "universe")).to_have_text("5")
        await expect(field(the_card, "positions")).to_have_text("2")
        await expect(field(the_card, "heartbeat")).to_have_text(re.compile(r"just now|\d+ s ago"))
    await engine.close()


async def test_signals_orders_errors_and_logs_are_pushed(hub: RunningHub, browser: Browser) -> None:
    """A signal lands in #signals, an order in #orders, an error in #errors and a log line in #logs."""
    name = unique("tables")
    engine = await connect_engine(hub, name)
    async with live_page(browser, f"http://127.0.0.1:{hub.port}/") as watched:
        page = watched.page
        symbol, order_id = unique("NIFTY"), unique("ord")
        await engine.send(
            {
                "kind": "event",
                "type": "signal_event",
                "payload": {
                    "symbol": symbol,
                    "side": "long",
                    "price": 101.5,
                    "strategy": "mean_reversion",
                    "confidence": 0.8,
                    "reason": "zscore>2",
                },
            },
            {
                "kind": "event",
                "type": "order_event",
                "payload": {
                    "order_id": order_id,
                    "symbol": symbol,
                    "side": "buy",
                    "quantity": 50,
                    "price": 101.5,
                    "status": "filled",
                },
            },
            {
                "kind": "event",
                "type": "error",
                "payload": {"error_type": "Timeout", "message": "broker slow"},
            },
            {
                "kind": "log",
                "level": "WARNING",
                "logger": "engine.tables",
                "message": f"sent {order_id}",
            },
        )
        signal = page.locator("#signals tbody tr", has_text=symbol)
        await expect(signal).to_have_count(1, timeout=MS)
        await expect(signal.locator("td").nth(1)).to_have_text(name)
        await expect(signal.locator("td.side-buy")).to_have_text("long")
        await expect(signal).to_contain_text("mean_reversion")
        await expect(signal).to_contain_text("zscore>2")
        order = page.locator("#orders tbody tr", has_text=order_id)
        await expect(order).to_have_count(1, timeout=MS)
        await expect(order.locator("td.steps .step.stage-filled")).to_have_text("filled")
        await expect(order).to_contain_text(symbol)
        error = page.locator("#errors tbody tr", has_text=name)
        await expect(error).to_contain_text("broker slow", timeout=MS)
        log = page.locator("#logs li", has_text=f"sent {order_id}")
        await expect(log).to_have_class(re.compile(r"\blvl-warning\b"), timeout=MS)
        await expect(log.locator(".eng")).to_have_text(name)
        await expect(field(card(page, name), "status")).to_have_text("starting")
        await expect(card(page, name).locator("p.last-error .what")).to_have_text("broker slow")
        await assert_clean(watched, f"http://127.0.0.1:{hub.port}")
    await engine.close()


ISOLATION = """
(el) => {
  const bdi = el.querySelector("bdi");
  return [bdi.textContent, getComputedStyle(bdi).unicodeBidi, el.textContent.includes("\\u202e")];
}
"""


async def test_a_bidi_override_in_a_log_line_renders_isolated_and_visible(
    hub: RunningHub, browser: Browser
) -> None:
    """A log line with U+202E (right-to-left override) and an ANSI escape shows them as visible
    ⟨U+XXXX⟩ marks inside an isolating <bdi>: the text after them keeps its order."""
    name = unique("bidi")
    engine = await connect_engine(hub, name)
    async with live_page(browser, f"http://127.0.0.1:{hub.port}/engines/{name}") as watched:
        marker = unique("m")
        await engine.send(
            {
                "kind": "log",
                "level": "INFO",
                "logger": "engine.bidi",
                "message": f"{marker} \u202eexe.txt \x1b[31mred",
            }
        )
        line = watched.page.locator(".logs li .msg", has_text=marker)
        await expect(line).to_have_count(1, timeout=MS)
        text, bidi, raw = await line.evaluate(ISOLATION)
        assert text == f"{marker} ⟨U+202E⟩exe.txt ⟨U+001B⟩[31mred"  # not "txt.exe", not hidden
        assert bidi == "isolate" and raw is False
        await assert_clean(watched, f"http://127.0.0.1:{hub.port}")
    await engine.close()


SIGNAL_CELLS = """
() => Array.from(document.querySelectorAll("#signals tbody tr"),
  (tr) => [tr.cells[2].textContent, tr.cells[7].textContent])
"""


@pytest.mark.parametrize("path", PUSH_PATHS)
async def test_signal_table_shows_the_newest_rows_on_both_push_paths(
    path: str, hub: RunningHub, browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After three tables' worth of signals the open page shows exactly the newest TABLE_ROWS,
    newest first, with hostile text inert; a page opened afterwards shows the same rows."""
    use_push_path(path, hub, monkeypatch)
    engine = await connect_engine(hub, unique("rows"))
    tag = unique("R")
    reason = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
    origin = f"http://127.0.0.1:{hub.port}"
    total = 3 * TABLE_ROWS
    expected = [[f"{tag}-{n}", reason] for n in range(total - 1, total - 1 - TABLE_ROWS, -1)]
    async with live_page(browser, origin + "/") as watched:
        for n in range(total):  # one batch per signal: pushes interleave with the sends
            payload = {"symbol": f"{tag}-{n}", "side": "long", "reason": reason}
            await engine.send({"kind": "event", "type": "signal_event", "payload": payload})
        newest = watched.page.locator("#signals tbody tr").first
        await expect(newest).to_contain_text(f"{tag}-{total - 1}", timeout=MS)
        assert await watched.page.evaluate(SIGNAL_CELLS) == expected
        async with live_page(browser, origin + "/") as fresh:
            assert await fresh.page.evaluate(SIGNAL_CELLS) == expected
            for page in (watched, fresh):
                assert await page.page.evaluate("typeof window.__pwned") == "undefined"
                assert await page.page.locator("#signals img, #signals script").count() == 0
                assert not [u for u in page.requests if urlsplit(u).path == "/x"]
                await assert_clean(page, origin)
    await engine.close()


HEALTH_RECORDER = """
(name) => {
  window.__health = [];
  const read = () => {
    for (const link of document.querySelectorAll("article.card a.name")) {
      if (link.textContent !== name) continue;
      const health = link.closest("article").querySelector(".health").textContent;
      if (window.__health.at(-1) !== health) window.__health.push(health);
    }
  };
  new MutationObserver(read).observe(document.body, {subtree: true, childList: true, characterData: true});
  read();
}
"""


async def test_bye_stopped_kill_offline_silence_late_then_stale(
    hub: RunningHub, browser: Browser
) -> None:
    """bye turns a card stopped, a dropped socket offline, and silence late and then stale."""
    async with live_page(browser, f"http://127.0.0.1:{hub.port}/") as watched:
        page = watched.page
        silent_name = unique("silent")
        await page.evaluate(HEALTH_RECORDER, silent_name)  # sees every state, however short

        stopping = await connect_engine(hub, unique("bye"))
        killed = await connect_engine(hub, unique("killed"))
        silent = await connect_engine(hub, silent_name, heartbeat_interval=0.2)
        for engine in (stopping, killed, silent):
            await engine.send({"kind": "heartbeat", "status": "running", "loop_tick": 1})
        await stopping.send({"kind": "bye", "status": "stopped"})
        await stopping.wait_acked()
        await killed.wait_acked()
        await killed.close()  # the socket goes away without a bye

        stopped_card = card(page, stopping.name)
        await expect(stopped_card.locator(".health")).to_have_text("stopped", timeout=MS)
        await expect(stopped_card).to_have_class(re.compile(r"\bhealth-stopped\b"))
        await expect(field(stopped_card, "status")).to_have_text(starts("stopped at"))
        offline_card = card(page, killed.name)
        await expect(offline_card.locator(".health")).to_have_text("offline", timeout=MS)
        await expect(offline_card).to_have_class(re.compile(r"\bhealth-offline\b"))

        # 0.2 s interval: late after 2 × 0.2 s of silence, stale after 6 × 0.2 s.
        silent_card = card(page, silent_name)
        await expect(silent_card.locator(".health")).to_have_text("stale", timeout=MS)
        await expect(silent_card).to_have_class(re.compile(r"\bhealth-stale\b"))
        seen = await page.evaluate("window.__health")
        assert seen[-2:] == ["late", "stale"], seen
        assert seen[0] in ("ok", "late"), seen

        await silent.send({"kind": "heartbeat", "loop_tick": 2})  # it speaks again: healthy
        await expect(silent_card.locator(".health")).to_have_text("ok", timeout=MS)
        await stopping.close()
        await silent.close()
        await assert_clean(watched, f"http://127.0.0.1:{hub.port}")


async def test_hub_restart_reconnects_with_a_fresh_snapshot(browser: Browser) -> None:
    """After a hub restart the page shows reconnecting, then live with the new hub's engines."""
    async with watched_page(browser) as watched:
        page = watched.page
        conn = page.locator("#conn")
        async with running_hub() as first:
            port = first.port
            old = await connect_engine(first, unique("before"))
            await page.goto(f"http://127.0.0.1:{port}/")
            await expect(conn).to_have_text("live", timeout=MS)
            await expect(card(page, old.name)).to_be_visible(timeout=MS)
        await old.close()

        await expect(conn).to_have_text("reconnecting…", timeout=MS)
        await expect(conn).to_have_class(re.compile(r"\bconn-reconnecting\b"))
        await page.evaluate("window.__sameDocument = true")

        async with running_hub(port=port) as second:
            new = await connect_engine(second, unique("after"))
            await new.send({"kind": "heartbeat", "status": "running", "loop_tick": 5})
            await expect(conn).to_have_text("live", timeout=RESTART_MS)
            await expect(conn).to_have_class(re.compile(r"\bconn-live\b"))
            new_card = card(page, new.name)
            await expect(new_card).to_be_visible(timeout=MS)
            await expect(card(page, old.name)).to_have_count(0)  # the snapshot replaced #cards
            await new.send({"kind": "heartbeat", "loop_tick": 6})  # and deltas flow again
            await expect(field(new_card, "loop")).to_have_text(starts("6"), timeout=MS)
            assert await page.evaluate("window.__sameDocument") is True
            await new.close()


async def test_engine_page_shows_everything_and_updates_live(
    hub: RunningHub, browser: Browser
) -> None:
    """/engines/{name} renders card, state, metrics, positions, decisions, cycles, logs, and follows them."""
    name = unique("deep")
    engine = await connect_engine(hub, name, mode="live")
    await engine.send(
        {
            "kind": "heartbeat",
            "status": "running",
            "loop_tick": 10,
            "state": {"next_cycle_at": "09:15:00", "trading_hours_active": True},
        },
        *(
            {"kind": "metric", "op": "inc", "name": "signals.long", "tags": {"strategy": "mr"}}
            for _ in range(3)
        ),
        {"kind": "metric", "op": "set", "name": "pnl", "value": 1234.5},
        *(
            {"kind": "metric", "op": "observe", "name": "cycle.seconds", "value": v / 10}
            for v in range(1, 6)
        ),
        {"kind": "event", "type": "position_event", "payload": {"symbol": "BANKNIFTY", "qty": 25}},
        {
            "kind": "event",
            "type": "decision_trace",
            "payload": {"symbol": "BANKNIFTY", "decision": "hold"},
        },
        {"kind": "event", "type": "cycle", "payload": {"cycle": 1, "duration_ms": 42}},
        {
            "kind": "event",
            "type": "error",
            "payload": {"error_type": "Feed", "message": "tick gap"},
        },
        {"kind": "log", "level": "INFO", "logger": "engine.deep", "message": "cycle 1 done"},
        batch=True,
    )
    await engine.wait_acked()
    origin = f"http://127.0.0.1:{hub.port}"
    async with live_page(browser, f"{origin}/engines/{name}") as watched:
        page = watched.page
        the_card = page.locator("article.card")
        await expect(the_card.locator("a.name")).to_have_text(name)
        await expect(the_card.locator(".badge")).to_have_text("LIVE")
        index = (await the_card.get_attribute("id") or "").removeprefix("card-")
        assert index.isdigit()

        state = page.locator(f"#state-{index}")
        await expect(state.locator("dt:text-is('next cycle') + dd")).to_have_text("09:15:00")
        await expect(state.locator("dt:text-is('trading hours') + dd")).to_have_text("open")

        metrics = page.locator(f"#metrics-{index}")
        counter = metrics.locator("tr", has_text="signals.long").locator("td")
        await expect(counter.nth(1)).to_have_text("strategy=mr")
        await expect(counter.nth(2)).to_have_text("3")  # session
        await expect(counter.nth(3)).to_have_text("3")  # lifetime
        gauge = metrics.locator("tr", has_text="pnl").locator("td")
        await expect(gauge.nth(2)).to_have_text("1,234.50")
        histogram = metrics.locator("tr", has_text="cycle.seconds").locator("td")
        await expect(histogram.nth(7)).to_have_text("5")  # count
        p50, p95, p99 = [
            float((await histogram.nth(i).inner_text()).removesuffix(" ms")) / 1000
            for i in (4, 5, 6)
        ]
        assert 0.1 <= p50 <= p95 <= p99 <= 0.5, (p50, p95, p99)

        await expect(page.locator(f"#positions-{index}")).to_contain_text("BANKNIFTY")
        await expect(page.locator(f"#decisions-{index}")).to_contain_text("hold")
        await expect(page.locator(f"#cycles-{index}")).to_contain_text("duration_ms=42")
        await expect(page.locator(f"#eerrors-{index}")).to_contain_text("tick gap")
        await expect(page.locator(f"#elogs-{index} li")).to_have_text(re.compile("cycle 1 done"))

        # Live: every section follows the engine without a reload.
        await engine.send(
            {"kind": "heartbeat", "loop_tick": 20, "state": {"trading_hours_active": False}},
            {"kind": "metric", "op": "inc", "name": "signals.long", "tags": {"strategy": "mr"}},
            {"kind": "metric", "op": "set", "name": "pnl", "value": -50},
            {
                "kind": "event",
                "type": "position_event",
                "payload": {"symbol": "FINNIFTY", "qty": 40},
            },
            {
                "kind": "event",
                "type": "decision_trace",
                "payload": {"symbol": "FINNIFTY", "decision": "buy"},
            },
            {"kind": "event", "type": "cycle", "payload": {"cycle": 2, "duration_ms": 43}},
            {"kind": "log", "level": "ERROR", "logger": "engine.deep", "message": "cycle 2 failed"},
        )
        await expect(field(the_card, "loop")).to_have_text(starts("20"), timeout=MS)
        await expect(state.locator("dt:text-is('trading hours') + dd")).to_have_text("closed")
        await expect(counter.nth(2)).to_have_text("4", timeout=MS)
        await expect(gauge.nth(2)).to_have_text("-50.00")
        await expect(page.locator(f"#positions-{index}")).to_contain_text("FINNIFTY", timeout=MS)
        await expect(page.locator(f"#decisions-{index}")).to_contain_text("buy")
        await expect(page.locator(f"#cycles-{index}")).to_contain_text("duration_ms=43")
        failed = page.locator(f"#elogs-{index} li", has_text="cycle 2 failed")
        await expect(failed).to_have_class(re.compile(r"\blvl-error\b"), timeout=MS)
        await expect(page.locator(f"#elogs-{index} li")).to_have_count(2)
        await assert_clean(watched, origin)
    await engine.close()


# -- safety: engine text is inert everywhere --------------------------------------------------

HOSTILE = [
    "<script>window.__pwned=1</script>",
    '<img src=x onerror="window.__pwned=1">',
    "\"'",
    '<div hx-get="/api/telemetry/stats" hx-trigger="load">x</div>',
    '<div hx-swap-oob="true" id="hub-status">owned</div>',
    '<button hx-on:click="window.__pwned=1">',
]
OUR_IDS = re.compile(
    r"^(cards|signals|orders|errors|logs|hub-status|conn|live|level-filter|embed-form|account"
    r"|tz-toggle|filters|forget-form|alerts|alerts-nudge|alert-count|alert-badge|range-picker|timeline"
    r"|chart-form"
    r"|(card|state|metrics|elogs|esignals|eorders|positions|decisions|cycles|eerrors)-\d+"
    r"|(charts|charts-nudge|chart-query)-\d+|chart-\d+-(loop|cycle|pnl|errors|rejects|pick)"
    r"|card-\d+-(beat|skew|loop|universe|positions|pnl|exposure|errors|drops|counters|spark))$"
)
HUB_SCRIPTS = [
    "/static/vendor/htmx-4.0.1/htmx.min.js",
    "/static/vendor/htmx-4.0.1/ext/hx-ws.min.js",
    "/static/js/hub.js",
]
VISIBLE_TEXTS = """
(selector) => Array.from(document.querySelectorAll(selector))
  .filter((e) => e.checkVisibility()).map((e) => e.textContent)
"""
PAGE_SHAPE = """
() => ({
  pwned: typeof window.__pwned,
  csp: window.__csp,
  injected: document.querySelectorAll(
    "img, button:not(#embed-form button, #forget-form button, #tz-toggle, #alerts button, " +
    "#range-picker button, #chart-form button), script:not([src]), " +
    "[hx-get]:not(#alerts, #alerts-nudge, #timeline, [id^=charts-nudge-]), " +
    "[hx-trigger]:not(#alerts, #alerts-nudge, #timeline, [id^=charts-nudge-]), [hx-on\\\\:click], [onerror]").length,
    // the embed and forget forms (admins), the alerts panel and its nudge, the range picker, the
    // timeline's poll, the chart form and its nudge, and the time zone toggle are ours
  scripts: Array.from(document.scripts, (s) => new URL(s.src).pathname),
  hubStatus: Array.from(document.querySelectorAll("#hub-status"), (e) => e.textContent.trim()),
  ids: Array.from(document.querySelectorAll("[id]"), (e) => e.id),
})
"""


def hostile_messages(values: list[str]) -> list[dict[str, Any]]:
    """Every engine-supplied field that reaches HTML, each carrying one of `values`."""
    messages: list[dict[str, Any]] = []
    for v in values:
        event = [
            ("signal_event", {"symbol": v, "side": v, "strategy": v, "reason": v}),
            ("order_event", {"order_id": v, "symbol": v, "side": v, "status": v, "reason": v}),
            ("error", {"error_type": v, "message": v}),
            ("position_event", {"symbol": v, "side": v}),
            ("decision_trace", {"reason": v}),
            ("cycle", {"note": v}),
        ]
        messages += [{"kind": "event", "type": t, "payload": p} for t, p in event]
        messages += [
            {
                "kind": "log",
                "level": "WARNING",
                "logger": v,
                "message": v,
                "exc": v,
                "extra": {"x": v},
            },
            {"kind": "metric", "op": "inc", "name": "hostile.tags", "tags": {"note": v}},
        ]
    state = {v: v for v in values}
    heartbeat = {"kind": "heartbeat", "status": "running", "loop_tick": 1, "state": state}
    return [*messages, {**heartbeat, "last_error": " ".join(values)}]


def expected_texts(values: list[str], index: str) -> dict[str, dict[str, list[str]]]:
    """Per page kind: selector -> texts that must be visible verbatim."""
    card_error = {f"#card-{index} p.last-error .what": [" ".join(values)]}
    logs = {
        "span.logger": values,
        "span.msg": values,
        "pre.exc": values,
    }
    chips = [f"note={v}" for v in values]
    return {
        "overview": {
            **card_error,
            "#signals td": values,
            "#orders td": values,
            "#errors td": values,
            **{f"#logs {sel}": texts for sel, texts in logs.items()},
        },
        "engine": {
            **card_error,
            f"#state-{index} th": values,
            f"#state-{index} td": values,
            f"#metrics-{index} .chip": chips,
            f"#esignals-{index} td": values,
            f"#eorders-{index} td": values,
            f"#positions-{index} td": values,
            f"#positions-{index} .chip": [f"side={v}" for v in values],
            f"#decisions-{index} td": values,
            f"#cycles-{index} .chip": chips,
            f"#eerrors-{index} td": values,
            **{f"#elogs-{index} {sel}": texts for sel, texts in logs.items()},
        },
        "embed": card_error,
    }


async def wait_visible_texts(page: Page, selector: str, expected: list[str]) -> None:
    """Wait for `expected[-1]`, then check every text in `expected` is the whole, visible text of an
    element at `selector` (one batch of engine messages lands in one render)."""
    last = page.locator(selector).get_by_text(expected[-1], exact=True)
    await expect(last.first).to_be_visible(timeout=MS)
    seen = await page.evaluate(VISIBLE_TEXTS, selector)
    missing = [text for text in expected if text not in seen]
    assert not missing, f"{page.url} {selector}: missing {missing}; saw {seen}"


async def assert_inert(kind: str, watched: WatchedPage) -> list[str]:
    """Nothing engine-supplied became markup or ran; returns the page's element ids."""
    shape = await watched.page.evaluate(PAGE_SHAPE)
    assert shape["pwned"] == "undefined", kind
    assert shape["csp"] == [], (kind, shape["csp"])
    assert shape["injected"] == 0, kind
    scripts = [*HUB_SCRIPTS, "/static/js/filters.js"] if kind == "overview" else HUB_SCRIPTS
    assert shape["scripts"] == scripts, (kind, shape["scripts"])
    ids = shape["ids"]
    assert len(ids) == len(set(ids)) and all(OUR_IDS.match(i) for i in ids), (kind, ids)
    if kind in ("overview", "engine"):  # an engine's page shows the hub's status too
        [status] = shape["hubStatus"]
        assert re.match(r"^\d+ engines?\b", status) and status.endswith("events/s"), status
    else:
        assert shape["hubStatus"] == [], kind
    paths = [urlsplit(url).path for url in watched.requests]
    assert not [p for p in paths if p == "/x" or p.startswith("/api/")], paths
    assert watched.problems == [], (kind, watched.problems)
    return list(ids)


@pytest.mark.parametrize("path", PUSH_PATHS)
async def test_engine_text_is_inert_on_every_page(
    path: str, hub: RunningHub, browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Markup, scripts, handlers and htmx attributes in engine fields render as inert, visible
    text, whichever path pushes them."""
    use_push_path(path, hub, monkeypatch)
    name = unique("hostile")
    engine = await connect_engine(hub, name)
    await engine.send(*hostile_messages(HOSTILE), batch=True)
    await engine.wait_acked()
    assert engine.errors == []
    origin = f"http://127.0.0.1:{hub.port}"
    urls = {"overview": "/", "engine": f"/engines/{name}", "embed": f"/embed/engines/{name}"}

    # First render, as the server sends it: only escaped forms.
    for path in urls.values():
        html = (await hub.http.get(path)).text
        for raw in HOSTILE:
            if raw != "\"'":
                assert raw not in html, (path, raw)
        assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html, path
        assert "&#34;&#39;" in html, path
    embed_html = (await hub.http.get(urls["embed"])).text
    found = re.search(r'<article id="card-(\d+)"', embed_html)
    assert found
    index = found.group(1)

    async with AsyncExitStack() as stack:
        pages: dict[str, WatchedPage] = {}
        frames: list[str] = []
        for kind, path in urls.items():
            pages[kind] = await stack.enter_async_context(live_page(browser, origin + path, frames))

        # First render plus the snapshot every page receives on connect.
        before: dict[str, list[str]] = {}
        for kind, expected in expected_texts(HOSTILE, index).items():
            for selector, texts in expected.items():
                await wait_visible_texts(pages[kind].page, selector, texts)
            before[kind] = await assert_inert(kind, pages[kind])

        # Live push to pages that are already open.
        pushed = [f"{value} 2" for value in HOSTILE]
        await engine.send(*hostile_messages(pushed), batch=True)
        await engine.wait_acked()
        for kind, expected in expected_texts(pushed, index).items():
            for selector, texts in expected.items():
                await wait_visible_texts(pages[kind].page, selector, texts)
            assert await assert_inert(kind, pages[kind]) == before[kind], kind
        assert frames, "no live frames were seen"
        assert not [f for f in frames if "<script>window" in f or "<img src=x" in f]
    await engine.close()


# -- cards that cannot mislead (issue 15) ------------------------------------------------------


async def test_an_error_then_recovery_shows_the_error_as_past_with_its_age(
    hub: RunningHub, browser: Browser
) -> None:
    """An error is red with its time and age; after a running heartbeat it is muted and 'recovered'."""
    name = unique("heals")
    engine = await connect_engine(hub, name)
    await engine.send({"kind": "heartbeat", "status": "running", "loop_tick": 1})
    async with live_page(browser, f"http://127.0.0.1:{hub.port}/") as watched:
        the_card = card(watched.page, name)
        await engine.send(
            {"kind": "event", "type": "error", "payload": {"message": "no quote for TCS"}}
        )
        error = the_card.locator("p.last-error")
        await expect(error).to_have_text(
            re.compile(r"^error \d\d:\d\d:\d\d \((just now|\d+ s ago)\): no quote for TCS$"),
            timeout=MS,
        )
        await expect(error).not_to_have_class(re.compile(r"\bpast\b"))
        await expect(field(the_card, "errors 15 min")).to_have_text("1")
        await engine.wait_acked()
        await engine.send({"kind": "heartbeat", "status": "running", "loop_tick": 2})
        await expect(error).to_have_class(re.compile(r"\bpast\b"), timeout=MS)
        await expect(error).to_have_text(
            re.compile(
                r"^last error \d\d:\d\d:\d\d \((just now|\d+ s ago)\) · recovered "
                r"(just now|\d+ s ago): no quote for TCS$"
            )
        )
        colours = await error.evaluate(
            "(e) => [getComputedStyle(e).color, getComputedStyle(e.closest('article')"
            ".querySelector('dt')).color]"
        )
        assert colours[0] == colours[1], colours  # muted like the labels, not alarm red
        await assert_clean(watched, f"http://127.0.0.1:{hub.port}")
    await engine.close()


async def test_a_killed_engine_is_offline_since_and_its_uptime_stands_still(
    hub: RunningHub, browser: Browser
) -> None:
    """A dropped socket: 'offline since HH:MM:SS (…)', and uptime no longer advances."""
    name = unique("killed")
    started = time.time() - 100
    engine = await connect_engine(hub, name, started_at=started)
    await engine.send({"kind": "heartbeat", "status": "running", "loop_tick": 1})
    await engine.wait_acked()
    url = f"http://127.0.0.1:{hub.port}/"
    async with live_page(browser, url) as watched:
        page = watched.page
        the_card = card(page, name)
        uptime = field(the_card, "uptime")
        await expect(uptime).to_have_text(re.compile(r"^1m 4\ds$"))
        await engine.close()  # no bye
        status = field(the_card, "status")
        await expect(status).to_have_text(
            re.compile(r"^offline since \d\d:\d\d:\d\d \(0m \d\ds\)$"), timeout=MS
        )
        frozen = await uptime.inner_text()
        offline_for = await status.locator("[data-since]").inner_text()
        # Look again once the offline age itself has moved on (the page's ticker, not a sleep).
        await expect(status.locator("[data-since]")).not_to_have_text(offline_for, timeout=MS)
        await expect(uptime).to_have_text(frozen)
        await page.reload()  # a fresh server render at a later `now`
        await expect(field(card(page, name), "uptime")).to_have_text(frozen)
        await expect(card(page, name).locator(".health")).to_have_text("offline")


HEALTH_SIGNATURE = """
(cards) => cards.map((c) => {
  const state = c.querySelector(".state"), style = getComputedStyle(c);
  return {
    health: c.querySelector(".health").textContent,
    icon: c.querySelector(".icon").textContent,
    border: `${style.borderLeftStyle} ${style.borderLeftWidth}`,
    boxed: getComputedStyle(state).borderTopStyle,
    visible: c.querySelector(".icon").checkVisibility() && state.checkVisibility(),
  };
})
"""


async def test_each_health_state_differs_in_more_than_colour(
    hub: RunningHub, browser: Browser
) -> None:
    """Every health's card has its own icon (and label) on screen, not only its own colour."""
    now = time.time()
    interval = hub.hub.settings.heartbeat_interval
    base = {
        "status": Status.RUNNING,
        "connected": True,
        "connected_at": now - 1000,
        "last_heartbeat": now,
        "loop_tick": 1,
        "tick_changed_at": now,
        "started_at": now - 1000,
    }
    shapes = {
        Health.OK: {},
        Health.LATE: {"last_heartbeat": now - 3 * interval},
        Health.STALE: {"last_heartbeat": now - 10 * interval},
        Health.STALLED: {"tick_changed_at": now - 10 * interval},
        Health.ERROR: {"status": Status.ERROR},
        Health.OFFLINE: {"connected": False, "disconnected_at": now - 5},
        Health.STOPPED: {"said_bye": True, "status": Status.STOPPED, "stopped_at": now - 5},
    }
    views = hub.hub.views
    html = ""
    for i, (health, fields) in enumerate(shapes.items()):
        record = EngineRecord(f"shape{i}", now, index=900 + i, **{**base, **fields})
        model = views.card_model(record, now)
        assert model["health"] == health.value
        html += views.env.get_template("partials/_card.html").render(card=model, oob=False)
    async with watched_page(browser) as watched:
        page = watched.page
        await page.goto(f"http://127.0.0.1:{hub.port}/")
        # A container of our own: live pushes swap #cards, and must not replace these cards.
        await page.evaluate(
            """(html) => {
              const shapes = document.createElement("section");
              shapes.id = "shapes";
              shapes.className = "cards";
              shapes.innerHTML = html;
              document.querySelector("main").prepend(shapes);
            }""",
            html,
        )
        cards = page.locator("#shapes article.card")
        await expect(cards).to_have_count(len(shapes))
        seen = await cards.evaluate_all(HEALTH_SIGNATURE)
    assert [s["health"] for s in seen] == [h.value for h in shapes]
    assert all(s["visible"] for s in seen), seen
    icons = [s["icon"] for s in seen]
    assert len(set(icons)) == len(icons), seen  # a shape per state: readable in greyscale
    marks = {(s["icon"], s["border"], s["boxed"]) for s in seen}
    assert len(marks) == len(seen), seen


OVERFLOW = "() => [document.documentElement.scrollWidth, window.innerWidth]"
TRUNCATED = """
(text) => {
  const shown = [...document.querySelectorAll("#signals td bdi")].find(
    (e) => e.textContent.startsWith(text));
  return shown !== undefined && shown.scrollWidth > shown.clientWidth;
}
"""


@pytest.mark.parametrize("width", [390, 1600])
async def test_no_horizontal_page_overflow(hub: RunningHub, browser: Browser, width: int) -> None:
    """Overview and engine page fit a phone and a desktop; a truncated cell shows its text on hover."""
    name = unique("wide")
    engine = await connect_engine(hub, name, mode="live")
    long = "mean_reversion_with_a_very_long_strategy_name_" * 2  # under the 120-char cell cap
    await engine.send(
        {
            "kind": "heartbeat",
            "status": "running",
            "loop_tick": 1,
            "state": {"note": "x" * 300, "pnl": {"realized": 123456789.5, "currency": "INR"}},
        },
        {
            "kind": "event",
            "type": "signal_event",
            "payload": {"symbol": "BANKNIFTY 48000 CE", "side": "long", "strategy": long},
        },
        {"kind": "event", "type": "error", "payload": {"message": "y" * 280}},
        {"kind": "log", "level": "INFO", "message": "z" * 400},
    )
    await engine.wait_acked()
    origin = f"http://127.0.0.1:{hub.port}"
    async with live_page(browser, origin + "/") as watched:
        page = watched.page
        await page.set_viewport_size({"width": width, "height": 900})
        for url in (origin + "/", f"{origin}/engines/{name}"):
            await page.goto(url)
            await expect(page.locator("#conn")).to_have_text("live", timeout=MS)
            scroll, inner = await page.evaluate(OVERFLOW)
            assert scroll <= inner, (url, width, scroll, inner)
        await page.goto(origin + "/")
        # Find and measure in one script turn: a live push may replace the table at any moment.
        assert await page.evaluate(TRUNCATED, "mean_reversion_with")  # truncated...
        cell = page.locator("#signals td", has_text="mean_reversion_with").first
        async with asyncio.timeout(WAIT):
            while await cell.get_attribute("title") != long:  # ...but never silently
                await cell.hover()  # (again, if a push replaced the cell after the last hover)
    await engine.close()


async def test_first_paint_without_javascript_shows_ages_and_uptime(
    hub: RunningHub, browser: Browser
) -> None:
    """With JavaScript off the server-rendered card already says uptime and heartbeat age."""
    name = unique("nojs")
    engine = await connect_engine(hub, name, started_at=time.time() - 3700)
    await engine.send({"kind": "heartbeat", "status": "running", "loop_tick": 1})
    await engine.wait_acked()
    context = await browser.new_context(java_script_enabled=False)
    try:
        page = await context.new_page()
        await page.goto(f"http://127.0.0.1:{hub.port}/")
        the_card = card(page, name)
        await expect(field(the_card, "uptime")).to_have_text(re.compile(r"^1h 01m$"))
        await expect(field(the_card, "heartbeat")).to_have_text(re.compile(r"just now|\d+ s ago"))
        await expect(the_card.locator(".time, time").first).to_have_count(0)  # nothing pending
        assert await page.evaluate("typeof htmx") == "undefined"  # really no script ran
    finally:
        await context.close()
    await engine.close()


async def test_top_bar_totals_pnl_per_mode_and_currency(browser: Browser) -> None:
    """Paper and live are totalled apart, and so are currencies; the card shows its own P&L."""
    async with running_hub() as own:
        reports = {
            "p1": ("paper", {"realized": 100.0, "unrealized": 10.0, "currency": "INR"}),
            "p2": ("paper", {"realized": 50.0, "exposure": 9000.0, "currency": "INR"}),
            "l1": ("live", {"realized": -30.0, "currency": "INR"}),
            "u1": ("paper", {"unrealized": 7.0, "currency": "USD"}),
        }
        engines = []
        for name, (mode, pnl) in reports.items():
            engine = await connect_engine(own, name, mode=mode)
            await engine.send({"kind": "heartbeat", "status": "running", "state": {"pnl": pnl}})
            await engine.wait_acked()
            engines.append(engine)
        async with live_page(browser, f"http://127.0.0.1:{own.port}/") as watched:
            page = watched.page
            pills = page.locator("#hub-status .pnl-total")
            await expect(pills).to_have_text(
                ["LIVE P&L -30.00 INR", "PAPER P&L +160.00 INR", "PAPER P&L +7.00 USD"]
            )
            await expect(field(card(page, "p1"), "P&L")).to_have_text("+110.00 INR")
            await expect(field(card(page, "p2"), "exposure")).to_have_text("9,000 INR")
            await engines[0].send({"kind": "heartbeat", "state": {"pnl": {"realized": 0.0}}})
            await expect(pills).to_have_text(  # live: p1 now reports no currency
                [
                    "LIVE P&L -30.00 INR",
                    "PAPER P&L +0.00",
                    "PAPER P&L +50.00 INR",
                    "PAPER P&L +7.00 USD",
                ],
                timeout=MS,
            )
            await page.goto(f"http://127.0.0.1:{own.port}/engines/p2")
            await expect(field(page.locator("article.card"), "P&L")).to_have_text("+50.00 INR")
        for engine in engines:
            await engine.close()


async def test_tab_title_counts_problems_on_first_paint_and_live(browser: Browser) -> None:
    """'(2) Engine Hub — 1 error, 1 offline', server-rendered and then kept current, on the
    overview and (after the engine's name) on an engine's page. (Alerts are off here: firing
    ones would add '· N alerts firing', tested in test_alerts.)"""
    async with running_hub(alerts=AlertSettings(enabled=False)) as own:
        fine = await connect_engine(own, "fine")
        failing = await connect_engine(own, "failing")
        killed = await connect_engine(own, "killed")
        for engine in (fine, failing, killed):
            await engine.send({"kind": "heartbeat", "status": "running", "loop_tick": 1})
            await engine.wait_acked()
        await failing.send({"kind": "heartbeat", "status": "error", "last_error": "E: down"})
        await failing.wait_acked()
        await killed.close()
        expected = "(2) Engine Hub \u2014 1 error, 1 offline"
        async with asyncio.timeout(WAIT):
            while expected not in (await own.http.get("/")).text:  # a disconnect is asynchronous
                await asyncio.sleep(0.05)  # polling the hub's verdict, not synchronizing a test
        async with live_page(browser, f"http://127.0.0.1:{own.port}/") as watched:
            page = watched.page
            await expect(page).to_have_title(expected)
            await failing.send({"kind": "heartbeat", "status": "running"})
            await expect(page).to_have_title("(1) Engine Hub \u2014 1 offline", timeout=MS)
        async with live_page(browser, f"http://127.0.0.1:{own.port}/engines/fine") as watched:
            page = watched.page  # an engine's page: its name first, the hub's problems after it
            await expect(page).to_have_title("fine \u00b7 (1) Engine Hub \u2014 1 offline")
            again = await connect_engine(own, "killed")
            await expect(page).to_have_title("fine \u00b7 Engine Hub", timeout=MS)
            await again.close()
        await fine.close()
        await failing.close()


async def test_times_switch_between_utc_and_local_and_the_choice_is_remembered(
    hub: RunningHub, browser: Browser
) -> None:
    """The top-bar switch shows every time (pushed ones too) in local time, and survives a reload."""
    name = unique("tz")
    engine = await connect_engine(hub, name)
    await engine.send(
        {"kind": "log", "level": "INFO", "message": "first line", "ts": 1_700_000_000},
        {"kind": "event", "type": "error", "payload": {"message": "a table with times"}},
    )
    await engine.wait_acked()
    context = await browser.new_context(timezone_id="Asia/Kolkata")  # UTC+05:30
    try:
        page = await context.new_page()
        await page.goto(f"http://127.0.0.1:{hub.port}/engines/{name}")
        await expect(page.locator("#conn")).to_have_text("live", timeout=MS)
        first = page.locator("li", has_text="first line").locator("time")
        await expect(first).to_have_text("22:13:20")
        toggle = page.locator("#tz-toggle")
        await expect(toggle).to_have_text("UTC")
        assert "time (UTC)" in await page.locator("main").inner_text()
        await toggle.click()
        await expect(first).to_have_text("03:43:20")
        await expect(toggle).to_have_text("local time")
        assert "time (UTC)" not in await page.locator("main").inner_text()  # headings follow
        await page.reload()
        await expect(page.locator("#conn")).to_have_text("live", timeout=MS)
        await expect(first).to_have_text("03:43:20")  # remembered
        await engine.send(
            {"kind": "log", "level": "INFO", "message": "pushed", "ts": 1_700_003_600}
        )
        pushed = page.locator("li", has_text="pushed").locator("time")
        await expect(pushed).to_have_text("04:43:20", timeout=MS)
    finally:
        await context.close()
    await engine.close()


async def test_the_theme_follows_the_system_colour_scheme(
    hub: RunningHub, browser: Browser
) -> None:
    """A light system gets a light page and a dark one a dark page (prefers-color-scheme)."""
    backgrounds = {}
    for scheme in ("light", "dark"):
        context = await browser.new_context(color_scheme=scheme)
        try:
            page = await context.new_page()
            await page.goto(f"http://127.0.0.1:{hub.port}/")
            backgrounds[scheme] = await page.evaluate(
                "() => getComputedStyle(document.body).backgroundColor"
                ".match(/\\d+/g).slice(0, 3).reduce((a, b) => a + Number(b), 0)"
            )
        finally:
            await context.close()
    assert backgrounds["light"] > 600 > 100 > backgrounds["dark"], backgrounds
