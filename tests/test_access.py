"""Credentials: token digests and expiry, what an engine token admits, and the CLI that makes them."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from hub.core.access import (
    ANY_ENGINE,
    ApiToken,
    Credentials,
    EngineToken,
    Role,
    User,
    digest,
    new_token,
)
from hub.settings import Settings, SettingsError, load_settings
from hub.web.passwords import verify_password

NOW = 1_700_000_000.0


def engine_token(engines: tuple[str, ...], modes: tuple[str, ...]) -> tuple[str, EngineToken]:
    token = new_token("ehe_")
    return token, EngineToken(digest(token), engines, modes, "t")


def test_an_engine_token_admits_only_its_globs_and_modes() -> None:
    """'fno*' in paper admits fno and fno2 in paper, never live, never another engine's name."""
    _, grant = engine_token(("fno*",), ("paper",))
    assert grant.refusal("fno", "paper") is None
    assert grant.refusal("fno2", "PAPER") is None
    assert "mode 'live'" in (grant.refusal("fno", "live") or "")
    assert "engine 'equity'" in (grant.refusal("equity", "paper") or "")
    assert ANY_ENGINE.refusal("anything", "live") is None


def test_credentials_find_tokens_by_digest_and_honour_expiry() -> None:
    """API tokens are found by their SHA-256 digest until they expire; unknown tokens are not."""
    token, other = new_token("ehv_"), new_token("ehv_")
    creds = Credentials(api_tokens=[ApiToken(digest(token), Role.ADMIN, "ops", NOW + 60)])
    entry = creds.api_token(token, NOW)
    assert entry is not None and entry.role is Role.ADMIN
    assert creds.api_token(token, NOW + 60) is None  # expired
    assert creds.api_token(other, NOW) is None


def test_the_shared_token_admits_any_engine_and_per_engine_tokens_their_own() -> None:
    """The old single `token` keeps working as any engine, any mode, beside per-engine tokens."""
    token, grant = engine_token(("equity",), ("live",))
    creds = Credentials(engine_tokens=[grant], shared_engine_token="s3cret-shared")
    assert creds.engines_need_a_token
    assert creds.engine_token("s3cret-shared") is ANY_ENGINE
    assert creds.engine_token(token) is grant
    assert creds.engine_token("wrong") is None
    assert not Credentials().engines_need_a_token


def test_an_open_socket_is_judged_by_its_token_digest_alone() -> None:
    """engine_grant finds a token by the digest an open socket kept, and not once it is removed."""
    token, grant = engine_token(("fno*",), ("paper",))
    creds = Credentials(engine_tokens=[grant], shared_engine_token="s3cret-shared")
    assert creds.engine_grant(digest(token)) is grant
    assert creds.engine_grant(digest("s3cret-shared")) is ANY_ENGINE
    assert creds.engine_grant(digest("wrong")) is None
    revoked = Credentials(shared_engine_token="s3cret-shared")
    assert revoked.engine_grant(digest(token)) is None
    assert Credentials(engine_tokens=[grant]).engine_grant(digest("s3cret-shared")) is None


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ('[[users]]\nname = "a"\npassword = "plain"', "argon2 hash"),
        ('[[users]]\nname = "a b"\npassword = "$argon2id$x"', "names are"),
        ('[[api_tokens]]\nsha256 = "abc"', "64 hex digits"),
        ('[[api_tokens]]\nrole = "viewer"', "missing 'sha256'"),
        ('[[engine_tokens]]\nsha256 = "' + "0" * 64 + '"\nengines = ["a b"]', "globs"),
        ('[[api_tokens]]\nsha256 = "' + "0" * 64 + '"\nrole = "root"', "root"),
    ],
)
def test_bad_credential_entries_are_named_errors(tmp_path: Path, entry: str, problem: str) -> None:
    """A malformed [[users]] / [[api_tokens]] / [[engine_tokens]] entry stops startup, saying why."""
    config = tmp_path / "hub.toml"
    config.write_text(f"[hub]\nport = 9001\n{entry}\n")
    with pytest.raises(SettingsError, match=problem):
        load_settings(config_file=config)


def test_settings_never_show_secrets_in_their_repr() -> None:
    """Tokens, hashes and the session secret stay out of repr (and so out of logs)."""
    settings = Settings(
        token="shared-secret",
        session_secret="signing-secret-of-some-length",
        users=(User("alice", Role.ADMIN, "$argon2id$hash"),),
    )
    text = repr(settings)
    assert "shared-secret" not in text and "signing-secret" not in text
    assert "argon2" not in text


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub", *args], input=stdin, capture_output=True, text=True
    )


def test_cli_entries_append_as_is_to_a_settings_file(tmp_path: Path) -> None:
    """`user add` and both `token create` forms print entries that load back, secrets hashed only."""
    user = run("user", "add", "alice", "--role", "admin", stdin="correct horse battery\n")
    api = run("token", "create", "--role", "viewer", "--ttl", "90d", "--name", "grafana")
    eng = run("token", "create", "--engine", "fno*", "--mode", "paper")
    assert (user.returncode, api.returncode, eng.returncode) == (0, 0, 0), (user, api, eng)
    api_token, api_entry = api.stdout.split("\n", 1)
    engine_tok, engine_entry = eng.stdout.split("\n", 1)
    assert api_token.startswith("ehv_") and engine_tok.startswith("ehe_")
    assert "correct horse" not in user.stdout
    assert api_token not in api_entry and engine_tok not in engine_entry
    config = tmp_path / "hub.toml"
    config.write_text("[hub]\nport = 9002\n" + user.stdout + api_entry + engine_entry)
    settings = load_settings(config_file=config)
    assert settings.port == 9002
    [alice] = settings.users
    assert alice.role is Role.ADMIN and verify_password(alice.password, "correct horse battery")
    assert not verify_password(alice.password, "wrong horse battery")
    creds = Credentials(settings.users, settings.api_tokens, settings.engine_tokens)
    now = time.time()
    granted = creds.api_token(api_token, now)
    assert granted is not None and granted.name == "grafana"
    # whole seconds: the CLI rounds the expiry, so it may be up to half a second later
    assert granted.expires is not None and 89 * 86400 < granted.expires - now <= 90 * 86400 + 1
    grant = creds.engine_token(engine_tok)
    assert grant is not None and grant.refusal("fno", "live") is not None


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("user", "add", "bob"), "short\n", "at least 10"),
        (("token", "create"), "", "say what the token is for"),
        (("token", "create", "--role", "viewer", "--engine", "x"), "", "do not go together"),
        (("token", "create", "--role", "viewer", "--ttl", "soon"), "", "not a duration"),
    ],
)
def test_cli_credential_mistakes_exit_2_with_a_reason(
    args: tuple[str, ...], stdin: str, message: str
) -> None:
    """Short passwords, a token for nothing, or both kinds at once are refused in one line."""
    result = run(*args, stdin=stdin)
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
