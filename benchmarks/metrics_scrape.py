"""/metrics on a big hub: event-loop lag and /healthz latency during scrapes, against idle.

Run: `.venv/bin/python benchmarks/metrics_scrape.py` (256 engines x 5,000 series, a few
minutes and several GiB to build), `--quick` (32 engines), `--engines N`, `--series M`,
`--scrapes K`. Like the other benchmarks it reports and exits 0; it is not a timed test.

Set-up: one hub (`HubServer` on a pre-bound port-0 socket) in this process, its metric registry
filled directly through `MetricRegistry.apply` (counters with two tags each; every 50th series
a histogram) with caps raised to fit. A probe task on the hub's event loop sleeps 5 ms at a time
and records how late it wakes (the loop lag every request on the hub would see). A thread
requests `/healthz` every 20 ms and records its latency. Both run for an idle window, then
while another thread scrapes `/metrics` K times back to back. Reported: p50/p99/max of both,
and the during/idle ratios; scrape duration and size.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hub.core.messages import Metric  # noqa: E402
from hub.settings import Settings  # noqa: E402
from hub.web.server import HubServer, bind  # noqa: E402

PROBE = 0.005
HEALTHZ_EVERY = 0.02


def fill(server: HubServer, engines: int, series: int) -> None:
    """Give `engines` engines `series` series each, straight into the registry."""
    hub = server.hub
    assert hub is not None
    now = time.time()
    for e in range(engines):
        name = f"engine{e:03d}"
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


def healthz_loop(port: int, stop: threading.Event, out: list[float]) -> None:
    """Request /healthz every HEALTHZ_EVERY seconds until `stop`, recording latencies."""
    while not stop.is_set():
        start = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=30) as r:
            r.read()
        out.append(time.perf_counter() - start)
        stop.wait(HEALTHZ_EVERY)


async def probe(stop: asyncio.Event, out: list[float]) -> None:
    """Record how late a PROBE-second sleep on the hub's loop wakes up."""
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(PROBE)
        out.append(time.perf_counter() - start - PROBE)


async def window(port: int, seconds: float, scrapes: int) -> tuple[list[float], list[float], str]:
    """Probe and /healthz samples over an idle window (scrapes=0) or during scrapes."""
    lags: list[float] = []
    latencies: list[float] = []
    stop, thread_stop = asyncio.Event(), threading.Event()
    prober = asyncio.create_task(probe(stop, lags))
    checker = threading.Thread(target=healthz_loop, args=(port, thread_stop, latencies))
    checker.start()
    note = ""
    if scrapes:

        def scrape() -> str:
            sizes, times = [], []
            for _ in range(scrapes):
                start = time.perf_counter()
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=600) as r:
                    sizes.append(len(r.read()))
                times.append(time.perf_counter() - start)
            return f"{scrapes} scrapes, {sizes[-1] / 2**20:.1f} MiB each, {statistics.median(times):.2f} s median"

        note = await asyncio.to_thread(scrape)
    else:
        await asyncio.sleep(seconds)
    stop.set()
    thread_stop.set()
    await prober
    await asyncio.to_thread(checker.join)
    return lags, latencies, note


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    # The socket already listens; this request completes once the lifespan has started.
    await asyncio.to_thread(
        lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz").read()
    )
    start = time.perf_counter()
    fill(server, args.engines, args.series)
    print(
        f"built {args.engines} engines x {args.series} series in {time.perf_counter() - start:.1f} s"
    )
    idle_lag, idle_hz, _ = await window(port, 3.0, 0)
    busy_lag, busy_hz, note = await window(port, 0.0, args.scrapes)
    print(note)
    for label, idle, busy in (("loop lag", idle_lag, busy_lag), ("/healthz", idle_hz, busy_hz)):
        i50, i99, imax = percentiles(idle)
        b50, b99, bmax = percentiles(busy)
        print(
            f"{label:9} idle p50 {i50:6.2f} p99 {i99:6.2f} max {imax:6.2f} ms | during scrape "
            f"p50 {b50:6.2f} p99 {b99:6.2f} max {bmax:6.2f} ms | p99 ratio {b99 / max(i99, 1e-3):5.1f}x"
        )
    await server.stop()
    await task
    sock.close()


if __name__ == "__main__":
    asyncio.run(main())
