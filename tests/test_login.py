"""Signing in and out: the form, the cookie, failures, the rate limit, and the whole flow in Chromium."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from playwright.async_api import Browser, expect

import hub.web.login as login_module
from hub.core.access import ApiToken, Role, digest, new_token
from hub.stores import HistoryQuery
from hub.web.identities import SESSION_COOKIE
from tests.conftest import WAIT, connect_engine, running_hub, unique, watched_page
from tests.test_auth import (
    PASSWORD,
    SAME_SITE,
    SECURED,
    app_for,
    client,
    cookie,
    sign_in,
)

MS = WAIT * 1000
FORM = {"user": "alice", "password": PASSWORD, "next": "/"}


def _page_text(html: str) -> str:
    """A rendered page without the per-render clock stamp."""
    return re.sub(r'data-server-now="[^"]*"', "", html)


async def test_the_sign_in_page_is_a_plain_form_under_the_strict_csp() -> None:
    """GET /login: a form that posts to /login and carries `next`, no inline script or style."""
    async with app_for(SECURED) as app, client(app) as http:
        response = await http.get("/login", params={"next": "/engines/fno"})
        assert response.status_code == 200
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        html = response.text
        assert '<form id="sign-in" method="post" action="/login">' in html
        assert 'name="next" value="/engines/fno"' in html
        assert "style=" not in html and not re.search(r"<script(?![^>]*\bsrc=)", html)


async def test_a_signed_in_viewer_skips_the_form() -> None:
    """Someone already signed in who opens /login goes straight on to `next`."""
    async with app_for(SECURED) as app, client(app) as http:
        value = await sign_in(http)
        response = await http.get("/login?next=/engines/fno", headers=cookie(value))
        assert response.status_code == 303 and response.headers["location"] == "/engines/fno"


async def test_signing_in_sets_a_strict_http_only_cookie_and_goes_next() -> None:
    """Success: 303 to a same-origin `next` (never another site), HttpOnly SameSite=Strict cookie."""
    async with app_for(SECURED) as app, client(app) as http:
        form = {**FORM, "next": "/engines/fno?x=1"}
        response = await http.post("/login", data=form, headers=SAME_SITE)
        assert response.status_code == 303 and response.headers["location"] == "/engines/fno?x=1"
        set_cookie = response.headers["set-cookie"]
        assert set_cookie.startswith(f"{SESSION_COOKIE}=")
        for attribute in ("HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="):
            assert attribute in set_cookie
        assert "Secure" not in set_cookie  # plain http: a Secure cookie would never come back
        http.cookies.clear()
        for evil in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
            response = await http.post("/login", data={**FORM, "next": evil}, headers=SAME_SITE)
            assert response.headers["location"] == "/"
            http.cookies.clear()


async def test_the_cookie_is_secure_over_https() -> None:
    """When the browser reached the hub over https, the session cookie is marked Secure."""
    async with app_for(SECURED) as app, client(app, base="https://hub.test") as http:
        origin = {"Origin": "https://hub.test"}
        response = await http.post("/login", data=FORM, headers=origin)
        assert response.status_code == 303
        assert "Secure" in response.headers["set-cookie"]


async def test_a_wrong_user_and_a_wrong_password_look_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Same answer for both, and an unknown user's password is still checked (a dummy hash)."""
    checked: list[str] = []
    real = login_module.verify_password

    def verify(stored: str, password: str) -> bool:
        checked.append(stored)
        return real(stored, password)

    monkeypatch.setattr(login_module, "verify_password", verify)
    async with app_for(SECURED) as app, client(app) as http:
        nobody = await http.post("/login", data={**FORM, "user": "nobody"}, headers=SAME_SITE)
        wrong = await http.post(
            "/login", data={**FORM, "password": "not it at all"}, headers=SAME_SITE
        )
        assert nobody.status_code == wrong.status_code == 200
        assert _page_text(nobody.text) == _page_text(wrong.text)
        assert "Wrong user name or password." in wrong.text
        assert SESSION_COOKIE not in nobody.cookies and SESSION_COOKIE not in wrong.cookies
        assert len(checked) == 2 and checked[0] == app.state.auth.dummy_hash
        assert checked[0].startswith("$argon2id$") and checked[1] == SECURED.users[0].password


async def test_a_failed_sign_in_is_logged_in_one_line_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One WARNING line: the user name escaped (no forged log lines), the address, never the password."""
    async with app_for(SECURED) as app, client(app, peer="192.0.2.7") as http:
        with caplog.at_level(logging.INFO, logger="hub.web.login"):
            name = "eve\nINFO signed in: 'root'"
            form = {"user": name, "password": "hunter2-hunter2", "next": "/"}
            await http.post("/login", data=form, headers=SAME_SITE)
    lines = [r.getMessage() for r in caplog.records if r.name == "hub.web.login"]
    assert len(lines) == 1, lines
    assert "\n" not in lines[0] and "eve\\nINFO" in lines[0] and "192.0.2.7" in lines[0]
    assert "hunter2" not in lines[0]


async def test_sign_in_is_rate_limited_per_address() -> None:
    """Past login_attempts_per_minute, an address gets 429 with Retry-After; others still try."""
    settings = SECURED.replace(login_attempts_per_minute=2)
    async with app_for(settings) as app:
        async with client(app, peer="192.0.2.1") as http:
            wrong = {**FORM, "password": "not it at all"}
            for _ in range(2):
                assert (await http.post("/login", data=wrong, headers=SAME_SITE)).status_code == 200
            limited = await http.post("/login", data=FORM, headers=SAME_SITE)  # even the right one
            assert limited.status_code == 429 and SESSION_COOKIE not in limited.cookies
            assert 1 <= int(limited.headers["retry-after"]) <= 30
            assert "Too many sign-in attempts" in limited.text
        async with client(app, peer="192.0.2.2") as other:
            assert (await other.post("/login", data=FORM, headers=SAME_SITE)).status_code == 303


async def test_a_hub_without_password_users_says_how_to_sign_in() -> None:
    """With only API tokens configured, /login explains the other ways in instead of a form."""
    token = ApiToken(digest(new_token("ehv_")), Role.VIEWER, "t")
    async with app_for(SECURED.replace(users=(), api_tokens=(token,))) as app, client(app) as http:
        response = await http.get("/login")
        assert response.status_code == 200 and "<form" not in response.text
        assert "no password sign-in" in response.text


async def test_the_header_shows_who_is_signed_in() -> None:
    """Pages name the signed-in user, with a sign-out form for password sessions only."""
    async with app_for(SECURED) as app, client(app) as http:
        value = await sign_in(http, "root")
        html = (await http.get("/", headers=cookie(value))).text
        assert 'id="account"' in html and "root" in html and 'action="/logout"' in html
        async with client(app, peer="10.9.9.9") as proxied:
            html = (await proxied.get("/", headers={"X-Forwarded-User": "carol"})).text
            assert "carol" in html and 'action="/logout"' not in html
    async with app_for(SECURED.replace(users=(), api_tokens=(), proxy_user_header="")) as app:
        async with client(app) as http:
            assert 'id="account"' not in (await http.get("/")).text  # no sign-in: as before


async def _sign_in_in_browser(page: Any, user: str = "alice") -> None:
    """Fill in and submit the sign-in form."""
    await page.locator("#sign-in input[name=user]").fill(user)
    await page.locator("#sign-in input[name=password]").fill(PASSWORD)
    await page.locator("#sign-in button[type=submit]").click()


async def test_sign_in_live_dashboard_and_sign_out_in_chromium(browser: Browser) -> None:
    """/ goes to /login; signing in shows the live dashboard with pushed updates; signing out ends it."""
    async with running_hub(users=SECURED.users) as running:
        origin = f"http://127.0.0.1:{running.port}"
        async with watched_page(browser) as watched:
            page = watched.page
            await page.goto(origin + "/")
            await expect(page).to_have_url(re.compile(r"/login\?next=%2F$"))
            await _sign_in_in_browser(page)
            await expect(page).to_have_url(origin + "/")
            await expect(page.locator("#conn")).to_have_text("live", timeout=MS)
            await expect(page.locator("#account .who")).to_have_text("alice")

            name = unique("signed")
            engine = await connect_engine(running, name)
            await engine.send({"kind": "heartbeat", "status": "running", "loop_tick": 41})
            card = page.locator("article.card").filter(has_text=name)
            await expect(card.locator("dt:text-is('loop') + dd")).to_have_text(
                re.compile(r"^41\b"), timeout=MS
            )
            await page.locator("#account button", has_text="Sign out").click()
            await expect(page).to_have_url(origin + "/login")
            assert SESSION_COOKIE not in {c["name"] for c in await page.context.cookies()}
            await page.goto(origin + "/")
            await expect(page).to_have_url(re.compile(r"/login\?next="))
            await engine.close()
            assert watched.problems == [], watched.problems


@pytest.mark.parametrize("how", ["closed", "refused"])
async def test_a_page_whose_sign_in_ended_goes_to_sign_in_in_chromium(
    browser: Browser, how: str
) -> None:
    """Signed out elsewhere, an open dashboard goes to /login instead of reconnecting forever:
    whether the hub closes its socket (1008) or refuses its next one (HTTP 403, seen as 1006)."""
    async with running_hub(users=SECURED.users) as running:
        if how == "closed":
            running.server.app.state.auth.live_recheck = 0.05
        origin = f"http://127.0.0.1:{running.port}"
        async with watched_page(browser) as watched:
            page = watched.page
            await page.goto(origin + "/login?next=/")
            await _sign_in_in_browser(page)
            await expect(page.locator("#conn")).to_have_text("live", timeout=MS)
            value = next(
                c["value"] for c in await page.context.cookies() if c["name"] == SESSION_COOKIE
            )
            headers = {**cookie(value), "Origin": origin}
            assert (await running.http.post("/logout", headers=headers)).status_code == 303
            if how == "refused":
                running.hub.fanout.close()  # as at a restart: 1012, and the page reconnects
            await expect(page).to_have_url(origin + "/login?next=%2F", timeout=MS)


async def test_a_link_from_another_site_keeps_the_sign_in_in_chromium(browser: Browser) -> None:
    """Following a link from another site (no Strict cookie on that request) still lands signed in."""
    async with running_hub(users=SECURED.users) as running:
        origin = f"http://127.0.0.1:{running.port}"
        async with watched_page(browser) as watched:
            page = watched.page
            await page.goto(origin + "/login?next=/")
            await _sign_in_in_browser(page)
            await expect(page.locator("#conn")).to_have_text("live", timeout=MS)
            await page.goto(f"data:text/html,<a id=go href='{origin}/'>hub</a>")
            await page.locator("#go").click()
            await expect(page).to_have_url(origin + "/")
            await expect(page.locator("#conn")).to_have_text("live", timeout=MS)
            await expect(page.locator("#account .who")).to_have_text("alice")


async def test_sign_ins_failures_and_sign_outs_reach_the_audit_trail() -> None:
    """Each sign-in, failure and sign-out is in the audit trail with who and from where, and no
    password."""
    async with app_for(SECURED) as app, client(app, peer="192.0.2.9") as http:
        await http.post("/login", data={**FORM, "password": "wrong-wrong-wrong"}, headers=SAME_SITE)
        await http.post("/login", data=FORM, headers=SAME_SITE)
        await http.post("/logout", headers=SAME_SITE)
        trail = await app.state.hub.store.history("audit", HistoryQuery(10))
    assert [(a.actor, a.action) for a in reversed(trail)] == [
        ("192.0.2.9", "sign_in_failed"),
        ("alice", "sign_in"),
        ("alice", "sign_out"),
    ]
    assert "wrong-wrong" not in repr(trail) and PASSWORD not in repr(trail)
    assert "192.0.2.9" in trail[1].detail
