"""The cluster's edges: the alert lease and one socket per engine, sans-I/O and on a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from hub.cluster.lease import AlertLease, LeaseTimer
from tests.conftest import WAIT
from tests.redisproc import RedisServer, redis_server

TTL = 0.6  # short, so a dead holder's lease moves quickly; nothing below asserts on time


def test_lease_timer_is_held_until_before_redis_expires_it() -> None:
    """Held from the send time until just before send + ttl, renewed at a third of the ttl."""
    timer = LeaseTimer(9.0)
    assert not timer.held(0.0)
    timer.granted(sent_at=100.0)
    assert timer.held(100.0) and timer.held(108.8)
    assert not timer.held(109.0), "the local belief ends before Redis's key does"
    assert timer.next_attempt(101.0) == pytest.approx(2.0)
    assert timer.next_attempt(104.0) == 0.0
    timer.lost()
    assert not timer.held(100.5) and timer.next_attempt(100.5) == pytest.approx(9.0 / 5)


@pytest.mark.parametrize("ttl", [0.0, -1.0, 10_000.0])
def test_lease_timer_rejects_a_bad_ttl(ttl: float) -> None:
    """A TTL out of range is a clear configuration error."""
    with pytest.raises(ValueError, match="lease ttl"):
        LeaseTimer(ttl)


def test_lease_rejects_a_node_id_that_could_forge_a_token() -> None:
    """Node ids are plain names: they end up in Redis values and logs."""
    with pytest.raises(ValueError, match="node id"):
        AlertLease(aioredis.Redis(), "k", "bad/id\n", TTL)


@asynccontextmanager
async def redis_of(server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(server.url, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        yield client
    finally:
        await client.aclose()


async def until_one_holds(leases: list[AlertLease]) -> AlertLease:
    """Wait (on the leases' change signals) until one of them holds; return it."""
    async with asyncio.timeout(WAIT):
        while not (holders := [lease for lease in leases if lease.held]):
            waits = [asyncio.ensure_future(lease.wait_changed()) for lease in leases]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()
    assert len(holders) == 1, [lease.node_id for lease in holders]
    return holders[0]


async def test_three_leases_only_one_holds_and_a_killed_holder_moves_it(tmp_path: Path) -> None:
    """Three nodes contend; one holds; cancelling it without release moves the lease to another."""
    async with redis_server(tmp_path) as server, redis_of(server) as redis:
        leases = [AlertLease(redis, "engine-hub:lease", f"node-{i}", TTL) for i in range(3)]
        tasks = {lease: asyncio.create_task(lease.run()) for lease in leases}
        try:
            first = await until_one_holds(leases)
            assert (await redis.get("engine-hub:lease")).decode() == first.token
            tasks.pop(first).cancel()  # killed: no release, its key stays until the ttl runs out
            rest = [lease for lease in leases if lease is not first]
            second = await until_one_holds(rest)
            assert not first.held, "the dead holder's local belief ended with the ttl"
            assert (await redis.get("engine-hub:lease")).decode() == second.token
        finally:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)


async def test_release_is_compare_and_delete(tmp_path: Path) -> None:
    """A release hands over at once; a stale release never removes the next holder's key."""
    async with redis_server(tmp_path) as server, redis_of(server) as redis:
        a = AlertLease(redis, "lease", "a", TTL)
        b = AlertLease(redis, "lease", "b", TTL)
        assert await a.attempt() and not await b.attempt()
        assert await a.release() and not a.held
        assert await b.attempt()
        assert not await a.release(), "a no longer holds it: b's key stays"
        assert (await redis.get("lease")).decode() == b.token and b.held


async def test_redis_restart_drops_the_lease_then_the_holder_gets_it_back(tmp_path: Path) -> None:
    """Redis away: `held` is False at once (nobody sends); back: the lease is held by one again."""
    async with redis_server(tmp_path) as server, redis_of(server) as redis:
        a = AlertLease(redis, "lease", "a", TTL)
        b = AlertLease(redis, "lease", "b", TTL)
        assert await a.attempt() and not await b.attempt()
        await server.stop()
        assert not await a.attempt() and not a.held
        assert not await b.attempt() and not b.held
        await server.start()
        # Whether the key survived the restart or expired, a asks first and holds it again.
        assert await a.attempt() and not await b.attempt()
