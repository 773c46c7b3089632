"""A cluster on this machine: Redis + 3 hub nodes, against one plain node, in the same run.

    python benchmarks/cluster.py [--engines 100] [--events 200] [--quick]

Needs a hub with `engine-hub serve --cluster` (issue #19) and Debian's redis-server; it stops
with a clear message otherwise. It starts redis-server (append-only, fsync always: the setting
docs/scaling.md asks for), three nodes `python -m hub serve --cluster URL --node-id nX --port 0`
and one plain node, all as child processes on 127.0.0.1, and measures:

1. engine -> browser latency: an engine on node A, an SSE reader on node C (cross-node), against
   an engine and an SSE reader on the plain node; p50/p99 of (received - sent) per event;
2. ingest events/s: the same batched load on the cluster (engines spread over the 3 nodes,
   counted when acknowledged, i.e. in Redis) and on the plain node;
3. failover: 100 client-library engines connected to node A (urls=[A, B, C]) publish; A gets
   SIGKILL; the time until every engine is welcomed by another node, then every event each engine
   recorded must be on node C exactly once (nothing lost, nothing duplicated).

Targets (issue #19): cross-node p99 <= single-node p99 + 50 ms; failover of 100 engines <= 5 s
with nothing lost or duplicated. Targets are printed beside the figures, not asserted. The
measuring parts (`summarize`, `delivery`, `verdicts`, `supports_cluster`) are plain functions
tested in tests/test_cluster_edge.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NOT_SUPPORTED = "--cluster not supported by this hub"
LISTENING = re.compile(rb"engine hub on http://127\.0\.0\.1:(\d+)")
CROSS_NODE_BUDGET = 0.050  # seconds over the single node's p99
FAILOVER_TARGET = 5.0  # seconds for 100 engines
# The per-engine rate limit (2,000 messages/s) would refuse the ingest run's batches: off on every
# node alike, single and cluster (benchmarks/ingest.py measures the same way).
UNLIMITED = {
    "ENGINE_HUB_ENGINE_MESSAGES_PER_SECOND": "0",
    "ENGINE_HUB_ENGINE_BYTES_PER_SECOND": "0",
}


# --------------------------------------------------------------------------- measuring (pure)


@dataclass(frozen=True)
class Summary:
    """Latency percentiles of one set of samples (seconds)."""

    count: int
    p50: float
    p99: float


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank) of `values`; NaN when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(samples: Sequence[float]) -> Summary:
    """p50/p99 of latency samples."""
    return Summary(len(samples), percentile(samples, 50), percentile(samples, 99))


def delivery(
    sent: Mapping[str, Iterable[int]], stored: Mapping[str, Iterable[int]]
) -> tuple[int, int]:
    """(lost, duplicated): events an engine recorded that a node lacks, and extra copies it has."""
    lost = duplicated = 0
    for engine, numbers in sent.items():
        seen = Counter(stored.get(engine, ()))
        for n in set(numbers):
            lost += seen[n] == 0
        duplicated += sum(count - 1 for count in seen.values() if count > 1)
    return lost, duplicated


def verdicts(
    single: Summary, cross: Summary, failover: float, lost: int, duplicated: int
) -> list[tuple[str, str, str]]:
    """(figure, target, ok/MISSED) rows for the report."""
    budget = single.p99 + CROSS_NODE_BUDGET
    rows = [
        (
            f"cross-node p99 {cross.p99 * 1000:.1f} ms (single {single.p99 * 1000:.1f} ms)",
            f"<= {budget * 1000:.1f} ms",
            "ok" if cross.p99 <= budget else "MISSED",
        ),
        (
            f"failover {failover:.2f} s",
            f"<= {FAILOVER_TARGET:.0f} s",
            "ok" if failover <= FAILOVER_TARGET else "MISSED",
        ),
        (
            f"lost {lost}, duplicated {duplicated}",
            "0 and 0",
            "ok" if lost == duplicated == 0 else "MISSED",
        ),
    ]
    return rows


def supports_cluster(help_text: str) -> bool:
    """True when `engine-hub serve --help` lists --cluster."""
    return re.search(r"--cluster\b", help_text) is not None


# --------------------------------------------------------------------------- processes


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def redis(directory: Path, fsync: str = "always") -> AsyncIterator[str]:
    """redis-server on a free port with its append-only file in `directory`; yields its URL."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
        "--save", "", "--appendonly", "yes", "--appendfsync", fsync,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(15):
            while b"Ready to accept" not in (line := await proc.stdout.readline()):
                if not line:
                    raise RuntimeError("redis-server exited before accepting connections")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()


@dataclass
class Node:
    """One `python -m hub serve` child process."""

    proc: asyncio.subprocess.Process
    port: int

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/engine"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@asynccontextmanager
async def node(*args: str) -> AsyncIterator[Node]:
    """`python -m hub serve --port 0 --db :memory: ARGS`, until the block ends (SIGKILL if alive)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub", "serve", "--port", "0", "--db", ":memory:", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env={**os.environ, **UNLIMITED},
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(30):
            while not (match := LISTENING.search(line := await proc.stdout.readline())):
                if not line:
                    raise RuntimeError(f"a hub node exited before listening ({args})")
        asyncio.get_running_loop().create_task(_drain(proc.stdout))
        yield Node(proc, int(match.group(1)))
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


# --------------------------------------------------------------------------- measurements


async def latency(engine_node: Node, browser_node: Node, events: int) -> Summary:
    """An engine on one node, an SSE reader on another: (received - sent) per event."""
    import httpx
    import websockets

    name = f"lat-{uuid.uuid4().hex[:8]}"
    samples: list[float] = []
    async with httpx.AsyncClient(base_url=browser_node.http, timeout=30) as http:
        params = {"engine": name, "event_type": "cycle"}
        async with http.stream("GET", "/api/telemetry/stream", params=params) as response:
            lines = response.aiter_lines()
            async for line in lines:
                if line.startswith(": connected"):
                    break
            async with websockets.connect(engine_node.ws, compression=None) as ws:
                hello = {
                    "kind": "hello",
                    "engine": name,
                    "mode": "paper",
                    "pid": 1,
                    "boot_id": uuid.uuid4().hex,
                }
                await ws.send(json.dumps(hello))
                await ws.recv()
                for seq in range(1, events + 1):
                    message = {
                        "kind": "event",
                        "seq": seq,
                        "ts": time.time(),
                        "type": "cycle",
                        "payload": {"sent": time.time()},
                    }
                    await ws.send(json.dumps(message))
                    async with asyncio.timeout(30):
                        async for line in lines:
                            if line.startswith("data:"):
                                payload = json.loads(line[5:])["payload"]
                                samples.append(time.time() - payload["sent"])
                                break
    return summarize(samples)


async def ingest(nodes: Sequence[Node], engines: int, batches: int, size: int = 100) -> float:
    """Acknowledged events/s of `engines` raw engines sending `batches` x `size` events each."""
    import websockets

    async def one(index: int) -> None:
        target = nodes[index % len(nodes)]
        async with websockets.connect(target.ws, compression=None, max_size=None) as ws:
            hello = {
                "kind": "hello",
                "engine": f"ing-{index}-{uuid.uuid4().hex[:6]}",
                "mode": "paper",
                "pid": 1,
                "boot_id": uuid.uuid4().hex,
            }
            await ws.send(json.dumps(hello))
            await ws.recv()
            last = batches * size
            for b in range(batches):
                frame = [
                    {"kind": "event", "seq": b * size + i + 1, "type": "cycle", "payload": {"i": i}}
                    for i in range(size)
                ]
                await ws.send(json.dumps(frame))
            acked = 0
            async with asyncio.timeout(120):
                while acked < last:
                    reply = json.loads(await ws.recv())
                    if reply.get("kind") == "ack":
                        acked = max(acked, reply["seq"])
                    elif reply.get("kind") == "error":
                        raise RuntimeError(f"the hub refused a benchmark frame: {reply}")

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(engines)))
    return engines * batches * size / (time.perf_counter() - started)


async def failover(nodes: Sequence[Node], engines: int, events: int) -> tuple[float, int, int]:
    """Kill node 0 under `engines` client-library engines: (seconds to move, lost, duplicated)."""
    import httpx

    from hub.client import AsyncEngineClient

    urls = [n.ws for n in nodes]
    fast = {"flush_interval": 0.02, "backoff_base": 0.2, "backoff_max": 2.0, "close_on_exit": False}
    clients = [
        AsyncEngineClient(urls=urls, engine=f"fo-{i}-{uuid.uuid4().hex[:6]}", **fast)
        for i in range(engines)
    ]
    for client in clients:  # one at a time: a burst of handshakes makes some try node B first
        await client.start()
        async with asyncio.timeout(30):
            while not client.connected:
                await asyncio.sleep(0.005)  # polling the client's state, not a test
    on_a = sum(
        c._sender is not None and c._sender._endpoints.current == nodes[0].ws for c in clients
    )
    if on_a != len(clients):
        raise RuntimeError(f"only {on_a} of {len(clients)} engines connected to node A")
    half = events // 2
    for client in clients:
        for n in range(half):
            client.publish("cycle", {"n": n})
    await asyncio.gather(*(client.flush(30) for client in clients))
    nodes[0].proc.send_signal(signal.SIGKILL)
    killed = time.perf_counter()
    for client in clients:
        for n in range(half, events):
            client.publish("cycle", {"n": n})
    try:
        async with asyncio.timeout(60):
            while not all(c.connected and c.stats.connects >= 2 for c in clients):
                await asyncio.sleep(0.01)  # polling the clients' state for the figure, not a test
    except TimeoutError:
        stuck = [c for c in clients if not (c.connected and c.stats.connects >= 2)]
        raise RuntimeError(
            f"{len(stuck)} of {len(clients)} engines not moved after 60 s; one: {stuck[0].stats}"
        ) from None
    moved = time.perf_counter() - killed
    await asyncio.gather(*(client.flush(30) for client in clients))
    stored: dict[str, list[int]] = {}
    async with httpx.AsyncClient(base_url=nodes[-1].http, timeout=30) as http:
        for client in clients:
            params: dict[str, Any] = {"engine": client.engine, "event_type": "cycle", "limit": 1000}
            body = (await http.get("/api/telemetry/events", params=params)).json()
            stored[client.engine] = [e["payload"]["n"] for e in body["events"]]
    for client in clients:
        await client.close(timeout=2)
    lost, duplicated = delivery({c.engine: range(events) for c in clients}, stored)
    return moved, lost, duplicated


async def run(args: argparse.Namespace) -> int:
    # 100 clients each log every retry after the kill: the figures below say how it went.
    logging.getLogger("hub.client").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        async with AsyncExitStack() as stack:
            url = await stack.enter_async_context(redis(Path(tmp), args.fsync))
            print(f"redis-server appendfsync {args.fsync}", flush=True)
            cluster = [
                await stack.enter_async_context(node("--cluster", url, "--node-id", f"n{i}"))
                for i in range(3)
            ]
            single = await stack.enter_async_context(node())
            a, c = cluster[0], cluster[2]
            # A first round on fresh processes pays one-off costs (first SSE stream, first reads
            # of the stream, lease and liveness settling): printed, then measured again warm.
            cold_one, cold_cross = await latency(single, single, 50), await latency(a, c, 50)
            print(
                f"cold (first 50 events after start): single p99 {cold_one.p99 * 1000:.1f} ms, "
                f"A -> C p99 {cold_cross.p99 * 1000:.1f} ms",
                flush=True,
            )
            one = await latency(single, single, args.events)
            cross = await latency(a, c, args.events)
            print(
                f"latency single node: p50 {one.p50 * 1000:.1f} ms  p99 {one.p99 * 1000:.1f} ms  (n={one.count})"
            )
            print(
                f"latency A -> C:      p50 {cross.p50 * 1000:.1f} ms  p99 {cross.p99 * 1000:.1f} ms  (n={cross.count})",
                flush=True,
            )
            rate_one = await ingest([single], 4, args.batches)
            rate_cluster = await ingest(cluster, 4, args.batches)
            print(
                f"ingest: single {rate_one:,.0f} events/s, cluster {rate_cluster:,.0f} events/s ({rate_cluster / rate_one:.2f}x)",
                flush=True,
            )
            moved, lost, duplicated = await failover(cluster, args.engines, args.events)
            for figure, target, verdict in verdicts(one, cross, moved, lost, duplicated):
                print(f"{figure:<60} {target:<14} {verdict}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--engines", type=int, default=100, help="engines in the failover test")
    parser.add_argument("--events", type=int, default=200, help="events per engine / latency run")
    parser.add_argument(
        "--batches", type=int, default=200, help="100-event frames per ingest engine"
    )
    parser.add_argument(
        "--fsync",
        choices=("always", "everysec"),
        default="always",
        help="Redis appendfsync (always: what docs/scaling.md asks for; everysec: to see its cost)",
    )
    parser.add_argument("--quick", action="store_true", help="20 engines, 50 events, 20 batches")
    args = parser.parse_args(argv)
    if args.quick:
        args.engines, args.events, args.batches = 20, 50, 20
    if (
        not 1 <= args.engines <= 1000
        or not 1 <= args.events <= 1000
        or not 1 <= args.batches <= 100_000
    ):
        parser.error("--engines and --events must be 1..1000, --batches 1..100000")
    help_text = subprocess.run(
        [sys.executable, "-m", "hub", "serve", "--help"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    if not supports_cluster(help_text):
        print(
            f"benchmarks/cluster.py: {NOT_SUPPORTED} (merge issue #19's cluster-core first)",
            file=sys.stderr,
        )
        return 2
    if shutil.which("redis-server") is None and not os.access("/usr/bin/redis-server", os.X_OK):
        print(
            "benchmarks/cluster.py: redis-server is not installed (apt-get install redis-server)",
            file=sys.stderr,
        )
        return 2
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
