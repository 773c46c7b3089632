"""Alerts end to end: a real hub, real engine sockets and real HTTP receivers on port 0."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, expect

from hub.core.alert_settings import AlertSettings, parse_alerts
from tests.conftest import (
    WAIT,
    Engine,
    RunningHub,
    connect_engine,
    running_hub,
    sse,
    unique,
    watched_page,
)


@dataclass
class Receiver:
    """A tiny HTTP server that records every POST; `mode` says how it answers."""

    mode: str = "ok"  # ok (200), fail (500) or hang (never answers until released)
    requests: asyncio.Queue[tuple[str, Any]] = field(default_factory=asyncio.Queue)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0
    hanging: int = 0  # requests waiting for `release`

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            length = next(
                int(v)
                for k, _, v in (x.partition(": ") for x in lines)
                if k.lower() == "content-length"
            )
            body = json.loads(await reader.readexactly(length))
            await self.requests.put((lines[0].split()[1], body))
            if self.mode == "hang":
                self.hanging += 1
                await self.release.wait()
                self.hanging -= 1
                return
            status = b"200 OK" if self.mode == "ok" else b"500 Internal Server Error"
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def next(self) -> tuple[str, Any]:
        async with asyncio.timeout(WAIT):
            return await self.requests.get()


@asynccontextmanager
async def receiver(mode: str = "ok") -> AsyncIterator[Receiver]:
    """A receiver listening on 127.0.0.1, port 0."""
    r = Receiver(mode)
    server = await asyncio.start_server(r.handle, "127.0.0.1", 0)
    r.port = server.sockets[0].getsockname()[1]
    try:
        yield r
    finally:
        r.release.set()
        server.close()
        await server.wait_closed()


def fast(receivers: list[dict[str, Any]], **extra: Any) -> AlertSettings:
    """Alert settings for tests: short `for` and resolve times, quick retries."""
    rules = {
        "offline": {"for": "0.3s"},
        "status_error": {"for": 0},
        "clock_skew": {"enabled": False},
    }
    table = {"rules": rules, "resolve_after": "0.3s", "receivers": receivers, **extra}
    return parse_alerts(table)


def webhook(name: str, r: Receiver, **kw: Any) -> dict[str, Any]:
    return {"name": name, "type": "webhook", "url": r.url(), "backoff": "10ms", **kw}


async def live_engine(running: RunningHub, prefix: str, mode: str = "live") -> Engine:
    engine = await connect_engine(running, unique(prefix), mode=mode)
    await engine.send({"kind": "heartbeat", "status": "running", "loop_tick": 1})
    await engine.wait_acked()
    return engine


async def error(engine: Engine) -> None:
    await engine.send({"kind": "heartbeat", "status": "error", "last_error": "feed down"})
    await engine.wait_acked()


async def until(
    running: RunningHub, predicate: Any, path: str = "/api/alerts", **params: Any
) -> Any:
    """GET `path` until `predicate(body)` holds (each poll is a real request; bounded by WAIT)."""
    async with asyncio.timeout(WAIT):
        while not predicate(body := await running.get(path, **params)):
            await asyncio.sleep(0.02)  # a poll interval, not a synchronization
    return body


def engines_in(body: Any) -> list[str]:
    return [a["labels"]["engine"] for a in body["alerts"]]


async def test_killed_engine_fires_once_then_resolves_once() -> None:
    """An engine killed mid-run: one firing notification (Alertmanager webhook v4), then one
    resolved after it comes back; history (the export) keeps both and the delivery."""
    async with receiver() as ops:
        alerts = fast([webhook("ops", ops)])
        async with running_hub(alerts=alerts, view_tick=0.05) as running:
            engine = await live_engine(running, "killed")
            await engine.ws.close()  # no bye: offline
            path, body = await ops.next()
            assert path == "/hook" and body["version"] == "4" and body["status"] == "firing"
            assert body["receiver"] == "ops" and engines_in(body) == [engine.name]
            (alert,) = body["alerts"]
            assert alert["labels"]["alertname"] == "offline" and alert["labels"]["mode"] == "live"
            assert alert["endsAt"] == "0001-01-01T00:00:00Z"
            await connect_engine(running, engine.name, mode="live")
            _, body = await ops.next()
            assert body["status"] == "resolved" and engines_in(body) == [engine.name]
            assert body["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z"
            assert ops.requests.empty()
            exported = await until(
                running,
                lambda b: (
                    any(a["action"] == "alert.delivery" for a in b["audit"])
                    and sum(a["action"] == "alert.delivery" for a in b["audit"]) == 2
                ),
                "/api/telemetry/export",
                engine=engine.name,
            )
            actions = [a["action"] for a in exported["audit"] if a["engine"] == engine.name]
            assert actions.count("alert.firing") == 1 and actions.count("alert.resolved") == 1


async def test_paper_alert_shows_on_the_dashboard_but_never_pages() -> None:
    """By default a paper engine's alert is on /api/alerts and the panel, not at the receiver."""
    async with receiver() as ops:
        async with running_hub(alerts=fast([webhook("ops", ops)])) as running:
            paper = await live_engine(running, "paper", mode="paper")
            await error(paper)
            await until(running, lambda b: [a["engine"] for a in b["firing"]] == [paper.name])
            html = (await running.http.get("/fragments/alerts")).text
            assert "status_error" in html and paper.name in html and "1 firing" in html
            live = await live_engine(running, "live")
            await error(live)
            _, body = await ops.next()  # FIFO: a paper message would have come first
            assert engines_in(body) == [live.name]


async def test_silenced_rule_sends_nothing_and_the_silence_survives_a_restart(
    tmp_path: Path,
) -> None:
    """A silence made over the API is kept in the database: after a restart it still mutes."""
    db = str(tmp_path / "hub.db")
    async with receiver() as ops:
        alerts = fast([webhook("ops", ops)])
        async with running_hub(alerts=alerts, db=db) as running:
            silenced_name = unique("quiet")
            made = await running.http.post(
                "/api/silences",
                json={
                    "engine": silenced_name,
                    "rule": "status_error",
                    "duration": "1h",
                    "comment": "<b>maint</b>",
                },
            )
            assert made.status_code == 201, made.text
        async with running_hub(alerts=alerts, db=db) as running:
            (kept,) = (await running.get("/api/silences"))["silences"]
            assert kept["engine"] == silenced_name and kept["comment"] == "<b>maint</b>"
            quiet = await connect_engine(running, silenced_name, mode="live")
            await error(quiet)
            body = await until(running, lambda b: b["firing"])
            assert body["firing"][0]["silenced"] is True
            loud = await live_engine(running, "loud")
            await error(loud)
            _, sent = await ops.next()
            assert engines_in(sent) == [loud.name]
            html = (await running.http.get("/fragments/alerts")).text
            assert "&lt;b&gt;maint&lt;/b&gt;" in html and "<b>maint" not in html
            gone = await running.http.delete(f"/api/silences/{kept['id']}")
            assert (
                gone.status_code == 200 and (await running.get("/api/silences"))["silences"] == []
            )


async def test_hanging_and_failing_receivers_are_retried_counted_and_delay_nobody() -> None:
    """A hung and a 500 receiver: retried and counted; the good receiver and the dashboard answer
    while the hung one still holds its request."""
    async with receiver("hang") as hang, receiver("fail") as fail, receiver() as good:
        alerts = fast(
            [
                webhook("hang", hang, timeout="3s", attempts=2),
                webhook("fail", fail, attempts=3),
                webhook("good", good),
            ]
        )
        async with running_hub(alerts=alerts) as running:
            engine = await live_engine(running, "trouble")
            await error(engine)
            await hang.next()
            _, body = await good.next()
            assert engines_in(body) == [engine.name]
            assert hang.hanging == 1  # still holding the first attempt
            assert (await running.http.get("/")).status_code == 200
            for _ in range(3):
                await fail.next()
            counters = await until(
                running,
                lambda b: {r["name"]: r for r in b["receivers"]}["fail"]["dropped"] == 1,
            )
            by_name = {r["name"]: r for r in counters["receivers"]}
            assert (
                by_name["fail"]["failed"] == 3
                and by_name["fail"]["last_error"] == "answered HTTP 500"
            )
            assert by_name["good"]["sent"] == 1 and by_name["good"]["failed"] == 0
            assert hang.hanging == 1 and by_name["hang"]["sent"] == 0
            metrics = (await running.http.get("/metrics")).text
            assert (
                'engine_hub_alert_deliveries_total{outcome="failed",receiver="fail"} 3.0' in metrics
            )


async def test_flapping_engine_pages_once_per_repeat_interval() -> None:
    """Fire, resolve, fire again within the repeat interval: the second firing is not sent."""
    async with receiver() as ops:
        alerts = fast(
            [webhook("ops", ops)],
            routes=[{"receiver": "ops", "repeat_interval": "1h"}],
            quiet_after_resolve="1h",
        )
        async with running_hub(alerts=alerts) as running:
            flappy = await live_engine(running, "flappy")
            name = flappy.name
            for _ in range(3):
                await flappy.ws.close()
                await until(running, lambda b: any(a["engine"] == name for a in b["firing"]))
                flappy = await connect_engine(running, flappy.name, mode="live")
                await until(running, lambda b: not any(a["engine"] == name for a in b["firing"]))
            marker = await live_engine(running, "marker")
            await error(marker)
            received = []
            while not received or engines_in(received[-1]) != [marker.name]:
                received.append((await ops.next())[1])
            assert [(b["status"], engines_in(b)) for b in received] == [
                ("firing", [flappy.name]),
                ("resolved", [flappy.name]),
                ("firing", [marker.name]),
            ]


async def test_secrets_never_reach_the_api_pages_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Receiver URLs and tokens appear in no /api/* response, page, /metrics or log line."""
    caplog.set_level(logging.DEBUG)
    async with receiver("fail") as fail:
        secret_url = fail.url("/hook/SECRET-path-token")
        alerts = fast(
            [
                {"name": "hook", "url": secret_url, "attempts": 2, "backoff": "10ms"},
                {
                    "name": "tg",
                    "type": "telegram",
                    "url": fail.url(""),
                    "token": "123:SECRET-tg",
                    "chat_id": "42",
                    "attempts": 1,
                },
                {"name": "dead", "url": "http://127.0.0.1:9/SECRET-dead", "attempts": 1},
            ]
        )
        async with running_hub(alerts=alerts) as running:
            engine = await live_engine(running, "leaky")
            await error(engine)
            seen = {(await fail.next())[0] for _ in range(3)}
            assert "/bot123:SECRET-tg/sendMessage" in seen  # the secret does go to the receiver
            await until(running, lambda b: sum(r["dropped"] for r in b["receivers"]) == 3)
            bodies = [
                (await running.http.get(path)).text
                for path in (
                    "/api/alerts",
                    "/api/silences",
                    "/api/telemetry/stats",
                    "/api/telemetry/engines",
                    f"/api/telemetry/export?engine={engine.name}",
                    "/api/admin/audit",
                    "/metrics",
                    "/",
                    "/fragments/alerts",
                )
            ]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "receiver 'hook'" in logged  # the failures were logged, by name
    for text in [*bodies, logged]:
        assert "SECRET" not in text


async def test_sse_hub_alert_and_the_alerts_gauge() -> None:
    """A firing alert is an SSE `hub.alert` event and an engine_hub_alerts sample."""
    async with running_hub(alerts=fast([])) as running:
        async with sse(running, event_type="hub.alert") as stream:
            engine = await live_engine(running, "sse")
            await error(engine)
            event = await stream.until(lambda e: e.event == "hub.alert")
            assert event.data["engine"] == engine.name and event.data["state"] == "firing"
        metrics = (await running.http.get("/metrics")).text
        assert (
            f'engine_hub_alerts{{engine="{engine.name}",mode="live",rule="status_error",'
            'severity="critical",state="firing"} 1.0'
        ) in metrics


async def test_ack_and_bad_requests() -> None:
    """Ack a firing alert; bad silences and unknown ids get a JSON error, never a traceback."""
    async with running_hub(alerts=fast([])) as running:
        engine = await live_engine(running, "ack")
        await error(engine)
        body = await until(running, lambda b: b["firing"])
        alert_id = body["firing"][0]["id"]
        acked = await running.http.post(f"/api/alerts/{alert_id}/ack")
        assert acked.status_code == 200 and acked.json()["acked_by"]
        for method, path, payload, status in (
            ("POST", "/api/alerts/999999/ack", None, 404),
            ("DELETE", "/api/silences/999999", None, 404),
            ("POST", "/api/silences", b"{not json", 400),
            (
                "POST",
                "/api/silences",
                json.dumps({"engine": "a b", "duration": "1h"}).encode(),
                400,
            ),
            (
                "POST",
                "/api/silences",
                json.dumps({"engine": "x", "duration": "forever"}).encode(),
                400,
            ),
            ("POST", "/api/silences", json.dumps([1]).encode(), 400),
        ):
            response = await running.http.request(method, path, content=payload)
            assert response.status_code == status, (path, payload, response.text)
            assert "error" in response.json()


async def test_dashboard_panel_shows_firing_alerts_and_acks_them(browser: Browser) -> None:
    """In Chromium: the overview's panel fills itself, shows a firing alert with escaped engine
    text, and the Ack button acknowledges it (the form passes the CSRF check); no CSP trouble."""
    async with running_hub(alerts=fast([])) as running:
        engine = await live_engine(running, "panel")
        await engine.send({"kind": "heartbeat", "status": "error", "last_error": "<img src=x>"})
        await engine.wait_acked()
        await until(running, lambda b: b["firing"])
        async with watched_page(browser) as watched:
            page = watched.page
            await page.goto(f"http://127.0.0.1:{running.port}/")
            row = page.locator("#alerts tr.alert-firing")
            await row.wait_for(timeout=WAIT * 1000)
            assert "status_error" in await row.inner_text()
            assert await page.locator("#alert-count").text_content() == "1 firing"
            badge = page.locator("header #alert-badge")
            assert await badge.text_content() == "1 alert firing" and await badge.is_visible()
            # ... and the tab title says so after the hub's problem count.
            await expect(page).to_have_title(re.compile(r"^\(1\) Engine Hub .* · 1 alert firing$"))
            await row.locator("button", has_text="Ack").click()
            await page.locator("#alerts tr.alert-firing", has_text="acked by").wait_for(
                timeout=WAIT * 1000
            )
            assert watched.problems == []
        body = await running.get("/api/alerts")
        assert body["firing"][0]["acked_by"] == "anonymous"


async def test_panel_is_pushed_over_the_dashboard_socket(browser: Browser) -> None:
    """In Chromium, on an engine's page opened before anything fires: the alert appears and
    resolves in the panel without a reload or a timer (the socket pushes a nudge and the page
    fetches its panel); the panel has no polling trigger."""
    async with running_hub(alerts=fast([]), view_tick=0.05) as running:
        engine = await live_engine(running, "pushed")
        fetched: list[str] = []
        async with watched_page(browser) as watched:
            page = watched.page
            page.on(
                "request", lambda r: fetched.append(r.url) if "/fragments/alerts" in r.url else None
            )
            await page.goto(f"http://127.0.0.1:{running.port}/engines/{engine.name}")
            await page.locator("#alerts .empty", has_text="Nothing firing.").wait_for(
                timeout=WAIT * 1000
            )
            assert await page.locator("#alerts[hx-trigger]").count() == 0  # no polling
            before = len(fetched)
            await engine.send({"kind": "heartbeat", "status": "error", "last_error": "feed"})
            await engine.wait_acked()
            await page.locator("#alerts tr.alert-firing").wait_for(timeout=WAIT * 1000)
            assert await page.locator("header #alert-badge").text_content() == "1 alert firing"
            await engine.send({"kind": "heartbeat", "status": "running", "loop_tick": 2})
            await engine.wait_acked()
            resolved = page.locator("#alerts .alerts-resolved li", has_text="status_error")
            await resolved.wait_for(timeout=WAIT * 1000)
            assert await page.locator("#alerts tr.alert-firing").count() == 0
            # One fetch per change (fired, resolved), not a timer's worth.
            assert 2 <= len(fetched) - before <= 4, fetched
            assert all("index=" in url and "index=0" not in url for url in fetched)
            assert watched.problems == []
