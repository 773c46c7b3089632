"""Alert rules per tick for 256 engines, and the dashboard's latency with a dead receiver.

Run: `.venv/bin/python benchmarks/alerts.py` (256 engines, about half a minute), `--engines N`,
`--ticks T`. Like the other benchmarks it reports and exits 0; it is not a timed test.

1. Rule evaluation, sans-I/O, in this process: a `HubState` with N live engines (heartbeats with
   loop ticks, universe sizes and trading hours; order and error events; a gauge, a counter and a
   histogram each) and three user rules besides every built-in one. Each tick, an eighth of the
   engines send a heartbeat and an order event (a busy hub), then the tick runs what the runtime
   runs: `HubState.refresh` (the health derivation the hub already did before alerts: the
   baseline), then `RuleEngine.evaluate` + `AlertBook.update` + `Dispatcher.plan`. Reported: mean
   and p99 per tick of both, and their ratio.
2. Dashboard latency: a hub (`HubServer`, port 0) in this process with N engines, an eighth in
   error (firing alerts), and a prober in a spawned process that GETs `/` (the overview page)
   every 20 ms. Once with no receiver, once with two dead ones: one that accepts and never
   answers (timeout 10 s), one whose port refuses; the route repeats every 0.2 s so messages keep
   coming and the bounded queues overflow. Reported: p50/p99 of `/` and the p99 ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import socket
import statistics
import time
from multiprocessing.connection import Connection
from typing import Any

import msgspec
from _procs import HOST, http_get, latency_prober  # also puts this checkout's hub first on sys.path

from hub.core.alert_settings import parse_alerts
from hub.core.alerts import AlertBook
from hub.core.ingested import Ingested
from hub.core.messages import Event, Heartbeat, Hello, Metric, Status
from hub.core.routes import Dispatcher
from hub.core.rules import RuleEngine
from hub.core.state import HubState
from hub.settings import Settings
from hub.web.server import HubServer, bind

EVERY = 0.02
WINDOW = 4.0
USER_RULES = {
    "drawdown": {"metric": "pnl.drawdown", "threshold": 0.2, "engine": "e*", "mode": "live"},
    "signal_rate": {"metric": "signals", "aggregate": "rate", "threshold": 50, "window": "1m"},
    "slow": {"metric": "latency", "aggregate": "p95", "threshold": 1.0, "for": "1m"},
}


def percentiles(values: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    ordered = sorted(values)
    return statistics.median(ordered) * 1e3, ordered[int(len(ordered) * 0.99)] * 1e3


def _event(seq: int, status: str) -> Event:
    payload = msgspec.Raw(msgspec.json.encode({"order_id": str(seq), "status": status}))
    return Event(seq=seq, type="order_event", payload=payload)


def build(engines: int, now: float) -> tuple[HubState, list[Any], dict[str, int]]:
    """A hub state with `engines` live engines that all reported once."""
    state = HubState(Settings(max_engines=engines))
    records, seqs = [], {}
    for i in range(engines):
        name = f"e{i:03d}"
        record, _ = state.hello(Hello(engine=name, boot_id="b", mode="live"), i, now, Ingested())
        hb = Heartbeat(
            seq=1,
            status=Status.RUNNING,
            loop_tick=1,
            universe_size=100,
            interval=1.0,
            state={"trading_hours_active": True},
            ts=now,
        )
        items: list[Any] = [
            hb,
            Metric(seq=2, op="set", name="pnl.drawdown", value=0.1),
            Metric(seq=3, op="inc", name="signals", value=1),
            Metric(seq=4, op="observe", name="latency", value=0.2),
            _event(5, "fill"),
        ]
        state.ingest(record, items, now)
        records.append(record)
        seqs[name] = 5
    return state, records, seqs


def evaluation(engines: int, ticks: int) -> None:
    """Part 1: cost per tick of the rules against the health refresh the hub already runs."""
    now = time.time()
    state, records, seqs = build(engines, now)
    settings = parse_alerts({"rules": USER_RULES})
    rules, dispatcher = RuleEngine(settings), Dispatcher(settings)
    book = AlertBook(settings.resolve_after, settings.max_alerts, settings.recent_resolved)
    base, alerts = [], []
    busy = max(1, engines // 8)
    for tick in range(ticks):
        now += 0.1
        for j in range(busy):
            record = records[(tick * busy + j) % engines]
            seq = seqs[record.name] = seqs[record.name] + 2
            hb = Heartbeat(seq=seq - 1, loop_tick=tick + 2, ts=now)
            state.ingest(record, [hb, _event(seq, "reject" if j % 3 else "fill")], now)
        start = time.perf_counter()
        state.refresh(now)
        middle = time.perf_counter()
        changed = book.update(rules.evaluate(state, None, now), now)
        dispatcher.plan(book.firing(), changed, lambda a: False, now)
        end = time.perf_counter()
        base.append(middle - start)
        alerts.append(end - middle)
    b, a = statistics.mean(base) * 1e3, statistics.mean(alerts) * 1e3
    a99 = sorted(alerts)[int(len(alerts) * 0.99)] * 1e3
    print(
        f"rules for {engines} engines: {a:.3f} ms per tick (p99 {a99:.3f} ms; target <= 2 ms) | "
        f"baseline health refresh {b:.3f} ms | ratio {a / b:.1f}x | {len(book.active)} active"
    )


def _prober(control: Connection, port: int) -> None:
    """On "start", GET / every 20 ms until the next message; send back the latencies."""
    latency_prober(control, port, "/", EVERY)


async def _hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # accepts, reads, never answers
    writer.close()


async def dashboard(engines: int, dead: bool) -> list[float]:
    """Part 2: `/` latencies for WINDOW seconds on a hub with (or without) dead receivers."""
    hang = await asyncio.start_server(_hang, HOST, 0)
    refused = socket.socket()  # bound, never listening: connections are refused
    refused.bind((HOST, 0))
    table: dict[str, Any] = {"rules": {"clock_skew": {"enabled": False}}}
    if dead:
        table["receivers"] = [
            {
                "name": "hang",
                "url": f"http://{HOST}:{hang.sockets[0].getsockname()[1]}/",
                "timeout": "10s",
            },
            {
                "name": "refused",
                "url": f"http://{HOST}:{refused.getsockname()[1]}/",
                "backoff": "10ms",
            },
        ]
        table["routes"] = [
            {"receiver": "hang", "repeat_interval": "0.2s", "continue": True},
            {"receiver": "refused", "repeat_interval": "0.2s"},
        ]
    settings = Settings(db=":memory:", port=0, log_level="error", max_engines=engines)
    server = HubServer(settings.replace(alerts=parse_alerts(table)))
    sock = bind(HOST, 0)
    port = sock.getsockname()[1]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await asyncio.to_thread(http_get, port, "/healthz")
    hub = server.hub
    assert hub is not None
    now = time.time()
    for i in range(engines):
        record = hub.state.add_engine(f"e{i:03d}", now)
        record.mode, record.connected, record.connected_at = "live", True, now
        record.last_heartbeat, record.heartbeat_interval = now, 3600.0
        record.status = Status.ERROR if i % 8 == 0 else Status.RUNNING
    ctx = mp.get_context("spawn")
    control, child = ctx.Pipe()
    prober = ctx.Process(target=_prober, args=(child, port), daemon=True)
    prober.start()
    await asyncio.to_thread(http_get, port, "/")
    control.send("start")
    await asyncio.sleep(WINDOW)
    control.send("stop")
    latencies: list[float] = await asyncio.to_thread(control.recv)
    control.send(None)
    prober.join()
    if dead:
        status = {n.receiver.name: n.status() for n in hub.alerting.notifiers.values()}
        print(
            "  receivers:",
            {k: {x: v[x] for x in ("sent", "failed", "dropped")} for k, v in status.items()},
        )
    await server.stop()
    await task
    sock.close()
    refused.close()
    hang.close()
    return latencies


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--engines", type=int, default=256)
    parser.add_argument("--ticks", type=int, default=600)
    args = parser.parse_args()
    evaluation(args.engines, args.ticks)
    quiet = await dashboard(args.engines, dead=False)
    dead = await dashboard(args.engines, dead=True)
    q50, q99 = percentiles(quiet)
    d50, d99 = percentiles(dead)
    print(
        f"GET / with {args.engines} engines: no receiver p50 {q50:.2f} p99 {q99:.2f} ms | "
        f"two dead receivers p50 {d50:.2f} p99 {d99:.2f} ms | p99 ratio {d99 / q99:.2f}x"
    )


if __name__ == "__main__":
    asyncio.run(main())
