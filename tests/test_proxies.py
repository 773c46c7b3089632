"""X-Forwarded-* count only from trusted_proxies: scheme, client and host behind a reverse proxy."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from hub.settings import Settings, SettingsError
from hub.web.proxies import ProxyHeadersMiddleware, TrustedProxies, from_trusted_proxy
from hub.web.server import bind, uvicorn_config
from tests.conftest import WAIT, RunningHub, connect_engine, running_hub, unique

FORWARDED = {
    "X-Forwarded-Proto": "https",
    "X-Forwarded-For": "198.51.100.9, 203.0.113.7",  # the client wrote the first, the proxy the last
    "X-Forwarded-Host": "hub.example.com",
}


def seen(scope: Any) -> dict[str, Any]:
    """What the app below the middleware believes about the request."""
    host = dict(scope["headers"]).get(b"host", b"").decode()
    client = scope["client"][0] if scope.get("client") else None
    return {
        "scheme": scope["scheme"],
        "client": client,
        "host": host,
        "trusted": from_trusted_proxy(scope),
    }


async def echo(request: Request) -> Response:
    return JSONResponse(seen(request.scope))


async def echo_socket(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(json.dumps(seen(websocket.scope)))
    await websocket.close()


@asynccontextmanager
async def echo_server(*trusted: str) -> AsyncIterator[str]:
    """An app that echoes its scope, behind the middleware, served by uvicorn configured as the
    hub's server is (`uvicorn_config`: uvicorn's own proxy handling off); yields host:port."""
    settings = Settings(trusted_proxies=trusted, port=0, log_level="warning")
    proxies = TrustedProxies.from_settings(settings)
    app = Starlette(
        routes=[Route("/echo", echo), WebSocketRoute("/echo", echo_socket)],
        middleware=[Middleware(ProxyHeadersMiddleware, proxies=proxies)],
    )
    server = uvicorn.Server(uvicorn_config(app, settings))
    sock = bind("127.0.0.1", 0)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        # The socket already listens: requests wait in its backlog until uvicorn is up.
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        async with asyncio.timeout(WAIT):
            await task
        sock.close()


async def ask(address: str, headers: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the app saw of an HTTP request and of a WebSocket handshake carrying `headers`."""
    async with httpx.AsyncClient(timeout=WAIT) as http:
        answer = await http.get(f"http://{address}/echo", headers=headers)
    async with websockets.connect(f"ws://{address}/echo", additional_headers=headers) as ws:
        async with asyncio.timeout(WAIT):
            socket = json.loads(await ws.recv())
    return answer.json(), socket


async def test_a_trusted_proxy_sets_scheme_client_and_host() -> None:
    """From a peer in trusted_proxies: https/wss, the nearest untrusted X-Forwarded-For address, the
    forwarded Host, and the request is marked as come through a trusted proxy."""
    async with echo_server("127.0.0.1") as address:
        http, socket = await ask(address, FORWARDED)
    expected = {"client": "203.0.113.7", "host": "hub.example.com", "trusted": True}
    assert http == {"scheme": "https", **expected}
    assert socket == {"scheme": "wss", **expected}


async def test_x_forwarded_for_skips_trusted_hops_and_ignores_what_the_client_wrote() -> None:
    """Walking from the right past every trusted proxy: a client cannot pick its own address."""
    async with echo_server("127.0.0.1", "10.0.0.0/8") as address:
        chain, _ = await ask(address, {"X-Forwarded-For": "127.0.0.1, 203.0.113.7, 10.1.2.3"})
        assert chain["client"] == "203.0.113.7"
        all_trusted, _ = await ask(address, {"X-Forwarded-For": "10.9.9.9, 10.1.2.3"})
        assert all_trusted["client"] == "10.9.9.9"
        garbage, _ = await ask(address, {"X-Forwarded-For": "203.0.113.7, unknown"})
        assert garbage["client"] == "127.0.0.1"  # the proxy itself, rather than a guess
        ported, _ = await ask(address, {"X-Forwarded-For": "[2001:db8::1]:443"})
        assert ported["client"] == "2001:db8::1"
        bad_host, _ = await ask(address, {"X-Forwarded-Host": "a b"})
        assert bad_host["host"] == address


@pytest.mark.parametrize("trusted", [(), ("10.0.0.0/8",)], ids=["none", "elsewhere"])
async def test_headers_from_an_untrusted_peer_are_ignored(trusted: tuple[str, ...]) -> None:
    """From a peer not in trusted_proxies (127.0.0.1, which uvicorn would trust by default) the
    request stays what the socket says: http/ws, the peer's address, its own Host."""
    async with echo_server(*trusted) as address:
        http, socket = await ask(address, FORWARDED)
    expected = {"client": "127.0.0.1", "host": address, "trusted": False}
    assert http == {"scheme": "http", **expected}
    assert socket == {"scheme": "ws", **expected}


def test_trusted_proxies_take_addresses_networks_and_star() -> None:
    """Addresses and CIDR networks, v4 and v6; "*" trusts every peer; names are refused."""
    proxies = TrustedProxies.from_settings(
        Settings(trusted_proxies=("127.0.0.1", "10.0.0.0/8", "[::1]"))
    )
    assert proxies.trusts("10.200.0.1") and proxies.trusts("::1") and proxies.trusts("127.0.0.1")
    assert not proxies.trusts("11.0.0.1") and not proxies.trusts("localhost")
    assert not TrustedProxies.from_settings(Settings()).enabled
    assert TrustedProxies.from_settings(Settings(trusted_proxies=("*",))).trusts("203.0.113.7")
    with pytest.raises(SettingsError, match="trusted_proxies"):
        TrustedProxies.from_settings(Settings(trusted_proxies=("proxy.lan",)))


async def redirect_location(running: RunningHub, headers: dict[str, str]) -> str:
    """Where /engines/id/N sends a browser, given the proxy headers on the request."""
    name = unique("proxied")
    engine = await connect_engine(running, name)
    index = running.hub.state.engines[name].index
    answer = await running.http.get(f"/engines/id/{index}", headers=headers)
    await engine.close()
    assert answer.status_code == 303, answer.text
    return f"{answer.headers['location']}".removesuffix(f"/engines/{name}")


async def test_the_hub_believes_its_trusted_proxy_and_checks_the_forwarded_host(
    hub: RunningHub,
) -> None:
    """In the hub: a trusted proxy's scheme and host make its links; the forwarded Host goes through
    the Host check; from an untrusted peer the same headers change nothing."""
    async with running_hub(
        trusted_proxies=("127.0.0.1",), allowed_hosts=("hub.example.com",)
    ) as running:
        assert await redirect_location(running, FORWARDED) == "https://hub.example.com"
        evil = await running.http.get(
            "/healthz", headers={**FORWARDED, "X-Forwarded-Host": "evil.example"}
        )
        assert evil.status_code == 421
    assert await redirect_location(hub, FORWARDED) == f"http://127.0.0.1:{hub.port}"
    assert (await hub.http.get("/healthz", headers={"X-Forwarded-Host": "evil.example"})).is_success
