"""Issue #18's history benchmark: one database, a 24 h chart, a search and an hour's timeline.

Run from the repository root: `.venv/bin/python benchmarks/history.py` (builds the database the
first time, a few minutes; later runs reuse it), `--rebuild` to build it again, `--events N
--logs N` for its size (1 000 000 each by default: the issue's database), `--quick` for a smoke
test (2 engines, 20 000 of each). See docs/benchmarks.md.

One database in the store's own format, made with the store's own code where it has one: the
schema by `hub.stores.schema.connect`; for `--engines` engines (20), a day of series (4
counters, 3 gauges and 3 histograms each, one bucket every 10 s (fine) and every 5 min (coarse),
as the downsampler leaves them after a day of one value a second) through the writer's upsert
(`hub.stores.series_sql.UPSERT`); a day of events chunked as the writer chunks them
(`hub.stores.chunks.chunk_row`: per engine, type and 5 s, one or two events a chunk at this
rate, the worst case for reads) with payloads and log lines of the search benchmark's text
(`benchmarks/search.py`); boots, health transitions, gaps and alert audit rows as the timeline
benchmark makes them; then the search index, by the writer's own `index_pending`.

What is measured, each the median of `--repeats`, with a baseline from the same run:
- chart: `read_series` (what `GET /api/telemetry/series` and the engine page's charts run) for
  24 h of one series at the charts' step for 24 h (5 min: the coarse tier) and at 1 min (the
  fine tier, 8640 buckets merged into 1440 points; a histogram, the costliest). Baseline: the
  same rows read by the same primary-key range without decoding them. Target < 50 ms.
- chart render: the 24 h histogram chart (288 points x p50/p95/p99) rendered to SVG
  (`hub.live.charts.render_chart` and `partials/_chart.html`). Baseline: its query.
- search: the search benchmark's queries (`benchmarks/search.py` `QUERIES`) through
  `hub.stores.search_index.search`, one page of 50 hits. Baseline: an indexed lookup of one log
  line by id (as there). Target < 200 ms.
- timeline: `read_timeline` of the last hour and of an hour mid-day, 20 engines, 501 markers.
  Baseline: `read_events` of the same last hour (as `benchmarks/timeline.py`). Target < 100 ms.
Prints figure, baseline, ratio, target and ok/MISS per line.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import search  # noqa: E402
from hub.core.hits import SearchRequest  # noqa: E402
from hub.core.logs import level_number  # noqa: E402
from hub.core.metrics import MetricKind  # noqa: E402
from hub.core.records import EventRecord  # noqa: E402
from hub.core.searches import parse_query  # noqa: E402
from hub.core.series import Tier  # noqa: E402
from hub.core.sketches import Sketch, pack_bins  # noqa: E402
from hub.live.charts import render_chart  # noqa: E402
from hub.live.templating import create_environment  # noqa: E402
from hub.settings import Settings  # noqa: E402
from hub.stores import search_index  # noqa: E402
from hub.stores.base import HistoryQuery, SeriesQuery, TimelineQuery  # noqa: E402
from hub.stores.chunks import INSERT_CHUNK, chunk_row, insert_many  # noqa: E402
from hub.stores.lines import QUANTILES  # noqa: E402
from hub.stores.schema import connect, read_events  # noqa: E402
from hub.stores.search_index import index_pending  # noqa: E402
from hub.stores.series_sql import UPSERT, read_series  # noqa: E402
from hub.stores.timelines import read_timeline  # noqa: E402

DAY = 86_400
CHART_TARGET = 0.050  # seconds, a 24 h chart query (issue #18)
TIMELINE_TARGET = 0.100  # seconds, an hour's timeline (issue #18)
CHUNK_SECONDS = 5.0  # events of one engine and type per chunk (benchmarks/timeline.py)
EVENT_TYPES = [  # and their shares, as benchmarks/timeline.py
    ("cycle", 0.50),
    ("indicator_event", 0.25),
    ("signal_event", 0.10),
    ("decision_trace", 0.05),
    ("order_event", 0.08),
    ("error", 0.02),
]
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


def build_series(
    conn: sqlite3.Connection, names: list[str], now: float, rng: random.Random
) -> None:
    """A day of fine and coarse buckets for every series of every engine."""
    settings = Settings()
    fine, coarse = settings.series_fine_step, settings.series_coarse_step
    start = now - now % coarse - DAY
    nothing = (None, None, None, None)
    blobs = {int(Tier.FINE): _sketches(rng, 64, 10), int(Tier.COARSE): _sketches(rng, 16, 300)}
    for engine in names:
        conn.execute("BEGIN")
        for n, kind in enumerate(KINDS):
            conn.execute(
                "INSERT INTO series (engine, name, tags, kind) VALUES (?, ?, ?, ?)",
                (engine, f"{kind.value}.{n}", '[["strategy","mean_reversion"]]', kind),
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


def build_events(
    conn: sqlite3.Connection, count: int, names: list[str], now: float, rng: random.Random
) -> None:
    """`count` events over the last day, chunked per engine, type and 5 s (`chunk_row`)."""
    kinds, weights = [k for k, _ in EVENT_TYPES], [w for _, w in EVENT_TYPES]
    start = now - DAY
    streams: dict[tuple[str, str, int], list[EventRecord]] = defaultdict(list)
    seqs: dict[str, int] = defaultdict(int)
    for ident in range(1, count + 1):
        ts = start + DAY * ident / (count + 1)
        engine, kind = rng.choice(names), rng.choices(kinds, weights)[0]
        seqs[engine] += 1
        payload: dict[str, Any] = {
            "symbol": rng.choice(search.SYMBOLS),
            "note": search.line_text(rng, ident),
            "qty": rng.randint(1, 500),
        }
        if kind == "order_event":
            payload["status"] = rng.choice(["create", "fill", "reject"])
        raw = msgspec.Raw(_encode(payload))
        record = EventRecord(ident, kind, ts, engine, seqs[engine], "boot", raw, ts + 0.001)
        streams[(engine, kind, int((ts - start) // CHUNK_SECONDS))].append(record)
    rows = sorted((chunk_row(part) for part in streams.values()), key=lambda row: row[0])
    for first in range(0, len(rows), 50_000):
        conn.execute("BEGIN")
        insert_many(conn, INSERT_CHUNK, rows[first : first + 50_000])
        conn.execute("COMMIT")


def build_logs(
    conn: sqlite3.Connection, count: int, names: list[str], now: float, rng: random.Random
) -> None:
    """`count` log lines over the last day, in the writer's columns, the search benchmark's text."""
    insert = "INSERT INTO logs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    rows = []
    for ident in range(1, count + 1):
        level = rng.choice(search.LEVELS)
        engine = names[ident % len(names)]
        ts = now - DAY + DAY * ident / (count + 1)
        text = search.line_text(rng, ident)
        rows.append(
            (ident, engine, "boot", ident, ts, level, level_number(level), f"engine.{engine}",
             text, None, b"{}", ts)
        )  # fmt: skip
        if len(rows) >= 100_000 or ident == count:
            conn.execute("BEGIN")
            conn.executemany(insert, rows)
            conn.execute("COMMIT")
            rows.clear()


def build_marks(conn: sqlite3.Connection, names: list[str], now: float, rng: random.Random) -> None:
    """What else a timeline shows: boots, health transitions, gaps and alerts of every engine."""
    start = now - DAY
    conn.execute("BEGIN")
    for engine in names:
        for boot in range(3):
            began = start + boot * DAY / 3
            conn.execute(
                "INSERT INTO boots (engine, boot_id, pid, mode, started, ended, how, last_seq) "
                "VALUES (?, ?, 1, 'paper', ?, ?, 'disconnected', 0)",
                (engine, f"boot-{boot}", began, began + DAY / 3 - 5),
            )
        for _ in range(100):
            conn.execute(
                "INSERT INTO transitions (engine, at, health, previous) VALUES (?, ?, ?, ?)",
                (engine, start + rng.random() * DAY, "stale", "ok"),
            )
        for n in range(20):
            conn.execute(
                "INSERT INTO gaps VALUES (?, 'boot', ?, ?, 'client_dropped', ?)",
                (engine, n * 10, n * 10 + 3, start + rng.random() * DAY),
            )
        for _ in range(50):
            conn.execute(
                "INSERT INTO audit (ts, actor, action, detail, engine) VALUES (?, 'hub', ?, ?, ?)",
                (start + rng.random() * DAY, "alert.firing", "offline: gone", engine),
            )
    conn.execute("COMMIT")


def build(path: Path, args: argparse.Namespace) -> float:
    """Make the database; returns the `now` its day ends at (kept in the file)."""
    path.unlink(missing_ok=True)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    now = float(int(time.time()))
    conn = connect(str(path))
    conn.execute("CREATE TABLE bench (now REAL, engines INTEGER)")
    conn.execute("INSERT INTO bench VALUES (?, ?)", (now, args.engines))
    rng = random.Random(18)
    names = engine_names(args.engines)
    began = time.perf_counter()
    build_series(conn, names, now, rng)
    build_events(conn, args.events, names, now, rng)
    build_logs(conn, args.logs, names, now, rng)
    build_marks(conn, names, now, rng)
    written = time.perf_counter() - began
    index_pending(conn, lambda: False)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    print(
        f"built {path} in {written:.1f} s, indexed in {time.perf_counter() - began - written:.1f} s"
    )
    return now


def engine_names(count: int) -> list[str]:
    """eng00, eng01, ...: the search benchmark's names (its queries filter by eng07)."""
    return [f"eng{i:02d}" for i in range(count)]


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


def chart_rows(
    conn: sqlite3.Connection, engine: str, now: float, repeats: int
) -> list[tuple[str, float, float, float]]:
    """(label, figure, baseline, target) of the 24 h chart queries and the chart's render."""
    settings = Settings()
    out = []
    for label, name, step in (
        ("24 h gauge, step 5 min (coarse)", "gauge.4", 300.0),
        ("24 h histogram, step 5 min (coarse)", "histogram.7", 300.0),
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
        figure = timed(partial(read_series, conn, query, settings, now), repeats)
        baseline = timed(partial(_fetch, conn, raw, args_raw), repeats)
        out.append((f"chart: {label}", figure, baseline, CHART_TARGET))
    query = SeriesQuery(engine, "histogram.7", now - DAY, now, 300.0)
    env = create_environment()
    template = env.get_template("partials/_chart.html")

    def render() -> str:
        step, lines = read_series(conn, query, settings, now)
        shown = [line for line in lines if line.stat in ("p50", "p95", "p99")]
        chart = render_chart("cycle", shown, now - DAY, now, step)
        view = {"key": "pick", "metric": "histogram.7", "chart": chart, "hint": "", "found": True}
        return template.render(view=view, index=1)

    size = len(render())
    figure = timed(render, repeats)
    baseline = timed(partial(read_series, conn, query, settings, now), repeats)
    label = f"chart: 24 h histogram read + SVG ({size // 1000} kB)"
    out.append((label, figure, baseline, CHART_TARGET))
    return out


def search_rows(conn: sqlite3.Connection, repeats: int) -> list[tuple[str, float, float, float]]:
    """The search benchmark's queries on this database; baseline: a log line by id."""
    [(lines,)] = conn.execute("SELECT count(*) FROM logs")
    [(newest,)] = conn.execute("SELECT max(ts) FROM logs")
    ids = list(range(1, lines + 1, max(1, lines // 100)))[:100]

    def lookup() -> None:
        for i in ids:
            conn.execute("SELECT message FROM logs WHERE id = ?", (i,)).fetchone()

    baseline = timed(lookup, repeats) / len(ids)
    out = []
    for label, text, options in search.QUERIES:
        options = dict(options)
        window = options.pop("window", None)
        since = newest - window if isinstance(window, float) else None
        request = SearchRequest(parse_query(text), 50, since=since, **options)  # type: ignore[arg-type]
        hits = len(search_index.search(conn, request).hits)
        figure = timed(partial(search_index.search, conn, request), repeats)
        out.append((f"search: {label} ({hits} hits)", figure, baseline, search.TARGET))
    return out


def timeline_rows(
    conn: sqlite3.Connection, names: list[str], now: float, repeats: int
) -> list[tuple[str, float, float, float]]:
    """An hour of every engine's markers, last and mid-day; baseline: that hour's events."""
    engines = tuple(names)
    baseline = timed(
        partial(read_events, conn, HistoryQuery(501, since=now - 3600, until=now)), repeats
    )
    out = []
    for label, end in (("last hour", now), ("an hour mid-day", now - DAY / 2)):
        query = TimelineQuery(end - 3600, end, 501, engines)
        markers = len(read_timeline(conn, query))
        figure = timed(partial(read_timeline, conn, query), repeats)
        label = f"timeline: {label}, {len(engines)} engines ({markers} markers)"
        out.append((label, figure, baseline, TIMELINE_TARGET))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="/tmp/engine-hub-history-bench-v3.db")
    parser.add_argument("--rebuild", action="store_true", help="build the database again")
    parser.add_argument("--engines", type=int, default=20)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--logs", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--quick", action="store_true", help="2 engines, 20 000 each, 5 repeats")
    args = parser.parse_args()
    if args.quick:
        args.engines, args.events, args.logs, args.repeats = 2, 20_000, 20_000, 5
        args.db, args.rebuild = "/tmp/engine-hub-history-quick.db", True
    path = Path(args.db)
    if args.rebuild or not path.exists():
        build(path, args)
    conn = connect(str(path))
    [(now, engines)] = conn.execute("SELECT now, engines FROM bench")
    [(events,)] = conn.execute("SELECT coalesce(sum(n), 0) FROM event_chunks")
    counts = {
        table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        for table in ("series", "series_points", "event_chunks", "logs")
    }
    print(
        f"database: {path} ({path.stat().st_size / 1e6:.0f} MB), {engines} engines, {events} "
        "events, " + ", ".join(f"{table} {n}" for table, n in counts.items())
    )
    engine = engine_names(engines)[engines // 2]
    rows = chart_rows(conn, engine, now, args.repeats) + search_rows(conn, args.repeats)
    rows += timeline_rows(conn, engine_names(engines), now, args.repeats)
    print(f"{'query':<52} {'figure':>9} {'baseline':>10} {'ratio':>7} {'target':>7}")
    for label, figure, baseline, target in rows:
        verdict = "ok" if figure < target else "MISS"
        print(
            f"{label:<52} {figure * 1e3:7.1f}ms {baseline * 1e3:8.3f}ms {figure / baseline:7.1f} "
            f"{target * 1e3:5.0f}ms {verdict}"
        )
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
