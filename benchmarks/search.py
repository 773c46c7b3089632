"""Full-text search over history: a database of 1 M log lines and 1 M events, typical queries.

Run: `.venv/bin/python benchmarks/search.py` (builds the database once, a few minutes, cached in
/tmp/engine-hub-search-bench.db; `--rebuild` makes it again, `--lines N` / `--events N` change the
size, `--repeat R` runs each query R times). Like the other benchmarks it reports and exits 0.

The database is written in the store's own format: log rows as the writer inserts them, event
chunks made by `hub.stores.chunks.chunks` (records of 20 engines, 4 types), then indexed by the
writer's own `index_pending` (its rate is reported: it is how fast an upgraded file is
backfilled). Each query goes through `hub.stores.search_index.search`, what
`GET /api/telemetry/search` runs, for one page of 50 hits; the figure is the median of R runs.
Baselines measured in the same run: an indexed lookup of one log line by id, and `LIKE` over
10 k log lines (what a search without an index costs for 1 % of this database).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's hub first

from hub.core.hits import SearchRequest  # noqa: E402
from hub.core.logs import level_number  # noqa: E402
from hub.core.records import EventRecord  # noqa: E402
from hub.core.searches import parse_query  # noqa: E402
from hub.stores.chunks import INSERT_CHUNK, chunks, insert_many  # noqa: E402
from hub.stores.schema import connect  # noqa: E402
from hub.stores.search_index import index_pending, search  # noqa: E402

DB = "/tmp/engine-hub-search-bench.db"
TARGET = 0.200  # seconds per query (issue #18)
ENGINES = [f"eng{i:02d}" for i in range(20)]
LEVELS = ["DEBUG"] * 2 + ["INFO"] * 12 + ["WARNING"] * 4 + ["ERROR"] * 2
SYMBOLS = ["NIFTY", "BANKNIFTY", "RELIANCE", "INFY", "TCS", "HDFCBANK", "SBIN", "ITC"]
TEMPLATES = [
    "cycle {n} finished in {ms} ms, {k} signals",
    "order {oid} for {sym} placed at {px}",
    "order {oid} for {sym} rejected by broker: margin shortfall {px}",
    "order {oid} for {sym} filled {q} at {px}",
    "heartbeat sent, loop tick {n}",
    "websocket timeout talking to the broker after {ms} ms, retrying",
    "position {sym} qty {q} unrealised {px}",
    "indicator {sym} rsi {k} macd {px}",
    "universe scan found {k} candidates",
    "risk check passed for {sym} exposure {px}",
]
TYPES = ["order_event", "signal_event", "cycle", "indicator_event"]
QUERIES = [
    ("word", "rejected", {}),
    ("rare word", "zzrare", {}),
    ("phrase", '"rejected by broker"', {}),
    ("prefix", "reje*", {}),
    ("OR and exclusion", "timeout OR shortfall -heartbeat", {}),
    ("engine+level+1h", "order", {"engine": "eng07", "min_level": 30, "window": 3600.0}),
    ("events: symbol+type", "BANKNIFTY", {"event_type": "order_event"}),
    ("events: phrase in payload", '"margin shortfall"', {"event_type": "order_event"}),
]


def line_text(rng: random.Random, n: int) -> str:
    text = rng.choice(TEMPLATES).format(
        n=n,
        ms=rng.randint(1, 900),
        k=rng.randint(0, 40),
        oid=f"o{rng.randint(1, 10**7)}",
        sym=rng.choice(SYMBOLS),
        px=f"{rng.uniform(10, 50_000):.2f}",
        q=rng.randint(1, 500),
    )
    return text + (" zzrare" if n % 100_000 == 7 else "")


def build(path: str, lines: int, events: int) -> None:
    """Write the database in the store's format, then index it as the writer does."""
    for suffix in ("", "-wal", "-shm"):
        Path(path + suffix).unlink(missing_ok=True)
    rng = random.Random(18)
    now = time.time()
    start = now - 86_400
    conn = connect(path)
    t0 = time.perf_counter()
    step = 100_000
    for base in range(0, lines, step):
        rows = []
        for i in range(base + 1, min(base + step, lines) + 1):
            level = rng.choice(LEVELS)
            engine = ENGINES[i % len(ENGINES)]
            ts = start + 86_400 * i / lines
            rows.append(
                (
                    i,
                    engine,
                    "boot",
                    i,
                    ts,
                    level,
                    level_number(level),
                    f"engine.{engine}",
                    line_text(rng, i),
                    None,
                    b"{}",
                    ts,
                )
            )
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO logs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
    commit = 20_000  # events per commit of a busy writer: its chunks are this wide in ids
    for base in range(0, events, commit):
        frames = []
        for i in range(base + 1, min(base + commit, events) + 1):
            ts = start + 86_400 * i / events
            payload = {
                "symbol": rng.choice(SYMBOLS),
                "note": line_text(rng, i),
                "qty": rng.randint(1, 500),
            }
            raw = msgspec.Raw(msgspec.json.encode(payload))
            kind = TYPES[i % len(TYPES)]
            frames.append([EventRecord(i, kind, ts, ENGINES[(i // 4) % 20], i, "boot", raw, ts)])
        conn.execute("BEGIN")
        insert_many(conn, INSERT_CHUNK, chunks(frames))
        conn.execute("COMMIT")
    written = time.perf_counter() - t0
    t0 = time.perf_counter()
    index_pending(conn, lambda: False)
    indexed = time.perf_counter() - t0
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    print(
        f"built {lines:,} log lines + {events:,} events in {written:.1f} s; indexed in "
        f"{indexed:.1f} s ({(lines + events) / indexed:,.0f} records/s: the backfill rate)"
    )


def timed(fn: object, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=DB)
    parser.add_argument("--rebuild", action="store_true", help="make the database again")
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    if args.rebuild or not Path(args.db).exists():
        build(args.db, args.lines, args.events)
    conn = connect(args.db)
    [(lines,)] = conn.execute("SELECT count(*) FROM logs")
    [(events,)] = conn.execute("SELECT coalesce(sum(n), 0) FROM event_chunks")
    [(newest,)] = conn.execute("SELECT max(ts) FROM logs")
    size = Path(args.db).stat().st_size / 2**20
    print(f"database: {lines:,} log lines, {events:,} events, {size:,.0f} MiB ({args.db})")
    ids = list(range(1, lines + 1, max(1, lines // 1000)))
    lookup = (
        timed(
            lambda: [
                conn.execute("SELECT message FROM logs WHERE id = ?", (i,)).fetchone()
                for i in ids[:100]
            ],
            args.repeat,
        )
        / 100
    )
    like = timed(
        lambda: conn.execute(
            "SELECT count(*) FROM (SELECT message FROM logs WHERE id > ? ORDER BY id LIMIT 10000) "
            "WHERE message LIKE '%rejected%'",
            (lines // 2,),
        ).fetchone(),
        args.repeat,
    )
    print(f"baselines: id lookup {lookup * 1e3:.3f} ms, LIKE over 10k lines {like * 1e3:.2f} ms")
    print(
        f"{'query':28} {'hits':>5} {'median ms':>10} {'x lookup':>9} {'x LIKE10k':>9}  target < 200 ms"
    )
    for label, text, options in QUERIES:
        window = options.pop("window", None)
        since = newest - window if isinstance(window, float) else None
        request = SearchRequest(parse_query(text), 50, since=since, **options)  # type: ignore[arg-type]
        options["window"] = window
        hits = len(search(conn, request).hits)
        median = timed(lambda r=request: search(conn, r), args.repeat)
        verdict = "ok" if median < TARGET else "MISS"
        print(
            f"{label:28} {hits:5d} {median * 1e3:10.1f} {median / lookup:9.0f} "
            f"{median / like:9.2f}  {verdict}"
        )
    conn.close()


if __name__ == "__main__":
    main()
