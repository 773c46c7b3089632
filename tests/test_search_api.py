"""Search over a real hub: `GET /api/telemetry/search` and the `/search` page in Chromium."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, expect

from tests.conftest import WAIT, RunningHub, connect_engine, running_hub, unique, watched_page

MS = WAIT * 1000
XSS = "<img src=x onerror=document.title='owned'>"


def log(message: str, level: str = "INFO", **extra: Any) -> dict[str, Any]:
    return {
        "kind": "log",
        "ts": time.time(),
        "level": level,
        "logger": "engine.t",
        "message": message,
        **extra,
    }


def order(**payload: Any) -> dict[str, Any]:
    return {"kind": "event", "ts": time.time(), "type": "order_event", "payload": payload}


async def search(running: RunningHub, **params: Any) -> dict[str, Any]:
    response = await running.http.get("/api/telemetry/search", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_search_finds_a_log_line_written_before_a_restart(tmp_path: Path) -> None:
    """A line stored by one hub is found by the next one on the same file, with its engine, level,
    marked words and a timeline link around its time."""
    db, name = str(tmp_path / "hub.db"), unique("srch")
    async with running_hub(db=db) as first:
        engine = await connect_engine(first, name)
        await engine.send(log("margin call zqxbefore from broker", "WARNING"))
        await engine.wait_acked()
        await engine.close()
    async with running_hub(db=db) as second:
        body = await search(second, q="zqxbefore broker")
    [hit] = body["hits"]
    assert (hit["kind"], hit["engine"], hit["level"], hit["logger"]) == (
        "log",
        name,
        "WARNING",
        "engine.t",
    )
    assert [p["text"] for p in hit["snippet"] if p["match"]] == ["zqxbefore", "broker"]
    assert "".join(p["text"] for p in hit["snippet"]) == "margin call zqxbefore from broker"
    assert hit["timeline"] == f"/timeline?engine={name}&around={int(hit['unix'])}"
    assert body["next"] is None


async def test_event_payloads_are_searched_with_type_and_engine_filters(tmp_path: Path) -> None:
    """Words in an event's payload find it (sent alone or in a batch kept verbatim); `type` keeps
    events of that type only, `level` log lines only, `engine` one engine."""
    names = [unique("srch"), unique("srch")]
    async with running_hub(db=str(tmp_path / "hub.db")) as running:
        for n, name in enumerate(names):
            engine = await connect_engine(running, name)
            await engine.send(order(symbol="ZQXNIFTY", status="rejected", n=n))
            batch = [order(symbol=f"FILL{i}", note="zqxbatch") for i in range(20)]
            await engine.send(*batch, log("zqxnifty order rejected", "ERROR"), batch=True)
            await engine.wait_acked()
        both = await search(running, q="zqxnifty rejected")
        assert {(h["kind"], h["engine"]) for h in both["hits"]} == {
            (kind, name) for kind in ("log", "event") for name in names
        }
        events = await search(running, q="zqxnifty", type="order_event", engine=names[1])
        assert [(h["kind"], h["engine"], h["type"]) for h in events["hits"]] == [
            ("event", names[1], "order_event")
        ]
        lines = await search(running, q="zqxnifty", level="ERROR")
        assert {h["kind"] for h in lines["hits"]} == {"log"} and len(lines["hits"]) == 2
        assert (await search(running, q="zqxnifty", level="CRITICAL"))["hits"] == []
        batch_hits = await search(running, q="zqxbatch fill7", engine=names[0])
        assert len(batch_hits["hits"]) == 1
        until = await search(running, q="zqxnifty", until=str(time.time() - 3600))
        assert until["hits"] == []


async def test_paging_by_cursor_returns_each_hit_once(tmp_path: Path) -> None:
    """With `limit`, `next` leads page by page through every hit, each once; 40 hits at 8 a page
    are 5 full pages, the last without a `next` (no empty page promised)."""
    name = unique("srch")
    async with running_hub(db=str(tmp_path / "hub.db")) as running:
        engine = await connect_engine(running, name)
        await engine.send(*[log(f"zqxpage line {i}") for i in range(23)])
        await engine.send(*[order(note="zqxpage", i=i) for i in range(17)], batch=True)
        await engine.wait_acked()
        seen: list[tuple[str, int]] = []
        params: dict[str, Any] = {"q": "zqxpage", "limit": 8}
        pages = 0
        while True:
            body = await search(running, **params)
            assert len(body["hits"]) == 8
            pages += 1
            seen += [(h["kind"], h["id"]) for h in body["hits"]]
            if body["next"] is None:
                break
            params["cursor"] = body["next"]
    assert len(seen) == len(set(seen)) == 40 and pages == 5


@pytest.mark.parametrize(
    "q",
    [
        '"unbalanced',
        "col:term",
        "message:secret",
        "NEAR(a b",
        "*",
        "x" * 10_240,
        "'; DROP TABLE logs; --",
        "a) OR (b",
        '"" OR ""',
        "-a -b",
        "OR",
        "\x00",
        "ünïcödé*",
    ],
)
async def test_hostile_queries_get_a_clear_400_or_a_literal_search(hub: RunningHub, q: str) -> None:
    """Whatever `q` holds, the answer is a JSON 400 saying what to fix or a 200 search of the
    literal words: never a 500, never FTS5 syntax."""
    response = await hub.http.get("/api/telemetry/search", params={"q": q})
    assert response.status_code in (200, 400), response.text
    body = response.json()
    if response.status_code == 400:
        assert body["error"] == "bad_request" and body["detail"].startswith("q: ")
    else:
        assert body["hits"] == [] or all(h["kind"] in ("log", "event") for h in body["hits"])


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({}, "q is required"),
        ({"q": "x", "limit": "0"}, "limit must be at least 1"),
        ({"q": "x", "cursor": "bogus"}, "cursor is not one this hub handed out"),
        ({"q": "x", "level": "ERROR", "type": "order_event"}, "pass one of them"),
        ({"q": "x", "type": "a b"}, "type must be an event type"),
        ({"q": "x", "since": "yesterday"}, "since:"),
        ({"q": "x", "engine": "no/such"}, "engine must be an engine name"),
    ],
)
async def test_bad_parameters_get_a_400_that_says_what_to_fix(
    hub: RunningHub, params: dict[str, str], detail: str
) -> None:
    """Missing q, a bad limit, cursor, filter or time: a JSON 400, never a 500."""
    response = await hub.http.get("/api/telemetry/search", params=params)
    assert response.status_code == 400
    assert detail in response.json()["detail"]


async def test_the_search_page_shows_hits_as_text_with_marks_and_pages_on(
    browser: Browser, tmp_path: Path
) -> None:
    """In Chromium, /search shows a hit whose engine text holds markup as text (no <img> made, no
    script run), its matched word marked, a timeline link; "more" appends the next page; the
    navigation links to the page; no CSP violation."""
    name = unique("srch")
    async with running_hub(db=str(tmp_path / "hub.db")) as running:
        engine = await connect_engine(running, name)
        await engine.send(
            *[log(f"zqxpage older {i}") for i in range(3)], log(f"zqxpage {XSS}", "ERROR")
        )
        await engine.wait_acked()
        base = f"http://127.0.0.1:{running.port}"
        async with watched_page(browser) as watched:
            page = watched.page
            await page.goto(base + "/")
            await page.locator(".topbar a.navlink", has_text="search").click()
            await expect(page).to_have_url(base + "/search")
            await page.fill("input[name=q]", "zqxpage")
            await page.fill("input[name=engine]", name)
            await page.click("button[type=submit]")
            hits = page.locator("#search-hits li.search-hit")
            await expect(hits).to_have_count(4, timeout=MS)
            first = hits.first
            await expect(first.locator(".msg")).to_contain_text(XSS)
            await expect(first.locator("mark")).to_have_text("zqxpage")
            assert await page.locator("#search-results img").count() == 0
            link = first.locator("a.timeline-link")
            href = await link.get_attribute("href")
            assert href is not None and href.startswith(f"/timeline?engine={name}&around=")
            await page.goto(base + f"/search?q=zqxpage&engine={name}&limit=1")
            await expect(hits).to_have_count(1, timeout=MS)
            for shown in (2, 3, 4):
                await page.locator("#search-more a").click()
                await expect(hits).to_have_count(shown, timeout=MS)
            await expect(page.locator("#search-more")).to_have_count(0)
            texts = await hits.locator(".msg").all_inner_texts()
            assert len(set(texts)) == 4 and "owned" not in await page.title()
            assert watched.problems == []
