"""Viewer auth: every route refuses anonymous requests, roles, tokens, proxies, CSRF, live sockets."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from websockets.exceptions import ConnectionClosed, InvalidStatus

from hub.core.access import ApiToken, Role, User, digest, new_token
from hub.core.sessions import ViewerSession
from hub.settings import Settings
from hub.web.app import create_app
from hub.web.auth import PUBLIC, needs_admin, safe_next
from hub.web.identities import SESSION_COOKIE, Auth
from hub.web.passwords import hash_password
from tests.conftest import WAIT, RunningHub, connect_engine, run_cli, running_hub

DOCS = Path(__file__).resolve().parent.parent / "docs" / "security.md"
PASSWORD = "correct horse battery"
_HASH = hash_password(PASSWORD)  # argon2 is slow on purpose: one hash for the whole module
ALICE = User("alice", Role.VIEWER, _HASH)  # a viewer
ROOT = User("root", Role.ADMIN, _HASH)  # an admin
VIEWER_TOKEN, ADMIN_TOKEN, EXPIRED_TOKEN = (new_token("ehv_") for _ in range(3))
API_TOKENS = (
    ApiToken(digest(VIEWER_TOKEN), Role.VIEWER, "grafana"),
    ApiToken(digest(ADMIN_TOKEN), Role.ADMIN, "ops"),
    ApiToken(digest(EXPIRED_TOKEN), Role.VIEWER, "old", expires=time.time() - 1),
)
PROXY = "10.9.9.9"  # the one trusted reverse proxy in these settings
SECURED = Settings(
    db=":memory:",
    log_level="warning",
    users=(ALICE, ROOT),
    api_tokens=API_TOKENS,
    proxy_user_header="X-Forwarded-User",
    trusted_proxies=(f"{PROXY}/32",),
    proxy_admins=("boss",),
    allowed_hosts=("hub.test",),  # the name the in-process clients use (BASE)
)
BASE = "http://hub.test"
SAME_SITE = {"Origin": BASE}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _admin_echo(request: Request) -> Response:
    return JSONResponse({"user": request.user.display_name, "scopes": request.auth.scopes})


# Test-only admin actions, mounted on an app built in the test (the hub has none of its own yet).
ADMIN_ROUTES = [
    Route("/api/admin/echo", _admin_echo, methods=["GET", "POST"]),
    Route("/api/telemetry/poke", _admin_echo, methods=["POST"]),
]


@asynccontextmanager
async def app_for(
    settings: Settings, routes: list[BaseRoute] | None = None
) -> AsyncIterator[Starlette]:
    """`create_app(settings)` (plus `routes`) with its lifespan running, for in-process clients."""
    app = create_app(settings)
    app.router.routes.extend(routes or ())
    async with app.router.lifespan_context(app):
        yield app


def client(app: Starlette, peer: str = "127.0.0.1", base: str = BASE) -> httpx.AsyncClient:
    """An HTTP client talking to `app` in process, as if from TCP peer `peer`."""
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    return httpx.AsyncClient(transport=transport, base_url=base)


async def sign_in(http: httpx.AsyncClient, user: str = "alice", origin: str | None = None) -> str:
    """Sign in through the form; returns the session cookie's value."""
    form = {"user": user, "password": PASSWORD, "next": "/"}
    headers = {"Origin": origin or str(http.base_url).rstrip("/")}
    response = await http.post("/login", data=form, headers=headers)
    assert response.status_code == 303, response.text
    value = response.cookies.get(SESSION_COOKIE)
    assert value, response.headers
    http.cookies.clear()  # tests send the cookie explicitly; the client stays anonymous
    return value


def cookie(value: str) -> dict[str, str]:
    return {"Cookie": f"{SESSION_COOKIE}={value}"}


def _leaves(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, BaseRoute]]:
    """Every route with its full path, recursing into mounts that have routes of their own."""
    for route in routes:
        if isinstance(route, Mount) and route.routes:
            yield from _leaves(list(route.routes), prefix + route.path)
        else:
            yield prefix + getattr(route, "path", ""), route


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


async def test_every_route_refuses_anonymous_requests() -> None:
    """Enumerated from the app: each route but the documented PUBLIC ones refuses anonymous use."""
    docs = DOCS.read_text()
    for entry in PUBLIC:
        assert f"`{entry.path}`" in docs, f"docs/security.md must list public {entry.path}"
    routes = list(_leaves(create_app(SECURED).routes))
    assert len(routes) > 10
    public_seen = set()
    async with running_hub(**_overrides(SECURED)) as running:
        for path, route in routes:
            if isinstance(route, WebSocketRoute):
                if any(entry.admits("WEBSOCKET", path) for entry in PUBLIC):
                    public_seen.add(path)
                    continue
                with pytest.raises(InvalidStatus) as refused:
                    async with websockets.connect(f"ws://127.0.0.1:{running.port}{path}"):
                        pass
                assert refused.value.response.status_code == 403, path
            elif isinstance(route, Mount):  # a mounted app (static files): only if public
                assert any(entry.path == path + "/" for entry in PUBLIC), path
                public_seen.add(path + "/")
                assert (await running.http.get(f"{path}/css/hub.css")).status_code == 200
            else:
                assert isinstance(route, Route) and route.methods, path
                for method in sorted(route.methods):
                    if any(entry.admits(method, path) for entry in PUBLIC):
                        public_seen.add(path)
                        continue
                    await _assert_refused(running, method, _concrete(path))
        await _assert_refused(running, "GET", "/no/such/page")  # deny by default, even a 404
        await _assert_refused(running, "GET", "/api/telemetry/nope")
    assert public_seen == {entry.path for entry in PUBLIC}, "PUBLIC names a route the app lacks"


def _overrides(settings: Settings) -> dict[str, Any]:
    keys = ("users", "api_tokens", "proxy_user_header", "trusted_proxies", "proxy_admins")
    return {key: getattr(settings, key) for key in keys}


async def _assert_refused(running: RunningHub, method: str, path: str) -> None:
    """Anonymous `method path`: pages go to sign-in (303), everything else is a JSON 401."""
    response = await running.http.request(method, path)
    not_pages = ("/api/", "/metrics", "/fragments/", "/ws/")
    page = method in ("GET", "HEAD") and not path.startswith(not_pages)
    if page:
        assert response.status_code == 303, (method, path, response.status_code)
        assert response.headers["location"] == f"/login?next={path.replace('/', '%2F')}"
    else:
        assert response.status_code == 401, (method, path, response.status_code)
        assert response.headers["www-authenticate"].startswith("Bearer")
        if method != "HEAD":
            assert response.json()["error"] == "unauthorized"


async def test_signed_in_viewers_read_everything() -> None:
    """A viewer by API token, by session and by trusted proxy reads pages, API and /metrics."""
    async with app_for(SECURED) as app:
        async with client(app) as http:
            session = await sign_in(http)
            for path in ("/", "/api/telemetry/engines", "/api/telemetry/stats", "/metrics"):
                assert (await http.get(path, headers=bearer(VIEWER_TOKEN))).status_code == 200
                assert (await http.get(path, headers=cookie(session))).status_code == 200
        async with client(app, peer=PROXY) as http:
            response = await http.get("/", headers={"X-Forwarded-User": "carol"})
            assert response.status_code == 200 and "carol" in response.text


async def test_a_viewer_cannot_use_admin_actions() -> None:
    """/api/admin/* and non-read methods need the admin role: viewers get 403, admins pass."""
    async with app_for(SECURED, ADMIN_ROUTES) as app, client(app) as http:
        alice, root = await sign_in(http, "alice"), await sign_in(http, "root")
        for method, path in (
            ("POST", "/api/admin/echo"),
            ("GET", "/api/admin/echo"),
            ("POST", "/api/telemetry/poke"),
        ):
            for credentials in (bearer(VIEWER_TOKEN), {**cookie(alice), **SAME_SITE}):
                response = await http.request(method, path, headers=credentials)
                assert response.status_code == 403, (method, path, response.text)
                body = response.json()
                assert body["error"] == "forbidden" and "admin role" in body["detail"]
            for credentials in (bearer(ADMIN_TOKEN), {**cookie(root), **SAME_SITE}):
                response = await http.request(method, path, headers=credentials)
                assert response.status_code == 200, (method, path, response.text)
                assert "admin" in response.json()["scopes"]
            assert (await http.request(method, path)).status_code == 401
        async with client(app, peer=PROXY) as proxied:
            boss = {"X-Forwarded-User": "boss", **SAME_SITE}
            assert (await proxied.post("/api/admin/echo", headers=boss)).status_code == 200
            carol = {"X-Forwarded-User": "carol", **SAME_SITE}
            assert (await proxied.post("/api/admin/echo", headers=carol)).status_code == 403


def test_the_authorization_rule() -> None:
    """Reads need a viewer; /api/admin/ and other methods need an admin, except sign-in/out."""
    assert not needs_admin("GET", "/api/telemetry/engines")
    assert not needs_admin("WEBSOCKET", "/ws/dashboard")
    assert needs_admin("GET", "/api/admin/tokens")
    assert needs_admin("POST", "/api/admin/reload")
    assert needs_admin("DELETE", "/api/telemetry/engines")
    assert not needs_admin("POST", "/login") and not needs_admin("POST", "/logout")


async def test_expired_and_unknown_api_tokens_are_refused() -> None:
    """A token past its expiry, an unknown one or a malformed header is a 401 invalid_token."""
    async with app_for(SECURED) as app, client(app) as http:
        for headers in (
            bearer(EXPIRED_TOKEN),
            bearer(new_token("ehv_")),
            {"Authorization": "Basic eA=="},
        ):
            response = await http.get("/api/telemetry/engines", headers=headers)
            assert response.status_code == 401
            assert 'error="invalid_token"' in response.headers["www-authenticate"]
            assert "engine-hub token create" in response.json()["detail"]
        # Public paths ignore credentials they cannot use (engines send engine tokens there).
        assert (await http.get("/healthz", headers=bearer(EXPIRED_TOKEN))).status_code == 200


async def test_a_proxy_header_from_an_untrusted_peer_is_ignored() -> None:
    """Only a trusted proxy may name the user; from anyone else the header counts for nothing."""
    async with app_for(SECURED) as app:
        for peer in ("127.0.0.1", "10.9.9.10", "testclient"):
            async with client(app, peer=peer) as http:
                headers = {"X-Forwarded-User": "boss"}
                assert (
                    await http.get("/api/telemetry/engines", headers=headers)
                ).status_code == 401
        async with client(app, peer=PROXY) as http:
            headers = {"X-Forwarded-User": "boss"}
            assert (await http.get("/api/telemetry/engines", headers=headers)).status_code == 200
            # A proxy that forwards no user name admits nobody.
            assert (await http.get("/api/telemetry/engines")).status_code == 401


async def test_a_cross_site_post_with_a_valid_session_is_refused() -> None:
    """CSRF: cookie-authenticated writes need the hub's own Origin (or Referer); tokens are exempt."""
    async with app_for(SECURED, ADMIN_ROUTES) as app, client(app) as http:
        root = cookie(await sign_in(http, "root"))
        evil = await http.post(
            "/api/admin/echo", headers={**root, "Origin": "https://evil.example"}
        )
        assert evil.status_code == 403
        body = evil.json()
        assert body["error"] == "cross_site" and "evil.example" in body["detail"]
        blind = await http.post("/api/admin/echo", headers=root)  # neither Origin nor Referer
        assert blind.status_code == 403 and blind.json()["error"] == "cross_site"
        referer = {**root, "Referer": f"{BASE}/engines/fno"}
        assert (await http.post("/api/admin/echo", headers=referer)).status_code == 200
        assert (
            await http.post("/api/admin/echo", headers={**root, **SAME_SITE})
        ).status_code == 200
        token = {**bearer(ADMIN_TOKEN), "Origin": "https://evil.example"}
        assert (await http.post("/api/admin/echo", headers=token)).status_code == 200
        # The login form checks Origin too (no signing a victim in as the attacker).
        form = {"user": "root", "password": PASSWORD}
        forged = await http.post("/login", data=form, headers={"Origin": "https://evil.example"})
        assert forged.status_code == 403 and SESSION_COOKIE not in forged.cookies


async def test_a_public_url_is_the_hubs_own_origin_too() -> None:
    """Behind a proxy the browser's origin is public_url: writes from it pass the CSRF check."""
    settings = SECURED.replace(public_url="https://hub.example.com")
    async with app_for(settings, ADMIN_ROUTES) as app, client(app) as http:
        root = cookie(await sign_in(http, "root"))
        headers = {**root, "Origin": "https://hub.example.com"}
        assert (await http.post("/api/admin/echo", headers=headers)).status_code == 200


async def test_expired_sessions_are_refused_and_fresh_ones_renewed() -> None:
    """Cookies past the idle or absolute limit go back to sign-in; a used one is re-issued."""
    settings = SECURED.replace(session_idle=600.0, session_lifetime=3600.0)
    async with app_for(settings) as app, client(app) as http:
        auth: Auth = app.state.auth
        now = time.time()
        idle = ViewerSession(
            "alice", "s1", now - 700, now - 601, auth.sessions.start(ALICE, now).key
        )
        old = ViewerSession("alice", "s2", now - 3601, now - 5, idle.key)
        used = ViewerSession("alice", "s3", now - 300, now - 120, idle.key)
        for session in (idle, old):
            value = auth.cookie(session, now, secure=False).split(";")[0].split("=", 1)[1]
            response = await http.get("/", headers=cookie(value))
            assert response.status_code == 303 and response.headers["location"].startswith("/login")
        value = auth.cookie(used, now, secure=False).split(";")[0].split("=", 1)[1]
        response = await http.get("/", headers=cookie(value))
        assert response.status_code == 200
        renewed = auth.read_cookie(response.cookies.get(SESSION_COOKIE))
        assert renewed is not None and renewed.sid == "s3" and renewed.seen > used.seen
        forged = value[:-2] + ("AA" if not value.endswith("AA") else "BB")
        assert (await http.get("/api/telemetry/stats", headers=cookie(forged))).status_code == 401


async def test_sign_out_ends_the_session() -> None:
    """After POST /logout the cookie is cleared, and even a kept copy no longer works."""
    async with app_for(SECURED) as app, client(app) as http:
        value = await sign_in(http)
        assert (await http.get("/api/telemetry/stats", headers=cookie(value))).status_code == 200
        out = await http.post("/logout", headers={**cookie(value), **SAME_SITE})
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert (
            f"{SESSION_COOKIE}=" in out.headers["set-cookie"]
            and "Max-Age=0" in out.headers["set-cookie"]
        )
        assert (await http.get("/api/telemetry/stats", headers=cookie(value))).status_code == 401


async def test_a_live_socket_closes_when_its_session_ends() -> None:
    """An open dashboard socket is closed with 1008 soon after its session is signed out."""
    async with running_hub(**_overrides(SECURED)) as running:
        running.server.app.state.auth.live_recheck = 0.05
        value = await sign_in(running.http)
        url = f"ws://127.0.0.1:{running.port}/ws/dashboard?view=overview"
        async with websockets.connect(url, additional_headers=cookie(value)) as ws:
            async with asyncio.timeout(WAIT):
                await ws.recv()  # the snapshot: signed in, live
            origin = {"Origin": f"http://127.0.0.1:{running.port}"}
            assert (
                await running.http.post("/logout", headers={**cookie(value), **origin})
            ).status_code == 303
            with pytest.raises(ConnectionClosed) as closed:
                async with asyncio.timeout(WAIT):
                    while True:
                        await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(url, additional_headers=cookie(value)):
                pass
        assert refused.value.response.status_code == 403


async def test_a_viewer_by_token_gets_a_live_dashboard_socket() -> None:
    """A program with a viewer API token may open /ws/dashboard; an expired token may not."""
    async with running_hub(**_overrides(SECURED)) as running:
        url = f"ws://127.0.0.1:{running.port}/ws/dashboard?view=overview"
        async with websockets.connect(url, additional_headers=bearer(VIEWER_TOKEN)) as ws:
            async with asyncio.timeout(WAIT):
                assert "hx-swap-oob" in await ws.recv()
        with pytest.raises(InvalidStatus):
            async with websockets.connect(url, additional_headers=bearer(EXPIRED_TOKEN)):
                pass


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/engines/fno?x=1", "/engines/fno?x=1"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("evil.example", "/"),
        ("/login", "/"),
        ("/%0d%0aSet-Cookie:x", "/%0d%0aSet-Cookie:x"),
        ("/\r\nx", "/"),
        (None, "/"),
    ],
)
def test_next_is_a_path_on_this_hub_only(raw: str | None, expected: str) -> None:
    """No open redirect: `next` keeps same-origin paths and turns anything else into /."""
    assert safe_next(raw) == expected


async def test_a_link_from_another_site_reloads_to_carry_the_strict_cookie() -> None:
    """A cross-site navigation (no SameSite=Strict cookie) gets a same-site reload, no data."""
    async with app_for(SECURED) as app, client(app) as http:
        response = await http.get("/", headers={"Sec-Fetch-Site": "cross-site"})
        assert response.status_code == 200
        assert '<meta http-equiv="refresh" content="0">' in response.text
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert "engine" not in response.text.lower().replace("engine hub", "")


async def test_anonymous_viewers_when_opted_in_may_read_but_not_act() -> None:
    """allow_anonymous_viewers with sign-in configured: anonymous reads, admin actions refused."""
    settings = SECURED.replace(allow_anonymous_viewers=True)
    async with app_for(settings, ADMIN_ROUTES) as app, client(app) as http:
        assert (await http.get("/api/telemetry/engines")).status_code == 200
        response = await http.post("/api/admin/echo", headers=SAME_SITE)
        assert response.status_code == 403 and response.json()["error"] == "forbidden"


async def test_without_viewer_auth_the_local_operator_may_do_everything() -> None:
    """Auth off on loopback is today's hub: no credentials needed, any Authorization ignored,
    but a write from another site's page is still refused."""
    async with (
        app_for(Settings(db=":memory:"), ADMIN_ROUTES) as app,
        client(app, base="http://127.0.0.1") as http,  # loopback: it answers loopback names only
    ):
        assert (await http.get("/", headers=bearer("whatever"))).status_code == 200
        assert (await http.post("/api/admin/echo")).status_code == 200
        evil = await http.post("/api/admin/echo", headers={"Origin": "https://evil.example"})
        assert evil.status_code == 403 and evil.json()["error"] == "cross_site"
        assert (await http.get("/login")).headers.get("location") == "/"


async def test_export_from_a_hub_with_sign_in_takes_an_api_token() -> None:
    """`engine-hub export --url` without a token is told how to get one (exit 2); with --token or
    ENGINE_HUB_API_TOKEN it gets the bundle."""
    async with running_hub(api_tokens=API_TOKENS) as running:
        engine = await connect_engine(running, "exported")
        await engine.send({"kind": "event", "type": "cycle", "payload": {"n": 1}})
        await engine.wait_acked()
        url = f"http://127.0.0.1:{running.port}"
        command = ("export", "--engine", "exported", "--url", url)
        code, _, err = await run_cli(*command)
        assert code == 2 and "--token" in err and "Traceback" not in err
        code, out, _ = await run_cli(*command, "--token", VIEWER_TOKEN)
        assert code == 0 and json.loads(out)["engine"] == "exported"
        code, out, _ = await run_cli(*command, ENGINE_HUB_API_TOKEN=VIEWER_TOKEN)
        assert code == 0 and json.loads(out)["events"][0]["payload"] == {"n": 1}
        await engine.close()
