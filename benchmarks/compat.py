"""The compatibility faces against the client calls they wrap, and the bridge's forwarding delay.

    python benchmarks/compat.py [--calls 2000] [--rounds 15] [--files 20]

Part 1: each `hub.compat` call and the `EngineClient` call it wraps are timed in alternating
rounds of `--calls` calls each on one client connected to a real hub (a child process), the
garbage collector off while timing; the figure is the ratio of the two fastest rounds (the
machine's other load only ever adds time), measured in the same run (target: <= 2.0x). The
ratio of the medians is printed beside it.
Part 2: `engine-hub bridge`'s loop (default 0.2 s poll) watches a temporary directory; a signal
file is written atomically and the time until the hub's SSE stream carries it is measured
(target: < 1 s). Not a timed test.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
from _procs import serve_on_port_0, spawn_server, stop_process  # noqa: E402

from hub.bridge import Bridge  # noqa: E402
from hub.client import EngineClient  # noqa: E402
from hub.compat import EngineTelemetryReporter, TelemetryBus, TelemetryCollector  # noqa: E402

RATIO_TARGET = 2.0
LATENCY_TARGET = 1.0


def _hub_child(port_out: Connection) -> None:
    from hub.settings import Settings
    from hub.web.server import HubServer

    # No per-engine rate limit: the benchmark sends far above it on purpose.
    settings = Settings(
        host="127.0.0.1",
        port=0,
        log_level="warning",
        db=":memory:",
        engine_messages_per_second=0,
        engine_bytes_per_second=0,
    )
    serve_on_port_0(HubServer(settings), port_out)


def _timed(call: Callable[[], None], calls: int) -> float:
    """Seconds per call over `calls` calls."""
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(calls):
            call()
        return (time.perf_counter() - start) / calls
    finally:
        gc.enable()


def _pairs(
    collector: TelemetryCollector, reporter: EngineTelemetryReporter, bus: TelemetryBus
) -> list[tuple[str, Callable[[], None], Callable[[], None]]]:
    """(name, compatibility call, the client call it wraps with the same data)."""
    client, rclient = collector.client, reporter.client
    signal = {
        "strategy": "mean_reversion",
        "symbol": "EURUSD",
        "signal_type": "long",
        "entry_price": 1.085,
    }
    order = {"order_id": "A1", "symbol": "EURUSD", "status": "fill", "price": 1.085}
    return [
        (
            "increment",
            lambda: collector.increment("signals.long", strategy="mean_reversion"),
            lambda: client.increment("signals.long", 1, strategy="mean_reversion"),
        ),
        (
            "set_gauge",
            lambda: collector.set_gauge("strategies.active", 2),
            lambda: client.set_gauge("strategies.active", 2),
        ),
        (
            "record_timing",
            lambda: collector.record_timing("cycle.duration", 12.3),
            lambda: client.record_timing("cycle.duration", 12.3),
        ),
        (
            "record_event",
            lambda: collector.record_event("cycle_start", {"n": 1}),
            lambda: client.publish("cycle_start", {"n": 1}),
        ),
        (
            "record_signal",
            lambda: collector.record_signal(signal),
            lambda: client.record_signal(
                "EURUSD",
                "long",
                price=1.085,
                strategy="mean_reversion",
                signal_type="long",
                entry_price=1.085,
            ),
        ),
        (
            "record_cycle",
            lambda: collector.record_cycle({"duration": 12.3}),
            lambda: client.record_cycle(12.3),
        ),
        (
            "record_error",
            lambda: collector.record_error("api", "timeout", {"retry": 3}),
            lambda: client.record_error("api", "timeout", {"retry": 3}),
        ),
        (
            "set_next_cycle_time",
            lambda: collector.set_next_cycle_time(1767796815.0),
            lambda: client.set_next_cycle_time(1767796815.0),
        ),
        (
            "set_trading_hours_active",
            lambda: collector.set_trading_hours_active(True, "06-19"),
            lambda: client.set_trading_hours_active(True, "06-19"),
        ),
        (
            "reporter.heartbeat",
            lambda: reporter.heartbeat(loop_tick=100, open_positions=2),
            lambda: rclient.heartbeat(loop_tick=100, open_positions=2),
        ),
        (
            "bus.publish",
            lambda: bus.publish("order_event", order),
            lambda: client.publish("order_event", order),
        ),
        (
            "bus.publish_order_event",
            lambda: bus.publish_order_event(order),
            lambda: client.publish("order_event", order),
        ),
    ]


def calls_part(url: str, calls: int, rounds: int) -> bool:
    client = EngineClient(url, engine="bench-compat", max_buffer=100_000).start()
    collector = TelemetryCollector(client)
    bus = TelemetryBus(client)
    reporter = EngineTelemetryReporter("bench-reporter", "paper", url=url)
    ok = True
    print(f"per-call cost, {calls} calls x {rounds} alternating rounds, fastest round (µs):")
    print(f"  {'call':26} {'compat':>8} {'client':>8} {'ratio':>6} {'medians':>8}")
    for name, compat, raw in _pairs(collector, reporter, bus):
        compat_times, raw_times = [], []
        for i in range(rounds):
            # Each round starts drained (the sender thread idle, nothing dropped), in A-B then
            # B-A order, so neither side always runs while the other's records are being sent.
            for times, call in ((compat_times, compat), (raw_times, raw))[:: 1 if i % 2 else -1]:
                client.flush(10)
                reporter.client.flush(10)
                times.append(_timed(call, calls))
        a, b = min(compat_times), min(raw_times)
        ratio = a / b
        medians = statistics.median(compat_times) / statistics.median(raw_times)
        ok &= ratio <= RATIO_TARGET
        flag = "" if ratio <= RATIO_TARGET else f"  > {RATIO_TARGET}x"
        print(f"  {name:26} {a * 1e6:8.2f} {b * 1e6:8.2f} {ratio:5.2f}x {medians:7.2f}x{flag}")
    reporter.mark_stopped()
    client.close()
    return ok


def bridge_part(port: int, files: int) -> bool:
    url = f"ws://127.0.0.1:{port}"
    delays: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "signals").mkdir()
        bridge = Bridge(root, url=url, engine="bench-bridge")
        stop = threading.Event()
        thread = threading.Thread(target=bridge.run, args=(stop,), daemon=True)
        thread.start()
        params = {"engine": "bench-bridge", "event_type": "signal_event"}
        with httpx.stream(
            "GET", f"http://127.0.0.1:{port}/api/telemetry/stream", params=params, timeout=30
        ) as response:
            lines = response.iter_lines()
            for line in lines:
                if line.startswith(": connected"):
                    break
            for n in range(files):
                name = f"signal_20260107_1435{n % 60:02d}_{n:03d}.json"
                body = {
                    "timestamp": "2026-01-07T14:35:20+00:00",
                    "signal_type": "long",
                    "symbol": f"S{n}",
                    "price": 1.085,
                    "strategy": "mean_reversion",
                }
                tmp_path = root / "signals" / (name + ".tmp")
                start = time.perf_counter()
                tmp_path.write_text(json.dumps(body))
                os.replace(tmp_path, root / "signals" / name)
                for line in lines:
                    if line.startswith("data:") and f'"S{n}"' in line:
                        delays.append(time.perf_counter() - start)
                        break
        stop.set()
        thread.join(10)
    worst = max(delays)
    print(
        f"bridge: new signal file -> hub stream, {files} files, poll 0.2 s: "
        f"median {statistics.median(delays) * 1000:.0f} ms, max {worst * 1000:.0f} ms "
        f"(target < {LATENCY_TARGET * 1000:.0f} ms)"
    )
    return worst < LATENCY_TARGET


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--files", type=int, default=20)
    args = parser.parse_args()
    process, port = spawn_server(_hub_child, (), "bench-compat-hub")
    try:
        ok = calls_part(f"ws://127.0.0.1:{port}", args.calls, args.rounds)
        ok &= bridge_part(port, args.files)
    finally:
        stop_process(process)
    print("all targets met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
