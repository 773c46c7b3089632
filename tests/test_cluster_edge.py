"""The cluster's edges: the alert lease and one socket per engine, sans-I/O and on a real Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from benchmarks.cluster import Summary, delivery, percentile, summarize, supports_cluster, verdicts
from hub.cluster.lease import AlertLease, LeaseTimer
from hub.cluster.owners import CLAIM_XADD, RELEASE_XADD, Displaced, Owner, OwnerBook, OwnerClaims
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


# One socket per engine across the cluster (hub/cluster/owners.py).


def test_owner_values_round_trip_and_reject_forgeries() -> None:
    """ "node conn" parses back; anything else (spaces, markup, empty) is not an owner."""
    owner = Owner("node-a", "c1")
    assert Owner.parse(owner.encode()) == owner == Owner.parse(owner.encode().encode())
    for bad in [None, "", "node-a", "node-a c1 extra", "<b> c1", "node-a <script>"]:
        assert Owner.parse(bad) is None, bad


def test_notices_parse_with_limits_and_close_only_the_named_socket() -> None:
    """A notice closes this node's socket only if it is the one named; a stale one closes nothing."""
    data = json.dumps({"engine": "fno", "old": "a c1", "new": "b c2"})
    notice = Displaced.parse(data)
    assert notice == Displaced("fno", Owner("a", "c1"), Owner("b", "c2"))
    assert notice.reason == "replaced by a newer connection on node b"
    for bad in ["{", json.dumps({"engine": "<x>", "old": "a c1", "new": "b c2"}), "x" * 2000]:
        assert Displaced.parse(bad) is None
    book = OwnerBook("a")
    book.claimed("fno", "c3")  # a newer socket of ours came after c1
    assert book.displaced(notice) is None, "c1 is gone; c3 must stay"
    book.claimed("fno", "c1")
    assert OwnerBook("b").displaced(notice) is None, "not b's socket"
    assert book.displaced(notice) == "c1" and not book.released("fno", "c1")
    long = Displaced("fno", Owner("a", "c1"), Owner("n" * 128, "c2"))
    assert len(long.reason.encode()) <= 123


Closed = asyncio.Queue[tuple[str, str, str]]


@asynccontextmanager
async def claims_of(redis: aioredis.Redis, node: str) -> AsyncIterator[tuple[OwnerClaims, Closed]]:
    """A node's OwnerClaims following its notices; closes go to the queue."""
    claims, closed = OwnerClaims(redis, node, retry=0.05), Closed()
    task = asyncio.create_task(claims.run(lambda *close: closed.put_nowait(close)))
    try:
        async with asyncio.timeout(WAIT):
            await claims.subscribed.wait()
        yield claims, closed
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def hello(redis: aioredis.Redis, claims: OwnerClaims, engine: str, conn: int) -> None:
    """What a node does for a hello: the book first, then the claim and the XADD in one script."""
    claims.claim(engine, conn)
    keys = [claims.key(engine), claims.channel, "engine-hub:stream"]
    await redis.eval(CLAIM_XADD, 3, *keys, claims.value(conn), engine, 100, "k", "h")


async def close(redis: aioredis.Redis, claims: OwnerClaims, engine: str, conn: int) -> None:
    """What a node does when a socket closes: forget it, then release and XADD in one script."""
    claims.release(engine, conn)
    keys = [claims.key(engine), "engine-hub:stream"]
    await redis.eval(RELEASE_XADD, 2, *keys, claims.value(conn), 100, "k", "c")


async def test_a_claim_on_b_closes_the_socket_on_a_and_a_stale_release_keeps_b(
    tmp_path: Path,
) -> None:
    """Latest hello wins: A's socket is told to close with B's name; A's late release is a no-op;
    the owner key follows the stream's hellos (both go in in one script)."""
    async with redis_server(tmp_path) as server, redis_of(server) as redis:
        async with (
            claims_of(redis, "node-a") as (a, closed_a),
            claims_of(redis, "node-b") as (b, _),
        ):
            await hello(redis, a, "fno", 1)
            await hello(redis, b, "fno", 2)
            async with asyncio.timeout(WAIT):
                assert await closed_a.get() == (
                    "fno",
                    "1",
                    "replaced by a newer connection on node node-b",
                )
            await close(redis, a, "fno", 1)
            assert Owner.parse(await redis.get(a.key("fno"))) == Owner("node-b", "2")
            await close(redis, b, "fno", 2)
            assert await redis.get(a.key("fno")) is None
            kinds = [f[b"k"] for _, f in await redis.xrange("engine-hub:stream")]
            assert kinds == [b"h", b"h", b"c", b"c"]


async def test_simultaneous_claims_leave_exactly_one_socket(tmp_path: Path) -> None:
    """Hellos racing from two nodes: for each engine exactly the loser is closed, and the winner
    is the one whose hello is later in the stream."""
    engines = [f"e{i}" for i in range(20)]
    async with redis_server(tmp_path) as server, redis_of(server) as redis:
        async with (
            claims_of(redis, "node-a") as (a, closed_a),
            claims_of(redis, "node-b") as (
                b,
                closed_b,
            ),
        ):
            await asyncio.gather(
                *(hello(redis, a, e, 7) for e in engines), *(hello(redis, b, e, 8) for e in engines)
            )
            closes: dict[str, str] = {}
            async with asyncio.timeout(WAIT):
                while len(closes) < len(engines):
                    getters = [asyncio.ensure_future(q.get()) for q in (closed_a, closed_b)]
                    done, pending = await asyncio.wait(getters, return_when="FIRST_COMPLETED")
                    for getter in pending:
                        getter.cancel()
                    for getter in done:
                        engine, conn, _ = getter.result()
                        assert engine not in closes, f"{engine} closed twice"
                        closes[engine] = conn
            for engine in engines:
                winner = Owner.parse(await redis.get(a.key(engine)))
                assert winner is not None and winner.conn != closes[engine]
            assert set(a.book.held) | set(b.book.held) == set(engines)
            assert not set(a.book.held) & set(b.book.held)


async def test_a_notice_missed_while_unsubscribed_is_caught_on_resubscribe(
    tmp_path: Path,
) -> None:
    """A node that was not listening when it was displaced closes the stale socket on return; a
    socket whose key Redis lost stays (nobody claimed the engine after it)."""
    async with redis_server(tmp_path) as server, redis_of(server) as redis:
        a = OwnerClaims(redis, "node-a")
        await hello(redis, a, "fno", 1)
        await hello(redis, a, "lone", 9)
        await redis.delete(a.key("lone"))  # Redis lost A's claim
        async with claims_of(redis, "node-b") as (b, _):
            await hello(redis, b, "fno", 2)  # A hears nothing
        closed = Closed()
        task = asyncio.create_task(a.run(lambda *close: closed.put_nowait(close)))
        try:
            async with asyncio.timeout(WAIT):
                assert (await closed.get())[:2] == ("fno", "1")
                await a.subscribed.wait()
            assert a.book.held == {"lone": "9"}
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


# benchmarks/cluster.py: its measuring parts (the benchmark itself needs the merged cluster).


def test_cluster_benchmark_percentiles_and_delivery() -> None:
    """Nearest-rank percentiles; lost and duplicated events are counted per engine."""
    summary = summarize([i / 1000 for i in range(1, 101)])
    assert (summary.count, summary.p50, summary.p99) == (100, 0.05, 0.099)
    assert percentile([], 50) != percentile([], 50), "no samples is NaN, never a figure"
    sent = {"a": range(5), "b": range(3)}
    assert delivery(sent, {"a": [0, 1, 2, 3, 4], "b": [0, 1, 2]}) == (0, 0)
    assert delivery(sent, {"a": [0, 1, 1, 3, 4], "b": [2, 1]}) == (2, 1)


def test_cluster_benchmark_verdicts_and_cluster_detection() -> None:
    """Targets: p99 within single + 50 ms, failover within 5 s, nothing lost or duplicated."""
    single, near, far = Summary(9, 0.01, 0.1), Summary(9, 0.02, 0.149), Summary(9, 0.02, 0.151)
    assert [row[2] for row in verdicts(single, near, 4.9, 0, 0)] == ["ok", "ok", "ok"]
    assert [row[2] for row in verdicts(single, far, 5.1, 1, 0)] == ["MISSED"] * 3
    assert supports_cluster("usage: engine-hub serve [--cluster CLUSTER] [--node-id ID]")
    assert not supports_cluster("usage: engine-hub serve [-h] [--host HOST] [--port PORT]")
