"""/metrics on a big hub: event-loop lag and /healthz latency during scrapes, against idle.

Run: `.venv/bin/python benchmarks/metrics_scrape.py` (256 engines x 5,000 series, a few
minutes and several GiB to build), `--quick` (32 engines), `--engines N`, `--series M`,
`--scrapes K`. Like the other benchmarks it reports and exits 0; it is not a timed test.

Set-up: one hub (`HubServer` on a pre-bound port-0 socket) in this process, its engines added and
its metric registry filled directly through `MetricRegistry.apply` (counters with two tags each;
every 50th series a histogram) with caps raised to fit. A probe task on the hub's event loop sleeps 5 ms at a time
and records how late it wakes (the loop lag every request on the hub would see). The clients run
in their own spawned processes, so they share neither the GIL nor the loop with the hub: a prober
requests `/healthz` every 20 ms and records its latency, a scraper reads `/metrics` K times back
to back. Both clients start before the registry is filled (forking a process with a big heap is
not what is measured), and one scrape of the empty hub warms it up (the first streamed response
of a process imports anyio's backend, once). Probe and prober run for an idle window, then during the scrapes.
Reported: p50/p99/max of both, the during/idle p99 ratios, scrape duration and size, the hub's
RSS and CPU seconds per scrape.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import statistics
import time
from multiprocessing.connection import Connection
from typing import Any

from _procs import (  # also puts this checkout's hub first on sys.path
    HOST,
    http_get,
    latency_prober,
    proc_cpu,
)

from hub.core.messages import Metric
from hub.settings import Settings
from hub.web.server import HubServer, bind

PROBE = 0.005
HEALTHZ_EVERY = 0.02
IDLE_SECONDS = 3.0


def fill(server: HubServer, engines: int, series: int) -> None:
    """Give `engines` engines `series` series each, straight into the hub's state."""
    hub = server.hub
    assert hub is not None
    now = time.time()
    for e in range(engines):
        name = f"engine{e:03d}"
        # A record too, so the hub's own families (engine_hub_*) have every engine, as in a real hub.
        hub.state.add_engine(name, now).mode = "live"
        for s in range(series):
            if s % 50 == 0:
                msg = Metric(seq=1, op="observe", name=f"latency.s{s % 7}", value=s / series)
                hub.state.metrics.apply(name, msg, now)
            tags = {"symbol": f"SYM{s:05d}", "strategy": f"strat{s % 5}"}
            msg = Metric(seq=1, op="inc", name=f"signals.k{s % 10}", value=1.0, tags=tags)
            hub.state.metrics.apply(name, msg, now)


def percentiles(values: list[float]) -> tuple[float, float, float]:
    """p50, p99 and max in milliseconds."""
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1e3, p99 * 1e3, ordered[-1] * 1e3


def _prober_child(control: Connection, port: int) -> None:
    """Prober process: on each "start", GET /healthz every 20 ms until the next message."""
    latency_prober(control, port, "/healthz", HEALTHZ_EVERY)


def _scraper_child(control: Connection, port: int) -> None:
    """Scraper process: for each count K received, scrape /metrics K times; send sizes, times."""
    while (count := control.recv()) is not None:
        sizes, times = [], []
        for _ in range(count):
            start = time.perf_counter()
            sizes.append(http_get(port, "/metrics"))
            times.append(time.perf_counter() - start)
        control.send((sizes, times))


def spawn(target: Any, port: int) -> tuple[Any, Connection]:
    """Start `target(control, port)` in a fresh interpreter; returns (process, control pipe)."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=target, args=(child, port), daemon=True)
    process.start()
    child.close()
    return process, parent


async def probe(stop: asyncio.Event, out: list[float]) -> None:
    """Record how late a PROBE-second sleep on the hub's loop wakes up."""
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(PROBE)
        out.append(time.perf_counter() - start - PROBE)


async def window(
    prober: Connection, scraper: Connection, scrapes: int
) -> tuple[list[float], list[float], tuple[list[int], list[float]]]:
    """Loop lags and /healthz latencies over an idle window (scrapes=0) or during scrapes."""
    lags: list[float] = []
    stop = asyncio.Event()
    probing = asyncio.create_task(probe(stop, lags))
    prober.send("start")
    result: tuple[list[int], list[float]] = ([], [])
    if scrapes:
        scraper.send(scrapes)
        # The pipe read blocks in a helper thread with the GIL released; the loop stays free.
        result = await asyncio.to_thread(scraper.recv)
    else:
        await asyncio.sleep(IDLE_SECONDS)
    prober.send("stop")
    latencies = await asyncio.to_thread(prober.recv)
    stop.set()
    await probing
    return lags, latencies, result


def rss_mib() -> float:
    """This process's resident set in MiB (Linux /proc)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def report(label: str, idle: list[float], busy: list[float]) -> None:
    """One line: idle and during-scrape percentiles and the p99 ratio."""
    i50, i99, imax = percentiles(idle)
    b50, b99, bmax = percentiles(busy)
    print(
        f"{label:9} idle p50 {i50:6.2f} p99 {i99:6.2f} max {imax:6.2f} ms | during scrapes "
        f"p50 {b50:6.2f} p99 {b99:6.2f} max {bmax:7.2f} ms | p99 ratio {b99 / max(i99, 1e-3):5.1f}x"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--engines", type=int, default=256)
    parser.add_argument("--series", type=int, default=5000)
    parser.add_argument("--scrapes", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="32 engines, 2 scrapes")
    args = parser.parse_args()
    if args.quick:
        args.engines, args.scrapes = 32, 2
    total = args.engines * args.series * 2  # generous: the estimate is per series, not per sample
    settings = Settings(
        db=":memory:",
        port=0,
        log_level="warning",
        max_engines=max(args.engines, 1),
        max_series_per_engine=args.series + args.series // 50 + 1,
        max_series_bytes_per_engine=2**40,
        max_series_bytes=max(2**40, total),
    )
    server = HubServer(settings)
    sock = bind(HOST, 0)
    port = sock.getsockname()[1]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    prober_process, prober = spawn(_prober_child, port)
    scraper_process, scraper = spawn(_scraper_child, port)
    # The socket already listens; this request completes once the lifespan has started.
    await asyncio.to_thread(http_get, port, "/healthz")
    # The first streamed response of a process imports anyio's backend (~100 ms, once): a hub
    # that has served one scrape or SSE stream before is what is measured.
    await asyncio.to_thread(http_get, port, "/metrics")
    rss_before = rss_mib()
    start = time.perf_counter()
    fill(server, args.engines, args.series)
    built = time.perf_counter() - start
    rss_built = rss_mib()
    print(
        f"built {args.engines} engines x {args.series} series in {built:.1f} s, "
        f"hub RSS {rss_before:.0f} -> {rss_built:.0f} MiB"
    )
    idle_lag, idle_hz, _ = await window(prober, scraper, 0)
    cpu = proc_cpu(os.getpid())
    busy_lag, busy_hz, (sizes, times) = await window(prober, scraper, args.scrapes)
    cpu = proc_cpu(os.getpid()) - cpu
    print(
        f"{args.scrapes} scrapes, {sizes[-1] / 2**20:.1f} MiB each, {statistics.median(times):.2f} s "
        f"median, hub CPU {cpu / args.scrapes:.2f} s per scrape, hub RSS after {rss_mib():.0f} MiB"
    )
    report("loop lag", idle_lag, busy_lag)
    report("/healthz", idle_hz, busy_hz)
    for control, process in ((prober, prober_process), (scraper, scraper_process)):
        control.send(None)
        process.join(10)
    await server.stop()
    await task
    sock.close()


if __name__ == "__main__":
    asyncio.run(main())
