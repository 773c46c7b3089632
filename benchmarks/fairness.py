"""Per-engine fairness: a calm engine's event -> ack latency with and without a flooding neighbour.

Run from the repository root: `.venv/bin/python benchmarks/fairness.py` (about 15 s),
`--quick` (a few seconds, smoke test), `--seconds N` (length of each phase), `--flood-factor F`
(the flooder's offered rate as a multiple of the limit, default 10). See docs/benchmarks.md.

One hub (default settings, history in memory) runs in its own spawned process on 127.0.0.1.
Phase 1 (the baseline, same run): a calm engine sends one `signal_event` per frame every 20 ms
over a raw socket and times each event until the ack that covers it. Phase 2: the same, while a
flooder (the real client library, in another spawned process) publishes F times the hub's
per-engine limit. Printed: the calm engine's p50/p99 in both phases and their ratio, and the
flooder's accepted rate against the limit, with where its excess went: refused by the hub and
resent (never lost), or dropped by the client's own bounded buffer (an offer above the limit for
longer than the buffer holds must lose something; the client counts it and the hub records the
gap). Nothing is asserted: the figures are for reading.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import time
import urllib.request
import uuid
from multiprocessing.connection import Connection
from typing import Any

import websockets
from _procs import HOST, serve_on_port_0, spawn_server, stop_process

CALM_INTERVAL = 0.02  # the calm engine: 50 events/s, one per frame


def _hub_child(port_out: Connection) -> None:
    """Server process: a hub with default limits and history in memory."""
    from hub.settings import Settings
    from hub.web.server import HubServer

    settings = Settings(host=HOST, port=0, db=":memory:", log_level="warning", graceful_timeout=2)
    serve_on_port_0(HubServer(settings), port_out)


def _flooder_child(url: str, name: str, rate: float, stop: Any, report: Connection) -> None:
    """Flooder process: the client library publishing `rate` events/s until `stop` is set."""
    from hub.client import EngineClient

    client = EngineClient(url, engine=name, close_on_exit=False, close_timeout=1.0).start()
    started, sent = time.perf_counter(), 0
    while not stop.is_set():
        elapsed = time.perf_counter() - started
        while sent < rate * elapsed:  # paced in small bursts, F times what the hub takes
            client.publish("signal_event", {"symbol": "FLOOD", "n": sent})
            sent += 1
        time.sleep(0.005)  # pacing the load generator, not synchronizing a test
    stats = client.stats
    client.close()
    dropped = {str(reason): count for reason, count in stats.dropped.items()}
    report.send({"published": sent, "connects": stats.connects, "dropped": dropped})


async def _calm_phase(url: str, name: str, seconds: float) -> list[float]:
    """Send one event per frame every CALM_INTERVAL; return each event's send -> ack seconds."""
    async with websockets.connect(url, compression=None) as ws:
        hello = {"kind": "hello", "engine": name, "boot_id": uuid.uuid4().hex}
        await ws.send(json.dumps(hello))
        welcome = json.loads(await ws.recv())
        seq, sent_at, latencies = welcome["last_seq"], {}, []
        done = asyncio.Event()

        async def acks() -> None:
            async for raw in ws:
                message = json.loads(raw)
                if message["kind"] == "ack":
                    now = time.perf_counter()
                    for acked in [s for s in sent_at if s <= message["seq"]]:
                        latencies.append(now - sent_at.pop(acked))
                if done.is_set() and not sent_at:
                    return

        reader = asyncio.create_task(acks())
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            seq += 1
            event = {"kind": "event", "seq": seq, "type": "signal_event", "payload": {"n": seq}}
            sent_at[seq] = time.perf_counter()
            await ws.send(json.dumps(event))
            await asyncio.sleep(CALM_INTERVAL)  # the calm engine's own pace
        done.set()
        if sent_at:  # else the last ack came before `done`: the reader waits for nothing more
            await asyncio.wait_for(reader, 10)
        reader.cancel()
        return latencies


def _engines(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{HOST}:{port}/api/telemetry/engines", timeout=10) as r:
        return {e["name"]: e for e in json.load(r)["engines"]}


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] * 1000


async def _run(seconds: float, factor: float) -> None:
    from hub.settings import Settings

    limit, burst = Settings().engine_messages_per_second, Settings().engine_message_burst
    process, port = spawn_server(_hub_child, (), "bench-fairness-hub")
    url = f"ws://{HOST}:{port}/ws/engine"
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    report, report_in = ctx.Pipe(duplex=False)
    flood_name = f"flood-{uuid.uuid4().hex[:6]}"
    try:
        base = await _calm_phase(url, "calm-baseline", seconds)
        flooder = ctx.Process(
            target=_flooder_child, args=(url, flood_name, factor * limit, stop, report_in)
        )
        flooder.start()
        # The flood is on once its burst is spent and the hub refuses it (polling a benchmark's
        # own load generator, not synchronizing a test).
        while (flood := _engines(port).get(flood_name)) is None or not flood["rate_limited"]:
            await asyncio.sleep(0.1)
        before = flood["events"]
        started = time.perf_counter()
        flooded = await _calm_phase(url, "calm-flooded", seconds)
        span = time.perf_counter() - started
        flood = _engines(port)[flood_name]
        stop.set()
        client = report.recv() if report.poll(30) else {}
        flooder.join(30)
    finally:
        stop.set()
        stop_process(process)
    accepted = flood["events"] - before
    print(
        f"hub limit: {limit:,.0f} msg/s, burst {burst:,}; flooder offered {factor * limit:,.0f}/s "
        f"({factor:g}x)"
    )
    print(f"calm engine event->ack, {len(base)} / {len(flooded)} events:")
    print(f"  p50  {_p(base, 50):7.1f} ms alone  {_p(flooded, 50):7.1f} ms flooded")
    print(f"  p99  {_p(base, 99):7.1f} ms alone  {_p(flooded, 99):7.1f} ms flooded")
    print(f"  p99 ratio flooded / alone: {_p(flooded, 99) / _p(base, 99):.2f}")
    print(
        f"flooder, after its burst: accepted {accepted / span:,.0f} events/s = "
        f"{accepted / span / limit:.2f}x the limit; {flood['rate_limited']:,} messages refused "
        f"with rate_limited in all (the client resends them)"
    )
    dropped = client.get("dropped", {})
    print(
        f"flooder client: published {client.get('published', 0):,}, connections "
        f"{client.get('connects', '?')}, dropped by its own buffer {dropped or 'nothing'} "
        f"({sum(dropped.values()):,}); hub: {flood['gaps']:,} messages missing as gaps"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each phase")
    parser.add_argument("--quick", action="store_true", help="2 s phases (smoke test)")
    parser.add_argument(
        "--flood-factor",
        type=float,
        default=10.0,
        help="the flooder's offered rate as a multiple of the per-engine limit (default 10)",
    )
    args = parser.parse_args()
    if not 0 < args.flood_factor <= 1000:
        parser.error("--flood-factor must be above 0 and at most 1000")
    asyncio.run(_run(2.0 if args.quick else args.seconds, args.flood_factor))


if __name__ == "__main__":
    main()
