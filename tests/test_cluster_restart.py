"""A cluster node restarted on its own history file rereads the stream: nothing is stored twice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import WAIT, connect_engine, database, running_hub, unique
from tests.redisproc import redis_server


def counts(db: Path, name: str) -> dict[str, Any]:
    """Rows of `name` in each table a replayed stream entry could write twice."""
    with database(db) as conn:

        def rows(sql: str) -> list[Any]:
            return conn.execute(sql, (name,)).fetchall()

        return {
            "events": rows("SELECT boot_id, seq FROM events WHERE engine = ? ORDER BY 1, 2"),
            "logs": rows("SELECT boot_id, seq FROM logs WHERE engine = ? ORDER BY 1, 2"),
            "links": rows("SELECT boot_id, ref FROM links WHERE engine = ? ORDER BY 1, 2"),
            "points": rows(
                "SELECT s.name, p.tier, p.start, p.n, p.total FROM series_points p "
                "JOIN series s ON s.id = p.series WHERE s.engine = ? ORDER BY 1, 2, 3"
            ),
            "boots": rows("SELECT boot_id FROM boots WHERE engine = ? ORDER BY 1"),
        }


async def run_engine(port_hub: Any, name: str, boot_id: str) -> None:
    """One boot: chained events, logs and metrics, all acked (so all in Redis)."""
    engine = await connect_engine(port_hub, name, boot_id=boot_id)
    for ref in range(1, 6):
        chain = {"ref": ref, "cycle": f"c{ref}"} | ({"parent": ref - 1} if ref > 1 else {})
        await engine.send(
            {"kind": "event", "type": "signal_event", "payload": {"n": ref}, "chain": chain},
            {"kind": "log", "level": "INFO", "logger": "e", "message": f"line {ref}"},
            {"kind": "metric", "op": "inc", "name": "fills", "value": 1},
            {"kind": "metric", "op": "observe", "name": "latency_ms", "value": ref},
        )
    await engine.wait_acked()
    await engine.ws.close()


async def test_a_restarted_node_rereads_the_stream_and_stores_nothing_twice(
    tmp_path: Path,
) -> None:
    """Node B with a SQLite file, stopped and restarted: its reader starts again at the stream's
    first entry (the read position is not saved), and every events, logs, links, series points and
    boots row is there exactly once, for two boots of one engine."""
    name, db = unique("reread"), tmp_path / "b.db"
    async with redis_server(tmp_path) as server:
        cluster = {"cluster_url": server.url}
        async with running_hub(node_id="a", **cluster) as a:
            async with running_hub(node_id="b", db=str(db), **cluster) as b:
                await run_engine(a, name, "boot-one")
                await run_engine(a, name, "boot-two")
                assert await b.hub.cluster.caught_up(WAIT)
            first = counts(db, name)
            assert len(first["events"]) == 10 and len(first["logs"]) == 10
            assert len(first["links"]) == 10 and first["points"] and len(first["boots"]) == 2
            async with running_hub(node_id="b", db=str(db), **cluster) as b:
                assert await b.hub.cluster.caught_up(WAIT)
                assert b.hub.cluster.consumer.position is not None
            again = counts(db, name)
        assert json.dumps(again) == json.dumps(first)
