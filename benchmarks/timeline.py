"""Timeline query speed: one hour of 20 engines' markers from a database of 1 M events.

Run from the repository root: `.venv/bin/python benchmarks/timeline.py` (the first run builds
the database, about a minute, cached under /tmp; `--rebuild` makes it again), `--quick` (100 k
events, a smoke test). See docs/benchmarks.md.

The database is in the store's own format, built through its code (`connect`, `chunk_row`,
`INSERT_CHUNK`): 24 hours of events of 20 engines (half cycles, a quarter indicators, the rest
signals, decisions, orders and errors), chunked as the writer chunks them (per engine, type and
commit; 5 s of events per chunk here, which at this rate is one or two events per chunk: the
worst case for reads), plus boots, health transitions, gaps and alert audit rows.

What is timed (median of `--repeat` runs, each on the same warm connection):
- timeline: `read_timeline` of the last hour, all 20 engines, 501 markers (what `/timeline`
  asks for), and of an hour in the middle of the day;
- baseline: `read_events` of the same last hour, 501 events of any type (what
  `/api/telemetry/events?range=1h&limit=500` asks the store for), measured in the same run.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hub.core.records import EventRecord  # noqa: E402
from hub.stores.base import HistoryQuery, TimelineQuery  # noqa: E402
from hub.stores.chunks import INSERT_CHUNK, chunk_row, insert_many  # noqa: E402
from hub.stores.schema import connect, read_events  # noqa: E402
from hub.stores.timelines import read_timeline  # noqa: E402

T0 = 1_764_000_000.0  # the database's day starts here (fixed: the cache stays valid)
DAY = 86_400.0
TYPES = [
    ("cycle", 0.50),
    ("indicator_event", 0.25),
    ("signal_event", 0.10),
    ("decision_trace", 0.05),
    ("order_event", 0.08),
    ("error", 0.02),
]
CHUNK_SECONDS = 5.0


def build(path: Path, events: int, engines: int) -> None:
    """Write the database (events in id order, as the hub assigns ids)."""
    path.unlink(missing_ok=True)
    conn = connect(str(path))
    rng = random.Random(18)
    names = [f"engine-{i:02d}" for i in range(engines)]
    kinds = [k for k, _ in TYPES]
    weights = [w for _, w in TYPES]
    times = sorted(T0 + rng.random() * DAY for _ in range(events))
    streams: dict[tuple[str, str, int], list[EventRecord]] = defaultdict(list)
    seqs: dict[str, int] = defaultdict(int)
    for ident, ts in enumerate(times, 1):
        engine, kind = rng.choice(names), rng.choices(kinds, weights)[0]
        seqs[engine] += 1
        payload = {"symbol": f"SYM{ident % 300}", "n": ident}
        if kind == "order_event":
            payload["status"] = rng.choice(["create", "fill", "reject"])
        raw = msgspec.Raw(msgspec.json.encode(payload))
        record = EventRecord(ident, kind, ts, engine, seqs[engine], "boot", raw, ts + 0.001)
        streams[(engine, kind, int((ts - T0) // CHUNK_SECONDS))].append(record)
    rows = [chunk_row(part) for part in streams.values()]
    rows.sort(key=lambda row: row[0])
    conn.execute("BEGIN")
    insert_many(conn, INSERT_CHUNK, rows)
    for engine in names:
        for boot in range(3):
            started = T0 + boot * DAY / 3
            conn.execute(
                "INSERT INTO boots (engine, boot_id, pid, mode, started, ended, how, last_seq) "
                "VALUES (?, ?, 1, 'paper', ?, ?, 'disconnected', 0)",
                (engine, f"boot-{boot}", started, started + DAY / 3 - 5),
            )
        for _ in range(100):
            at = T0 + rng.random() * DAY
            conn.execute(
                "INSERT INTO transitions (engine, at, health, previous) VALUES (?, ?, ?, ?)",
                (engine, at, "stale", "ok"),
            )
        for n in range(20):
            conn.execute(
                "INSERT INTO gaps VALUES (?, 'boot', ?, ?, 'client_dropped', ?)",
                (engine, n * 10, n * 10 + 3, T0 + rng.random() * DAY),
            )
        for _ in range(50):
            conn.execute(
                "INSERT INTO audit (ts, actor, action, detail, engine) VALUES (?, 'hub', ?, ?, ?)",
                (T0 + rng.random() * DAY, "alert.firing", "offline: gone", engine),
            )
    conn.execute("COMMIT")
    conn.close()


def timed(fn: object, repeat: int) -> tuple[float, int]:
    """Median milliseconds of `repeat` calls, and the result's length."""
    samples, size = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        size = len(fn())  # type: ignore[operator]
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--engines", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--quick", action="store_true", help="100 k events, 5 runs")
    parser.add_argument("--rebuild", action="store_true", help="build the cached database again")
    args = parser.parse_args()
    if args.quick:
        args.events, args.repeat = 100_000, 5
    path = Path(f"/tmp/engine-hub-bench-timeline-{args.events}-{args.engines}-v1.db")
    if args.rebuild or not path.exists():
        started = time.perf_counter()
        build(path, args.events, args.engines)
        print(f"built {path} in {time.perf_counter() - started:.1f} s")
    conn = connect(str(path))
    [(chunks, events)] = conn.execute("SELECT count(*), sum(n) FROM event_chunks")
    print(f"database: {events} events in {chunks} chunks, {args.engines} engines, 24 h")
    names = tuple(f"engine-{i:02d}" for i in range(args.engines))
    end = T0 + DAY
    last = TimelineQuery(end - 3600, end, 501, names)
    middle = TimelineQuery(T0 + DAY / 2, T0 + DAY / 2 + 3600, 501, names)
    baseline = HistoryQuery(501, since=end - 3600, until=end)
    base_ms, base_n = timed(lambda: read_events(conn, baseline), args.repeat)
    last_ms, last_n = timed(lambda: read_timeline(conn, last), args.repeat)
    mid_ms, mid_n = timed(lambda: read_timeline(conn, middle), args.repeat)
    print(f"baseline  read_events, last hour, 501 events: {base_ms:8.2f} ms ({base_n} rows)")
    print(f"timeline  last hour, 20 engines, 501 markers: {last_ms:8.2f} ms ({last_n} markers)")
    print(f"timeline  middle hour, same:                  {mid_ms:8.2f} ms ({mid_n} markers)")
    print(
        f"ratio timeline/baseline: last hour {last_ms / base_ms:.2f}, middle {mid_ms / base_ms:.2f}"
    )
    print(f"target < 100 ms: {'met' if max(last_ms, mid_ms) < 100 else 'NOT met'}")
    conn.close()


if __name__ == "__main__":
    main()
