"""docs/deployment.md for real: Debian's nginx runs deploy/nginx/engine-hub.conf in front of a hub.

nginx terminates TLS with a certificate made here by `openssl`, on free 127.0.0.1 ports that this
test binds and hands to nginx (the `NGINX` variable: nginx takes inherited listening sockets), so
requests wait in the backlog instead of racing nginx's start. Chromium resolves `hub.test`, the
site's name here, to 127.0.0.1. The hub runs with the settings of deploy/engine-hub/hub.toml.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import ssl
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from playwright.async_api import Browser, Page, expect
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from hub.core.access import ApiToken, Role, User, digest, new_token
from hub.settings import load_settings
from hub.web.hosts import check_hosts
from hub.web.identities import SESSION_COOKIE
from hub.web.passwords import hash_password
from tests.conftest import WAIT, Engine, RunningHub, SSEReader, running_hub, unique
from tests.test_hosts import resolving

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "deployment.md"
SITE = ROOT / "deploy" / "nginx" / "engine-hub.conf"
UNIT = ROOT / "deploy" / "systemd" / "engine-hub.service"
HUB_TOML = ROOT / "deploy" / "engine-hub" / "hub.toml"
NAME = "hub.test"  # stands for hub.example.com; Chromium and the clients resolve it to 127.0.0.1
MS = WAIT * 1000
# Sign-in is on behind nginx, as deployed: a viewer with a password (Chromium signs in) and an
# API token for the programs in these tests (engines use /ws/engine, which needs neither).
PASSWORD = "through the proxy, please"
VIEWER = User("viewer", Role.VIEWER, hash_password(PASSWORD))
API_TOKEN = new_token("ehv_")
BEARER = {"Authorization": f"Bearer {API_TOKEN}"}


def documented(path: Path) -> str:
    """The fenced block after `<!-- file: path -->` in docs/deployment.md, verbatim."""
    relative = path.relative_to(ROOT).as_posix()
    match = re.search(
        rf"<!-- file: {re.escape(relative)} -->\n```\w*\n(.*?)```", DOC.read_text(), re.S
    )
    assert match, f"docs/deployment.md lost its copy of {relative}"
    return match.group(1)


@pytest.mark.parametrize("path", [SITE, UNIT, HUB_TOML], ids=lambda p: p.name)
def test_deployment_doc_shows_the_deploy_files_verbatim(path: Path) -> None:
    """What docs/deployment.md tells people to install is, byte for byte, the file in deploy/."""
    assert documented(path) == path.read_text()


def test_deployed_settings_start_and_own_the_public_name() -> None:
    """deploy/engine-hub/hub.toml passes the startup checks: loopback, nginx trusted, public_url set."""
    settings = load_settings(config_file=HUB_TOML)
    check_hosts(settings)
    assert settings.host == "127.0.0.1" and settings.trusted_proxies == ("127.0.0.1",)
    assert settings.public_url == "https://hub.example.com"


def test_systemd_unit_runs_serve_with_the_config_and_reloads_on_hup() -> None:
    """The unit starts `engine-hub serve --config /etc/engine-hub/hub.toml` as its own user."""
    lines = dict(
        line.split("=", 1) for line in UNIT.read_text().splitlines() if re.match(r"^\w+=", line)
    )
    assert lines["ExecStart"].endswith("engine-hub serve --config /etc/engine-hub/hub.toml")
    assert lines["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert lines["User"] == "engine-hub" and lines["Restart"] == "on-failure"
    assert lines["ProtectSystem"] == "strict" and lines["NoNewPrivileges"] == "yes"
    assert lines["ReadWritePaths"] == "/var/lib/engine-hub"


def nginx_binary() -> str:
    """Debian's nginx, or a skip that says how to get it."""
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if found is None:
        pytest.skip(
            "nginx is not installed: scripts/test installs Debian's nginx when it runs as root with "
            "apt-get; otherwise `apt-get install nginx` (as root) and run tests/test_nginx.py again"
        )
    if shutil.which("openssl") is None:
        pytest.skip(
            "openssl is not installed; tests/test_nginx.py makes its TLS certificate with it"
        )
    return found


def listening() -> socket.socket:
    """A non-blocking listening socket on a free 127.0.0.1 port, for nginx to inherit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    sock.set_inheritable(True)
    return sock


def substituted(text: str, changes: dict[str, str]) -> str:
    """`text` with each key replaced; every key must occur, so the site file cannot drift away."""
    for old, new in changes.items():
        assert old in text, f"deploy/nginx/engine-hub.conf no longer contains {old!r}"
        text = text.replace(old, new)
    return text


@dataclass
class Site:
    """nginx serving deploy/nginx/engine-hub.conf in front of a running hub."""

    hub: RunningHub
    https_port: int
    http_port: int
    tls: ssl.SSLContext  # trusts the site's certificate
    error_log: Path

    @property
    def origin(self) -> str:
        return f"https://{NAME}:{self.https_port}"

    def client(self, port: int | None = None, scheme: str = "https") -> httpx.AsyncClient:
        """HTTP through nginx, asking for the site by name (`Host: hub.test:PORT`)."""
        port = port or self.https_port
        return httpx.AsyncClient(
            base_url=f"{scheme}://127.0.0.1:{port}",
            headers={"Host": f"{NAME}:{port}", **BEARER},
            verify=self.tls,
            timeout=WAIT,
        )

    def connect(self, path: str, **kwargs: Any) -> Any:
        """A WebSocket to `path` through nginx (TLS checked against the site's certificate)."""
        url = f"wss://{NAME}:{self.https_port}{path}"
        kwargs.setdefault("additional_headers", BEARER)
        return websockets.connect(url, host="127.0.0.1", ssl=self.tls, **kwargs)


async def run(*argv: str) -> str:
    """Run a command to completion; its output, or a failure that shows it."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    async with asyncio.timeout(WAIT * 3):
        output, _ = await proc.communicate()
    assert proc.returncode == 0, f"{argv[0]} failed: {output.decode(errors='replace')}"
    return output.decode(errors="replace")


async def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for hub.test (and 127.0.0.1), the way docs/deployment.md makes one."""
    crt, key = directory / "engine-hub.crt", directory / "engine-hub.key"
    await run(
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", f"/CN={NAME}", "-addext", f"subjectAltName=DNS:{NAME},IP:127.0.0.1",
        "-keyout", str(key), "-out", str(crt),
    )  # fmt: skip
    return crt, key


def main_config(directory: Path, site: Path) -> Path:
    """An nginx.conf that includes the site the way Debian's does (inside `http`), with its pid,
    logs and temporary files under `directory`."""
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers may then read the temp dir
    temp = "\n".join(
        f"    {kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    config = directory / "nginx.conf"
    config.write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {directory / 'nginx.pid'};\n"
        f"error_log {directory / 'error.log'} notice;\nevents {{}}\n"
        f"http {{\n    access_log {directory / 'access.log'};\n{temp}\n    include {site};\n}}\n"
    )
    return config


@asynccontextmanager
async def nginx_site(directory: Path) -> AsyncIterator[Site]:
    """The hub with deploy/engine-hub/hub.toml's proxy settings, and nginx in front of it."""
    binary = nginx_binary()
    crt, key = await make_certificate(directory)
    https, http = listening(), listening()
    https_port, http_port = https.getsockname()[1], http.getsockname()[1]
    deployed = load_settings(config_file=HUB_TOML)
    public_url = deployed.public_url.replace("hub.example.com", f"{NAME}:{https_port}")
    async with running_hub(
        public_url=public_url,
        trusted_proxies=deployed.trusted_proxies,
        allowed_hosts=deployed.allowed_hosts,
        users=(VIEWER,),
        api_tokens=(ApiToken(digest(API_TOKEN), Role.VIEWER, "tests"),),
    ) as hub:
        site = directory / "engine-hub.conf"
        site.write_text(
            substituted(
                SITE.read_text(),
                {
                    "server 127.0.0.1:8765;": f"server 127.0.0.1:{hub.port};",
                    "listen 443 ssl;": f"listen 127.0.0.1:{https_port} ssl;",
                    "listen 80;": f"listen 127.0.0.1:{http_port};",
                    "server_name hub.example.com;": f"server_name {NAME};",
                    "/etc/ssl/certs/engine-hub.crt": str(crt),
                    "/etc/ssl/private/engine-hub.key": str(key),
                },
            )
        )
        config, error_log = main_config(directory, site), directory / "error.log"
        argv = (binary, "-p", f"{directory}/", "-e", str(error_log), "-c", str(config))
        await run(*argv, "-t")
        fds = (https.fileno(), http.fileno())
        nginx = await asyncio.create_subprocess_exec(
            *argv,
            pass_fds=fds,
            env={**os.environ, "NGINX": "".join(f"{fd};" for fd in fds)},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        tls = ssl.create_default_context(cafile=str(crt))
        try:
            yield Site(hub, https_port, http_port, tls, error_log)
        finally:
            await stop(nginx)
            https.close()
            http.close()


async def stop(nginx: asyncio.subprocess.Process) -> None:
    """Stop the nginx this test started, by its PID: SIGQUIT lets it finish open requests."""
    if nginx.returncode is None:
        os.kill(nginx.pid, signal.SIGQUIT)
        try:
            async with asyncio.timeout(WAIT):
                await nginx.wait()
        except TimeoutError:
            os.kill(nginx.pid, signal.SIGKILL)
            await nginx.wait()


@pytest.fixture(scope="module")
async def site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    """One nginx and hub for the module."""
    async with nginx_site(tmp_path_factory.mktemp("nginx")) as running:
        async with running.client() as http:
            answer = await http.get("/healthz")  # queued until nginx is up
        assert answer.status_code == 200, running.error_log.read_text()
        yield running


async def engine_through(site: Site, name: str) -> Engine:
    """An engine that says hello through nginx's /ws/engine (a real websockets client)."""
    ws: ClientConnection = await site.connect("/ws/engine", compression=None)
    boot_id = uuid.uuid4().hex
    hello = {"kind": "hello", "engine": name, "mode": "paper", "pid": 4242, "boot_id": boot_id}
    await ws.send(json.dumps(hello))
    async with asyncio.timeout(WAIT):
        welcome = json.loads(await ws.recv())
    assert welcome["kind"] == "welcome", welcome
    return Engine(ws, name, boot_id, welcome, seq=welcome["last_seq"])


async def sign_in(page: Page, site: Site) -> None:
    """Sign in through nginx the way a viewer does: the dashboard sends Chromium to /login, the
    form signs in, and the session cookie comes back Secure (X-Forwarded-Proto made it https)."""
    await page.goto(f"{site.origin}/")
    await expect(page).to_have_url(re.compile(r"/login\?next=%2F$"), timeout=MS)
    await page.fill("input[name=user]", VIEWER.name)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page).to_have_url(f"{site.origin}/", timeout=MS)
    [session] = [c for c in await page.context.cookies() if c["name"] == SESSION_COOKIE]
    assert session["secure"] and session["httpOnly"] and session["sameSite"] == "Strict"


async def test_engine_ingest_through_nginx_is_acknowledged(site: Site) -> None:
    """An engine's events pass nginx's WebSocket upgrade, reach the hub and are acked back."""
    engine = await engine_through(site, unique("nginx-ingest"))
    payload = {"symbol": "NIFTY-FUT", "side": "long", "reason": "through nginx"}
    await engine.send({"kind": "event", "type": "signal_event", "payload": payload})
    await engine.send({"kind": "heartbeat", "status": "running", "loop_tick": 7})
    await engine.wait_acked()
    assert site.hub.hub.state.engines[engine.name].loop_tick == 7
    await engine.close()


async def test_dashboard_through_nginx_loads_and_gets_live_updates(
    site: Site, browser: Browser
) -> None:
    """In Chromium at https://hub.test:PORT/ the dashboard renders, its /ws/dashboard goes live
    through nginx, and a signal an engine sends through nginx is pushed onto the page."""
    async with resolving(browser, NAME) as mapped:
        context = await mapped.new_context(ignore_https_errors=True)  # the self-signed certificate
        try:
            page = await context.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            await sign_in(page, site)
            answer = await page.goto(f"{site.origin}/")
            assert answer is not None and answer.status == 200
            await expect(page.locator("#conn")).to_have_text("live", timeout=MS)
            engine = await engine_through(site, unique("nginx-live"))
            symbol = unique("SIG")
            payload = {"symbol": symbol, "side": "long", "reason": "pushed through nginx"}
            await engine.send({"kind": "event", "type": "signal_event", "payload": payload})
            newest = page.locator("#signals tbody tr").first
            await expect(newest).to_contain_text(symbol, timeout=MS)
            await expect(page.locator("#cards")).to_contain_text(engine.name, timeout=MS)
            assert problems == []
            await engine.close()
        finally:
            await context.close()


async def test_sse_through_nginx_streams_events_as_they_come(site: Site) -> None:
    """/api/telemetry/stream through nginx delivers an event while the stream stays open."""
    engine = await engine_through(site, unique("nginx-sse"))
    async with site.client() as http:
        params = {"engine": engine.name}
        async with http.stream("GET", "/api/telemetry/stream", params=params) as response:
            assert response.status_code == 200
            reader = SSEReader(response)
            async with asyncio.timeout(WAIT):
                async for line in reader._lines:
                    if line.startswith(": connected"):
                        break
            await engine.send({"kind": "event", "type": "order_event", "payload": {"id": 1}})
            event = await reader.next()
            assert event.data["engine"] == engine.name and event.data["type"] == "order_event"
    await engine.close()


async def test_the_hub_knows_it_is_served_over_https_through_nginx(site: Site) -> None:
    """nginx's X-Forwarded-Proto makes the hub's requests https: a page on https://hub.test (the
    Host nginx forwards, without the port) may open /ws/dashboard, one on http://hub.test may not."""
    async with site.connect("/ws/dashboard", origin=Origin(f"https://{NAME}")) as ws:
        async with asyncio.timeout(WAIT):
            assert 'id="cards"' in await ws.recv()
    with pytest.raises(InvalidStatus) as refused:
        await site.connect("/ws/dashboard", origin=Origin(f"http://{NAME}"))
    assert refused.value.response.status_code == 403


async def test_through_nginx_another_host_name_gets_nothing(site: Site) -> None:
    """A rebinding name that reaches nginx is passed on as `Host` and refused by the hub (421);
    the same goes for its WebSocket; plain HTTP on the site's name only redirects to HTTPS."""
    async with site.client() as http:
        evil = await http.get("/api/telemetry/engines", headers={"Host": "evil.example"})
        assert evil.status_code == 421 and evil.json()["error"] == "misdirected_request"
    url = f"wss://evil.example:{site.https_port}/ws/dashboard"
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(url, host="127.0.0.1", ssl=site.tls, server_hostname=NAME)
    assert refused.value.response.status_code == 421
    async with site.client(site.http_port, scheme="http") as http:
        plain = await http.get("/engines/x?y=1")
        assert plain.status_code == 301
        assert plain.headers["location"] == f"https://{NAME}/engines/x?y=1"
