"""Embedding: CSP and CORS headers over plain HTTP, and docs/embedding.md's snippets in Chromium."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
import uvicorn
import websockets
from playwright.async_api import Browser, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from hub.settings import load_settings
from hub.web.server import bind
from tests.conftest import WAIT, RunningHub, connect_engine, running_hub, unique, watched_page

DOCS = Path(__file__).resolve().parent.parent / "docs" / "embedding.md"
DOCS_HUB = "https://hub.example.com"  # the placeholders docs/embedding.md uses
DOCS_ENGINE = "engines/fno"
OTHER_ALLOWED = "https://a.example"  # a second allowlist entry, only ever sent as a header
FOREIGN = "https://evil.example"
MS = WAIT * 1000


def snippet(name: str) -> str:
    """The fenced block after `<!-- snippet: name -->` in docs/embedding.md, verbatim."""
    text = DOCS.read_text(encoding="utf-8")
    match = re.search(rf"<!-- snippet: {name} -->\n```html\n(.*?)```", text, re.S)
    assert match, f"docs/embedding.md lost its {name!r} snippet"
    return match.group(1)


@dataclass
class HostSite:
    """A second web server on 127.0.0.1 that plays the page embedding hub cards."""

    port: int = 0
    pages: dict[str, str] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def page(self, request: Request) -> Response:
        html = self.pages.get(request.path_params["page"])
        return HTMLResponse(html) if html is not None else Response("no such page", 404)


@asynccontextmanager
async def host_site() -> AsyncIterator[HostSite]:
    """Serve a `HostSite` with uvicorn on a pre-bound port-0 socket."""
    site = HostSite()
    app = Starlette(routes=[Route("/{page}", site.page)])
    sock = bind("127.0.0.1", 0)
    site.port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", log_level="warning", log_config=None)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield site
    finally:
        server.should_exit = True
        async with asyncio.timeout(WAIT):
            await task
        sock.close()


@dataclass
class Sites:
    """One hub that allows `allowed` (and OTHER_ALLOWED) to embed, and a `foreign` host it does not."""

    hub: RunningHub
    allowed: HostSite
    foreign: HostSite

    @property
    def hub_origin(self) -> str:
        return f"http://127.0.0.1:{self.hub.port}"

    def host_page(self, site: HostSite, engine: str) -> str:
        """Publish the docs' two snippets, pointed at this hub and `engine`, on `site`."""
        parts = []
        for name in ("fragment", "iframe"):
            text = snippet(name).replace(DOCS_HUB, self.hub_origin)
            parts.append(text.replace(DOCS_ENGINE, f"engines/{engine}"))
        site.pages[engine] = (
            '<!doctype html><html><head><title>host</title><link rel="icon" href="data:,"></head>'
            "<body>\n" + "\n".join(parts) + "</body></html>"
        )
        return f"{site.origin}/{engine}"


@pytest.fixture(scope="module")
async def sites() -> AsyncIterator[Sites]:
    """Two host sites and a hub whose `embed_origins` lists only the first."""
    async with host_site() as allowed, host_site() as foreign:
        async with running_hub(embed_origins=(allowed.origin, OTHER_ALLOWED)) as running:
            yield Sites(running, allowed, foreign)


def directives(policy: str) -> dict[str, list[str]]:
    """A Content-Security-Policy header as {directive: [sources]}."""
    out: dict[str, list[str]] = {}
    for part in policy.split(";"):
        if part.strip():
            name, *sources = part.split()
            out[name] = sources
    return out


class Scripts(HTMLParser):
    """Collects every <script>'s attributes and body, and every inline event-handler attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.handlers: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handlers += [name for name, _ in attrs if name.startswith("on")]
        if tag == "script":
            self.scripts.append((dict(attrs), ""))
            self._in_script = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            attrs, body = self.scripts[-1]
            self.scripts[-1] = (attrs, body + data)


async def known_engine(running: RunningHub, prefix: str) -> str:
    """Connect an engine with one heartbeat so its pages exist; returns its name."""
    name = unique(prefix)
    engine = await connect_engine(running, name)
    await engine.send({"kind": "heartbeat", "status": "running", "loop_tick": 7})
    await engine.wait_acked()
    await engine.close()
    return name


async def test_every_html_page_has_a_strict_csp(sites: Sites) -> None:
    """Every HTML response, 404s included, carries a CSP with default-src 'self' and no unsafe-*."""
    name = await known_engine(sites.hub, "csp")
    paths = [
        "/",
        f"/engines/{name}",
        f"/embed/engines/{name}",
        f"/fragments/engines/{name}/card",
        "/engines/no-such-engine",
        "/embed/engines/no-such-engine",
        "/engines/id/999999",
    ]
    for path in paths:
        response = await sites.hub.http.get(path)
        assert response.headers["content-type"].startswith("text/html"), path
        policy = response.headers["content-security-policy"]
        found = directives(policy)
        assert found["default-src"] == ["'self'"], (path, policy)
        assert found["script-src"] == ["'self'"], (path, policy)
        assert found["object-src"] == ["'none'"], (path, policy)
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, (path, policy)
        assert response.headers["x-content-type-options"] == "nosniff", path


async def test_pages_have_no_inline_script(sites: Sites) -> None:
    """Every <script> on every page loads a same-origin file; no page has inline code or on* handlers."""
    name = await known_engine(sites.hub, "inline")
    for path in ("/", f"/engines/{name}", f"/embed/engines/{name}", "/engines/no-such-engine"):
        response = await sites.hub.http.get(path)
        parser = Scripts()
        parser.feed(response.text)
        assert len(parser.scripts) >= 3, path  # htmx, hx-ws and hub.js
        for attrs, body in parser.scripts:
            assert (attrs.get("src") or "").startswith("/static/"), (path, attrs)
            assert body.strip() == "", (path, body)
        assert parser.handlers == [], (path, parser.handlers)


async def test_embed_frame_ancestors_are_self_and_the_allowlist(sites: Sites) -> None:
    """The embed page may be framed by the hub and the allowlist only; dashboard pages by nobody."""
    name = await known_engine(sites.hub, "ancestors")
    embed = await sites.hub.http.get(f"/embed/engines/{name}")
    ancestors = directives(embed.headers["content-security-policy"])["frame-ancestors"]
    assert ancestors == ["'self'", sites.allowed.origin, OTHER_ALLOWED]
    for path in ("/", f"/engines/{name}", f"/fragments/engines/{name}/card"):
        policy = (await sites.hub.http.get(path)).headers["content-security-policy"]
        assert directives(policy)["frame-ancestors"] == ["'none'"], path


async def test_fragment_cors_allows_listed_origins_only(sites: Sites) -> None:
    """The card fragment is 403 for a foreign Origin and carries ACAO for an allowed one."""
    name = await known_engine(sites.hub, "cors")
    path = f"/fragments/engines/{name}/card"
    refused = await sites.hub.http.get(path, headers={"Origin": FOREIGN})
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert "embed_origins" in refused.json()["detail"]
    assert "access-control-allow-origin" not in refused.headers
    for origin in (sites.allowed.origin, OTHER_ALLOWED):
        allowed = await sites.hub.http.get(path, headers={"Origin": origin})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == origin
        assert "origin" in allowed.headers["vary"].lower()
        assert "access-control-allow-credentials" not in allowed.headers
        assert '<article id="card-' in allowed.text and name in allowed.text
    for headers in ({}, {"Origin": sites.hub_origin}):  # curl, and the hub's own pages
        plain = await sites.hub.http.get(path, headers=headers)
        assert plain.status_code == 200 and "access-control-allow-origin" not in plain.headers


async def test_fragment_preflight(sites: Sites) -> None:
    """OPTIONS preflight: 204 with methods and headers for an allowed Origin, 403 for a foreign one."""
    name = await known_engine(sites.hub, "preflight")
    path = f"/fragments/engines/{name}/card"
    ask = {
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "hx-current-url,hx-request,hx-source",
    }
    ok = await sites.hub.http.options(path, headers={"Origin": sites.allowed.origin, **ask})
    assert ok.status_code == 204
    assert ok.headers["access-control-allow-origin"] == sites.allowed.origin
    assert "GET" in ok.headers["access-control-allow-methods"]
    assert ok.headers["access-control-allow-headers"] == "*"
    refused = await sites.hub.http.options(path, headers={"Origin": FOREIGN, **ask})
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers


async def test_dashboard_socket_refuses_foreign_origins(sites: Sites) -> None:
    """/ws/dashboard serves the hub's own and allowlisted origins and refuses others with 403."""
    url = f"ws://127.0.0.1:{sites.hub.port}/ws/dashboard?view=overview"
    for origin in (sites.hub_origin, sites.allowed.origin):
        async with websockets.connect(url, origin=Origin(origin)) as ws:
            async with asyncio.timeout(WAIT):
                assert 'id="cards"' in await ws.recv()  # the snapshot
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(url, origin=Origin(FOREIGN))
    assert refused.value.response.status_code == 403


async def test_docs_snippets_embed_the_live_card_on_an_allowed_origin(
    sites: Sites, browser: Browser
) -> None:
    """From an allowed origin the docs' iframe shows the live card and the hx-get fragment loads."""
    name = unique("embedded")
    engine = await connect_engine(sites.hub, name)
    await engine.send({"kind": "heartbeat", "status": "running", "loop_tick": 41})
    await engine.wait_acked()
    url = sites.host_page(sites.allowed, name)
    async with watched_page(browser) as watched:
        page = watched.page
        await page.goto(url)
        frame = page.frame_locator("iframe")
        await expect(frame.locator("#conn")).to_have_text("live", timeout=MS)
        await expect(frame.locator("article.card a.name")).to_have_text(name, timeout=MS)
        loop = frame.locator("article.card dt:text-is('loop') + dd")
        await expect(loop).to_have_text(re.compile(r"^41\b"), timeout=MS)

        fragment = page.locator("div.engine-card article.card")
        await expect(fragment.locator("a.name")).to_have_text(name, timeout=MS)
        await expect(fragment.locator("dt:text-is('loop') + dd")).to_have_text(
            re.compile(r"^41\b"), timeout=MS
        )

        # Live: the framed card follows the engine without any reload.
        await engine.send({"kind": "heartbeat", "loop_tick": 4242})
        await expect(loop).to_have_text(re.compile(r"^4,242\b"), timeout=MS)
        assert watched.problems == [], watched.problems
    await engine.close()


async def test_docs_snippets_are_refused_on_a_foreign_origin(
    sites: Sites, browser: Browser
) -> None:
    """From an origin not in embed_origins the frame is refused and the fragment request fails."""
    name = await known_engine(sites.hub, "refused")
    url = sites.host_page(sites.foreign, name)
    embed_url = f"{sites.hub_origin}/embed/engines/{name}"
    fragment_url = f"{sites.hub_origin}/fragments/engines/{name}/card"
    async with watched_page(browser) as watched:
        page = watched.page
        refused_frame = page.expect_event("requestfailed", lambda r: r.url == embed_url, timeout=MS)
        failed_fetch = page.expect_event(
            "requestfailed", lambda r: r.url == fragment_url, timeout=MS
        )
        # Chromium names the directive that refused the frame, and CORS for the fetch.
        csp_said = page.expect_console_message(lambda m: "frame-ancestors" in m.text, timeout=MS)
        cors_said = page.expect_console_message(lambda m: "CORS policy" in m.text, timeout=MS)
        async with refused_frame as frame_failure, failed_fetch as fetch_failure:
            async with csp_said, cors_said:
                await page.goto(url)
        assert (await frame_failure.value).failure == "net::ERR_BLOCKED_BY_RESPONSE"
        assert (await fetch_failure.value).failure is not None

        # The frame holds Chromium's error page, not the hub's; nothing reached the host page.
        [child] = page.main_frame.child_frames
        assert child.url.startswith("chrome-error://")
        assert await child.evaluate("document.querySelector('article.card')") is None
        await expect(page.locator("div.engine-card")).to_have_text("loading fno…")
        assert await page.locator("article.card").count() == 0
    # The hub itself refused the request: a 403 without CORS headers (checked without a browser).
    probe = await sites.hub.http.get(fragment_url, headers={"Origin": sites.foreign.origin})
    assert probe.status_code == 403 and "access-control-allow-origin" not in probe.headers


def test_documented_settings_load(tmp_path: Path) -> None:
    """The env and TOML forms of embed_origins shown in docs/embedding.md give the same allowlist."""
    text = DOCS.read_text(encoding="utf-8")
    env = re.search(r'ENGINE_HUB_EMBED_ORIGINS="([^"]*)"', text)
    toml = re.search(r"```toml\n(.*?)```", text, re.S)
    assert env and toml, "docs/embedding.md lost its settings examples"
    expected = ("https://a.example", "https://b.example")
    assert (
        load_settings(environ={"ENGINE_HUB_EMBED_ORIGINS": env.group(1)}).embed_origins == expected
    )
    config = tmp_path / "hub.toml"
    config.write_text(toml.group(1), encoding="utf-8")
    assert load_settings(config_file=config).embed_origins == expected
    meta = re.search(r"<meta name=\"htmx-config\" content='([^']*)'>", snippet("fragment"))
    assert meta and json.loads(meta.group(1)) == {"mode": "cors"}
