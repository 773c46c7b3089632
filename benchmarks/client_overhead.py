"""Per-call overhead of the engine client, against prometheus_client, with the hub up and down.

    python benchmarks/client_overhead.py [--calls 200000] [--events 50000]

Each call is timed on its own with `time.perf_counter_ns` (figures include that clock read and a
lambda call; the "empty call" line shows how much). The hub runs in a child process on 127.0.0.1
so the engine process's CPU figures are the client's alone, as in production. Not a timed test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import platform
import socket
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import CollectorRegistry, Counter  # noqa: E402

from hub.client import EngineClient  # noqa: E402

TARGETS = {"increment": 1.0, "publish": 2.0}  # median, µs
P99_TARGET = 5.0


def _hub_process(conn: Connection) -> None:
    """Child process: serve the real hub if it exists, else a minimal stand-in; report the port."""
    try:
        from hub.web.app import create_app
    except ImportError:
        asyncio.run(_stand_in(conn))
        return
    import uvicorn

    from hub.settings import Settings

    async def serve() -> None:
        config = uvicorn.Config(
            create_app(Settings()), host="127.0.0.1", port=0, log_level="warning"
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        conn.send(("the real hub (hub.app.create_app, uvicorn)", port))
        await task

    asyncio.run(serve())


async def _stand_in(conn: Connection) -> None:
    """A minimal hub: answers hello with welcome and acks every frame."""
    from websockets.asyncio.server import ServerConnection, serve

    async def handler(ws: ServerConnection) -> None:
        hello = json.loads(await ws.recv())
        welcome = {"kind": "welcome", "hub": "stand-in", "engine": hello["engine"]}
        welcome.update(boot_id=hello["boot_id"], last_seq=0, ack_interval=0.1)
        welcome.update(max_message_bytes=256 * 1024, max_frame_bytes=1024 * 1024)
        await ws.send(json.dumps(welcome))
        async for frame in ws:
            await ws.send(json.dumps({"kind": "ack", "seq": json.loads(frame)[-1]["seq"]}))

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        conn.send(("a minimal websockets stand-in (hub.app.create_app not found)", port))
        await asyncio.Future()


def measure(call: Callable[[], object], calls: int) -> tuple[float, float]:
    """(median, p99) in µs of `call`, each call timed on its own."""
    clock = time.perf_counter_ns
    for _ in range(min(calls, 10_000)):
        call()
    samples = [0] * calls
    for i in range(calls):
        start = clock()
        call()
        samples[i] = clock() - start
    samples.sort()
    return samples[calls // 2] / 1000, samples[int(calls * 0.99)] / 1000


def verdict(ok: bool) -> str:
    """How a figure compares with its target."""
    return "ok" if ok else "MISSED"


def run_scenario(title: str, url: str, calls: int, events: int) -> None:
    """Measure every call against one hub URL (reachable or not)."""
    print(f"\n== {title} ==")
    registry = CollectorRegistry()
    prom = Counter("bench_orders", "orders", ["strategy"], registry=registry)
    client = EngineClient(url, engine="bench", mode="paper", close_on_exit=False).start()
    if "up" in title and not client.flush(10.0):
        print("warning: the client did not get acks from the hub within 10 s")
    logger = logging.getLogger("bench.engine")
    handler = client.log_handler(logging.INFO)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    null_logger = logging.getLogger("bench.null")
    null_logger.handlers[:] = [logging.NullHandler()]
    null_logger.propagate = False
    null_logger.setLevel(logging.INFO)
    payload = {"symbol": "NIFTY", "side": "long", "price": 101.5}
    record = logging.LogRecord("bench.engine", logging.INFO, __file__, 1, "fill %s", ("o-1",), None)
    inc, gauge, observe, publish = (
        client.increment,
        client.set_gauge,
        client.observe,
        client.publish,
    )
    rows = [
        ("empty call (clock + lambda)", lambda: None, None),
        ("prometheus labels().inc()", lambda: prom.labels(strategy="mr").inc(), None),
        ("increment(name, **tags)", lambda: inc("orders", strategy="mr"), "increment"),
        ("set_gauge(name, v, **tags)", lambda: gauge("pnl", 12.5, book="a"), None),
        ("observe(name, v, **tags)", lambda: observe("latency", 0.002, venue="nse"), None),
        ("publish(type, payload)", lambda: publish("signal_event", payload), "publish"),
        ("stdlib logger.info, NullHandler", lambda: null_logger.info("fill %s", "o-1"), None),
        ("logger.info via log_handler", lambda: logger.info("fill %s", "o-1"), None),
        ("log_handler.handle(record) alone", lambda: handler.handle(record), None),
        (
            "client.log(level, message, **extra)",
            lambda: client.log("INFO", "fill o-1", order="o-1"),
            None,
        ),
    ]
    print(f"{'call':34} {'median µs':>10} {'p99 µs':>8}  target")
    results: dict[str, tuple[float, float]] = {}
    for label, call, target_key in rows:
        median, p99 = measure(call, calls)
        results[label] = (median, p99)
        target = ""
        if target_key is not None:
            limit = TARGETS[target_key]
            ok = median <= limit and p99 <= P99_TARGET
            target = f"median ≤ {limit:g}, p99 ≤ {P99_TARGET:g}: {verdict(ok)}"
        elif label.startswith(("set_gauge", "observe", "log", "client.log")):
            target = f"p99 ≤ {P99_TARGET:g}: {verdict(p99 <= P99_TARGET)}"
        print(f"{label:34} {median:10.3f} {p99:8.3f}  {target}")
    ratio = results["increment(name, **tags)"][0] / results["prometheus labels().inc()"][0]
    print(
        f"ratio increment/prometheus (medians): {ratio:.2f}  (target ≤ 1.0: {verdict(ratio <= 1)})"
    )
    stdlib = results["stdlib logger.info, NullHandler"]
    ours = results["logger.info via log_handler"]
    print(
        f"log_handler adds {ours[0] - stdlib[0]:.2f} µs to the stdlib's own {stdlib[0]:.2f} µs "
        "median per logging call (the stdlib part is LogRecord creation and findCaller)"
    )
    stats = client.stats
    print(f"client: state={stats.state.value} sent={stats.sent_messages} dropped={stats.dropped}")
    client.close(timeout=2.0 if "up" in title else 0.2)
    cpu_per_event(url, events, hub_up="up" in title)


def cpu_per_event(url: str, events: int, hub_up: bool) -> None:
    """Engine-process CPU per published event, including the background sender's work."""
    client = EngineClient(
        url, engine="bench-cpu", max_buffer=max(events * 2, 10_000), close_on_exit=False
    ).start()
    if hub_up:
        client.flush(10.0)
    payload = {"symbol": "NIFTY", "side": "long", "price": 101.5, "reason": "z-score 2.1"}
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    for _ in range(events):
        client.publish("signal_event", payload)
    if hub_up:
        delivered = client.flush(60.0)
    else:
        while client.stats.intake:
            time.sleep(0.005)
        delivered = False
    cpu, wall = time.process_time() - start_cpu, time.perf_counter() - start_wall
    how = "publish + encode + send + acks" if hub_up else "publish + encode into the buffer"
    print(
        f"CPU per event ({how}): {cpu / events * 1e6:.2f} µs over {events} events "
        f"(wall {wall:.2f} s, acked={delivered}, dropped={client.stats.dropped})"
    )
    client.close(timeout=2.0 if hub_up else 0.2)


def free_port() -> int:
    """A 127.0.0.1 port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    """Run both scenarios; the hub child process is always stopped."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000, help="timed calls per operation")
    parser.add_argument("--events", type=int, default=50_000, help="events for the CPU figure")
    args = parser.parse_args()
    print(f"Python {platform.python_version()} on {platform.machine()}, {platform.system()}")
    logging.basicConfig(level=logging.WARNING)
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=_hub_process, args=(child,), daemon=True
    )
    process.start()
    try:
        if not parent.poll(30):
            raise SystemExit("the hub did not start within 30 s")
        what, port = parent.recv()
        run_scenario(
            f"hub up: {what} on 127.0.0.1:{port}", f"ws://127.0.0.1:{port}", args.calls, args.events
        )
    finally:
        process.terminate()
        process.join(10)
        if process.is_alive():
            process.kill()
    down = free_port()
    run_scenario(
        f"hub down: nothing listening on 127.0.0.1:{down}",
        f"ws://127.0.0.1:{down}",
        args.calls,
        args.events,
    )


if __name__ == "__main__":
    main()
