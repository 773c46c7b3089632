"""Embed links: signed for one engine, expiring, revocable; anything else reads as no grant."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from hub.web.embeds import EMBED_PARAM, EmbedLinks

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
