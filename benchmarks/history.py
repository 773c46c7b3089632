"""History reads over a big database: a 24 h chart query of one metric series.

Run from the repository root: `.venv/bin/python benchmarks/history.py` (builds the database the
first time, about a minute; later runs reuse it), `--rebuild` to build it again, `--events N
--logs N` to add events and log lines (for the search and timeline benchmarks: 1 000 000 each is
the issue's database), `--quick` for a smoke test. See docs/benchmarks.md.

The database is the store's own format, made with the store's own code where it has one: the
schema by `hub.stores.schema.connect`, series buckets by the writer's upsert
(`hub.stores.series_sql.UPSERT`), events by `hub.stores.chunks` (deflated chunks, as the writer
makes them), log lines by the writer's columns. Series: `--engines` engines (20) with 4 counters,
3 gauges and 3 histograms each, one bucket every 10 s for a day (fine) and every 5 min (coarse),
as the downsampler leaves them after a day of one value a second.

What is measured: `read_series` (what `GET /api/telemetry/series` runs) for 24 h of one series
at the API's default step for 24 h (5 min: the coarse tier) and at 1 min (the fine tier, 8640
buckets merged into 1440 points; a histogram, the costliest), median of `--repeats`. Baseline in
the same run: reading the same rows by the same primary-key range without decoding them, the
floor any query of that range pays. Prints figure, baseline, ratio, target (< 50 ms), ok/MISS.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hub.core.metrics import MetricKind  # noqa: E402
from hub.core.records import EventRecord  # noqa: E402
from hub.core.series import Tier  # noqa: E402
from hub.core.sketches import Sketch, pack_bins  # noqa: E402
from hub.settings import Settings  # noqa: E402
from hub.stores.base import SeriesQuery  # noqa: E402
from hub.stores.chunks import INSERT_CHUNK, chunks, insert_many  # noqa: E402
from hub.stores.lines import QUANTILES  # noqa: E402
from hub.stores.schema import connect  # noqa: E402
from hub.stores.series_sql import UPSERT, read_series  # noqa: E402

DAY = 86_400
TARGET = 0.050  # seconds, a 24 h chart query (issue #18)
KINDS = [MetricKind.COUNTER] * 4 + [MetricKind.GAUGE] * 3 + [MetricKind.HISTOGRAM] * 3
_encode = msgspec.json.Encoder().encode


def _sketches(
    rng: random.Random, count: int, per_bucket: int
) -> list[tuple[bytes | None, float | None, float | None, float | None]]:
    """A few bucket sketches of cycle-time-like observations and their p50/p95/p99, reused."""
    out: list[tuple[bytes | None, float | None, float | None, float | None]] = []
    for _ in range(count):
        sketch = Sketch()
        for _ in range(per_bucket):
            sketch.observe(rng.lognormvariate(-4, 0.8))
        p50, p95, p99 = sketch.quantiles(QUANTILES)
        out.append((pack_bins(sketch), p50, p95, p99))
    return out


def build_series(conn: sqlite3.Connection, engines: int, now: float, rng: random.Random) -> None:
    """A day of fine and coarse buckets for every series of every engine."""
    settings = Settings()
    fine, coarse = settings.series_fine_step, settings.series_coarse_step
    start = now - now % coarse - DAY
    nothing = (None, None, None, None)
    blobs = {int(Tier.FINE): _sketches(rng, 64, 10), int(Tier.COARSE): _sketches(rng, 16, 300)}
    for e in range(engines):
        conn.execute("BEGIN")
        for n, kind in enumerate(KINDS):
            conn.execute(
                "INSERT INTO series (engine, name, tags, kind) VALUES (?, ?, ?, ?)",
                (f"engine-{e:02d}", f"{kind.value}.{n}", '[["strategy","mean_reversion"]]', kind),
            )
            ident = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
            for tier, width in ((int(Tier.FINE), fine), (int(Tier.COARSE), coarse)):
                values = int(width)  # one value a second
                rows = []
                for i in range(int(DAY // width)):
                    t = start + i * width
                    sketch = rng.choice(blobs[tier]) if kind is MetricKind.HISTOGRAM else nothing
                    v = rng.uniform(0, 100)
                    rows.append((ident, tier, t, values, v * values, v - 5, v + 5, v, *sketch))
                conn.executemany(UPSERT, rows)
        conn.execute("COMMIT")


def build_events(conn: sqlite3.Connection, count: int, engines: int, now: float) -> None:
    """`count` events over the last day in the writer's deflated chunks."""
    types = ["signal_event", "order_event", "decision_trace", "cycle", "error"]
    per_commit = 50_000
    for first in range(1, count + 1, per_commit):
        frames = []
        for ident in range(first, min(count + 1, first + per_commit)):
            engine = f"engine-{ident % engines:02d}"
            kind = types[ident % len(types)]
            payload = _encode({"symbol": "NIFTY", "side": "BUY", "qty": ident % 50, "n": ident})
            ts = now - DAY + DAY * ident / count
            frames.append(
                [EventRecord(ident, kind, ts, engine, ident, "boot", msgspec.Raw(payload))]
            )
        conn.execute("BEGIN")
        insert_many(conn, INSERT_CHUNK, chunks(frames))
        conn.execute("COMMIT")


def build_logs(conn: sqlite3.Connection, count: int, engines: int, now: float) -> None:
    """`count` log lines over the last day, in the writer's columns."""
    words = "order filled rejected timeout signal long short retry margin feed stale".split()
    rng = random.Random(7)
    conn.execute("BEGIN")
    rows = []
    for ident in range(1, count + 1):
        text = " ".join(rng.choice(words) for _ in range(8)) + f" #{ident}"
        ts = now - DAY + DAY * ident / count
        level, levelno = ("ERROR", 40) if ident % 50 == 0 else ("INFO", 20)
        engine = f"engine-{ident % engines:02d}"
        rows.append(
            (ident, engine, "boot", ident, ts, level, levelno, "engine", text, None, "{}", ts)
        )
        if len(rows) >= 50_000:
            conn.executemany("INSERT INTO logs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            rows.clear()
    conn.executemany("INSERT INTO logs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.execute("COMMIT")


def build(path: Path, args: argparse.Namespace) -> float:
    """Make the database; returns the `now` its day ends at (kept in the file)."""
    path.unlink(missing_ok=True)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    now = float(int(time.time()))
    conn = connect(str(path))
    conn.execute("CREATE TABLE bench (now REAL)")
    conn.execute("INSERT INTO bench VALUES (?)", (now,))
    rng = random.Random(18)
    began = time.perf_counter()
    build_series(conn, args.engines, now, rng)
    build_events(conn, args.events, args.engines, now)
    build_logs(conn, args.logs, args.engines, now)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    print(f"built {path} in {time.perf_counter() - began:.1f} s")
    return now


def _fetch(conn: sqlite3.Connection, sql: str, args: tuple[float, ...]) -> list[Any]:
    return conn.execute(sql, args).fetchall()


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median seconds of `repeats` calls."""
    runs = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - began)
    return statistics.median(runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="/tmp/engine-hub-history-bench.db")
    parser.add_argument("--rebuild", action="store_true", help="build the database again")
    parser.add_argument("--engines", type=int, default=20)
    parser.add_argument("--events", type=int, default=0, help="events to add (default 0)")
    parser.add_argument("--logs", type=int, default=0, help="log lines to add (default 0)")
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--quick", action="store_true", help="2 engines, 5 repeats")
    args = parser.parse_args()
    if args.quick:
        args.engines, args.repeats, args.db = 2, 5, "/tmp/engine-hub-history-quick.db"
        args.rebuild = True
    path = Path(args.db)
    if args.rebuild or not path.exists():
        build(path, args)
    conn = connect(str(path))
    [(now,)] = conn.execute("SELECT now FROM bench")
    counts = {
        table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        for table in ("series", "series_points", "event_chunks", "logs")
    }
    print(
        f"database: {path} ({path.stat().st_size / 1e6:.0f} MB) "
        + ", ".join(f"{table} {n}" for table, n in counts.items())
    )
    settings = Settings()
    engine = f"engine-{args.engines // 2:02d}"
    print(f"{'query':<44} {'figure':>9} {'baseline':>9} {'ratio':>6} {'target':>7}")
    for label, name, step in (
        ("24 h gauge, default step 5 min (coarse)", "gauge.4", 300.0),
        ("24 h histogram, default step 5 min (coarse)", "histogram.7", 300.0),
        ("24 h gauge, step 1 min (fine)", "gauge.4", 60.0),
        ("24 h histogram, step 1 min (fine)", "histogram.7", 60.0),
    ):
        query = SeriesQuery(engine, name, now - DAY, now, step)
        used, [line, *_] = read_series(conn, query, settings, now)
        assert used == step and any(v is not None for _, v in line.points), (label, used)
        [(ident,)] = conn.execute(
            "SELECT id FROM series WHERE engine = ? AND name = ?", (engine, name)
        )
        tier = int(Tier.FINE if step < settings.series_coarse_step else Tier.COARSE)
        raw = (
            "SELECT start, n, total, low, high, last, sketch, p50, p95, p99 FROM series_points "
            "WHERE series = ? AND tier = ? AND start >= ? AND start < ? ORDER BY start"
        )
        args_raw = (ident, tier, now - DAY - step, now)
        figure = timed(partial(read_series, conn, query, settings, now), args.repeats)
        baseline = timed(partial(_fetch, conn, raw, args_raw), args.repeats)
        verdict = "ok" if figure < TARGET else "MISS"
        print(
            f"{label:<44} {figure * 1e3:7.1f}ms {baseline * 1e3:7.1f}ms {figure / baseline:6.1f} "
            f"{TARGET * 1e3:5.0f}ms {verdict}"
        )
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
