"""The Host check (no DNS rebinding), the dashboard socket's Origin check and absolute links."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import websockets
from playwright.async_api import Browser, expect
from starlette.routing import Mount, Route, WebSocketRoute
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from hub.settings import Settings, SettingsError
from hub.web.app import create_app
from hub.web.hosts import (
    HostCheckMiddleware,
    HostPolicy,
    absolute_url,
    check_hosts,
    public_origin,
    same_origin,
    split_host,
)
from hub.web.proxies import ProxyHeadersMiddleware
from tests.conftest import (
    CHROMIUM,
    CHROMIUM_ARGS,
    WAIT,
    RunningHub,
    connect_engine,
    running_hub,
    unique,
    watched_page,
)

MS = WAIT * 1000
EVIL = "evil.example"  # a name an attacker points at the hub's address


def allows(header: str, client: str | None = "203.0.113.7", **settings: Any) -> bool:
    """Whether a hub with `settings` answers `Host: header` from `client`."""
    parsed = split_host(header)
    assert parsed is not None, header
    return HostPolicy.from_settings(Settings(**settings)).allows(parsed[0], client)


def scope(host: str, scheme: str = "http", **extra: Any) -> dict[str, Any]:
    """A minimal ASGI scope for a request to `host`."""
    headers = [(b"host", host.encode())]
    return {
        "type": "http",
        "scheme": scheme,
        "headers": headers,
        "client": ("127.0.0.1", 5),
        **extra,
    }


def test_split_host_normalizes_names_and_refuses_malformed_ones() -> None:
    """Names are lowercased, IPv6 literals unbracketed and shortened; junk is None."""
    assert split_host("Hub.Example.COM:8443") == ("hub.example.com", 8443)
    assert split_host("hub.example.com.") == ("hub.example.com", None)
    assert split_host("[0:0::1]:80") == ("::1", 80)
    assert split_host("127.0.0.1") == ("127.0.0.1", None)
    for bad in ("", "a b", "hub:99999", "[zz::1]", "a..b", "user@hub", "::1", "évil.example", "."):
        assert split_host(bad) is None, bad


def test_loopback_hub_answers_loopback_names_on_any_port_and_nothing_else() -> None:
    """Bound to loopback: localhost, 127.0.0.1 and [::1] with any port, from anyone; other names never."""
    for host in ("localhost", "localhost:8765", "127.0.0.1:1", "[::1]:9000", "LOCALHOST"):
        assert allows(host), host
    for host in (EVIL, f"{EVIL}:8765", "localhost.evil.example", "127.0.0.1.evil.example"):
        assert not allows(host), host


def test_public_url_and_allowed_hosts_add_names_and_wildcards() -> None:
    """public_url's host, exact allowed_hosts and `*.domain` subdomains (not the domain itself)."""
    settings: dict[str, Any] = {
        "public_url": "https://Hub.Example.com:8443/",
        "allowed_hosts": ("10.0.0.5", "*.corp.example", "[2001:db8::1]", "2001:db8::2"),
    }
    for host in ("hub.example.com", "hub.example.com:443", "10.0.0.5:8765", "a.corp.example"):
        assert allows(host, **settings), host
    assert allows("a.b.corp.example", **settings)
    assert allows("[2001:db8:0::1]:8765", **settings) and allows("[2001:db8::2]", **settings)
    for host in ("corp.example", "evilcorp.example", "example.com", EVIL):
        assert not allows(host, **settings), host
    assert allows(EVIL, allowed_hosts=("*",))  # documented as unsafe


def test_off_loopback_loopback_names_count_only_from_this_machine() -> None:
    """On 0.0.0.0 `Host: localhost` is answered for a local client (a health check), not a remote one."""
    settings: dict[str, Any] = {"host": "0.0.0.0", "public_url": "https://hub.example.com"}
    assert allows("localhost:8765", "127.0.0.1", **settings)
    assert allows("[::1]", "::1", **settings)
    assert not allows("localhost:8765", "203.0.113.7", **settings)
    assert not allows("127.0.0.1", None, **settings)
    assert allows("hub.example.com", "203.0.113.7", **settings)


def test_a_specific_bound_address_is_one_of_the_names() -> None:
    """Bound to 10.0.0.5 the hub answers `Host: 10.0.0.5` (engines on the LAN), not other addresses."""
    assert allows("10.0.0.5:8765", host="10.0.0.5", allowed_hosts=("hub.lan",))
    assert not allows("10.0.0.6:8765", host="10.0.0.5", allowed_hosts=("hub.lan",))


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("allowed_hosts", ("https://hub.example.com",)),
        ("allowed_hosts", ("hub.example.com:8443",)),
        ("allowed_hosts", ("*evil.example",)),
        ("allowed_hosts", ("a.*.example",)),
        ("public_url", "hub.example.com"),
        ("public_url", "https://hub.example.com/hub"),
        ("public_url", "ftp://hub.example.com"),
        ("public_url", "https://user@hub.example.com"),
        ("public_url", "https://hub.example.com/?a=1"),
    ],
)
def test_malformed_host_settings_stop_the_app_naming_the_setting(setting: str, value: Any) -> None:
    """A malformed public_url or allowed_hosts entry is a SettingsError from create_app."""
    with pytest.raises(SettingsError, match=setting):
        create_app(Settings(**{setting: value}))


def test_check_hosts_refuses_to_serve_off_loopback_without_names() -> None:
    """The startup check: 0.0.0.0 or a LAN address without public_url/allowed_hosts says what to set."""
    for host in ("0.0.0.0", "::", "10.0.0.5"):
        with pytest.raises(SettingsError) as refused:
            check_hosts(Settings(host=host))
        message = str(refused.value)
        assert "public_url" in message and "allowed_hosts" in message
        assert "ENGINE_HUB_PUBLIC_URL" in message and "docs/deployment.md" in message
    for ok in (
        Settings(),
        Settings(host="localhost"),
        Settings(host="::1"),
        Settings(host="0.0.0.0", public_url="https://hub.example.com"),
        Settings(host="0.0.0.0", allowed_hosts=("hub.lan",)),
        Settings(host="0.0.0.0", allowed_hosts=("*",)),
    ):
        check_hosts(ok)


def test_same_origin_is_public_url_or_the_requests_own_scheme_and_host() -> None:
    """Origins compare scheme, host and port (default ports left out), never just the name."""
    proxied = Settings(public_url="https://hub.example.com")
    upstream = scope("127.0.0.1:8765")  # a proxy that sends the upstream's Host
    assert same_origin("https://hub.example.com", upstream, proxied)
    assert same_origin("http://127.0.0.1:8765", upstream, proxied)
    for origin in (
        "http://hub.example.com",
        "https://127.0.0.1:8765",
        "https://evil.example",
        "null",
    ):
        assert not same_origin(origin, upstream, proxied), origin
    secure = scope("hub.example.com:443", scheme="wss")
    assert same_origin("https://hub.example.com", secure, Settings())
    assert not same_origin("http://hub.example.com", secure, Settings())
    assert (
        public_origin(Settings(public_url="https://hub.example.com:443/"))
        == "https://hub.example.com"
    )
    assert public_origin(Settings(public_url="http://[::1]:8080")) == "http://[::1]:8080"


def test_absolute_urls_use_public_url_when_set() -> None:
    """Links built for other contexts (redirects) point where browsers reach the hub."""
    request = scope("127.0.0.1:8765")
    assert absolute_url(request, Settings(), "/engines/fno") == "http://127.0.0.1:8765/engines/fno"
    proxied = Settings(public_url="https://hub.example.com/")
    assert absolute_url(request, proxied, "/engines/fno") == "https://hub.example.com/engines/fno"


async def test_websocket_refusal_without_the_denial_extension_closes_before_accept() -> None:
    """A server without the denial-response extension gets a close before accept (its 403), and the
    app never runs; with the extension the refusal is the JSON 421 (checked over uvicorn below)."""
    reached: list[Any] = []
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope)

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: Any) -> None:
        sent.append(message)

    middleware = HostCheckMiddleware(app, HostPolicy.from_settings(Settings()))
    await middleware(scope(EVIL, scheme="ws", type="websocket", extensions={}), receive, send)
    assert reached == []
    assert [(m["type"], m["code"]) for m in sent] == [("websocket.close", 1008)]
    assert "allowed_hosts" in sent[0]["reason"]


def test_proxy_headers_then_the_host_check_are_the_outermost_middlewares() -> None:
    """Nothing of the app (sign-in included) runs before the Host check; only the proxy headers
    it checks come first. (`app.add_middleware` would put a middleware outside both.)"""
    stack = [m.cls for m in create_app(Settings()).user_middleware]
    assert stack[:2] == [ProxyHeadersMiddleware, HostCheckMiddleware]


def concrete(path: str) -> str:
    """A route's path with every parameter filled in."""
    return re.sub(r"\{[^}]+\}", "1", path)


async def test_every_route_refuses_a_host_it_does_not_serve(hub: RunningHub) -> None:
    """Every route of the app (enumerated, so a new one cannot forget): 421 in the JSON error shape
    for `Host: evil.example`, WebSocket handshakes refused the same way; the hub's own Host works."""
    checked = 0
    for route in hub.server.app.routes:
        if isinstance(route, WebSocketRoute):
            url = f"ws://{EVIL}:{hub.port}{route.path}"
            with pytest.raises(InvalidStatus) as refused:
                await websockets.connect(url, host="127.0.0.1", port=hub.port)
            assert refused.value.response.status_code == 421, route.path
            assert json.loads(refused.value.response.body)["error"] == "misdirected_request"
        else:
            assert isinstance(route, Route | Mount), route
            path = concrete(route.path) + ("/css/hub.css" if isinstance(route, Mount) else "")
            methods = sorted((getattr(route, "methods", None) or {"GET"}) - {"HEAD"})
            for method in methods:
                answer = await hub.http.request(
                    method, path, headers={"Host": f"{EVIL}:{hub.port}"}
                )
                assert answer.status_code == 421, (method, path, answer.text)
                body = answer.json()
                assert body["error"] == "misdirected_request" and "allowed_hosts" in body["detail"]
                async with hub.http.stream(method, path) as own:  # the SSE stream never ends
                    assert own.status_code != 421, (method, path)
        checked += 1
    assert checked >= 15  # the API, pages, static files and both sockets
    missing = await hub.http.get("/healthz", headers={"Host": ""})
    assert missing.status_code == 400 and missing.json()["error"] == "bad_request"


async def test_loopback_names_with_any_port_reach_a_loopback_hub(hub: RunningHub) -> None:
    """`localhost:PORT`, `127.0.0.1:PORT` and `[::1]:PORT` all name a hub listening on loopback."""
    for host in (f"localhost:{hub.port}", f"127.0.0.1:{hub.port}", "[::1]:1234", "localhost"):
        answer = await hub.http.get("/api/telemetry/engines", headers={"Host": host})
        assert answer.status_code == 200, host


async def test_dns_rebinding_page_cannot_open_the_dashboard_socket(hub: RunningHub) -> None:
    """`Host: evil.example` with the matching `Origin: http://evil.example` (what a rebinding page
    sends) no longer opens /ws/dashboard: the handshake is refused before accept."""
    url = f"ws://{EVIL}:{hub.port}/ws/dashboard?view=overview"
    origin = Origin(f"http://{EVIL}:{hub.port}")
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(url, host="127.0.0.1", port=hub.port, origin=origin)
    assert refused.value.response.status_code == 421


@asynccontextmanager
async def resolving(browser: Browser, *names: str) -> AsyncIterator[Browser]:
    """A second Chromium whose DNS answers 127.0.0.1 for `names` (a rebinding attacker's name, a
    proxy's public name)."""
    rules = ", ".join(f"MAP {name} 127.0.0.1" for name in names)
    args = [*CHROMIUM_ARGS, f"--host-resolver-rules={rules}"]
    mapped = await browser.browser_type.launch(executable_path=CHROMIUM, args=args)
    try:
        yield mapped
    finally:
        await mapped.close()


async def test_in_chromium_a_rebinding_name_gets_nothing_and_an_allowed_name_goes_live(
    browser: Browser,
) -> None:
    """A page reached as evil.example (resolving to the hub) is a 421 with no dashboard and no
    socket; the same hub reached as an allowed_hosts name renders and goes live."""
    async with running_hub(allowed_hosts=("hub.test",)) as running:
        async with resolving(browser, EVIL, "hub.test") as mapped:
            async with watched_page(mapped) as watched:
                answer = await watched.page.goto(f"http://{EVIL}:{running.port}/")
                assert answer is not None and answer.status == 421
                assert json.loads(await answer.text())["error"] == "misdirected_request"
                assert await watched.page.locator("#live").count() == 0
                assert not [u for u in watched.requests if "/ws/" in u or "/static/" in u]
            async with watched_page(mapped) as watched:
                await watched.page.goto(f"http://hub.test:{running.port}/")
                await expect(watched.page.locator("#conn")).to_have_text("live", timeout=MS)
                assert watched.problems == []


async def test_dashboard_socket_accepts_public_url_origin_behind_a_proxy_sending_upstream_host() -> (
    None
):
    """A proxy that forwards `Host: 127.0.0.1:PORT` (the upstream's) still gets live updates for
    pages on public_url; other origins, and the own host under the wrong scheme, are refused."""
    async with running_hub(public_url="https://hub.example.com") as running:
        url = f"ws://127.0.0.1:{running.port}/ws/dashboard?view=overview"
        for origin in ("https://hub.example.com", f"http://127.0.0.1:{running.port}"):
            async with websockets.connect(url, origin=Origin(origin)) as ws:
                async with asyncio.timeout(WAIT):
                    assert 'id="cards"' in await ws.recv()  # the snapshot
        for origin in ("https://evil.example", f"https://127.0.0.1:{running.port}"):
            with pytest.raises(InvalidStatus) as refused:
                await websockets.connect(url, origin=Origin(origin))
            assert refused.value.response.status_code == 403, origin


async def test_redirects_point_at_public_url(hub: RunningHub) -> None:
    """/engines/id/N redirects under public_url when set, else to the host the request named."""
    async with running_hub(public_url="https://hub.example.com") as running:
        for target, base in (
            (running, "https://hub.example.com"),
            (hub, f"http://127.0.0.1:{hub.port}"),
        ):
            name = unique("redirect")
            engine = await connect_engine(target, name)
            index = target.hub.state.engines[name].index
            answer = await target.http.get(f"/engines/id/{index}")
            assert answer.status_code == 303
            assert answer.headers["location"] == f"{base}/engines/{name}"
            await engine.close()
