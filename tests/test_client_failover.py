"""Client failover: `urls=[...]` moves to the next node when one goes away and replays what it lacks."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.client import AsyncEngineClient, EngineClient
from hub.client.endpoints import MAX_URLS, Endpoints, engine_urls
from hub.core.messages import CloseCode
from tests.conftest import WAIT, connect_engine, running_hub, serve_process, unique
from tests.redisproc import redis_server
from tests.test_client import FAST, events_of, flushed


def test_engine_urls_accepts_one_url_or_a_list() -> None:
    """`url=` keeps working, `urls=` is normalised and deduplicated in order."""
    assert engine_urls("http://a:1", None) == ("ws://a:1/ws/engine",)
    assert engine_urls(None, ["ws://a:1", "ws://b:2/ws/engine", "ws://a:1"]) == (
        "ws://a:1/ws/engine",
        "ws://b:2/ws/engine",
    )


@pytest.mark.parametrize(
    ("url", "urls", "says"),
    [
        (None, None, "pass url="),
        ("ws://a:1", ["ws://b:1"], "not both"),
        (None, "ws://a:1", "must be a list"),
        (None, [], "1 to"),
        (None, [f"ws://n{i}:1" for i in range(MAX_URLS + 1)], "1 to"),
        (None, ["ws://a:1", 7], "must be a string"),
        (None, ["ftp://a:1"], "must look like ws://"),
    ],
)
def test_bad_urls_get_a_clear_error(url: Any, urls: Any, says: str) -> None:
    """A wrong url/urls argument fails at construction with a message that says what to pass."""
    with pytest.raises(ValueError, match=says):
        EngineClient(url, urls=urls, engine="fno")


def test_endpoints_go_round_robin() -> None:
    """Each `advance` moves to the next node and wraps; one URL stays put (a load balancer)."""
    nodes = Endpoints(("a", "b", "c"))
    assert [nodes.current, nodes.advance(), nodes.advance(), nodes.advance()] == list("abca")
    single = Endpoints(("lb",))
    assert (single.advance(), single.current) == ("lb", "lb")


async def test_client_moves_to_the_next_node_when_its_hub_shuts_down() -> None:
    """Hub A shuts down: the client connects to hub B and delivers what it recorded meanwhile."""
    name = unique("failover")
    async with running_hub() as b:
        async with running_hub() as a:
            client = EngineClient(urls=[a.ws_url, b.ws_url], engine=name, **FAST).start()
            client.publish("cycle", {"n": 0})
            await flushed(client)
            assert [e["payload"]["n"] for e in await events_of(a, name)] == [0]
        for n in range(1, 51):  # A is gone; these wait in the client's buffer
            client.publish("cycle", {"n": n})
        await flushed(client)
        numbers = sorted(e["payload"]["n"] for e in await events_of(b, name))
        assert numbers == list(range(1, 51)), "B has each message A never acknowledged, once"
        assert client.stats.connects == 2
        await asyncio.to_thread(client.close)


async def _events(port: int, engine: str) -> list[int]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WAIT) as http:
        response = await http.get("/api/telemetry/events", params={"engine": engine, "limit": 1000})
    assert response.status_code == 200, response.text
    return [e["payload"]["n"] for e in response.json()["events"]]


async def test_kill_9_mid_stream_replays_the_unacknowledged_on_the_next_node() -> None:
    """Hub A is frozen with frames in flight, then killed: B gets every unacked message once."""
    name = unique("killed")
    async with serve_process() as (proc_b, port_b, _), serve_process() as (proc_a, port_a, _):
        urls = [f"ws://127.0.0.1:{port_a}", f"ws://127.0.0.1:{port_b}"]
        async with AsyncEngineClient(urls=urls, engine=name, **FAST) as client:
            for n in range(50):
                client.publish("cycle", {"n": n})
            assert await client.flush(WAIT), client.stats
            acked_on_a = client.stats.acked_seq
            os.kill(proc_a.pid, signal.SIGSTOP)  # A reads nothing and acks nothing from here
            for n in range(50, 100):
                client.publish("cycle", {"n": n})
            core = client._core
            async with asyncio.timeout(WAIT):  # until every record went out on A's socket
                while core.intake.items or core.outbox.unsent:
                    assert not await client.flush(0.05)
            assert len(core.outbox.inflight) >= 50, "the frames are in flight to the frozen A"
            proc_a.kill()
            await proc_a.wait()
            assert await client.flush(WAIT), client.stats
            stats = client.stats
        assert stats.connects == 2 and stats.replayed >= 50, stats
        assert stats.acked_seq > acked_on_a
        assert sorted(await _events(port_b, name)) == list(range(50, 100))


async def test_a_displaced_client_reconnects_on_the_usual_backoff(tmp_path: Path) -> None:
    """A socket replaced by a newer one on another node closes with 4001 "replaced", which the
    client retries on its reconnect backoff (a 1008 would make it wait auth_backoff, an hour here):
    it comes back on node A and in turn displaces the socket on node B."""
    name = unique("displaced")
    async with redis_server(tmp_path) as server:
        async with (
            running_hub(cluster_url=server.url, node_id="a") as a,
            running_hub(cluster_url=server.url, node_id="b") as b,
        ):
            options = {**FAST, "auth_backoff": 3600.0}
            async with AsyncEngineClient(urls=[a.ws_url], engine=name, **options) as client:
                client.publish("cycle", {"n": 0})
                assert await client.flush(WAIT), client.stats
                other = await connect_engine(b, name)
                async with asyncio.timeout(WAIT):
                    await other.ws.wait_closed()  # the client came back on A: B's socket goes
                assert other.ws.close_code == CloseCode.REPLACED == 4001
                assert other.ws.close_reason == "replaced by a newer connection on node a"
                assert client.stats.connects == 2
