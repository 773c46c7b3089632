"""The live dashboard in real Chromium: pages, live pushes, health, reconnects and escaping."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, Locator, Page, Route, expect

from hub.live.views import TABLE_ROWS
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
        await expect(card(page, name).locator("p.last-error")).to_have_text("broker slow")
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
        await expect(field(stopped_card, "status")).to_have_text("stopped")
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
    r"|filters|forget-form"
    r"|(card|state|metrics|elogs|esignals|eorders|positions|decisions|cycles|eerrors)-\d+)$"
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
    "img, button:not(#embed-form button, #forget-form button), script:not([src]), " +
    "[hx-get], [hx-trigger], " +
    "[hx-on\\\\:click], [onerror]").length,  // the embed form is ours (admins only)
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
    card_error = {f"#card-{index} p.last-error": [" ".join(values)]}
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
    if kind == "overview":
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
