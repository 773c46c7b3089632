"""Engine tokens end to end: the handshake, what a token admits at hello, the client's back-off."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Close

from hub.client import AsyncEngineClient
from hub.core.access import ENGINE_TOKEN_PREFIX, EngineToken, digest, new_token
from tests.conftest import WAIT, Engine, RunningHub, running_hub, unique

SHARED = "shared-s3cret"  # the old single `token` setting
FNO_PAPER = new_token(ENGINE_TOKEN_PREFIX)
EQUITY_LIVE = new_token(ENGINE_TOKEN_PREFIX)
GRANTS = (
    EngineToken(digest(FNO_PAPER), ("fno*",), ("paper",), "fno paper"),
    EngineToken(digest(EQUITY_LIVE), ("equity*",), ("live",), "equity live"),
)
CARD = ("mode", "pid", "status", "connected", "boot_id", "boots", "replaced", "seq", "loop_tick")


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
