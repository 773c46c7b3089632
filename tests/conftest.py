"""Shared fixtures: a real uvicorn hub on port 0, engine sockets and SSE readers."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import sqlite3
import sys
import uuid
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from playwright.async_api import Browser, Page, async_playwright
from websockets.asyncio.client import ClientConnection

from hub.settings import Settings
from hub.web.runtime import Hub
from hub.web.server import HubServer, bind

WAIT = 10.0  # upper bound for any wait on an event; tests never sleep to synchronize


def sqlar_uncompress(body: bytes, size: int | None) -> bytes:
    """What docs/operations.md tells other programs to define before they read the events view."""
    return body if not size or size == len(body) else zlib.decompress(body)


@contextmanager
def database(db: str | Path, *, read_only: bool = True) -> Iterator[sqlite3.Connection]:
    """A connection to a hub's database as another program opens it: the `events` view works.

    Read-only, it reads the WAL a killed hub left but never checkpoints it or writes the file.
    """
    target, uri = (f"file:{db}?mode=ro", True) if read_only else (str(db), False)
    with closing(sqlite3.connect(target, uri=uri, isolation_level=None)) as conn:
        conn.create_function("sqlar_uncompress", 2, sqlar_uncompress, deterministic=True)
        yield conn


@dataclass
class RunningHub:
    """A hub served by real uvicorn on 127.0.0.1 with a pre-bound port-0 socket."""

    server: HubServer
    port: int
    http: httpx.AsyncClient

    @property
    def hub(self) -> Hub:
        hub = self.server.hub
        assert hub is not None, "the hub has not started"
        return hub

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/engine"

    async def get(self, path: str, **params: Any) -> Any:
        response = await self.http.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()


@asynccontextmanager
async def running_hub(port: int = 0, **overrides: Any) -> AsyncIterator[RunningHub]:
    """Start a hub with `overrides` applied to test-friendly settings; stop it afterwards.

    `port` reuses a known port (to restart a hub where browsers expect it); 0 picks a free one.
    """
    # gc_thaw_interval=0: the test process is not a hub's; its own garbage cycles (browsers,
    # clients) must not wait in frozen memory for the session hub (tests/test_collector.py).
    settings = Settings(
        host="127.0.0.1",
        port=0,
        graceful_timeout=3,
        log_level="warning",
        db=":memory:",
        gc_thaw_interval=0,
    )
    settings = settings.replace(**overrides)
    server = HubServer(settings)
    sock = bind("127.0.0.1", port)
    port = sock.getsockname()[1]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WAIT) as http:
        try:
            # The socket already listens; this request completes once the lifespan has started.
            assert (await http.get("/healthz")).status_code == 200
            yield RunningHub(server, port, http)
        finally:
            await server.stop()
            async with asyncio.timeout(WAIT):
                await task
            sock.close()


PUSH_PATHS = [
    "direct",
    "asgi",
]  # dashboards pushed to over uvicorn's socket directly, or only ASGI send


def use_push_path(path: str, running: RunningHub, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dashboard sockets `running` accepts from now on are pushed to over `path`: its
    `dashboard_direct_writes` setting, changed for this test only."""
    settings = running.hub.settings.replace(dashboard_direct_writes=path == "direct")
    monkeypatch.setattr(running.hub, "settings", settings)


@pytest.fixture(scope="session")
async def hub() -> AsyncIterator[RunningHub]:
    """One hub shared by tests that only add engines with unique names."""
    async with running_hub() as running:
        # Every module adds engines to this hub: its overview keeps cards at any count, so card
        # tests do not depend on module order (tests/test_overview_scale.py covers the list).
        running.hub.views.card_limit = 1_000_000
        yield running


def unique(prefix: str) -> str:
    """An engine name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@asynccontextmanager
async def dashboard(running: RunningHub) -> AsyncIterator[ClientConnection]:
    """An overview dashboard socket that already received its snapshot."""
    url = f"ws://127.0.0.1:{running.port}/ws/dashboard?view=overview"
    async with websockets.connect(url, max_size=None) as ws:
        async with asyncio.timeout(WAIT):
            await ws.recv()
        yield ws


async def received(ws: ClientConnection, text: str) -> str:
    """Read `ws` until a frame containing `text` arrives (within WAIT); that frame."""
    async with asyncio.timeout(WAIT):
        while text not in (frame := str(await ws.recv())):
            pass
    return frame


async def open_frozen(port: int) -> socket.socket:
    """A dashboard socket that completes the handshake and then never reads again."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        "GET /ws/dashboard?view=overview HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        byte = await loop.sock_recv(sock, 1)  # byte by byte: nothing past the response head
        assert byte, f"the hub closed during the handshake: {head!r}"
        head += byte
    assert b" 101 " in head.split(b"\r\n", 1)[0], head
    return sock


@dataclass
class Engine:
    """A hand-driven engine socket speaking protocol v1 (no client library)."""

    ws: ClientConnection
    name: str
    boot_id: str
    welcome: dict[str, Any]
    seq: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    acked: int = 0

    def stamp(self, message: dict[str, Any]) -> dict[str, Any]:
        """Give `message` the next seq unless it has one."""
        if "seq" not in message:
            self.seq += 1
            message = {**message, "seq": self.seq}
        return message

    async def send(self, *messages: dict[str, Any], batch: bool = False) -> int:
        """Send messages (one per frame, or one batch frame); returns the last seq."""
        stamped = [self.stamp(m) for m in messages]
        if batch:
            await self.ws.send(json.dumps(stamped))
        else:
            for message in stamped:
                await self.ws.send(json.dumps(message))
        return self.seq

    async def recv(self) -> dict[str, Any]:
        """The next hub message."""
        async with asyncio.timeout(WAIT):
            message: dict[str, Any] = json.loads(await self.ws.recv())
        if message["kind"] == "error":
            self.errors.append(message)
        elif message["kind"] == "ack":
            self.acked = max(self.acked, message["seq"])
        return message

    async def wait_acked(self, seq: int | None = None) -> None:
        """Wait until the hub acknowledged `seq` (default: everything sent)."""
        target = self.seq if seq is None else seq
        while self.acked < target:
            await self.recv()

    async def next_error(self) -> dict[str, Any]:
        """Wait for the next error reply."""
        count = len(self.errors)
        while len(self.errors) == count:
            await self.recv()
        return self.errors[count]

    async def close(self) -> None:
        await self.ws.close()


async def connect_engine(
    running: RunningHub, name: str, boot_id: str | None = None, **hello: Any
) -> Engine:
    """Open a socket, say hello and wait for the welcome."""
    ws = await websockets.connect(running.ws_url, compression=None)
    boot_id = boot_id or uuid.uuid4().hex
    message = {"kind": "hello", "engine": name, "mode": "paper", "pid": 4242, "boot_id": boot_id}
    await ws.send(json.dumps({**message, **hello}))
    async with asyncio.timeout(WAIT):
        welcome = json.loads(await ws.recv())
    assert welcome["kind"] == "welcome", welcome
    return Engine(ws, name, boot_id, welcome, seq=welcome["last_seq"])


@dataclass
class SSEEvent:
    """One parsed Server-Sent Event."""

    event: str
    data: Any
    id: str | None


class SSEReader:
    """Reads Server-Sent Events from a streaming httpx response."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.comments: list[str] = []
        self._lines = response.aiter_lines()

    async def next(self, comments: bool = False) -> SSEEvent:
        """The next event; comments are collected, or returned as event "comment" if asked."""
        event, data, ident = "message", [], None
        async with asyncio.timeout(WAIT):
            async for line in self._lines:
                if line == "":
                    if data:
                        return SSEEvent(event, json.loads("\n".join(data)), ident)
                    continue
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                    if comments:
                        return SSEEvent("comment", line[1:].strip(), None)
                    continue
                key, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if key == "event":
                    event = value
                elif key == "data":
                    data.append(value)
                elif key == "id":
                    ident = value
        raise EOFError("the stream ended")

    async def until(self, predicate: Any) -> SSEEvent:
        """Skip events until one matches `predicate`."""
        while True:
            event = await self.next()
            if predicate(event):
                return event


@asynccontextmanager
async def sse(
    running: RunningHub, headers: dict[str, str] | None = None, **params: Any
) -> AsyncIterator[SSEReader]:
    """Open `/api/telemetry/stream` with `params` and read it."""
    async with running.http.stream(
        "GET", "/api/telemetry/stream", params=params, headers=headers
    ) as response:
        assert response.status_code == 200, await response.aread()
        reader = SSEReader(response)
        # The first comment proves the subscription exists before the test publishes anything.
        async with asyncio.timeout(WAIT):
            async for line in reader._lines:
                if line.startswith(": connected"):
                    break
        yield reader


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """Debian's headless Chromium driven by Playwright's async API (one per test session)."""
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@dataclass
class WatchedPage:
    """A page that records console messages, page errors, CSP violations and requests."""

    page: Page
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """Console errors/warnings and uncaught page errors (CSP violations show up here)."""
        return self.errors + [m for m in self.console if m.startswith(("error", "warning"))]


@asynccontextmanager
async def watched_page(browser: Browser) -> AsyncIterator[WatchedPage]:
    """A fresh browser context and page that records what went wrong."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    watched = WatchedPage(page)
    page.on("console", lambda m: watched.console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: watched.errors.append(f"pageerror: {e}"))
    page.on("request", lambda r: watched.requests.append(r.url))
    try:
        yield watched
    finally:
        await context.close()


async def run_cli(*args: str, **env: str) -> tuple[int, str, str]:
    """`python -m hub ARGS` as a child process (with `env` added): exit code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env},
    )
    async with asyncio.timeout(WAIT):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


LISTENING = re.compile(rb"engine hub on http://127\.0\.0\.1:(\d+)")


@asynccontextmanager
async def serve_process(
    *args: str, preexec_fn: Callable[[], None] | None = None, **env: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int, str]]:
    """Run `python -m hub serve --port 0 --db :memory: ARGS` (with `env` added); yield it, the
    port it reports and what it logged before listening. Killed afterwards if still running."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub",
        "serve",
        "--port",
        "0",
        "--db",
        ":memory:",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **env},
        preexec_fn=preexec_fn,
    )
    assert proc.stdout is not None
    said = b""
    try:
        async with asyncio.timeout(WAIT):
            while not (match := LISTENING.search(line := await proc.stdout.readline())):
                assert line, f"the hub exited before listening: {said.decode(errors='replace')}"
                said += line
        yield proc, int(match.group(1)), said.decode(errors="replace")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
