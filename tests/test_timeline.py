"""The timeline and range picker (#18 items 3 and 5): `/timeline`, the engine page's lane, the
history APIs' `range=`/`around=`, with a real hub, real engine sockets and real Chromium."""

from __future__ import annotations

import asyncio
import re
import time
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from playwright.async_api import Browser, Page

from tests.conftest import (
    WAIT,
    Engine,
    RunningHub,
    connect_engine,
    running_hub,
    unique,
    watched_page,
)
from tests.test_alerts import fast, until

MARKERS = "#timeline svg a.marker-link"


def markers(html: str) -> list[tuple[str, str, str]]:
    """(href, kind, tooltip) of every marker on the axis of a page's HTML."""
    found = re.findall(
        r'<a class="marker-link" href="([^"]*)"><circle class="marker m-(\w+)"[^>]*>'
        r"<title>(.*?)</title>",
        html,
    )
    return [(unescape(h), k, unescape(t)) for h, k, t in found]


def rows(html: str) -> list[tuple[str, str, str]]:
    """(kind, engine, label) of every row of the list view."""
    found = re.findall(
        r'<tr class="t-(\w+)">\s*<td class="time">.*?</td>\s*<td><bdi>(.*?)</bdi></td>\s*'
        r'<td><a href="[^"]*"><bdi>(.*?)</bdi></a></td>',
        html,
        re.S,
    )
    return [(k, unescape(e), unescape(label)) for k, e, label in found]


async def events(engine: Engine, *kinds: tuple[str, dict[str, Any]]) -> None:
    """Send events of the given types and payloads, and wait until they are stored."""
    now = time.time()
    await engine.send(*({"kind": "event", "ts": now, "type": t, "payload": p} for t, p in kinds))
    await engine.wait_acked()


async def page_markers(page: Page) -> list[tuple[str | None, str | None, str]]:
    """(href, class, tooltip) of every marker the browser shows."""
    found: list[tuple[str | None, str | None, str]] = await page.eval_on_selector_all(
        MARKERS,
        "els => els.map(a => [a.getAttribute('href'), a.firstElementChild.getAttribute('class'),"
        " a.querySelector('title').textContent])",
    )
    return [tuple(m) for m in found]  # type: ignore[misc]


# -- history after a restart -------------------------------------------------------------------


def actions(bundle: dict[str, Any]) -> set[tuple[str, str]]:
    """(action, rule) of an export bundle's audit entries."""
    return {(a["action"], a["detail"].split(":", 1)[0]) for a in bundle["audit"]}


async def test_the_timeline_shows_two_engines_health_restart_gap_and_alerts_after_a_restart(
    tmp_path: Path,
) -> None:
    """Events of two engines, a health transition, a restart, a gap and an alert's firing and
    resolve are all on the timeline of a hub restarted on the same database."""
    db = str(tmp_path / "hub.db")
    alpha, beta = unique("alpha"), unique("beta")
    async with running_hub(db=db, alerts=fast([]), view_tick=0.05) as running:
        first = await connect_engine(running, alpha)
        await first.send({"kind": "heartbeat", "status": "running", "loop_tick": 1})
        await events(first, ("signal_event", {"symbol": "NIFTY"}))
        await first.send({"kind": "log", "seq": first.seq + 4, "level": "INFO", "message": "x"})
        await first.wait_acked()  # seqs in between never came: a gap
        other = await connect_engine(running, beta)
        await events(other, ("order_event", {"status": "fill", "symbol": "TCS"}))
        await first.close()  # no bye: offline, and the offline alert fires
        await until(
            running,
            lambda b: ("alert.firing", "offline") in actions(b),
            "/api/telemetry/export",
            engine=alpha,
        )
        again = await connect_engine(running, alpha)  # a new boot: a restart
        await again.send({"kind": "heartbeat", "status": "running", "loop_tick": 2})
        await again.wait_acked()
        await until(
            running,
            lambda b: ("alert.resolved", "offline") in actions(b),
            "/api/telemetry/export",
            engine=alpha,
        )
        await again.close()
        await other.close()
    async with running_hub(db=db, alerts=fast([])) as restarted:
        response = await restarted.http.get(
            "/timeline", params=[("engine", alpha), ("engine", beta), ("range", "1h")]
        )
    assert response.status_code == 200, response.text
    listed = rows(response.text)
    kinds = {(kind, engine) for kind, engine, _ in listed}
    labels = {(engine, label) for _, engine, label in listed}
    assert {("event", alpha), ("event", beta), ("gap", alpha), ("boot", alpha)} <= kinds
    assert {(alpha, "signal"), (beta, "order fill"), (alpha, "restart")} <= labels
    assert {(alpha, "alert.firing"), (alpha, "alert.resolved")} <= labels
    assert (alpha, "gap: client_dropped") in labels
    assert any(
        e == alpha and k == "health" and label.endswith("→ offline") for k, e, label in listed
    )
    shown = markers(response.text)
    assert len(shown) >= len(listed)  # every listed item is on the axis too (fewer than a page)
    signal = next(m for m in shown if "· signal" in m[2])
    assert re.fullmatch(r"/chain\?event_id=\d+", signal[0])


# -- escaping ----------------------------------------------------------------------------------


async def test_engine_text_on_the_timeline_stays_text(hub: RunningHub, browser: Browser) -> None:
    """A `<script>` in an event payload, an order status and an error shows as text in the
    tooltips and the list; nothing runs; the engine's name is only ever a query value."""
    name = unique("esc")
    engine = await connect_engine(hub, name)
    evil = "<script>window.pwned=1</script><img src=x onerror=window.pwned=2>"
    await events(
        engine,
        ("signal_event", {"symbol": evil}),
        ("order_event", {"status": evil}),
        ("error", {"message": evil}),
    )
    response = await hub.http.get("/timeline", params={"engine": name, "range": "15m"})
    html = response.text
    section = html[html.index('<section id="timeline"') :]
    assert "<script>window" not in section and "<img" not in section
    for attribute, value in re.findall(r'([\w:-]+)="([^"]*)"', html):
        if name in value:  # a query value of a link (or the poll's URL), or the form's field
            assert attribute in ("href", "hx-get", "value"), (attribute, value)
            assert attribute == "value" or f"engine={name}" in urlsplit(unescape(value)).query
    async with watched_page(browser) as watched:
        page = watched.page
        await page.goto(f"http://127.0.0.1:{hub.port}/timeline?engine={name}&range=15m")
        tips = [t for _, _, t in await page_markers(page)]
        assert sum(evil in t for t in tips) == 3, tips
        assert await page.locator("#timeline table").inner_text() != ""
        assert evil in await page.locator("#timeline table").inner_text()
        assert await page.evaluate("window.pwned") is None
        assert await page.locator("#timeline script, #timeline img").count() == 0
        assert watched.problems == []
    await engine.close()


# -- the URL keeps the picture -----------------------------------------------------------------


async def test_a_range_url_shows_the_same_timeline_after_reload(
    hub: RunningHub, browser: Browser
) -> None:
    """A preset link, a zoom zone and the custom form each put the range in the URL; reloading
    (or pasting) that URL shows the same markers; links are plain hrefs (no JavaScript needed)."""
    name = unique("reload")
    engine = await connect_engine(hub, name)
    await events(engine, ("signal_event", {"n": 1}), ("decision_trace", {"n": 2}), ("error", {}))
    base = f"http://127.0.0.1:{hub.port}"
    async with watched_page(browser) as watched:
        page = watched.page
        await page.goto(f"{base}/timeline?engine={name}&range=1h")
        before = await page_markers(page)
        assert sorted(c or "" for _, c, _ in before) == [
            "marker m-boot",
            "marker m-error",
            "marker m-event",
            "marker m-event",
        ]
        await page.click("#range-picker a.range-preset >> text=6h")
        await page.wait_for_url(re.compile(r"range=6h"))
        assert parse_qs(urlsplit(page.url).query) == {"engine": [name], "range": ["6h"]}
        six = await page_markers(page)
        await page.reload()
        assert await page_markers(page) == six
        assert sorted(six) == sorted(before)  # the same markers, in a wider window
        await page.click("#range-picker a.range-permalink")  # the window pinned
        await page.wait_for_url(re.compile(r"since=.*until="))
        pinned_url, pinned = page.url, await page_markers(page)
        await page.goto("about:blank")
        await page.goto(pinned_url)  # a colleague pastes the link
        assert await page_markers(page) == pinned and len(pinned) == 4
        await page.fill("#range-picker input[name=since]", "2h")
        await page.fill("#range-picker input[name=until]", "")
        await page.click("#range-picker button[type=submit]")
        await page.wait_for_url(re.compile(r"since=2h"))
        assert parse_qs(urlsplit(page.url).query)["engine"] == [name]
        custom = await page_markers(page)
        await page.reload()
        assert await page_markers(page) == custom and len(custom) == 4
        assert watched.problems == []
    await engine.close()


async def test_the_engine_page_range_picker_keeps_the_range_in_the_url(
    hub: RunningHub, browser: Browser
) -> None:
    """On the engine page the picker's links stay on the page with ?range=…; a reload keeps the
    range (caption, current preset and the lane's markers); a bad range is a readable 400."""
    name = unique("epage")
    engine = await connect_engine(hub, name)
    await events(engine, ("signal_event", {"n": 1}))
    url = f"http://127.0.0.1:{hub.port}/engines/{name}"
    async with watched_page(browser) as watched:
        page = watched.page
        await page.goto(url)
        assert await page.inner_text("#range-picker .current") == "1h"
        await page.click("#range-picker a.range-preset >> text=24h")
        await page.wait_for_url(f"{url}?range=24h")
        await page.reload()
        assert await page.inner_text("#range-picker .current") == "24h"
        assert "last 24h" in (await page.text_content("#timeline h2") or "")
        assert len(await page_markers(page)) == 2  # its boot and its signal
        response = await page.goto(f"{url}?range=forever")
        assert response is not None and response.status == 400
        assert "range 'forever' is not a duration" in await page.inner_text("main")
        assert [p for p in watched.problems if "400" not in p] == []
    await engine.close()


async def test_new_markers_appear_while_the_range_includes_now(
    hub: RunningHub, browser: Browser
) -> None:
    """A live range polls its fragment: an event sent after the page loaded shows up; a window
    in the past does not poll at all."""
    name = unique("live")
    engine = await connect_engine(hub, name)
    async with watched_page(browser) as watched:
        page = watched.page
        await page.goto(f"http://127.0.0.1:{hub.port}/timeline?engine={name}&range=15m")
        assert await page.locator(MARKERS).count() == 1  # its boot
        await events(engine, ("signal_event", {"n": 1}))
        signal = page.locator(f"{MARKERS} circle.m-event")  # the CSP forbids wait_for_function
        await signal.wait_for(state="attached", timeout=WAIT * 1000)
        assert await page.locator(MARKERS).count() == 2
        past = time.time() - 7200
        await page.goto(
            f"http://127.0.0.1:{hub.port}/timeline?engine={name}&since={past}&until={past + 60}"
        )
        assert await page.get_attribute("#timeline", "hx-get") is None
        assert watched.problems == []
    await engine.close()


# -- the APIs take the same ranges ---------------------------------------------------------------


async def test_history_apis_take_range_and_around(hub: RunningHub) -> None:
    """`/api/telemetry/events` and `engine_logs` take `range=` and `around=` (±5 min); bad ones
    are a JSON 400 that says what is allowed."""
    name = unique("api")
    engine = await connect_engine(hub, name)
    now = time.time()
    await engine.send(
        {"kind": "event", "ts": now - 3 * 3600, "type": "signal_event", "payload": {"n": 1}},
        {"kind": "event", "ts": now - 60, "type": "signal_event", "payload": {"n": 2}},
        {"kind": "log", "ts": now - 3 * 3600, "level": "INFO", "message": "old"},
        {"kind": "log", "ts": now - 60, "level": "INFO", "message": "new"},
    )
    await engine.wait_acked()

    async def payloads(**params: Any) -> list[int]:
        body = await hub.get("/api/telemetry/events", engine=name, **params)
        return [e["payload"]["n"] for e in body["events"]]

    assert await payloads(range="1h") == [2]
    assert await payloads(range="6h") == [2, 1]
    assert await payloads(around=str(now - 3 * 3600 + 200)) == [1]
    assert await payloads(around=str(now - 3 * 3600 + 400)) == []  # outside ±5 min
    assert await payloads(around=str(now - 3 * 3600 + 400), range="20m") == [1]
    logs = await hub.get("/api/telemetry/engine_logs", engine=name, range="1h")
    assert [line["message"] for line in logs["lines"]] == ["new"]
    for params in ({"range": "soon"}, {"range": "1h", "since": "2h"}, {"around": "x"}):
        response = await hub.http.get("/api/telemetry/events", params=params)
        assert response.status_code == 400 and response.json()["error"] == "bad_request"
    fragment = await hub.http.get("/fragments/timeline", params={"index": "x"})
    assert fragment.status_code == 400
    assert asyncio.get_running_loop()  # the hub answered every bad query without a 500
    await engine.close()


async def test_the_list_view_pages_newest_first_by_time(hub: RunningHub) -> None:
    """The list shows 50 markers a page, newest first; its "older" link shows the rest, none
    twice, and the axis still shows the whole window."""
    name = unique("pages")
    engine = await connect_engine(hub, name)
    now = time.time()
    await engine.send(
        *(
            {"kind": "event", "ts": now - 100 + i, "type": "signal_event", "payload": {"n": i}}
            for i in range(60)
        )
    )
    await engine.wait_acked()
    first = (await hub.http.get("/timeline", params={"engine": name, "range": "15m"})).text
    older = re.search(r'<a class="older" href="([^"]*)"', first)
    assert older is not None
    second = (await hub.http.get("/timeline" + unescape(older.group(1)))).text
    assert re.search(r'<a class="older"', second) is None
    details = [
        re.findall(r'<td class="reason"><bdi>(.*?)</bdi></td>', page) for page in (first, second)
    ]
    assert len(details[0]) == 50 and len(details[1]) == 11  # 60 signals and the boot
    shown = [unescape(d) for d in details[0] + details[1]]
    assert shown == ["pid 4242"] + [f'{{"n": {i}}}' for i in range(59, -1, -1)]  # boot: newest
    assert len(markers(first)) == len(markers(second)) == 61
    await engine.close()


async def test_markers_sharing_one_instant_are_paged_once_each(hub: RunningHub) -> None:
    """120 events at one timestamp: the "older" links step through them, none lost or repeated."""
    name = unique("ties")
    engine = await connect_engine(hub, name)
    at = time.time() - 100.123456789  # not a whole microsecond: the cursor must keep it exactly
    await engine.send(
        *(
            {"kind": "event", "ts": at, "type": "signal_event", "payload": {"n": i}}
            for i in range(120)
        )
    )
    await engine.wait_acked()
    pages = [(await hub.http.get("/timeline", params={"engine": name, "range": "15m"})).text]
    while older := re.search(r'<a class="older" href="([^"]*)"', pages[-1]):
        assert len(pages) < 5, "the pager does not advance"
        pages.append((await hub.http.get("/timeline" + unescape(older.group(1)))).text)
    details = [re.findall(r'<td class="reason"><bdi>(.*?)</bdi></td>', page) for page in pages]
    assert [len(d) for d in details] == [50, 50, 21]  # 120 signals and the boot
    shown = [unescape(d) for page in details for d in page if d != "pid 4242"]
    assert sorted(shown) == sorted(f'{{"n": {i}}}' for i in range(120))
    bad = await hub.http.get("/timeline", params={"engine": name, "before": str(at), "skip": "-1"})
    assert bad.status_code == 400 and "skip" in bad.text
    await engine.close()
