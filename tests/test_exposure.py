"""Secure by default: a hub off loopback without viewer sign-in refuses to start."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from hub.core.access import ApiToken, Role, digest, new_token
from hub.settings import Settings
from hub.web.exposure import anonymous_warning, is_loopback, serving_problem
from tests.conftest import WAIT, run_cli, serve_process

TOKEN = ApiToken(digest(new_token("ehv_")), Role.VIEWER, "scraper")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("192.168.1.5", False),
        ("hub.example.com", False),
    ],
)
def test_loopback_means_only_this_machine(host: str, loopback: bool) -> None:
    """127.0.0.0/8, ::1 and localhost are loopback; wildcards, LAN addresses and names are not."""
    assert is_loopback(host) is loopback


def test_off_loopback_without_viewer_auth_is_refused_with_what_to_add() -> None:
    """0.0.0.0 with nothing configured is refused; the message names every way to fix it."""
    problem = serving_problem(Settings(host="0.0.0.0"))
    assert problem is not None
    for fix in ("engine-hub user add", "[[api_tokens]]", "proxy_user_header", "trusted_proxies"):
        assert fix in problem
    assert "allow_anonymous_viewers = true" in problem


@pytest.mark.parametrize(
    "settings",
    [
        Settings(host="127.0.0.1"),
        Settings(host="0.0.0.0", api_tokens=(TOKEN,)),
        Settings(
            host="0.0.0.0", proxy_user_header="X-Forwarded-User", trusted_proxies=("10.0.0.0/8",)
        ),
        Settings(host="0.0.0.0", allow_anonymous_viewers=True),
    ],
)
def test_loopback_or_any_viewer_auth_or_the_opt_out_may_serve(settings: Settings) -> None:
    """Loopback, a way to sign in, or the deliberate opt-out: the hub may start."""
    assert serving_problem(settings) is None


@pytest.mark.parametrize(
    "settings",
    [
        Settings(host="127.0.0.1", trusted_proxies=("127.0.0.1",)),
        Settings(host="127.0.0.1", public_url="https://hub.example.com"),
    ],
)
def test_loopback_behind_a_reverse_proxy_counts_as_exposed(settings: Settings) -> None:
    """Bound to loopback behind nginx (trusted_proxies, or a public_url elsewhere), the dashboard is
    on the network all the same: without sign-in the hub refuses, naming why."""
    problem = serving_problem(settings)
    assert problem is not None and ("reverse proxy" in problem or "hub.example.com" in problem)
    assert serving_problem(settings.replace(api_tokens=(TOKEN,))) is None
    assert serving_problem(Settings(public_url="http://127.0.0.1:8765")) is None
    assert serving_problem(Settings(host="0.0.0.0", trusted_proxies=("*",))) is not None  # no auth
    assert (
        serving_problem(Settings(host="0.0.0.0", trusted_proxies=("*",), api_tokens=(TOKEN,)))
        is None
    )


def test_a_proxy_header_without_trusted_proxies_is_refused() -> None:
    """proxy_user_header alone can never admit anyone: say which setting is missing."""
    problem = serving_problem(Settings(proxy_user_header="X-Forwarded-User"))
    assert problem is not None and "trusted_proxies" in problem
    bad = Settings(proxy_user_header="X-User", trusted_proxies=("nginx.local",))
    assert "'nginx.local'" in (serving_problem(bad) or "")


def test_the_opt_out_is_warned_about() -> None:
    """allow_anonymous_viewers produces a warning for every start; otherwise there is none."""
    assert anonymous_warning(Settings()) is None
    warning = anonymous_warning(Settings(host="0.0.0.0", allow_anonymous_viewers=True))
    assert warning is not None and "without signing in" in warning


async def _serve(*args: str, **env: str) -> tuple[int, bytes]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub",
        "serve",
        "--db",
        ":memory:",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **env},
    )
    async with asyncio.timeout(WAIT):
        out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out


async def test_serve_on_every_address_without_auth_exits_2() -> None:
    """`engine-hub serve --host 0.0.0.0` with no viewer auth exits 2 with one clear message."""
    code, out = await _serve("--host", "0.0.0.0", "--port", "0")
    assert code == 2, out
    assert b"engine-hub user add" in out and b"allow_anonymous_viewers = true" in out
    assert b"Traceback" not in out and b"engine hub on" not in out


async def test_the_opt_out_starts_and_warns() -> None:
    """With allow_anonymous_viewers the hub starts, and logs a WARNING saying so first."""
    async with serve_process(ENGINE_HUB_ALLOW_ANONYMOUS_VIEWERS="true") as (_, _, said):
        lines = said.encode().splitlines()
    warnings = [line for line in lines if b"WARNING" in line]
    assert any(b"allow_anonymous_viewers = true" in line for line in warnings), lines


async def test_the_demo_off_loopback_is_held_to_the_same_rules() -> None:
    """`engine-hub demo --host 0.0.0.0` refuses like serve, naming sign-in and host names at once."""
    code, out, err = await run_cli("demo", "--host", "0.0.0.0", "--port", "0")
    assert code == 2, (out, err)
    assert "engine-hub user add" in err and "public_url" in err
    assert "Traceback" not in err and "open http" not in out
