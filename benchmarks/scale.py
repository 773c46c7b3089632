"""Live views at scale: many engines heartbeating on many overview pages, and false health alarms.

Run: `.venv/bin/python benchmarks/scale.py` (scenarios a and c, about 3 min), `--scenario b` (or
`a`, `c`, `all`), `--quick` (50 engines + 100 pages, then 5 engines + 200 pages, 5 s windows: a
smoke run), `--seconds N` (measured window, default 20), `--deflate` (pages offer
permessage-deflate as browsers do, so they get the hub's compress-once frames; per-page bytes are
then compressed wire bytes, and only probe pages inflate). It reports and exits 0; targets are
printed beside the figures, they are not assertions.

Scenarios (issue #20): (a) 1,000 engines heartbeating 1/s + 1,000 overview pages; (b) 1,000
engines + 5,000 pages; (c) 10 engines + 10,000 pages.

Set-up, all on 127.0.0.1, every party its own process:
- the hub: `HubServer` with `db=":memory:"`, limits raised for the crowd from one address
  (`max_engines`, `max_dashboards`, `max_pending_per_ip`), `dashboard_queue_bytes` 4 MiB (the
  1,000-engine snapshot is over the 1 MiB default), RLIMIT_NOFILE raised (spawned);
- the engines: one process, raw protocol-v1 WebSocket connections (`websockets`, not the client
  library, whose batching adds up to 100 ms): hello with `heartbeat_interval` 1 s, then one
  heartbeat a second each, phases spread over the second. Each heartbeat's `loop_tick` is its
  send time in microseconds times 1,000 plus the engine's number, so a page can tell whose
  heartbeat it shows and when it was sent;
- the pages: raw dashboard sockets (a minimal asyncio protocol: handshake, frame parser, pong; not
  Chromium) over up to 4 processes. Every page counts frames and bytes; `PROBE_PAGES` of them also
  read the "loop" figure of the first `PROBES` engines' cards to time heartbeat -> page;
- the parent reads SSE `hub.health` and counts late, stale and stalled transitions: none of the
  engines ever stops heartbeating, so each one is false.

Figures: hub CPU (cores, /proc over the window), hub RSS (max of 1 s samples), per-page bytes/s and
frames/s (mean over pages), heartbeat -> page p50/p99 (first frame showing that heartbeat or a later
one, per (probe heartbeat, probe page)), pages the hub cut off, false transitions, the hub's loop
lag (max of `/healthz` `loop_lag_seconds` polled once a second) and its blind seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import random
import statistics
import threading
import time
import urllib.request
import uuid
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from _procs import proc_cpu, serve_on_port_0, spawn_server, stop_process
from fanout import MARKER, _Dashboard, _machine_busy, _proc_rss, _raise_nofile

HOST = "127.0.0.1"
PROBES = 10  # engines whose heartbeats are timed on pages
PROBE_PAGES = 50  # pages that time them (the others only count bytes)
PAGES_PER_PROCESS = 2500
DASHBOARD_QUEUE_BYTES = 4 * 1024 * 1024
TARGETS = {
    "a": "p99 <= 300 ms, hub <= 70 % of a core, RSS <= 400 MB, 0 false transitions",
    "b": "0 false late/stale, RSS <= 1 GB, pages degraded (fewer frames) rather than cut off",
    "c": "p99 <= 500 ms, RSS <= 500 MB, 0 false transitions",
}
SIZES = {"a": (1000, 1000), "b": (1000, 5000), "c": (10, 10_000)}
QUICK = {"a": (50, 100), "b": (50, 300), "c": (5, 200)}
PER_PAGE_TARGET = 50 * 1024  # bytes/s per overview page at 1,000 engines (item 2; the other helper)


# --------------------------------------------------------------------------- the hub (child)


def _hub_child(port_out: Connection, engines: int, pages: int) -> None:
    from hub.settings import Settings
    from hub.web.server import HubServer

    _raise_nofile(engines + pages + 256)
    settings = Settings(
        host=HOST,
        port=0,
        db=":memory:",
        log_level="warning",
        graceful_timeout=2,
        max_engines=engines + 16,
        max_dashboards=pages + 16,
        max_pending_per_ip=pages + engines,  # the crowd connects from one address
        # The overview snapshot of 1,000 engines (~1.2 MB) exceeds the default budget (1 MiB): a
        # page would be cut off before its first frame (issue #20 item 3, done separately).
        dashboard_queue_bytes=DASHBOARD_QUEUE_BYTES,
    )
    serve_on_port_0(HubServer(settings), port_out)


# --------------------------------------------------------------------------- engines (child)


def _engines_child(port: int, engines: int, ctrl: Connection) -> None:
    """Connect `engines` raw engines (probes first, so they get the first indexes), heartbeat 1/s."""
    from websockets.asyncio.client import connect

    _raise_nofile(engines + 64)
    sends: dict[int, list[int]] = {i: [] for i in range(min(PROBES, engines))}

    async def one(number: int, stop: asyncio.Event, gate: asyncio.Semaphore) -> None:
        async with gate:
            ws = await connect(f"ws://{HOST}:{port}/ws/engine", compression=None, open_timeout=60)
            hello = {
                "kind": "hello",
                "engine": f"scale-{number:05d}",
                "boot_id": uuid.uuid4().hex,
                "heartbeat_interval": 1.0,
            }
            await ws.send(json.dumps(hello))
            await asyncio.wait_for(ws.recv(), 60)  # the welcome
        reader = asyncio.create_task(_drain(ws))
        loop = asyncio.get_running_loop()
        due = loop.time() + random.random()  # phases spread over the second
        seq = 0
        while not stop.is_set():
            await asyncio.sleep(max(0.0, due - loop.time()))
            seq += 1
            sent = int(time.time() * 1e6)
            if number in sends:
                sends[number].append(sent)
            beat = {"kind": "heartbeat", "seq": seq, "status": "running"}
            await ws.send(json.dumps({**beat, "loop_tick": sent * 1000 + number}))
            due = max(due + 1.0, loop.time())  # no burst after a stall
        reader.cancel()
        await ws.close()

    async def main() -> None:
        stop, gate = asyncio.Event(), asyncio.Semaphore(64)
        tasks = []
        for number in range(engines):
            tasks.append(asyncio.create_task(one(number, stop, gate)))
            if number < PROBES:
                await asyncio.sleep(0.02)  # probes say hello in order: indexes 1..PROBES
        ctrl.send("ready")
        await asyncio.get_running_loop().run_in_executor(None, ctrl.recv)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    ctrl.send(sends)


async def _drain(ws: Any) -> None:
    async for _ in ws:  # acks and errors: read so the hub's writes never block
        pass


# --------------------------------------------------------------------------- pages (child)


class _Counts:
    """What one page saw: frames and bytes in the window, and probe heartbeats shown."""

    __slots__ = ("probe", "frames", "bytes", "shown", "window")

    def __init__(self, probe: bool) -> None:
        self.probe = probe
        self.frames = self.bytes = 0
        self.shown: list[tuple[int, int, float]] = []  # (engine number, sent us, received at)
        self.window = (0.0, 0.0)

    def frame(self, buffer: bytearray, start: int, end: int, now: float, size: int) -> None:
        t0, t1 = self.window
        if t0 <= now < t1:
            self.frames += 1
            self.bytes += size  # on the wire (compressed, when the page offered deflate)
        if not self.probe:
            return
        find = buffer.find
        pos = find(MARKER, start, end)
        while pos >= 0:
            pos = find(b">", pos + len(MARKER), end) + 1  # past the element's other attributes
            stop = find(b"<", pos, end)
            digits = bytes(buffer[pos:stop]).replace(b",", b"").strip()
            if digits.isdigit():
                sent, number = divmod(int(digits), 1000)
                if number < PROBES:
                    self.shown.append((number, sent, now))
            pos = find(MARKER, stop, end)


def _pages_child(port: int, count: int, probes: int, deflate: bool, ctrl: Connection) -> None:
    _raise_nofile(count + 64)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(64)

        async def open_one(probe: bool) -> _Dashboard:
            async with gate:
                _, page = await loop.create_connection(lambda: _Dashboard(deflate), HOST, port)
                page.samples = _Counts(probe)  # type: ignore[assignment]
                page.inflate = probe  # only probes read what the frames say
                await asyncio.wait_for(page.first_frame, 120)
                return page

        opened = await asyncio.gather(
            *(open_one(i < probes) for i in range(count)), return_exceptions=True
        )
        pages = [p for p in opened if isinstance(p, _Dashboard)]
        refused = len(opened) - len(pages)  # cut off (or refused) before their first frame
        ctrl.send("ready")
        t0, t1 = await loop.run_in_executor(None, ctrl.recv)
        for page in pages:
            page.samples.window = (t0, t1)  # type: ignore[attr-defined]
        await loop.run_in_executor(None, ctrl.recv)  # "report"
        ctrl.send(
            {
                "pages": [(p.samples.frames, p.samples.bytes) for p in pages],  # type: ignore[attr-defined]
                "shown": [p.samples.shown for p in pages if p.samples.probe],  # type: ignore[attr-defined]
                "closed": refused + sum(1 for p in pages if p.closed.done()),
            }
        )
        for page in pages:
            if page.transport is not None:
                page.transport.close()

    asyncio.run(main())


# --------------------------------------------------------------------------- the parent


class HealthWatch(threading.Thread):
    """Counts SSE `hub.health` transitions to late, stale or stalled (all false here)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.url = f"http://{HOST}:{port}/api/telemetry/stream?event_type=hub.health"
        self.false: dict[str, int] = {"late": 0, "stale": 0, "stalled": 0}
        self.counting = True

    def run(self) -> None:
        try:
            with urllib.request.urlopen(self.url, timeout=600) as stream:
                for line in stream:
                    if line.startswith(b"data:") and self.counting:
                        health = json.loads(line[5:])["health"]
                        if health in self.false:
                            self.false[health] += 1
        except OSError:
            pass  # the hub stopped


def _get(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=30) as response:
        return json.load(response)


def latencies(
    sends: dict[int, list[int]], shown: list[list[Any]], t0: float, t1: float
) -> list[float]:
    """Seconds from each probe heartbeat sent in [t0, t1) to the first frame of each probe page
    that shows it or a later one."""
    out: list[float] = []
    for page in shown:
        by_engine: dict[int, tuple[list[int], list[float]]] = {}
        for number, sent, at in page:
            best, ats = by_engine.setdefault(number, ([], []))
            if not best or sent > best[-1]:  # the running maximum, in arrival order
                best.append(sent)
                ats.append(at)
        for number, sent_list in sends.items():
            best, ats = by_engine.get(number, ([], []))
            for sent in sent_list:
                if t0 <= sent / 1e6 < t1 - 2.0:  # the last 2 s may still be on their way
                    i = bisect_left(best, sent)
                    if i < len(best):
                        out.append(ats[i] - sent / 1e6)
    return out


@dataclass
class Figures:
    """One scenario's measurements."""

    name: str
    engines: int
    pages: int
    hub_cpu: float
    machine_cpu: float
    rss_max: int
    page_bytes: float
    page_frames: float
    p50: float
    p99: float
    samples: int
    cut_off: int
    false: dict[str, int]
    lag_max: float
    blind: float


def run(name: str, engines: int, pages: int, seconds: float, deflate: bool = False) -> Figures:
    """Start a hub, the engines and the pages, measure one window, stop everything."""
    _raise_nofile(4096)
    ctx = mp.get_context("spawn")
    hub, port = spawn_server(_hub_child, (engines, pages), "scale-hub")
    procs: list[Any] = []
    try:
        watch = HealthWatch(port)
        watch.start()
        eng_pipe, child = ctx.Pipe()
        procs.append(ctx.Process(target=_engines_child, args=(port, engines, child)))
        procs[-1].start()
        if not eng_pipe.poll(300) or eng_pipe.recv() != "ready":
            raise RuntimeError("the engines did not connect")
        n = max(1, -(-pages // PAGES_PER_PROCESS))
        shares = [pages // n + (i < pages % n) for i in range(n)]
        probes = [PROBE_PAGES // n + (i < PROBE_PAGES % n) for i in range(n)]
        pipes = []
        for share, probe in zip(shares, probes, strict=True):
            parent, child = ctx.Pipe()
            args = (port, share, probe, deflate, child)
            procs.append(ctx.Process(target=_pages_child, args=args))
            procs[-1].start()
            pipes.append(parent)
        for pipe in pipes:
            if not pipe.poll(600) or pipe.recv() != "ready":
                raise RuntimeError("a page process could not open its sockets")
        time.sleep(2.0)  # settle: every page has its snapshot, engines are on their schedule
        t0 = time.time()
        t1 = t0 + seconds
        for pipe in pipes:
            pipe.send((t0, t1))
        cpu0, busy0 = proc_cpu(hub.pid), _machine_busy()[0]
        rss, lag = [], 0.0
        blind0 = _blind(port)
        while time.time() < t1:
            time.sleep(1.0)
            rss.append(_proc_rss(hub.pid))
            lag = max(lag, _get(port, "/healthz").get("loop_lag_seconds", 0.0))
        cpu1, busy1 = proc_cpu(hub.pid), _machine_busy()[0]
        blind = _blind(port) - blind0
        watch.counting = False
        time.sleep(2.5)  # the last probe heartbeats reach the pages
        for pipe in pipes:
            pipe.send("report")
        reports = [pipe.recv() for pipe in pipes]
        eng_pipe.send("stop")
        sends = eng_pipe.recv() if eng_pipe.poll(60) else {}
        counts = [page for r in reports for page in r["pages"]]
        shown = [s for r in reports for s in r["shown"]]
        lat = sorted(latencies(sends, shown, t0, t1))
        elapsed = t1 - t0
        return Figures(
            name,
            engines,
            pages,
            (cpu1 - cpu0) / elapsed,
            (busy1 - busy0) / elapsed,
            max(rss),
            statistics.fmean(b for _, b in counts) / elapsed,
            statistics.fmean(f for f, _ in counts) / elapsed,
            _quantile(lat, 0.5),
            _quantile(lat, 0.99),
            len(lat),
            sum(r["closed"] for r in reports),
            dict(watch.false),
            lag,
            blind,
        )
    finally:
        stop_process(hub)
        for process in procs:
            process.join(30)
            if process.is_alive():
                process.kill()
                process.join()


def _blind(port: int) -> float:
    """The hub's `engine_hub_loop_blind_seconds_total` so far."""
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=60) as response:
        for line in response:
            if line.startswith(b"engine_hub_loop_blind_seconds_total "):
                return float(line.split()[-1])
    return 0.0


def _quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def report(f: Figures, target: str) -> None:
    print(f"\n({f.name}) {f.engines} engines heartbeating 1/s + {f.pages} overview pages")
    print(f"  target: {target}")
    print(
        f"  hub CPU            {f.hub_cpu * 100:6.1f} % of a core (machine {f.machine_cpu:.2f} cores)"
    )
    print(f"  hub RSS (max)      {f.rss_max / 2**20:6.0f} MB")
    print(f"  per page           {f.page_bytes / 1024:8.1f} KB/s, {f.page_frames:.1f} frames/s")
    print(
        f"  heartbeat -> page  p50 {f.p50 * 1000:.0f} ms, p99 {f.p99 * 1000:.0f} ms ({f.samples} samples)"
    )
    print(f"  pages cut off      {f.cut_off}")
    print(f"  false transitions  {sum(f.false.values())} {f.false}")
    print(f"  hub loop lag (max) {f.lag_max:.2f} s; blind {f.blind:.1f} s of the window")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=["a", "b", "c", "all", "ac"], default="ac")
    parser.add_argument("--quick", action="store_true", help="small sizes, 5 s windows (smoke)")
    parser.add_argument("--seconds", type=float, default=None, help="measured window (default 20)")
    parser.add_argument(
        "--deflate",
        action="store_true",
        help="pages offer permessage-deflate, as browsers do (compress-once; bytes are wire bytes)",
    )
    args = parser.parse_args(argv)
    seconds = args.seconds or (5.0 if args.quick else 20.0)
    names = {"all": "abc", "ac": "ac"}.get(args.scenario, args.scenario)
    if args.quick and args.scenario == "ac":
        names = "ac"
    for name in names:
        engines, pages = (QUICK if args.quick else SIZES)[name]
        report(run(name, engines, pages, seconds, args.deflate), TARGETS[name])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
