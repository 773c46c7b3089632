"""SQLite full-text search (hub/stores/search_index.py): indexing behind commits, the unindexed
tail, retention keeping the index in step, and the upgrade of a schema 7 file."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

from hub.core.engines import EngineRecord
from hub.core.hits import Cursor, SearchRequest
from hub.core.searches import parse_query
from hub.settings import Settings
from hub.stores.retention import retain
from hub.stores.schema import SCHEMA_VERSION, connect
from hub.stores.search_index import index_pending, search
from tests.test_store_contract import BOOT, event, hand, log_line, opened

WORDS = ["order", "rejected", "filled", "timeout", "broker", "margin", "nifty", "banknifty"]


def _never() -> bool:
    return False


def marks(conn: sqlite3.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT name, upto FROM search_marks"))


async def fill(db: str, now: float) -> None:
    """Two engines' log lines and events, words picked deterministically, through the store."""
    alpha = EngineRecord("alpha", now, boot_id=BOOT)
    beta = EngineRecord("beta", now, boot_id=BOOT)
    async with opened(db) as store:
        for i in range(1, 121):
            engine = alpha if i % 3 else beta
            words = " ".join(WORDS[(i * k) % len(WORDS)] for k in (1, 3, 5))
            level = ("INFO", "WARNING", "ERROR")[i % 3]
            kind = ("order_event", "signal_event")[i % 2]
            record = event(i, 2 * i, now - 200 + i, engine.name, kind, note=words, n=i)
            line = log_line(i, 2 * i + 1, now - 200 + i, engine.name, level, f"{words} #{i}")
            hand(store.store, engine, [record], [line])
        for engine in (alpha, beta):
            await store.commits.wait(engine)


REQUESTS = [
    ("rejected", {}),
    ('"rejected timeout"', {}),
    ("bank* -margin", {}),
    ("timeout OR broker", {"engine": "beta"}),
    ("filled", {"event_type": "order_event"}),
    ("nifty", {"min_level": 30}),
    ("order", {"since": -150.0, "until": -100.0}),
]


def answers(conn: sqlite3.Connection, now: float) -> list[list[tuple[str, int]]]:
    out = []
    for text, filters in REQUESTS:
        shifted = {k: now + v if k in ("since", "until") else v for k, v in filters.items()}
        request = SearchRequest(parse_query(text), 500, **shifted)  # type: ignore[arg-type]
        out.append([(h.kind, h.id) for h in search(conn, request).hits])
    return out


async def test_the_unindexed_tail_and_the_index_answer_alike(tmp_path: Path) -> None:
    """Records above the index mark are scanned, below it FTS5 answers: the same hits either
    way, and the index catches up to the newest id."""
    db, now = str(tmp_path / "hub.db"), float(int(time.time()))
    await fill(db, now)
    with closing(connect(db)) as conn:
        index_pending(conn, _never)
        assert marks(conn) == {
            "logs": 120,
            "events": conn.execute("SELECT max(last_id) FROM event_chunks").fetchone()[0],
        }
        indexed = answers(conn, now)
        conn.execute("INSERT INTO log_text (log_text) VALUES ('delete-all')")
        conn.execute("INSERT INTO event_text (event_text) VALUES ('delete-all')")
        conn.execute("UPDATE search_marks SET upto = 0")
        assert answers(conn, now) == indexed
        conn.execute("UPDATE search_marks SET upto = 60 WHERE name = 'logs'")  # half and half
        conn.execute(
            "INSERT INTO log_text (rowid, message, logger, exc) SELECT id, message, logger, exc FROM logs WHERE id <= 60"
        )
        assert answers(conn, now) == indexed
    assert all(indexed) and indexed[0] != indexed[1]


async def test_retention_takes_deleted_rows_out_of_the_index(tmp_path: Path) -> None:
    """Log lines and chunks that retention deletes are gone from the FTS5 index too (the index
    itself, not only the join, forgets them), and a chunk it cuts is indexed again."""
    db, now = str(tmp_path / "hub.db"), float(int(time.time()))
    await fill(db, now)
    settings = Settings(db=db, retention_days=1, retention_events=50, retention_logs=1000)
    with closing(connect(db)) as conn:
        index_pending(conn, _never)
        for word in ("order", "rejected"):
            before = {
                r
                for (r,) in conn.execute(
                    "SELECT rowid FROM log_text WHERE log_text MATCH ?", (word,)
                )
            }
            assert before
        conn.execute("UPDATE logs SET ts = ts - 3 * 86400 WHERE id <= 40")  # old enough to go
        retain(conn, settings, now)
        kept = {r for (r,) in conn.execute("SELECT id FROM logs")}
        indexed = {
            r
            for (r,) in conn.execute(
                "SELECT rowid FROM log_text WHERE log_text MATCH 'order OR rejected OR filled OR timeout OR broker OR margin OR nifty OR banknifty'"
            )
        }
        assert kept == set(range(41, 121)) and indexed == kept
        chunks = {r for (r,) in conn.execute("SELECT last_id FROM event_chunks")}
        in_index = {
            r for (r,) in conn.execute("SELECT rowid FROM event_text WHERE event_text MATCH 'note'")
        }
        assert in_index == chunks
        query = parse_query("rejected")
        stored = conn.execute("SELECT id, payload FROM events").fetchall()
        expected = {i for i, payload in stored if query.matches((payload,))}
        hits = search(conn, SearchRequest(query, 500)).hits
        assert {h.id for h in hits if h.kind == "event"} == expected
        assert expected and len(stored) == 100  # 50 of each type kept, some from cut chunks


def take_back_to_schema_7(conn: sqlite3.Connection) -> None:
    """Today's file as the build before #18 search left it."""
    for trigger in ("log_text_delete", "event_text_delete", "event_text_rewrite"):
        conn.execute(f"DROP TRIGGER {trigger}")
    for table in ("log_text", "event_text", "search_marks"):
        conn.execute(f"DROP TABLE {table}")
    conn.execute("PRAGMA user_version = 7")


async def test_a_schema_7_database_upgrades_in_place_and_old_lines_are_searchable(
    tmp_path: Path,
) -> None:
    """A file of schema 7 (no search index) opens as schema 8; its old log lines and events are
    found at once (scanned) and the writer indexes them in the background."""
    db, now = str(tmp_path / "hub.db"), float(int(time.time()))
    await fill(db, now)
    with closing(connect(db)) as conn:
        take_back_to_schema_7(conn)
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 7
    async with opened(db, commit_interval=0.05) as store:
        page = await store.store.search(SearchRequest(parse_query('"timeout rejected"'), 500))
        assert page.hits and {h.kind for h in page.hits} == {"log", "event"}
        alpha = EngineRecord("alpha", now, boot_id="boot-2")
        hand(
            store.store,
            alpha,
            [event(500, 1, now, kind="order_event", boot_id="boot-2", note="zzfresh")],
            [],
        )
        await store.commits.wait(alpha)
        again = await store.store.search(SearchRequest(parse_query('"timeout rejected"'), 500))
        assert again.hits == page.hits
        fresh = await store.store.search(SearchRequest(parse_query("zzfresh"), 5))
        assert [h.id for h in fresh.hits] == [500]
    with closing(connect(db)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 8
        index_pending(conn, _never)
        assert marks(conn)["logs"] == 120
        old = search(conn, SearchRequest(parse_query('"timeout rejected"'), 500, cursor=Cursor()))
        assert old.hits == page.hits
