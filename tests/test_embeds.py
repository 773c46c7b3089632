"""Embed links: signed for one engine, expiring, revocable; anything else reads as no grant."""

from __future__ import annotations

import html
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from hub.core.access import ApiToken, Role, digest, new_token
from hub.stores import HistoryQuery
from hub.web.embeds import EMBED_PARAM, EmbedLinks
from tests.conftest import connect_engine, running_hub

SECRET = "an-embed-signing-secret-of-some-length"
NOW = 1_700_000_000.0


def test_a_link_grants_its_engine_until_it_expires() -> None:
    """A fresh token reads back as its engine and expiry, and as nothing once expired."""
    links = EmbedLinks(SECRET)
    token, grant = links.make("fno", NOW + 60)
    read = links.read(token, NOW, frozenset())
    assert read == grant and read.engine == "fno" and read.expires == NOW + 60
    assert links.read(token, NOW + 60, frozenset()) is None


def test_revoked_tampered_and_foreign_tokens_grant_nothing() -> None:
    """A revoked id, a changed byte, another hub's secret or garbage are all refused."""
    links = EmbedLinks(SECRET)
    token, grant = links.make("fno", NOW + 60)
    assert links.read(token, NOW, frozenset({grant.link_id})) is None
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    assert links.read(tampered, NOW, frozenset()) is None
    assert EmbedLinks(SECRET + "x").read(token, NOW, frozenset()) is None
    for junk in ("", "x", "x" * 600, "WyJmbm8iXQ.abc"):
        assert links.read(junk, NOW, frozenset()) is None


def test_links_need_a_signing_secret() -> None:
    """Without session_secret there is no stable key: making links is refused, saying how to fix."""
    with pytest.raises(ValueError, match="session_secret"):
        EmbedLinks("")


def test_cli_prints_a_link_that_the_hub_would_accept(tmp_path: Path) -> None:
    """`engine-hub token embed` prints the link under public_url; its token reads back."""
    config = tmp_path / "hub.toml"
    config.write_text(
        f'[hub]\nsession_secret = "{SECRET}"\npublic_url = "https://hub.example.com"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "hub", "token", "embed", "--engine", "fno", "--ttl", "1d"]
        + ["--config", str(config)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    link = urlsplit(result.stdout.splitlines()[0])
    assert (link.scheme, link.netloc, link.path) == (
        "https",
        "hub.example.com",
        "/embed/engines/fno",
    )
    [token] = parse_qs(link.query)[EMBED_PARAM]
    grant = EmbedLinks(SECRET).read(token, NOW, frozenset())
    assert grant is not None and grant.engine == "fno"
    assert grant.link_id in result.stdout.splitlines()[1]  # the id to revoke it by


# -- what a link admits on a hub with sign-in on -----------------------------------------------


def secured(**changes: object) -> dict[str, object]:
    """Hub settings with sign-in on (one API token) and a fixed signing secret."""
    token = ApiToken(digest(new_token("ehv_")), Role.ADMIN, "ops")
    return {"api_tokens": (token,), "session_secret": SECRET, **changes}


async def test_an_embed_link_shows_its_one_card_and_nothing_else() -> None:
    """The link opens fno's embed page, card fragment and live socket; not equity's, not the
    API, not the overview; an expired link and a revoked one open nothing."""
    links = EmbedLinks(SECRET)
    token, grant = links.make("fno", time.time() + 3600)
    expired, _ = links.make("fno", time.time() - 1)
    q = {EMBED_PARAM: token}
    async with running_hub(**secured()) as running:
        fno = await connect_engine(running, "fno")
        equity = await connect_engine(running, "equity")
        index = {e.name: e.index for e in running.hub.state.engines.values()}
        http = running.http
        page = await http.get("/embed/engines/fno", params=q)
        assert page.status_code == 200 and 'id="card-' in page.text
        assert f"embed={token}" in page.text  # the page's socket carries the link on
        assert (await http.get("/fragments/engines/fno/card", params=q)).status_code == 200
        assert (await http.get("/embed/engines/equity", params=q)).status_code == 303
        assert (await http.get("/fragments/engines/equity/card", params=q)).status_code == 401
        assert (await http.get("/api/telemetry/engines", params=q)).status_code == 401
        assert (await http.get("/", params=q)).status_code == 303
        assert (
            await http.get("/embed/engines/fno", params={EMBED_PARAM: expired})
        ).status_code == 303
        ws = f"ws://127.0.0.1:{running.port}/ws/dashboard"
        async with websockets.connect(f"{ws}?view=embed&id={index['fno']}&embed={token}") as live:
            assert 'id="card-' in await live.recv()  # the snapshot of its one card
        for refused in (
            f"{ws}?view=embed&id={index['equity']}&embed={token}",
            f"{ws}?view=overview&embed={token}",
            f"{ws}?view=engine&id={index['fno']}&embed={token}",
        ):
            with pytest.raises(InvalidStatus):
                await websockets.connect(refused)
        settings = running.hub.settings.replace(revoked_embeds=(grant.link_id,))
        running.hub.reload_credentials(settings, "test")
        assert (await http.get("/embed/engines/fno", params=q)).status_code == 303
        await fno.close()
        await equity.close()


async def test_an_admin_makes_a_link_from_the_engine_page_and_it_works() -> None:
    """POST /admin/embeds (the engine page's form) gives an admin a working link, is audited,
    is refused to a viewer, and says how to turn links on when the hub has no secret."""
    admin, viewer = new_token("ehv_"), new_token("ehv_")
    tokens = (
        ApiToken(digest(admin), Role.ADMIN, "ops"),
        ApiToken(digest(viewer), Role.VIEWER, "v"),
    )
    async with running_hub(api_tokens=tokens, session_secret=SECRET) as running:
        fno = await connect_engine(running, "fno")
        index = running.hub.state.engines["fno"].index
        form = {"index": str(index), "ttl": "7d"}
        made = await running.http.post("/admin/embeds", data=form, headers=bearer(admin))
        assert made.status_code == 200, made.text
        [link] = re.findall(r'class="embed-link" readonly value="([^"]+)"', made.text)
        page = await running.http.get(html.unescape(link))  # no credentials: the link alone
        assert page.status_code == 200 and 'id="card-' in page.text
        refused = await running.http.post("/admin/embeds", data=form, headers=bearer(viewer))
        assert refused.status_code == 403
        trail = await running.hub.store.history("audit", HistoryQuery(10, engine="fno"))
        assert [(a.actor, a.action) for a in trail] == [("ops", "embed_link_created")]
        await fno.close()
    async with running_hub(api_tokens=tokens) as running:
        await connect_engine(running, "fno")
        form = {"index": str(running.hub.state.engines["fno"].index), "ttl": "7d"}
        off = await running.http.post("/admin/embeds", data=form, headers=bearer(admin))
        assert off.status_code == 409 and "session_secret" in off.text


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
