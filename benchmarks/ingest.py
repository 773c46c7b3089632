"""Ingest throughput: the hub's `/ws/engine` against a bare uvicorn + Starlette endpoint.

Run from the repository root: `.venv/bin/python benchmarks/ingest.py` (about a minute),
`--quick` (a few seconds, smoke test), `--seconds N` (sending time of each timed run),
`--profile hub.prof` (cProfile of the hub during its timed runs), `--limits on` (per-engine rate
limits on but never reached: their per-frame cost), `--chain` (every event carries a causal-chain
link: the worst case of chains). See docs/benchmarks.md.

What is compared. Two servers, each in its own spawned process (so neither shares an event loop or
the GIL with the load generator), on 127.0.0.1, with the same uvicorn configuration built by
`hub.server.uvicorn_config` (websockets-sansio, frame limit, pings, no permessage-deflate):

- the hub: `HubServer(Settings(..., db=":memory:"))`: the in-memory store, no browsers or streams;
- the baseline: a bare Starlette `WebSocketRoute` that receives each frame, decodes it with
  `msgspec.json.decode` and counts its events, and nothing else.

The load generator (this process) opens N engine connections to one server at a time, says hello,
and streams realistic `signal_event` messages, one per frame (`single`) or 100 per frame
(`batch100`), seq increasing by one per message. Both servers get byte-identical frames.

How events/s is measured. What counts is the rate at which the *server* finishes processing, not
how fast the client fills socket buffers: a run's clock stops when the server has acked the last
message, events / (first send -> final ack). The hub acks `{"kind":"ack","seq":N}` at most once per
`ack_interval` (100 ms) from a writer task that processed frames wake. The baseline endpoint copies
that cadence exactly (a writer task woken per frame: one ack, then sleep `ack_interval`), so both
pay the same ack cost and the same up-to-100 ms tail. Both are held to the same flow control: a
connection never has more than a window of messages unacked (see WINDOWS), so neither figure is
inflated by buffer growth.

Fairness checks printed per run: each server's CPU use (near 100 % of a core means the server was
the bottleneck, as it should be; less means CPU was stolen by other tenants, or the client or the
window set the pace) and the client's (which stays far below a core because frames are built from
templates and written pre-framed, in chunks). Runs alternate ABBA (baseline, hub, hub, baseline,
...) after a warm-up and the medians are reported, which cancels most drift of a noisy machine;
events per server CPU-second give a second ratio that CPU stolen from the server hardly moves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pstats
import random
import shutil
import signal
import statistics
import struct
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import msgspec
from _procs import Profiling, proc_cpu, serve_on_port_0, spawn_server, stop_process
from starlette.websockets import WebSocket
from websockets.asyncio.client import ClientConnection, connect

SHAPES = {"single": 1, "batch100": 100}  # events per frame
# Most unacked messages per connection. Acks come at most every 100 ms, so a window must cover a
# few ack intervals at the *baseline's* rate or it, not the server, sets the pace: about 4k single
# frames or 28k batched events per connection per 100 ms here. Larger only lengthens the drain.
WINDOWS = {"single": 20_000, "batch100": 60_000}
TARGET = 0.5
PERSIST_TARGET = 0.7  # --persist: hub with SQLite over hub in memory
CONNECT_TIMEOUT = 10.0
DRAIN_TIMEOUT = 30.0  # a server that does not ack the last message within this is reported stuck
HOST = "127.0.0.1"
PATH = "/ws/engine"


# --------------------------------------------------------------------------- servers (children)


class _BareSession:
    """The baseline: receive, decode, count; acks on the hub's cadence (see the module doc)."""

    def __init__(self, websocket: WebSocket, ack_interval: float) -> None:
        self.websocket = websocket
        self.ack_interval = ack_interval
        self.events = 0
        self.received = 0
        self.acked = -1
        self.wake = asyncio.Event()

    async def run(self) -> None:
        decode = msgspec.json.decode
        receive = self.websocket.receive
        writer = asyncio.create_task(self._writer())
        try:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    return
                data = decode(message["text"])
                if isinstance(data, list):
                    self.events += len(data)
                    seq = data[-1].get("seq", 0)
                else:
                    self.events += 1
                    seq = data.get("seq", 0)
                if seq >= self.received:
                    self.received = seq
                    self.wake.set()
        finally:
            writer.cancel()

    async def _writer(self) -> None:
        try:
            while True:
                await self.wake.wait()
                self.wake.clear()
                if self.received > self.acked:
                    self.acked = self.received
                    await self.websocket.send_text(f'{{"kind":"ack","seq":{self.acked}}}')
                await asyncio.sleep(self.ack_interval)
        except Exception:  # the socket closed under us; the receive loop ends the session
            return


async def _bare_endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    await _BareSession(websocket, websocket.app.state.ack_interval).run()


def _child(
    port_out: Connection, kind: str, profile_path: str | None, store: str, limits: bool
) -> None:
    """Entry point of a server process: bind port 0, report the port, serve until SIGTERM.

    `store` is "" for the usual comparison (bare endpoint vs hub in memory), or for --persist
    "memory" (the baseline: a hub keeping history in memory) / "<path>|<synchronous>" (SQLite).
    """
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute

    from hub.settings import Settings
    from hub.web.server import HubServer, uvicorn_config

    # Ingest alone: history in memory, unless --persist compares the SQLite store against it.
    settings = Settings(host=HOST, port=0, db=":memory:", log_level="warning", graceful_timeout=2)
    # Per-engine rate limits off (they would refuse this load), or with --limits on but too
    # generous ever to refuse, so that only their per-frame charge is measured;
    # benchmarks/fairness.py measures the limits themselves.
    if limits:
        settings = settings.replace(
            engine_messages_per_second=1e9,
            engine_message_burst=10**9,
            engine_bytes_per_second=1e12,
            engine_byte_burst=10**12,
        )
    else:
        settings = settings.replace(engine_messages_per_second=0, engine_bytes_per_second=0)
    if "|" in store:
        path, synchronous = store.split("|")
        settings = settings.replace(db=path, db_synchronous=synchronous)
    server: uvicorn.Server
    if kind == "hub" or store:
        server = HubServer(settings)
    else:
        app = Starlette(routes=[WebSocketRoute(PATH, _bare_endpoint)])
        app.state.ack_interval = settings.ack_interval
        server = uvicorn.Server(uvicorn_config(app, settings))
    serve_on_port_0(server, port_out, Profiling(profile_path).install if profile_path else None)


@dataclass
class ServerProcess:
    """A server child process and how to reach and measure it."""

    kind: str
    process: Any
    port: int

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}{PATH}"

    def cpu_seconds(self) -> float:
        """User + system CPU time of the child so far (from /proc; Linux only)."""
        return proc_cpu(self.process.pid)

    def signal(self, signum: int) -> None:
        os.kill(self.process.pid, signum)

    def stop(self) -> None:
        stop_process(self.process)


def start_server(
    kind: str, profile_path: str | None = None, store: str = "", limits: bool = False
) -> ServerProcess:
    """Spawn a server process and wait until its socket listens."""
    process, port = spawn_server(_child, (kind, profile_path, store, limits), f"bench-{kind}")
    return ServerProcess(kind, process, port)


# --------------------------------------------------------------------------- frames


_SYMBOLS = ["NIFTY", "BANKNIFTY", "RELIANCE", "INFY", "TCS", "HDFCBANK", "SBIN", "ITC"]
_STRATEGIES = ["mean_reversion", "momentum", "breakout", "pairs", "vwap_revert"]
_REASONS = [
    "z-score {z:.2f} beyond band; volume {v:.1f}x 20-day average",
    "fast EMA crossed slow EMA; ADX {a:.0f}",
    "opening range break at {p:.2f} with volume {v:.1f}x",
    "spread {z:.2f} sigma from mean; half-life {a:.0f} bars",
]


def _event_templates(count: int, seed: int = 7, chain: bool = False) -> list[bytes]:
    """`count` realistic signal_event messages with `%d` for seq and `%s` for ts; with `chain`,
    each carries a causal-chain link (a cycle id: the hub indexes and stores it)."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        price = round(rng.uniform(100, 50_000), 2)
        payload = {
            "symbol": rng.choice(_SYMBOLS) + rng.choice(["", "24AUGFUT", "24AUG24800CE"]),
            "side": rng.choice(["long", "short", "exit"]),
            "price": price,
            "strategy": rng.choice(_STRATEGIES),
            "confidence": round(rng.random(), 3),
            "reason": rng.choice(_REASONS).format(
                z=rng.uniform(-3, 3), v=rng.uniform(0.5, 4), a=rng.uniform(5, 60), p=price
            ),
        }
        body = msgspec.json.encode(payload).replace(b"%", b"%%")
        link = b',"chain":{"cycle":"c-%d"}' % rng.randrange(1_000_000) if chain else b""
        out.append(
            b'{"kind":"event","seq":%%d,"ts":%%s,"type":"signal_event","payload":%s%s}'
            % (body, link)
        )
    return out


class FrameSource:
    """Builds frames of one shape quickly: seq numbers and ts are substituted into templates."""

    def __init__(self, batch: int, chain: bool = False) -> None:
        self.batch = batch
        if batch == 1:
            self.templates = _event_templates(64, chain=chain)
        else:
            self.templates = [b"[" + b",".join(_event_templates(batch, chain=chain)) + b"]"]
        self._args: list[Any] = [0, b""] * batch

    def frame(self, index: int, first_seq: int, ts: bytes) -> bytes:
        """Frame number `index` (0-based) holding seqs first_seq .. first_seq + batch - 1."""
        template = self.templates[index % len(self.templates)]
        if self.batch == 1:
            return template % (first_seq, ts)
        args = self._args
        args[0::2] = range(first_seq, first_seq + self.batch)
        args[1::2] = [ts] * self.batch
        return template % tuple(args)


def wire_frame(text: bytes) -> bytes:
    """`text` as a complete client-to-server WebSocket text frame (FIN, masked with key 0)."""
    size = len(text)
    if size < 126:
        head = struct.pack("!BB", 0x81, 0x80 | size)
    elif size < 65536:
        head = struct.pack("!BBH", 0x81, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x81, 0x80 | 127, size)
    return head + b"\0\0\0\0" + text


def hello_frame(engine: str) -> bytes:
    """A hello with a fresh boot id, so every run's seqs start at 1 for the hub."""
    return msgspec.json.encode(
        {
            "kind": "hello",
            "engine": engine,
            "mode": "paper",
            "boot_id": uuid.uuid4().hex,
            "heartbeat_interval": 5,
            "pid": os.getpid(),
        }
    )


# --------------------------------------------------------------------------- load generator


@dataclass
class Stream:
    """One engine connection during a run: what it sent and what the server acked."""

    ws: ClientConnection
    sent: int = 0  # highest seq sent
    acked: int = 0
    acked_at: float = 0.0
    errors: int = 0
    stalled: float = 0.0  # seconds spent waiting for the window to open
    closed: bool = False
    ack_event: asyncio.Event = field(default_factory=asyncio.Event)

    async def read_replies(self) -> None:
        """Track acks (and count error replies) until the socket closes."""
        decode = msgspec.json.decode
        try:
            async for message in self.ws:
                reply = decode(message)
                kind = reply.get("kind")
                if kind == "ack":
                    self.acked = reply["seq"]
                    self.acked_at = time.perf_counter()
                    self.ack_event.set()
                elif kind == "error":
                    self.errors += 1
        finally:
            self.closed = True
            self.ack_event.set()

    async def wait_ack(self) -> None:
        """Wait for the next ack; fails if the server closed the connection instead."""
        self.ack_event.clear()
        await self.ack_event.wait()
        if self.closed:
            raise RuntimeError(
                f"the server closed an engine connection ({self.ws.close_code} "
                f"{self.ws.close_reason!r}) with {self.sent - self.acked} messages unacked"
            )


@dataclass
class RunResult:
    """One timed run against one server."""

    kind: str
    shape: str
    events: int
    seconds: float
    server_cpu: float  # fraction of one core
    client_cpu: float
    stalled: float  # mean fraction of the run a connection waited for acks
    errors: int

    @property
    def rate(self) -> float:
        """Events per second of wall time, first send to final ack: the headline figure."""
        return self.events / self.seconds

    @property
    def cpu_rate(self) -> float:
        """Events per CPU-second of the server: what it would do with a core to itself."""
        return self.events / max(self.server_cpu * self.seconds, 1e-9)


async def _open(url: str, index: int) -> Stream:
    ws = await connect(url, compression=None, max_size=None, open_timeout=CONNECT_TIMEOUT)
    await ws.send(hello_frame(f"bench-{index}"), text=True)
    # The hub answers hello with a welcome; the baseline with an ack of seq 0. Either way the
    # connection is ready once the first reply arrives.
    await asyncio.wait_for(ws.recv(), CONNECT_TIMEOUT)
    return Stream(ws)


async def _pump(
    stream: Stream, source: FrameSource, deadline: float, window: int, raw: bool
) -> None:
    """Send frames until `deadline`, never more than `window` messages ahead of the last ack."""
    batch = source.batch
    chunk = max(1, 200 // batch)  # frames per turn of the loop before yielding to other tasks
    ws, index, seq = stream.ws, 0, 0
    transport = ws.transport
    clock = time.perf_counter
    while clock() < deadline:
        while seq + chunk * batch - stream.acked > window:
            waited = clock()
            await stream.wait_ack()
            stream.stalled += clock() - waited
        ts = b"%.6f" % time.time()
        if raw:
            # Whole frames straight to the transport, `chunk` per write: per-frame ws.send() costs
            # the client about as much CPU as the baseline server spends per frame, and then the
            # client, not the server, would set the pace. websockets' own control frames are also
            # whole frames, so nothing interleaves inside one. Masking with key 0 is valid framing
            # and costs the server the same unmasking work as any other key.
            frames = []
            for _ in range(chunk):
                frames.append(wire_frame(source.frame(index, seq + 1, ts)))
                index += 1
                seq += batch
            transport.write(b"".join(frames))
            # Wait while the socket is full, as a real sender does: without this, a window larger
            # than the socket buffers piles up in the transport and costs the client CPU.
            await ws.drain()
        else:
            for _ in range(chunk):
                await ws.send(source.frame(index, seq + 1, ts), text=True)
                index += 1
                seq += batch
        stream.sent = seq
        await asyncio.sleep(0)


async def _drain(stream: Stream) -> None:
    while stream.acked < stream.sent:
        await stream.wait_ack()


async def load_run(
    server: ServerProcess,
    shape: str,
    connections: int,
    seconds: float,
    window: int,
    raw: bool = True,
    chain: bool = False,
) -> RunResult:
    """One timed run against `server`; returns events/s as the server confirmed them."""
    source = FrameSource(SHAPES[shape], chain)
    streams = await asyncio.gather(*(_open(server.url, i) for i in range(connections)))
    readers = [asyncio.create_task(s.read_replies()) for s in streams]
    try:
        cpu_server, cpu_client = server.cpu_seconds(), time.process_time()
        start = time.perf_counter()
        deadline = start + seconds
        await asyncio.gather(*(_pump(s, source, deadline, window, raw) for s in streams))
        try:
            await asyncio.wait_for(asyncio.gather(*(_drain(s) for s in streams)), DRAIN_TIMEOUT)
        except TimeoutError:
            raise RuntimeError(
                f"the {server.kind} server did not ack the last message within {DRAIN_TIMEOUT} s"
            ) from None
        end = max(s.acked_at for s in streams)
        wall = end - start
        result = RunResult(
            kind=server.kind,
            shape=shape,
            events=sum(s.sent for s in streams),
            seconds=wall,
            server_cpu=(server.cpu_seconds() - cpu_server) / wall,
            client_cpu=(time.process_time() - cpu_client) / wall,
            stalled=statistics.fmean(s.stalled for s in streams) / wall,
            errors=sum(s.errors for s in streams),
        )
    finally:
        await asyncio.gather(*(s.ws.close() for s in streams), return_exceptions=True)
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    return result


# --------------------------------------------------------------------------- driver and report


def _fetch_stats(port: int) -> dict[str, Any]:
    url = f"http://{HOST}:{port}/api/telemetry/stats"
    with urllib.request.urlopen(url, timeout=10) as response:
        stats: dict[str, Any] = json.load(response)
    return stats


async def _collect_profile(hub: ServerProcess, path: str, shape: str) -> str:
    """Ask the hub process for its profile of `shape`'s runs; returns the file it is in."""
    hub.signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the hub process wrote no profile to {path} within 30 s")
        await asyncio.sleep(0.05)
    root, ext = os.path.splitext(path)
    target = f"{root}-{shape}{ext or '.prof'}"
    os.replace(path, target)
    return target


def _print_profile(path: str, shape: str, top: int = 25) -> None:
    stats = pstats.Stats(path)
    stats.strip_dirs()
    for key, title in (("cumulative", "cumulative time"), ("tottime", "own time")):
        print(f"\nhub profile of {shape}, top {top} by {title} ({path}):", flush=True)
        stats.sort_stats(key).print_stats(top)


@dataclass(frozen=True)
class Plan:
    """What to run, from the command line."""

    shapes: tuple[str, ...]
    connections: int
    seconds: float
    warmup: float
    repeats: int
    window: int | None  # None: WINDOWS[shape]
    raw: bool
    profile: str | None
    persist: str | None = None  # None, or the SQLite synchronous setting to compare with memory
    db_dir: str = ""
    limits: bool = False  # the hub's per-engine rate limits on (never reached) instead of off
    chain: bool = False  # every event carries a causal-chain link (#18 chain)

    @property
    def target(self) -> float:
        return PERSIST_TARGET if self.persist else TARGET

    def window_for(self, shape: str) -> int:
        """Most unacked messages per connection (see WINDOWS)."""
        return self.window or WINDOWS[shape]

    def store(self, kind: str) -> str:
        """What a server process keeps history in (see `_child`)."""
        if not self.persist:
            return ""
        if kind == "baseline":
            return "memory"
        return f"{os.path.join(self.db_dir, 'bench.db')}|{self.persist}"


@dataclass
class ShapeResult:
    """Every timed run of one frame shape, and the verdict on their medians."""

    shape: str
    target: float = TARGET
    baseline: list[RunResult] = field(default_factory=list)
    hub: list[RunResult] = field(default_factory=list)
    kept_all: bool = True  # the hub accepted (and kept) every event of this shape's runs

    @property
    def baseline_rate(self) -> float:
        return statistics.median(r.rate for r in self.baseline)

    @property
    def hub_rate(self) -> float:
        return statistics.median(r.rate for r in self.hub)

    @property
    def ratio(self) -> float:
        return self.hub_rate / self.baseline_rate

    @property
    def pair_ratios(self) -> list[float]:
        """hub/baseline of each repeat's two adjacent runs: the spread of the ratio."""
        return [h.rate / b.rate for b, h in zip(self.baseline, self.hub, strict=True)]

    @property
    def cpu_ratio(self) -> float:
        """The ratio of events per server CPU-second: hardly moved by CPU stolen from the server."""
        return statistics.median(r.cpu_rate for r in self.hub) / statistics.median(
            r.cpu_rate for r in self.baseline
        )

    @property
    def verdict(self) -> str:
        if not self.kept_all:  # a hub that dropped events was not doing the same work
            return "VOID"
        return "PASS" if self.ratio >= self.target else "FAIL"


def _describe(run: RunResult, repeat: int) -> str:
    # A server below ~90 % of a core was not the bottleneck for the whole run: the machine took
    # CPU from it (other tenants) or the client/window did not keep it busy.
    note = "" if run.server_cpu >= 0.9 else "  <- server short of CPU"
    return (
        f"run {run.shape:<8} {run.kind:<8} #{repeat + 1}: {run.rate:>12,.0f} events/s "
        f"({run.events:,} events in {run.seconds:.2f} s; server cpu {run.server_cpu:.0%} "
        f"= {run.cpu_rate:,.0f} events per CPU-s; client cpu {run.client_cpu:.0%}; "
        f"window stalls {run.stalled:.0%}; error replies {run.errors}){note}"
    )


async def measure_shape(
    plan: Plan, servers: dict[str, ServerProcess], shape: str, say: Callable[[str], None]
) -> tuple[ShapeResult, int]:
    """Warm up, then alternate baseline and hub runs; returns the runs and events sent to the hub."""
    hub, sent_to_hub = servers["hub"], 0

    async def run(kind: str, seconds: float) -> RunResult:
        nonlocal sent_to_hub
        result = await load_run(
            servers[kind],
            shape,
            plan.connections,
            seconds,
            plan.window_for(shape),
            plan.raw,
            plan.chain,
        )
        if kind == "hub":
            sent_to_hub += result.events
        return result

    if plan.warmup > 0:
        for kind in ("baseline", "hub"):
            await run(kind, plan.warmup)
    out = ShapeResult(shape, plan.target)
    for repeat in range(plan.repeats):
        # ABBA order: a drift of the machine's speed during the pair hits both servers alike.
        for kind in ("baseline", "hub") if repeat % 2 == 0 else ("hub", "baseline"):
            if kind == "hub" and plan.profile:
                hub.signal(signal.SIGUSR1)
            result = await run(kind, plan.seconds)
            if kind == "hub" and plan.profile:
                hub.signal(signal.SIGUSR2)
            getattr(out, kind).append(result)
            say(_describe(result, repeat))
    if plan.profile:
        _print_profile(await _collect_profile(hub, plan.profile, shape), shape)
    pairs = out.pair_ratios
    say(f"{shape:<8} baseline events/s: {out.baseline_rate:>12,.0f}")
    say(f"{shape:<8} hub events/s:      {out.hub_rate:>12,.0f}")
    say(
        f"{shape:<8} ratio hub/baseline: {out.ratio:.2f} (per pair {min(pairs):.2f}-"
        f"{max(pairs):.2f}; target >= {out.target}) {out.verdict}"
    )
    say(f"{shape:<8} ratio of events per server CPU-second (cross-check): {out.cpu_ratio:.2f}")
    short = sum(r.server_cpu < 0.9 for r in out.baseline + out.hub)
    if short:
        say(
            f"{shape:<8} WARNING: {short} of {len(out.baseline) + len(out.hub)} runs had the server "
            "below 90 % of a core (a busy machine); trust the CPU-second ratio or run again"
        )
    return out, sent_to_hub


async def bench(plan: Plan, say: Callable[[str], None]) -> list[ShapeResult]:
    """Start both servers, measure every shape, check the hub's counters, stop the servers."""
    if plan.profile and os.path.exists(plan.profile):
        os.remove(plan.profile)
    servers: dict[str, ServerProcess] = {}
    try:
        for kind in ("baseline", "hub"):
            profile = plan.profile if kind == "hub" else None
            servers[kind] = start_server(kind, profile, plan.store(kind), plan.limits)
        say(
            "servers: "
            + ", ".join(f"{s.kind} pid {s.process.pid} port {s.port}" for s in servers.values())
        )
        results, sent_to_hub = [], 0
        for shape in plan.shapes:
            before = _losses(_fetch_stats(servers["hub"].port))
            result, sent = await measure_shape(plan, servers, shape, say)
            after = _losses(_fetch_stats(servers["hub"].port))
            accepted = after[0] - before[0]
            result.kept_all = accepted == sent and after[1:] == before[1:]
            results.append(result)
            sent_to_hub += sent
        say(_stats_line(_fetch_stats(servers["hub"].port), sent_to_hub))
    finally:
        for server in servers.values():
            server.stop()
    return results


def _losses(stats: dict[str, Any]) -> tuple[int, ...]:
    """Events accepted, then every count of an event not accepted or not kept (they only grow)."""
    drops = stats["drops"]
    return (
        stats["messages"].get("event", 0),
        sum((stats["rejected"] or {}).values()),
        drops.get("duplicate", 0),
        drops.get("gap", 0),
        drops.get("store_overflow", 0),
    )


def _stats_line(stats: dict[str, Any], expected: int) -> str:
    """The hub's own counters after the runs: every event accepted and stored, nothing rejected."""
    stored, *lost = _losses(stats)  # store_overflow: accepted but not kept, not a fair figure
    clean = stored == expected and not any(lost)
    drops = stats["drops"]
    return (
        f"hub stats: {stored:,} events accepted of {expected:,} sent, frames {stats['frames']:,}, "
        f"rejected {stats['rejected'] or 0}, duplicates {drops.get('duplicate', 0)}, "
        f"gaps {drops.get('gap', 0)}, drops {drops or {}} -> "
        + ("nothing lost" if clean else "CHECK: the hub dropped or rejected messages")
    )


def _table(results: list[ShapeResult]) -> list[str]:
    lines = [
        "| shape    |   baseline ev/s |        hub ev/s | ratio | target | result | ratio per CPU-s |",
        "|----------|----------------:|----------------:|------:|--------|--------|----------------:|",
    ]
    for r in results:
        lines.append(
            f"| {r.shape:<8} | {r.baseline_rate:>15,.0f} | {r.hub_rate:>15,.0f} | "
            f"{r.ratio:>5.2f} | >= {r.target} | {r.verdict:<6} | {r.cpu_ratio:>15.2f} |"
        )
    return lines


def _at_least(kind: type[float] | type[int], minimum: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if value < minimum or value <= 0:
            raise argparse.ArgumentTypeError(f"must be at least {minimum:g} (got {text})")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Hub ingest throughput as a ratio to a bare uvicorn + Starlette endpoint "
        "measured in the same run. Exits 0 whether or not the target is met."
    )
    parser.add_argument(
        "--quick", action="store_true", help="one short run per server and shape (smoke test)"
    )
    parser.add_argument(
        "--seconds",
        type=_at_least(float, 0.1),
        default=3.0,
        help="sending time of each timed run (default 3)",
    )
    parser.add_argument(
        "--repeats",
        type=_at_least(int, 1),
        default=3,
        help="timed runs per server and shape (default 3)",
    )
    parser.add_argument(
        "--connections", type=_at_least(int, 1), default=4, help="engine connections (default 4)"
    )
    parser.add_argument(
        "--window",
        type=_at_least(int, 1000),  # a connection sends up to 200 messages at a time
        help="most unacked messages per connection (default 20000 for single, 60000 for "
        "batch100: a few ack intervals at the baseline's rate)",
    )
    parser.add_argument(
        "--shape", dest="shapes", action="append", choices=list(SHAPES), help="default: both"
    )
    parser.add_argument(
        "--send",
        choices=["raw", "websockets"],
        default="raw",
        help="raw (default): pre-framed bytes written in chunks, the cheapest client; "
        "websockets: one ws.send() per frame",
    )
    parser.add_argument(
        "--persist",
        choices=["normal", "full"],
        help="compare the hub with its SQLite store (synchronous=normal or full) against the hub "
        "keeping history in memory, instead of the hub against a bare endpoint (target >= 0.7)",
    )
    parser.add_argument(
        "--limits",
        choices=["off", "on"],
        default="off",
        help="the hub's per-engine rate limits: off (default), or on with limits so generous "
        "that nothing is refused (what their per-frame charge costs)",
    )
    parser.add_argument(
        "--chain",
        action="store_true",
        help="every event carries a causal-chain link (a cycle id), the worst case of chains: "
        "the hub indexes each one and, with --persist, stores a links row for each",
    )
    parser.add_argument(
        "--profile",
        metavar="PATH",
        help="cProfile the hub during its timed runs; writes PATH-<shape>.prof per shape and "
        "prints the top 25 functions (the figures are then not comparable)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    quick = args.quick
    seconds = 0.5 if quick else args.seconds
    plan = Plan(
        shapes=tuple(args.shapes or SHAPES),
        connections=args.connections,
        seconds=seconds,
        warmup=0.0 if quick else min(1.0, seconds),
        repeats=1 if quick else args.repeats,
        window=args.window,
        raw=args.send == "raw",
        profile=args.profile,
        persist=args.persist,
        db_dir=tempfile.mkdtemp(prefix="engine-hub-bench-") if args.persist else "",
        limits=args.limits == "on",
        chain=args.chain,
    )
    windows = ", ".join(f"{s} {plan.window_for(s):,}" for s in plan.shapes)
    print(
        f"ingest benchmark: {plan.connections} engine connections, {plan.seconds:g} s of sending "
        f"per run, {plan.repeats} timed run(s) per server and shape, window (unacked messages "
        f"per connection) {windows}, {os.cpu_count()} cores, per-engine limits {args.limits}",
        flush=True,
    )
    if plan.profile:
        print("profiling the hub: its figures are slowed by cProfile and not comparable")
    if plan.persist:
        print(
            f"--persist {plan.persist}: 'baseline' is the hub keeping history in memory, 'hub' the "
            f"hub with its SQLite store (synchronous={plan.persist}) in {plan.db_dir}"
        )
    started = time.monotonic()
    try:
        results = asyncio.run(bench(plan, lambda line: print(line, flush=True)))
    except RuntimeError as exc:
        print(f"ingest benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if plan.db_dir:
            shutil.rmtree(plan.db_dir, ignore_errors=True)
    print()
    print("\n".join(_table(results)))
    print(f"\ndone in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
