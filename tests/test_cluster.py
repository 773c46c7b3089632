"""Two hub nodes on one real redis-server: what an engine sends to one shows on the other."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from hub.cluster import ClusterState
from tests.conftest import WAIT, RunningHub, connect_engine, running_hub, sse, unique
from tests.redisproc import RedisServer, redis_server


@asynccontextmanager
async def nodes(
    server: RedisServer, *names: str, **overrides: Any
) -> AsyncIterator[list[RunningHub]]:
    """In-process hub nodes named `names`, all on `server`."""
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                running_hub(cluster_url=server.url, node_id=name, **overrides)
            )
            for name in names
        ]


async def until(predicate: Any, what: str) -> None:
    """Wait for `predicate()` by yielding to the loop, never sleeping a fixed time."""
    async with asyncio.timeout(WAIT):
        while not predicate():
            await asyncio.sleep(0.01)  # a poll of in-process state, bounded by WAIT
    assert predicate(), what


async def test_an_engine_on_node_a_shows_on_node_b(tmp_path: Path) -> None:
    """Events, logs, metrics and the engine itself reach node B's API; A acks once Redis has them."""
    name = unique("xnode")
    async with redis_server(tmp_path) as server, nodes(server, "a", "b") as (a, b):
        async with sse(b, engine=name) as stream:
            engine = await connect_engine(a, name)
            await engine.send(
                {"kind": "heartbeat", "status": "running", "loop_tick": 7},
                {"kind": "log", "level": "INFO", "logger": "e", "message": "<b>hi</b>"},
                {"kind": "metric", "op": "inc", "name": "signals.long", "value": 2},
                {"kind": "event", "type": "signal_event", "payload": {"side": "long"}},
            )
            await engine.wait_acked()
            event = await stream.until(lambda e: e.data.get("engine") == name)
        assert event.data["payload"] == {"side": "long"}
        listed = {e["name"]: e for e in (await b.get("/api/telemetry/engines"))["engines"]}
        assert listed[name]["loop_tick"] == 7 and listed[name]["connected"] is True
        logs = await b.get("/api/telemetry/engine_logs", engine=name)
        assert [line["message"] for line in logs["lines"]] == ["<b>hi</b>"]
        metrics = await b.get("/api/telemetry/metrics", engine=name)
        assert "signals.long" in json.dumps(metrics)
        events = await b.get("/api/telemetry/events", engine=name)
        assert [e["seq"] for e in events["events"]] == [4]
        await engine.close()
        record = b.hub.state.engines[name]
        await until(lambda: not record.connected, "B saw the socket on A close")


async def test_the_stream_takes_each_seq_once_whatever_node_sends_it(tmp_path: Path) -> None:
    """A replay of stored seqs to another node adds nothing to Redis, and B stores it once."""
    name = unique("replay")
    async with redis_server(tmp_path) as server, nodes(server, "a", "b") as (a, b):
        first = await connect_engine(a, name)
        await first.send(
            *({"kind": "event", "type": "cycle", "payload": {"n": i}} for i in range(5))
        )
        await first.wait_acked()
        await first.close()
        record = b.hub.state.engines.get
        await until(lambda: (r := record(name)) is not None and r.hwm == 5, "B read 1..5")
        again = await connect_engine(b, name, boot_id=first.boot_id)
        assert again.welcome["last_seq"] == 5  # B knows what Redis holds: nothing to replay
        again.seq = 3  # a client that replays 4..5 anyway, then sends 6
        await again.send(
            *({"kind": "event", "type": "cycle", "payload": {"n": i}} for i in range(3))
        )
        await again.wait_acked()
        client = aioredis.Redis.from_url(server.url)
        try:
            entries = await client.xrange("engine-hub:stream")
        finally:
            await client.aclose()
        frames = [f for _, f in entries if f[b"k"] == b"f" and f[b"e"] == name.encode()]
        seqs = [json.loads(f[b"d"])["seq"] for f in frames]
        assert seqs == [1, 2, 3, 4, 5, 6]  # 4 and 5 were dropped in Redis, atomically
        events = await b.get("/api/telemetry/events", engine=name, limit=100)
        assert sorted(e["seq"] for e in events["events"]) == [1, 2, 3, 4, 5, 6]
        await until(lambda: a.hub.state.engines[name].hwm == 6, "A read 6 from B")
        events = await a.get("/api/telemetry/events", engine=name, limit=100)
        assert sorted(e["seq"] for e in events["events"]) == [1, 2, 3, 4, 5, 6]
        await again.close()


async def test_a_reconnect_on_node_b_closes_the_socket_on_node_a(tmp_path: Path) -> None:
    """One socket per engine across the cluster: the later hello wins and A closes its socket."""
    name = unique("moved")
    async with redis_server(tmp_path) as server, nodes(server, "a", "b") as (a, b):
        old = await connect_engine(a, name)
        await old.send({"kind": "heartbeat", "status": "running"})
        await old.wait_acked()
        new = await connect_engine(b, name, boot_id=old.boot_id)
        async with asyncio.timeout(WAIT):
            await old.ws.wait_closed()
        assert old.ws.close_code == 4001
        assert old.ws.close_reason == "replaced by a newer connection on node b"
        await new.send({"kind": "heartbeat", "status": "running"})
        await new.wait_acked()  # the new socket stays
        await until(lambda: a.hub.state.engines[name].connected, "A shows it connected (on B)")
        await new.close()


async def test_redis_down_keeps_local_serving_then_catches_up(tmp_path: Path) -> None:
    """Redis stopped: A serves its engine live, stops acking, says degraded; restarted: acks,
    B catches up, and nothing is stored twice."""
    name = unique("degraded")
    async with redis_server(tmp_path) as server, nodes(server, "a", "b") as (a, b):
        engine = await connect_engine(a, name)
        await engine.send({"kind": "event", "type": "cycle", "payload": {"n": 0}})
        await engine.wait_acked()
        await server.stop()
        await engine.send(
            *({"kind": "event", "type": "cycle", "payload": {"n": i}} for i in (1, 2))
        )
        await until(lambda: a.hub.cluster.status.degraded, "A noticed Redis is gone")
        health = (await a.http.get("/healthz")).json()
        assert health["status"] == "degraded" and health["cluster"]["state"] == "degraded"
        assert any(r.startswith("cluster degraded") for r in health["reasons"])
        await until(lambda: a.hub.views.cluster_note is not None, "the ticker noted it")
        assert "cluster degraded" in (await a.http.get("/")).text
        local = await a.get("/api/telemetry/events", engine=name)
        assert sorted(e["seq"] for e in local["events"]) == [1, 2, 3]  # still served live
        assert engine.acked == 1 and a.hub.state.engines[name].committed == 1  # no ack
        await server.start()
        await engine.wait_acked(3)
        await until(lambda: (r := b.hub.state.engines.get(name)) is not None and r.hwm == 3, "B")
        assert not a.hub.cluster.status.degraded
        assert (await a.http.get("/healthz")).json()["cluster"]["state"] == "ok"
        for node in (a, b):
            events = await node.get("/api/telemetry/events", engine=name, limit=100)
            assert sorted(e["seq"] for e in events["events"]) == [1, 2, 3]
        await engine.close()


async def test_a_full_buffer_closes_engine_sockets_until_redis_returns(tmp_path: Path) -> None:
    """Beyond cluster_buffer frames held for Redis, engine sockets close 1013 (the client keeps
    its unacked messages) and new ones are refused until the buffer drains."""
    name = unique("full")
    async with redis_server(tmp_path) as server, nodes(server, "a", cluster_buffer=2) as (a,):
        engine = await connect_engine(a, name)
        await server.stop()
        await engine.send(*({"kind": "event", "type": "cycle", "payload": {}} for _ in range(3)))
        async with asyncio.timeout(WAIT):
            await engine.ws.wait_closed()
        assert engine.ws.close_code == 1013 and "buffer is full" in engine.ws.close_reason
        assert a.hub.state.stats.drops["cluster_buffer_full"] >= 1
        await server.start()
        await until(lambda: not a.hub.cluster.full, "the buffer drained into Redis")
        again = await connect_engine(a, name, boot_id=engine.boot_id)
        assert again.welcome["last_seq"] == 3  # every frame held went to Redis
        await again.close()


async def test_single_node_status_is_local() -> None:
    """Without cluster_url the hub says it is local and never degraded."""
    async with running_hub() as one:
        health = (await one.http.get("/healthz")).json()
        assert health["cluster"]["state"] == "local" and health["status"] == "ok"
        assert one.hub.cluster.status.state is ClusterState.LOCAL
