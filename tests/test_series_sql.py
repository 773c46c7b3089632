"""Series in SQLite (hub/stores/series_sql.py): retention by tier, and a schema 7 file upgraded in
place."""

from __future__ import annotations

import time
from contextlib import closing
from pathlib import Path

from hub.core.metrics import MetricKind
from hub.core.series import Bucket, Point, Tier
from hub.settings import Settings
from hub.stores.base import SeriesQuery
from hub.stores.retention import retain
from hub.stores.schema import SCHEMA_VERSION, connect
from hub.stores.series_sql import SeriesIds, read_series, read_series_names, write_points

DAY = 86_400.0


def point(name: str, tier: Tier, start: float, value: float = 1.0) -> Point:
    """A counter bucket of one increment."""
    bucket = Bucket(start, False)
    bucket.add(value)
    return Point("alpha", name, (), MetricKind.COUNTER, tier, bucket)


def starts(conn: object, tier: Tier) -> list[tuple[str, float]]:
    """(series name, bucket start) of every stored bucket of `tier`."""
    rows = conn.execute(  # type: ignore[attr-defined]
        "SELECT name, start FROM series_points JOIN series ON series.id = series_points.series "
        "WHERE tier = ? ORDER BY name, start",
        (int(tier),),
    )
    return list(rows)


def test_retention_trims_fine_buckets_after_a_day_and_coarse_ones_after_retention(
    tmp_path: Path,
) -> None:
    """Fine buckets older than series_fine_days go, coarse ones older than retention_days go, and
    a series left without buckets goes from the list."""
    settings = Settings(series_fine_days=1.0, retention_days=30.0)
    now = float(int(time.time()))
    with closing(connect(str(tmp_path / "hub.db"))) as conn:
        conn.execute("BEGIN")
        write_points(
            conn,
            SeriesIds(),
            [
                point("kept", Tier.FINE, now - 2 * DAY),
                point("kept", Tier.FINE, now - DAY + 60),
                point("kept", Tier.COARSE, now - 31 * DAY),
                point("kept", Tier.COARSE, now - 2 * DAY),
                point("gone", Tier.FINE, now - 1.5 * DAY),
                point("gone", Tier.COARSE, now - 40 * DAY),
            ],
        )
        conn.execute("COMMIT")
        retain(conn, settings, now)
        assert starts(conn, Tier.FINE) == [("kept", now - DAY + 60)]
        assert starts(conn, Tier.COARSE) == [("kept", now - 2 * DAY)]
        assert [s.name for s in read_series_names(conn, "alpha")] == ["kept"]


def test_a_schema_7_database_upgrades_in_place(tmp_path: Path) -> None:
    """A file of schema 7 (no series tables) opens, keeps its rows, gains the tables and version
    8, and takes series at once."""
    db = str(tmp_path / "hub.db")
    with closing(connect(db)) as conn:  # today's schema, taken back to 7
        conn.execute("DROP TABLE series_points")
        conn.execute("DROP TABLE series")
        conn.execute(
            "INSERT INTO logs (id, engine, boot_id, seq, ts, level, levelno, logger, message, "
            "extra) VALUES (1, 'alpha', 'b', 1, 1.0, 'INFO', 20, 'x', 'kept', '{}')"
        )
        conn.execute("PRAGMA user_version = 7")
    with closing(connect(db)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 8
        assert conn.execute("SELECT message FROM logs").fetchall() == [("kept",)]
        t0 = float(int(time.time() // 300 * 300 - 600))
        conn.execute("BEGIN")
        write_points(conn, SeriesIds(), [point("orders", Tier.FINE, t0, 5.0)])
        conn.execute("COMMIT")
        query = SeriesQuery("alpha", "orders", t0, t0 + 10, 10)
        step, [line] = read_series(conn, query, Settings(), time.time())
        assert (step, line.points) == (10, [(t0, 0.5)])
