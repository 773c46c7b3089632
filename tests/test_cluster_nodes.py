"""Hub nodes as real processes on one redis-server: kill -9, a node that was away, Chromium, CLI."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
import websockets
from playwright.async_api import Browser, expect

from tests.conftest import WAIT, serve_process, unique, watched_page
from tests.redisproc import redis_server

MS = WAIT * 1000


class RawEngine:
    """An engine socket that keeps every message until acked and replays after a move."""

    def __init__(self, name: str) -> None:
        self.name, self.boot_id = name, uuid.uuid4().hex
        self.sent: dict[int, str] = {}  # seq -> its frame, until acked
        self.acked = 0
        self.seq = 0
        self.ws: websockets.ClientConnection | None = None
        self.welcome: dict[str, Any] = {}

    async def connect(self, port: int) -> None:
        """Say hello to the node on `port` and replay what it does not hold."""
        self.ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws/engine", compression=None)
        hello = {"kind": "hello", "engine": self.name, "mode": "paper", "boot_id": self.boot_id}
        await self.ws.send(json.dumps(hello))
        async with asyncio.timeout(WAIT):
            self.welcome = json.loads(await self.ws.recv())
        assert self.welcome["kind"] == "welcome", self.welcome
        for seq in sorted(self.sent):
            if seq > self.welcome["last_seq"]:
                await self.ws.send(self.sent[seq])

    async def send(self, count: int) -> None:
        """Send `count` events, one frame each."""
        assert self.ws is not None
        for _ in range(count):
            self.seq += 1
            frame = json.dumps(
                {"kind": "event", "seq": self.seq, "type": "cycle", "payload": {"n": self.seq}}
            )
            self.sent[self.seq] = frame
            await self.ws.send(frame)

    async def read_acks(self, until: int | None = None) -> None:
        """Read replies until `until` is acked (or the socket closes, when None)."""
        assert self.ws is not None
        try:
            async with asyncio.timeout(WAIT):
                while until is None or self.acked < until:
                    reply = json.loads(await self.ws.recv())
                    if reply["kind"] == "ack":
                        self.acked = max(self.acked, reply["seq"])
                        for seq in [s for s in self.sent if s <= self.acked]:
                            del self.sent[seq]
        except websockets.ConnectionClosed:
            assert until is None, f"closed before {until} was acked"


async def seqs_on(port: int, name: str) -> list[int]:
    """Every event seq node `port` holds for `name` (sorted, duplicates kept)."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WAIT) as http:
        answer = await http.get("/api/telemetry/events", params={"engine": name, "limit": 1000})
        assert answer.status_code == 200, answer.text
        return sorted(e["seq"] for e in answer.json()["events"])


async def wait_seqs(port: int, name: str, count: int) -> list[int]:
    """Poll node `port`'s API (over HTTP, bounded by WAIT) until it holds `count` events."""
    async with asyncio.timeout(WAIT):
        while len(found := await seqs_on(port, name)) < count:
            await asyncio.sleep(0.05)  # another process: there is no event to wait on
    return found


async def health(port: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WAIT) as http:
        answer: dict[str, Any] = (await http.get("/healthz")).json()
        return answer


async def test_kill_9_of_a_node_loses_nothing_acknowledged(tmp_path: Path) -> None:
    """kill -9 of node A mid-stream: the engine moves to B and replays from B's last_seq; every
    acknowledged message is on B, and on a node C started afterwards, exactly once."""
    name = unique("killed")
    async with redis_server(tmp_path) as server:
        cluster = ("--cluster", server.url)
        async with (
            serve_process(*cluster, "--node-id", "a") as (proc_a, port_a, _),
            serve_process(*cluster, "--node-id", "b") as (_, port_b, _),
        ):
            engine = RawEngine(name)
            await engine.connect(port_a)
            await engine.send(100)
            await engine.read_acks(100)
            await engine.send(50)  # in flight when A dies: some acked, some not
            proc_a.kill()
            await engine.read_acks()
            acked_on_a = engine.acked
            assert acked_on_a >= 100
            await engine.connect(port_b)
            assert engine.welcome["last_seq"] <= 150
            await engine.send(10)
            await engine.read_acks(160)
            assert await wait_seqs(port_b, name, 160) == list(range(1, 161))
            async with serve_process(*cluster, "--node-id", "c") as (_, port_c, _):
                assert await wait_seqs(port_c, name, 160) == list(range(1, 161))
            assert engine.ws is not None
            await engine.ws.close()


async def test_a_node_away_longer_than_the_stream_keeps_shows_a_gap(tmp_path: Path) -> None:
    """Node B stopped (SIGSTOP) while the stream is trimmed past what it read: B's /healthz and
    dashboard say so, never a silent divergence."""
    name = unique("away")
    async with redis_server(tmp_path) as server:
        cluster, short = ("--cluster", server.url), {"ENGINE_HUB_CLUSTER_STREAM_MAXLEN": "10"}
        async with (
            serve_process(*cluster, "--node-id", "a", **short) as (_, port_a, _),
            serve_process(*cluster, "--node-id", "b", **short) as (proc_b, port_b, _),
        ):
            engine = RawEngine(name)
            await engine.connect(port_a)
            await engine.send(1)
            await engine.read_acks(1)
            await wait_seqs(port_b, name, 1)  # B has read something
            assert (await health(port_b))["cluster"]["gaps"] == 0
            os.kill(proc_b.pid, signal.SIGSTOP)
            try:
                # A trims to about 10 entries (whole 100-entry nodes at a time): 400 frames.
                await engine.send(400)
                await engine.read_acks(401)
            finally:
                os.kill(proc_b.pid, signal.SIGCONT)
            async with asyncio.timeout(WAIT):
                while not (found := await health(port_b))["cluster"]["gaps"]:
                    await asyncio.sleep(0.05)  # another process: poll its /healthz
            assert found["status"] == "degraded"
            assert any("cluster gap" in reason for reason in found["reasons"])
            assert engine.ws is not None
            await engine.ws.close()


async def test_node_b_dashboard_shows_an_engine_of_node_a(tmp_path: Path, browser: Browser) -> None:
    """An engine on node A gets a card on node B's dashboard in Chromium, updated live."""
    name = unique("seen")
    async with redis_server(tmp_path) as server:
        cluster = ("--cluster", server.url)
        async with (
            serve_process(*cluster, "--node-id", "a") as (_, port_a, _),
            serve_process(*cluster, "--node-id", "b") as (_, port_b, _),
            watched_page(browser) as watched,
        ):
            page = watched.page
            await page.goto(f"http://127.0.0.1:{port_b}/")
            engine = RawEngine(name)
            await engine.connect(port_a)
            await engine.send(1)
            await engine.read_acks(1)
            card = page.locator("article.card").filter(has_text=name)
            await expect(card).to_be_visible(timeout=MS)
            assert not watched.problems, watched.problems
            assert engine.ws is not None
            await engine.ws.close()


async def test_serve_cluster_refuses_a_bad_or_unreachable_url(tmp_path: Path) -> None:
    """A malformed or unreachable --cluster URL: one line, exit 2, the password never shown."""
    for url, said in (
        ("http://127.0.0.1:1/0", "is not a Redis URL"),
        ("redis://:s3cret-pw@127.0.0.1:1/0", "cannot reach the cluster's Redis"),
    ):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hub", "serve", "--port", "0", "--db", ":memory:",
            "--cluster", url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(WAIT):
            out, err = await proc.communicate()
        text = (out + err).decode()
        assert proc.returncode == 2, text
        assert said in text and "Traceback" not in text, text
        assert "s3cret-pw" not in text and len(text.strip().splitlines()) == 1, text


async def test_a_single_node_never_imports_redis() -> None:
    """Without cluster_url, building and starting a hub loads no redis module."""
    code = (
        "import asyncio, sys\n"
        "from hub.settings import Settings\n"
        "from hub.web.runtime import Hub\n"
        "async def main():\n"
        "    hub = Hub(Settings(db=':memory:'))\n"
        "    await hub.start()\n"
        "    await hub.stop()\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in sys.modules if m == 'redis' or m.startswith('redis.')))\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(WAIT):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert out.decode().strip() == "[]"


async def engines_on(port: int) -> dict[str, dict[str, Any]]:
    """Node `port`'s engine cards by name."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WAIT) as http:
        answer = await http.get("/api/telemetry/engines")
        return {e["name"]: e for e in answer.json()["engines"]}


async def wait_card(port: int, name: str, predicate: Any) -> dict[str, Any]:
    """Poll node `port` (bounded by WAIT) until `name`'s card satisfies `predicate`."""
    async with asyncio.timeout(WAIT):
        while not ((card := (await engines_on(port)).get(name)) and predicate(card)):
            await asyncio.sleep(0.05)  # another process: there is no event to wait on
    return card


async def test_a_killed_node_takes_its_engines_offline_on_the_others(tmp_path: Path) -> None:
    """kill -9 of node A: once A has been silent past cluster_node_timeout, node B shows A's
    engine offline (not connected), while the engine that moved from A to B stays connected."""
    stays, moves = RawEngine(unique("stranded")), RawEngine(unique("mover"))
    fast = {"ENGINE_HUB_CLUSTER_NODE_TIMEOUT": "1"}
    async with redis_server(tmp_path) as server:
        cluster = ("--cluster", server.url)
        async with (
            serve_process(*cluster, "--node-id", "a", **fast) as (proc_a, port_a, _),
            serve_process(*cluster, "--node-id", "b", **fast) as (_, port_b, _),
        ):
            for engine in (stays, moves):
                await engine.connect(port_a)
                await engine.send(1)
                await engine.read_acks(1)
            await moves.connect(port_b)  # A closes its older socket (4001)
            await moves.send(1)
            await moves.read_acks(2)
            await wait_card(port_b, stays.name, lambda card: card["connected"])
            proc_a.kill()
            await proc_a.wait()
            card = await wait_card(port_b, stays.name, lambda card: not card["connected"])
            assert card["health"] == "offline", card
            mover = (await engines_on(port_b))[moves.name]
            assert mover["connected"] and mover["health"] != "offline", mover


async def test_entries_older_than_the_max_age_go_and_a_node_away_longer_shows_a_gap(
    tmp_path: Path,
) -> None:
    """cluster_stream_max_age: entries older than it leave the stream (exactly, not by 100-entry
    nodes); node B, stopped meanwhile, finds what it never read gone and says so (a gap), and
    holds none of it."""
    name = unique("aged")
    async with redis_server(tmp_path) as server:
        cluster, aged = ("--cluster", server.url), {"ENGINE_HUB_CLUSTER_STREAM_MAX_AGE": "1"}
        redis = aioredis.Redis.from_url(server.url)
        async with (
            serve_process(*cluster, "--node-id", "a", **aged) as (_, port_a, _),
            serve_process(*cluster, "--node-id", "b", **aged) as (proc_b, port_b, _),
        ):
            engine = RawEngine(name)
            await engine.connect(port_a)
            await engine.send(3)
            await engine.read_acks(3)
            await wait_seqs(port_b, name, 3)
            os.kill(proc_b.pid, signal.SIGSTOP)
            try:
                await engine.send(3)
                await engine.read_acks(6)
                async with asyncio.timeout(WAIT):
                    while await redis.xlen("engine-hub:stream"):
                        await asyncio.sleep(0.05)  # A's trimming, in another process
                info = await redis.xinfo_stream("engine-hub:stream")
                assert info["entries-added"] == 7  # a hello and six frames: all gone by age
            finally:
                os.kill(proc_b.pid, signal.SIGCONT)
            async with asyncio.timeout(WAIT):
                while not (found := await health(port_b))["cluster"]["gaps"]:
                    await asyncio.sleep(0.05)  # another process: poll its /healthz
            assert any("cluster gap" in reason for reason in found["reasons"])
            assert await seqs_on(port_b, name) == [1, 2, 3], "B holds what it read, no more"
            assert engine.ws is not None
            await engine.ws.close()
        await redis.aclose()
