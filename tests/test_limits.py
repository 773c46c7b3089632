"""Connection limits (hub/web/limits.py, hub/web/guards.py): request-head deadlines, 431, per-address
handshake caps, connection caps fitted to the open-file limit, and accept errors logged once."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import resource
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import uvicorn
import websockets
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from hub.settings import Settings
from hub.web.guards import AcceptErrors, ConnectionGuard
from hub.web.limits import Handshakes, RequestHead, budget, fit_caps
from hub.web.server import bind, uvicorn_config
from tests.conftest import WAIT, Engine, running_hub, serve_process

# ------------------------------------------------------------------ sans-I/O


def test_request_head_completes_at_its_blank_line_split_anywhere() -> None:
    """The head is complete once CRLF CRLF (or LF LF) arrives, however the bytes are split."""
    for split in range(1, 30):
        head = RequestHead()
        raw = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        assert not head.feed(raw[:split]) or split >= len(raw) - 1
        assert head.feed(raw[split:])
    bare = RequestHead()
    assert not bare.feed(b"GET / HTTP/1.1\nHost: x\n")
    assert bare.feed(b"\n")


def test_handshakes_evict_the_oldest_of_an_address_at_its_cap() -> None:
    """At max_pending_per_ip a new connection pushes out that address's oldest head in progress."""
    shakes: Handshakes[str] = Handshakes(max_per_ip=2, max_connections=100)
    assert shakes.admit("a1", "10.0.0.1", 0).evicted == ()
    assert shakes.admit("b1", "10.0.0.2", 1).evicted == ()
    assert shakes.admit("a2", "10.0.0.1", 2).evicted == ()
    assert shakes.admit("a3", "10.0.0.1", 3).evicted == ("a1",)
    shakes.done("a2")
    assert shakes.admit("a4", "10.0.0.1", 3).evicted == ()
    assert len(shakes) == 3


def test_handshakes_at_the_budget_evict_the_oldest_else_refuse() -> None:
    """At the connection budget the oldest head in progress goes; with none in progress the new one is refused."""
    shakes: Handshakes[str] = Handshakes(max_per_ip=10, max_connections=3)
    shakes.admit("a", "1.1.1.1", 0)
    shakes.admit("b", "2.2.2.2", 1)
    assert shakes.admit("c", "3.3.3.3", 3) == type(shakes.admit("x", "9", 0))(("a",))
    for conn in ("b", "c", "x"):
        shakes.done(conn)
    refused = shakes.admit("d", "4.4.4.4", 3)
    assert refused.refused and refused.evicted == ()


def test_caps_that_do_not_fit_the_open_file_limit_are_lowered_with_a_warning() -> None:
    """Default caps under a 1024-file limit are scaled down to fit, and the warning names them."""
    fitted, warning = fit_caps(Settings(), 1024)
    total = fitted.max_engine_connections + fitted.max_dashboards + fitted.max_sse_clients
    assert total <= budget(1024) * 3 // 4
    assert warning is not None and "max_engine_connections 1024 ->" in warning
    assert "LimitNOFILE" in warning and "1024" in warning
    same, none = fit_caps(Settings(), 65536)
    assert same == Settings() and none is None


def test_accept_errors_are_said_once_per_interval_with_a_count() -> None:
    """asyncio's accept error passes once per interval, without traceback, with how many there were."""
    now = [0.0]
    errors = AcceptErrors(interval=60.0, clock=lambda: now[0])

    def record() -> logging.LogRecord:
        exc = OSError(24, "Too many open files")
        return logging.LogRecord(
            "asyncio", logging.ERROR, "", 0, AcceptErrors.MESSAGE, (), (OSError, exc, None)
        )

    first = record()
    assert errors.filter(first) and first.exc_info is None
    assert "Too many open files" in first.getMessage()
    for _ in range(500):
        now[0] += 1 / 20
        assert not errors.filter(record())
    now[0] = 61.0
    later = record()
    assert errors.filter(later) and "(501 times" in later.getMessage()
    retry = AcceptErrors.RETRY + "<function Server._accept_connection ...>)"
    moot = (ValueError, ValueError("Invalid file descriptor: -1"), None)
    assert not errors.filter(logging.LogRecord("asyncio", 40, "", 0, retry, (), moot))
    odd = (OSError, OSError("something else"), None)
    assert errors.filter(logging.LogRecord("asyncio", 40, "", 0, retry, (), odd))
    other = logging.LogRecord("asyncio", logging.ERROR, "", 0, "something else", (), None)
    assert errors.filter(other)


# ------------------------------------------------------------------ raw sockets on a real hub


def upgrade(extra: str = "") -> bytes:
    """A WebSocket upgrade request for /ws/engine with `extra` header lines."""
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        "GET /ws/engine HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"{extra}\r\n"
    ).encode()


async def answer_and_close(port: int, data: bytes) -> tuple[bytes, float]:
    """Send `data`, then read until the hub closes: what it said and how long that took."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        start = time.monotonic()
        writer.write(data)
        async with asyncio.timeout(WAIT):
            answer = await reader.read()  # until EOF
        return answer, time.monotonic() - start
    finally:
        writer.close()


async def test_oversized_or_too_many_headers_get_431_and_a_close_within_a_second() -> None:
    """A header over 8 KB or more than 128 headers: 431, then the socket is closed at once."""
    async with running_hub(handshake_timeout=5.0) as running:
        for extra in (
            "X-Big: " + "a" * 9000 + "\r\n",
            "".join(f"X-{i}: v\r\n" for i in range(130)),
        ):
            answer, took = await answer_and_close(running.port, upgrade(extra))
            assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
            assert took < 1.0


async def test_half_sent_request_and_drip_are_closed_at_the_deadline() -> None:
    """A request head that stops halfway, or arrives a byte at a time, gets 408 at handshake_timeout."""
    async with running_hub(handshake_timeout=0.5) as running:
        half, took = await answer_and_close(running.port, upgrade()[:40])
        assert half.startswith(b"HTTP/1.1 408 ") and 0.4 < took < 2.0
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
        start = time.monotonic()
        request = upgrade()
        try:
            async with asyncio.timeout(WAIT):
                for byte in request:  # paced by the hub's deadline, not by sleeping for it
                    writer.write(bytes([byte]))
                    await writer.drain()
                    try:
                        answer = await asyncio.wait_for(reader.read(), 0.05)
                    except TimeoutError:
                        continue
                    break
        finally:
            writer.close()
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
        assert 0.4 < time.monotonic() - start < 2.0
        assert running.hub.state.stats.drops["handshake_timeout"] == 2


async def read_response(reader: asyncio.StreamReader) -> bytes:
    """One whole HTTP response (head and Content-Length body) from a keep-alive connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return head + await reader.readexactly(int(value))
    raise AssertionError(f"no Content-Length in {head!r}")


async def test_a_slow_later_request_on_a_keep_alive_connection_gets_408_at_its_deadline() -> None:
    """Every request head on a keep-alive connection has the deadline, not only the first: two
    whole requests are answered on one connection, and a third that stops halfway gets 408 and
    the close (uvicorn alone would wait for it forever)."""
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    async with running_hub(handshake_timeout=0.5) as running:
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
        try:
            async with asyncio.timeout(WAIT):
                for _ in range(2):
                    writer.write(request)
                    assert (await read_response(reader)).startswith(b"HTTP/1.1 200 ")
                writer.write(request[:20])  # the third request stops halfway through its head
                answer = await reader.read()  # until the hub closes
        finally:
            writer.close()
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
        assert running.hub.state.stats.drops["handshake_timeout"] == 1


async def test_an_upgrade_the_app_does_not_answer_in_time_gets_503_and_a_close() -> None:
    """The deadline covers a WebSocket upgrade until the app accepts or refuses it: an app that
    has done neither by then leaves the client a 503 and a closed socket, counted; one that
    accepts in time is not touched."""
    release = asyncio.Event()

    async def stalled(websocket: WebSocket) -> None:
        await release.wait()  # e.g. an event loop too busy to get to it
        await websocket.accept()

    async def prompt(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())

    app = Starlette(routes=[WebSocketRoute("/stalled", stalled), WebSocketRoute("/ws", prompt)])
    settings = Settings(log_level="warning", handshake_timeout=0.5)
    guard = ConnectionGuard(settings, 100)
    server = uvicorn.Server(uvicorn_config(app, settings, guard.http_protocol()))
    sock = bind("127.0.0.1", 0)  # listening already: connections wait for the server's loop
    port = sock.getsockname()[1]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        stuck = upgrade().replace(b"/ws/engine", b"/stalled")
        answer, _ = await answer_and_close(port, stuck)
        assert answer.startswith(b"HTTP/1.1 503 "), answer[:80]
        assert b"not accepted in time" in answer
        assert guard.counts["upgrade_timeout"] == 1
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as ws:
            # A head begun after this socket's: once it gets its 408, this one's deadline is past.
            half, _ = await answer_and_close(port, upgrade()[:40])
            assert half.startswith(b"HTTP/1.1 408 ")
            await ws.send("still open")
            async with asyncio.timeout(WAIT):
                assert await ws.recv() == "still open"
        assert guard.counts["upgrade_timeout"] == 1 and guard.counts["handshake_timeout"] == 1
    finally:
        release.set()
        server.should_exit = True
        async with asyncio.timeout(WAIT):
            await task
        sock.close()


async def test_one_address_cannot_hold_more_than_its_handshakes_but_a_real_request_gets_in() -> (
    None
):
    """Past max_pending_per_ip the oldest half-sent request is closed; /healthz still answers."""
    async with running_hub(handshake_timeout=30.0, max_pending_per_ip=5) as running:
        held = [await asyncio.open_connection("127.0.0.1", running.port) for _ in range(8)]
        try:
            for _, writer in held:
                writer.write(b"GET /healthz HTTP/1.1\r\n")
            async with asyncio.timeout(WAIT):
                first = await held[0][0].read()
            assert first.startswith(b"HTTP/1.1 408 ")
            assert (await running.http.get("/healthz")).status_code == 200
            assert running.hub.state.stats.drops["handshake_evicted"] >= 3
        finally:
            for _, writer in held:
                writer.close()


# ------------------------------------------------------------------ under a small open-file limit


@asynccontextmanager
async def hub_process(
    nofile: int, **env: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int, str]]:
    """`python -m hub serve` on port 0 with RLIMIT_NOFILE at `nofile`: it, its port, its log so far."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    async with serve_process("--log-level", "info", preexec_fn=limit, **env) as started:
        yield started


async def test_under_256_open_files_300_sockets_leave_healthz_and_engines_working() -> None:
    """With RLIMIT_NOFILE 256 and 300 half-open sockets, /healthz answers and an engine gets acks."""
    env = {"ENGINE_HUB_MAX_PENDING_PER_IP": "1000", "ENGINE_HUB_HANDSHAKE_TIMEOUT": "30"}
    async with hub_process(256, **env) as (proc, port, startup):
        ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws/engine", compression=None)
        await ws.send(
            json.dumps({"kind": "hello", "engine": "fd", "boot_id": "b", "mode": "paper"})
        )
        engine = Engine(ws, "fd", "b", json.loads(await ws.recv()))
        await engine.send({"kind": "event", "type": "signal_event", "payload": {"n": 1}})
        await engine.wait_acked()
        held = []
        try:
            for _ in range(300):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET /healthz HTTP/1.1\r\n")  # never finished
                held.append((reader, writer))
            async with httpx.AsyncClient(timeout=WAIT) as http:
                for _ in range(5):
                    response = await http.get(f"http://127.0.0.1:{port}/healthz")
                    assert response.status_code == 200
            await engine.send({"kind": "event", "type": "signal_event", "payload": {"n": 2}})
            await engine.wait_acked()
        finally:
            for _, writer in held:
                writer.close()
            await ws.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout is not None
        async with asyncio.timeout(WAIT):
            log = (await proc.stdout.read()).decode()
    assert "max_engine_connections 1024 ->" in startup  # the caps were fitted to 256 files
    assert log.count("Too many open files") <= 2


async def test_a_real_emfile_is_logged_once_without_a_traceback_and_the_hub_recovers() -> None:
    """Below what the descriptor budget assumes (RLIMIT_NOFILE 32), a burst of connections the
    hub accepts at once runs it out of descriptors for real (EMFILE): the log says so in one line
    with a count, never a traceback, and once the sockets go /healthz answers again."""
    env = {"ENGINE_HUB_HANDSHAKE_TIMEOUT": "30"}
    async with hub_process(32, **env) as (proc, port, _):
        assert proc.stdout is not None
        held = []
        proc.send_signal(signal.SIGSTOP)  # the kernel queues the connections: one burst at SIGCONT
        try:
            for _ in range(64):
                held.append((await asyncio.open_connection("127.0.0.1", port))[1])
        finally:
            proc.send_signal(signal.SIGCONT)
        said = []
        async with asyncio.timeout(WAIT):
            while not said or "cannot accept connections" not in said[-1]:
                line = (await proc.stdout.readline()).decode()
                assert line, "".join(said)
                said.append(line)
        for writer in held:
            writer.close()
        async with httpx.AsyncClient(timeout=WAIT) as http:
            response = await http.get(f"http://127.0.0.1:{port}/healthz")
        assert response.status_code == 200
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(WAIT):
            log = "".join(said) + (await proc.stdout.read()).decode()
    assert "[Errno 24] Too many open files (1 times since last logged" in said[-1], said[-1]
    assert log.count("Too many open files") == 1, log
    assert "Traceback" not in log, log
