"""Engine tokens end to end: the handshake, what a token admits at hello, the client's back-off,
and revocation without a restart (SIGHUP to `engine-hub serve`, POST /api/admin/reload)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Close

from hub.client import AsyncEngineClient
from hub.core.access import ENGINE_TOKEN_PREFIX, EngineToken, digest, new_token
from hub.settings import Settings, load_settings
from tests.conftest import WAIT, Engine, RunningHub, running_hub, unique

SHARED = "shared-s3cret"  # the old single `token` setting
FNO_PAPER = new_token(ENGINE_TOKEN_PREFIX)
EQUITY_LIVE = new_token(ENGINE_TOKEN_PREFIX)
GRANTS = (
    EngineToken(digest(FNO_PAPER), ("fno*",), ("paper",), "fno paper"),
    EngineToken(digest(EQUITY_LIVE), ("equity*",), ("live",), "equity live"),
)
CARD = ("mode", "pid", "status", "connected", "boot_id", "boots", "replaced", "seq", "loop_tick")
LISTENING = re.compile(r"engine hub on http://127\.0\.0\.1:(\d+)")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def hello(name: str, mode: str) -> str:
    return json.dumps(
        {"kind": "hello", "engine": name, "mode": mode, "pid": 7, "boot_id": uuid.uuid4().hex}
    )


async def open_engine(url: str, token: str, name: str, mode: str) -> Engine:
    """Connect with `token`, say hello as `name` in `mode`, and wait for the welcome."""
    ws = await websockets.connect(url, additional_headers=bearer(token), compression=None)
    await ws.send(message := hello(name, mode))
    async with asyncio.timeout(WAIT):
        welcome = json.loads(await ws.recv())
    assert welcome["kind"] == "welcome", welcome
    return Engine(ws, name, json.loads(message)["boot_id"], welcome, seq=welcome["last_seq"])


async def closed_by_hub(ws: ClientConnection) -> Close:
    """Wait until the hub closes `ws`; the close frame it sent."""
    with pytest.raises(ConnectionClosed) as info:
        async with asyncio.timeout(WAIT):
            while True:
                await ws.recv()
    assert info.value.rcvd is not None, "the socket ended without a close frame from the hub"
    return info.value.rcvd


async def refused_hello(url: str, token: str, name: str, mode: str) -> Close:
    """Connect with `token`, say hello as `name` in `mode`; the close frame the hub answers with."""
    async with websockets.connect(url, additional_headers=bearer(token), compression=None) as ws:
        await ws.send(hello(name, mode))
        return await closed_by_hub(ws)


async def handshake_status(url: str, headers: dict[str, str]) -> int:
    """The HTTP status of a refused WebSocket handshake."""
    with pytest.raises(InvalidStatus) as info:
        async with websockets.connect(url, additional_headers=headers):
            pass
    return info.value.response.status_code


async def still_serves(engine: Engine) -> None:
    """The socket is open and the hub still takes this engine's messages (it acks them)."""
    await engine.send({"kind": "heartbeat", "status": "running", "loop_tick": engine.seq + 1})
    await engine.wait_acked()


async def card_of(running: RunningHub, name: str) -> dict[str, Any]:
    [card] = [
        e for e in (await running.get("/api/telemetry/engines"))["engines"] if e["name"] == name
    ]
    return card


@asynccontextmanager
async def tokens_hub(**overrides: Any) -> AsyncIterator[RunningHub]:
    """A hub that needs engine tokens: the two grants above and the shared token."""
    async with running_hub(engine_tokens=GRANTS, token=SHARED, **overrides) as running:
        yield running


async def test_a_paper_token_cannot_say_hello_as_a_live_engine() -> None:
    """A paper token's hello in mode live closes 1008 with the reason and registers nothing."""
    async with tokens_hub() as running:
        name = unique("fno")
        close = await refused_hello(running.ws_url, FNO_PAPER, name, "live")
        assert (close.code, close.reason) == (
            1008,
            "this token does not admit mode 'live' (it admits paper)",
        )
        engines = (await running.get("/api/telemetry/engines"))["engines"]
        assert name not in [e["name"] for e in engines]
        assert (await running.get("/api/telemetry/stats"))["drops"]["token_refused"] == 1
        engine = await open_engine(running.ws_url, FNO_PAPER, name, "paper")  # its own terms
        assert (await card_of(running, name))["mode"] == "paper"
        await engine.close()


async def test_a_token_cannot_speak_as_another_engine_nor_close_its_socket() -> None:
    """An fno token's hello as equity is refused; the real equity socket and card are untouched."""
    async with tokens_hub() as running:
        equity = await open_engine(running.ws_url, EQUITY_LIVE, "equity", "live")
        await still_serves(equity)
        before = {k: (await card_of(running, "equity"))[k] for k in CARD}
        close = await refused_hello(running.ws_url, FNO_PAPER, "equity", "paper")
        assert close.code == 1008
        assert close.reason == "this token does not admit engine 'equity' (it admits fno*)"
        assert {k: (await card_of(running, "equity"))[k] for k in CARD} == before
        assert before["connected"] and before["replaced"] == 0 and before["mode"] == "live"
        await still_serves(equity)
        assert (await card_of(running, "equity"))["replaced"] == 0
        await equity.close()


async def test_the_shared_token_still_admits_any_engine_in_any_mode() -> None:
    """The old single `token` setting works beside per-engine tokens, for any name and mode."""
    async with tokens_hub() as running:
        name = unique("options")
        engine = await open_engine(running.ws_url, SHARED, name, "live")
        await still_serves(engine)
        assert (await card_of(running, name))["mode"] == "live"
        await engine.close()


async def test_a_wrong_or_missing_token_gets_403_and_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No token, an unknown one or another scheme: HTTP 403, each counted, one warning per peer."""
    caplog.set_level(logging.WARNING, logger="hub.web.engine_ws")
    async with tokens_hub() as running:
        url = running.ws_url
        assert await handshake_status(url, {}) == 403
        assert await handshake_status(url, bearer("ehe_not-a-token-of-this-hub")) == 403
        assert await handshake_status(url, {"Authorization": f"Basic {SHARED}"}) == 403
        assert (await running.get("/api/telemetry/stats"))["drops"]["unauthorized"] == 3
    warnings = [r.getMessage() for r in caplog.records if r.name == "hub.web.engine_ws"]
    assert warnings == [
        "refused an engine connection from 127.0.0.1: no Authorization: Bearer <token> header"
    ]
    assert "not-a-token" not in caplog.text and SHARED not in caplog.text


async def test_a_hub_without_tokens_admits_any_engine() -> None:
    """With no token configured, engines connect without one (and a token they send is ignored)."""
    async with running_hub() as running:
        engine = await open_engine(running.ws_url, "anything", unique("free"), "live")
        await still_serves(engine)
        await engine.close()


async def test_the_client_logs_the_refusal_once_and_backs_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client refused at hello logs one line with the hub's reason and waits auth_backoff."""
    auth_backoff = 0.25
    attempts: list[float] = []
    third = asyncio.Event()

    class Counted(ClientConnection):
        """One instance per connection attempt (TCP connected, handshake not yet sent)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            attempts.append(asyncio.get_running_loop().time())
            if len(attempts) == 3:
                third.set()

    caplog.set_level(logging.DEBUG, logger="hub.client")
    async with tokens_hub() as running:
        client = AsyncEngineClient(
            running.ws_url,
            engine="fno",
            mode="live",
            token=FNO_PAPER,
            auth_backoff=auth_backoff,
            backoff_base=0.01,  # a client that retried on its normal back-off would storm
            backoff_max=0.02,
            connect_options={"create_connection": Counted},
        )
        await client.start()
        async with asyncio.timeout(WAIT):
            await third.wait()
        await client.close(0.1)
        assert client.stats.connects == 0
    assert attempts[2] - attempts[0] >= 2 * auth_backoff * 0.9, attempts
    loud = [r for r in caplog.records if r.name.startswith("hub.client") and r.levelno >= 30]
    assert [r.levelname for r in loud] == ["ERROR"]
    assert "this token does not admit mode 'live' (it admits paper)" in loud[0].getMessage()
    assert FNO_PAPER not in caplog.text


def write_settings(path: Path, *grants: EngineToken, extra: str = "") -> None:
    """The settings file an operator keeps: `token create` entries appended as printed."""
    entries = [
        f'[[engine_tokens]]\nname = "{g.name}"\nengines = {json.dumps(list(g.engines))}\n'
        f'modes = {json.dumps(list(g.modes))}\nsha256 = "{g.sha256}"\n'
        for g in grants
    ]
    path.write_text(extra + "\n" + "\n".join(entries))


def reloader(path: Path, running: Settings) -> Callable[[], Settings]:
    """What `engine-hub serve` passes the server: load the settings again (here: the file's
    credentials on top of the test hub's own settings)."""
    overrides = {
        k: getattr(running, k) for k in ("host", "port", "db", "log_level", "gc_thaw_interval")
    }
    return lambda: load_settings({**overrides, "graceful_timeout": 3}, {}, path)


async def test_admin_reload_revokes_a_token_without_a_restart(tmp_path: Path) -> None:
    """POST /api/admin/reload: a removed token is refused at once and its open socket closed."""
    path = tmp_path / "hub.toml"
    write_settings(path, *GRANTS)
    async with running_hub(engine_tokens=load_settings({}, {}, path).engine_tokens) as running:
        running.server.app.state.reload_settings = reloader(path, running.hub.settings)
        fno = await open_engine(running.ws_url, FNO_PAPER, "fno", "paper")
        equity = await open_engine(running.ws_url, EQUITY_LIVE, "equity", "live")
        write_settings(path, GRANTS[1])  # the fno token is revoked
        response = await running.http.post("/api/admin/reload")
        assert response.status_code == 200, response.text
        assert response.json() == {
            "users": 0,
            "api_tokens": 0,
            "engine_tokens": 1,
            "closed_engine_sockets": 1,
            "restart_needed": [],
        }
        close = await closed_by_hub(fno.ws)
        assert (close.code, close.reason) == (1008, "token revoked")
        assert await handshake_status(running.ws_url, bearer(FNO_PAPER)) == 403
        await still_serves(equity)  # the other token keeps working, open and new
        other = await open_engine(running.ws_url, EQUITY_LIVE, unique("equity"), "live")
        stats = await running.get("/api/telemetry/stats")
        assert stats["drops"]["token_revoked"] == 1
        await other.close()
        await equity.close()


async def test_admin_reload_narrowing_a_token_closes_what_it_no_longer_admits(
    tmp_path: Path,
) -> None:
    """A token that now admits paper only closes its live socket; settings that need a restart
    are named."""
    path = tmp_path / "hub.toml"
    write_settings(path, *GRANTS)
    async with running_hub(engine_tokens=load_settings({}, {}, path).engine_tokens) as running:
        running.server.app.state.reload_settings = reloader(path, running.hub.settings)
        equity = await open_engine(running.ws_url, EQUITY_LIVE, "equity", "live")
        paper_only = EngineToken(GRANTS[1].sha256, ("equity*",), ("paper",), "equity paper")
        write_settings(path, GRANTS[0], paper_only, extra="heartbeat_interval = 2.0")
        response = await running.http.post("/api/admin/reload")
        assert response.json()["restart_needed"] == ["heartbeat_interval"]
        close = await closed_by_hub(equity.ws)
        assert (close.code, close.reason) == (
            1008,
            "this token does not admit mode 'live' (it admits paper)",
        )


async def test_admin_reload_that_adds_the_first_token_closes_sockets_without_one(
    tmp_path: Path,
) -> None:
    """Engines that connected while no token was needed are closed once a reload requires one."""
    path = tmp_path / "hub.toml"
    write_settings(path)
    async with running_hub() as running:
        running.server.app.state.reload_settings = reloader(path, running.hub.settings)
        free = await open_engine(running.ws_url, "none needed", "fno", "paper")
        write_settings(path, *GRANTS)
        assert (await running.http.post("/api/admin/reload")).json()["closed_engine_sockets"] == 1
        close = await closed_by_hub(free.ws)
        assert (close.code, close.reason) == (1008, "this hub now requires an engine token")
        await (await open_engine(running.ws_url, FNO_PAPER, "fno", "paper")).close()


async def test_admin_reload_keeps_the_credentials_when_the_file_is_bad(tmp_path: Path) -> None:
    """A settings file that does not load is a 422 naming the problem; nothing is revoked."""
    path = tmp_path / "hub.toml"
    write_settings(path, *GRANTS)
    async with running_hub(engine_tokens=GRANTS) as running:
        running.server.app.state.reload_settings = reloader(path, running.hub.settings)
        fno = await open_engine(running.ws_url, FNO_PAPER, "fno", "paper")
        path.write_text("[[engine_tokens]\n")
        response = await running.http.post("/api/admin/reload")
        assert response.status_code == 422
        body = response.json()
        assert body["error"] == "bad_settings" and "not valid TOML" in body["detail"]
        assert "previous credentials stay in force" in body["detail"]
        await still_serves(fno)
        await (await open_engine(running.ws_url, FNO_PAPER, unique("fno"), "paper")).close()
        await fno.close()


async def test_admin_reload_without_a_settings_source_is_a_409() -> None:
    """A hub started without a reload callable says so instead of pretending to reload."""
    async with running_hub() as running:
        response = await running.http.post("/api/admin/reload")
        assert response.status_code == 409
        assert response.json()["error"] == "no_reload"
        assert "engine-hub serve" in response.json()["detail"]
        assert (await running.http.get("/api/admin/reload")).status_code == 405


@dataclass
class ServeProcess:
    """`python -m hub serve --config FILE` as a child process, its log read line by line."""

    proc: asyncio.subprocess.Process
    port: int
    lines: asyncio.Queue[str]

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/engine"

    async def logged(self, pattern: str) -> str:
        """Wait for a log line matching `pattern`."""
        async with asyncio.timeout(WAIT):
            while not re.search(pattern, line := await self.lines.get()):
                pass
        return line


@asynccontextmanager
async def serve_config(path: Path) -> AsyncIterator[ServeProcess]:
    """Serve with settings from `path` on a free port; SIGTERM it afterwards."""
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "hub", "serve", "--port", "0", "--db", ":memory:"),
        *("--config", str(path), "--log-level", "info"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    lines: asyncio.Queue[str] = asyncio.Queue()

    async def read() -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            await lines.put(line.decode(errors="replace").rstrip())

    reader = asyncio.create_task(read())
    try:
        running = ServeProcess(proc, 0, lines)
        listening = LISTENING.search(await running.logged(LISTENING.pattern))
        assert listening is not None
        running.port = int(listening[1])
        async with httpx.AsyncClient(timeout=WAIT) as http:
            # healthz answers once the lifespan ran, after the SIGHUP handler was installed.
            assert (await http.get(f"http://127.0.0.1:{running.port}/healthz")).status_code == 200
        yield running
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(WAIT):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def test_sighup_revokes_a_token_without_a_restart(tmp_path: Path) -> None:
    """SIGHUP re-reads --config: a removed token is refused and its socket closed, others work;
    a broken file is logged as an ERROR and changes nothing."""
    path = tmp_path / "hub.toml"
    write_settings(path, *GRANTS)
    async with serve_config(path) as served:
        fno = await open_engine(served.ws_url, FNO_PAPER, "fno", "paper")
        equity = await open_engine(served.ws_url, EQUITY_LIVE, "equity", "live")
        write_settings(path, GRANTS[1])
        served.proc.send_signal(signal.SIGHUP)
        close = await closed_by_hub(fno.ws)
        assert (close.code, close.reason) == (1008, "token revoked")
        assert await handshake_status(served.ws_url, bearer(FNO_PAPER)) == 403
        await still_serves(equity)
        await (await open_engine(served.ws_url, EQUITY_LIVE, "equity-2", "live")).close()

        path.write_text("[[engine_tokens]]\nsha256 = 'short'\n")
        served.proc.send_signal(signal.SIGHUP)
        line = await served.logged("reloading settings failed")
        assert "ERROR" in line and "64 hex digits" in line
        assert "previous credentials stay in force" in line
        await still_serves(equity)
        await (await open_engine(served.ws_url, EQUITY_LIVE, "equity-3", "live")).close()
        assert await handshake_status(served.ws_url, bearer(FNO_PAPER)) == 403
        await equity.close()
