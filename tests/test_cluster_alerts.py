"""Alerts in a cluster: three hub processes, one webhook receiver, one notification per incident."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import websockets

from hub.core.alert_settings import parse_alerts
from hub.core.alerts import Alert, AlertState, Severity
from hub.core.handovers import Mark
from hub.core.routes import Dispatcher
from tests.conftest import WAIT, serve_process, unique
from tests.redisproc import redis_server
from tests.test_alerts import Receiver, receiver

LEASE = "engine-hub:alert-lease"


def config(tmp_path: Path, ops: Receiver) -> str:
    """Settings: a short lease (a dead holder's lease moves quickly), status_error fires at once."""
    path = tmp_path / "hub.toml"
    path.write_text(
        "view_tick = 0.05\n"
        "cluster_lease_ttl = 1.0\n"
        "[alerts]\n"
        'resolve_after = "0.3s"\n'
        "[alerts.rules.status_error]\n"
        "for = 0\n"
        "[alerts.rules.offline]\n"
        "enabled = false\n"
        "[alerts.rules.clock_skew]\n"
        "enabled = false\n"
        "[[alerts.receivers]]\n"
        f'name = "ops"\ntype = "webhook"\nurl = "{ops.url()}"\nbackoff = "10ms"\n'
    )
    return str(path)


async def engine_on(port: int, name: str) -> websockets.ClientConnection:
    """A live engine that said hello on node `port` and is running."""
    ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws/engine", compression=None)
    await ws.send(json.dumps({"kind": "hello", "engine": name, "mode": "live", "boot_id": name}))
    async with asyncio.timeout(WAIT):
        assert json.loads(await ws.recv())["kind"] == "welcome"
    return ws


async def status(ws: websockets.ClientConnection, seq: int, state: str) -> None:
    """Send a heartbeat saying `state` and wait for its ack (it is in Redis then)."""
    beat = {"kind": "heartbeat", "seq": seq, "status": state}
    if state == "error":
        beat["last_error"] = "feed down"
    await ws.send(json.dumps(beat))
    async with asyncio.timeout(WAIT):
        while not ((reply := json.loads(await ws.recv()))["kind"] == "ack" and reply["seq"] >= seq):
            pass


async def expect(ops: Receiver, state: str, name: str) -> None:
    """The next notification says `state`, about `name` alone."""
    _, body = await ops.next()
    engines = [alert["labels"]["engine"] for alert in body["alerts"]]
    assert (body["status"], engines) == (state, [name]), body


async def incident(ops: Receiver, ws: websockets.ClientConnection, name: str, seq: int) -> None:
    """The engine errors then recovers: exactly one firing, then one resolved, for `name`."""
    await status(ws, seq, "error")
    await expect(ops, "firing", name)
    await status(ws, seq + 1, "running")
    await expect(ops, "resolved", name)


async def holder(redis: aioredis.Redis) -> str:
    """The node id holding the alert lease (waits until one does)."""
    async with asyncio.timeout(WAIT):
        while (token := await redis.get(LEASE)) is None:
            await asyncio.sleep(0.05)  # other processes: there is no event to wait on
    node: str = token.decode().partition("/")[0]
    return node


async def test_three_nodes_notify_once_and_a_killed_holder_hands_over(tmp_path: Path) -> None:
    """Three nodes, one receiver: one firing and one resolved per incident; kill -9 of the lease
    holder, then an incident while nobody holds it: the next holder sends it, once."""
    async with receiver() as ops, redis_server(tmp_path) as server:
        settings = config(tmp_path, ops)
        redis = aioredis.Redis.from_url(server.url)
        async with AsyncExitStack() as stack:
            nodes: dict[str, tuple[Any, int]] = {}
            for node in ("a", "b", "c"):
                args = ("--cluster", server.url, "--node-id", node, "--config", settings)
                proc, port, _ = await stack.enter_async_context(serve_process(*args))
                nodes[node] = (proc, port)
            first = await holder(redis)
            other = next(n for n in nodes if n != first)
            port = nodes[other][1]
            # Each incident is another engine: one engine that fires again soon after it
            # resolved is held back by the repeat interval (a flapping engine pages once).
            name = unique("paged")
            ws = await engine_on(port, name)
            await incident(ops, ws, name, 1)
            across = unique("across")  # fires before the kill, resolves after it
            across_ws = await engine_on(port, across)
            await status(across_ws, 1, "error")
            await expect(ops, "firing", across)
            os.kill(nodes[first][0].pid, signal.SIGKILL)
            await nodes[first][0].wait()
            name = unique("orphan")
            ws = await engine_on(port, name)
            # It fires (most likely) before the dead node's lease ran out: the next holder sends it, not
            # `across` again (the dead holder's delivery mark says it was delivered).
            await incident(ops, ws, name, 1)
            assert await holder(redis) != first
            await status(across_ws, 2, "running")
            await expect(ops, "resolved", across)
            name = unique("settled")
            ws = await engine_on(port, name)
            await incident(ops, ws, name, 1)
            # Every node plans on each tick: a second sender would have sent each firing before
            # its resolve, so nothing beyond what was read means one sender throughout.
            assert ops.requests.empty(), ops.requests.qsize()
        await redis.aclose()


def alert(rule: str, engine: str, state: AlertState, at: float) -> Alert:
    resolved = at if state is AlertState.RESOLVED else None
    return Alert(1, rule, engine, "live", Severity.CRITICAL, "s", state, at, at, resolved)


def test_marks_round_trip_and_reject_anything_malformed() -> None:
    """A mark survives its Redis form; a bad field or value is no mark (never a traceback)."""
    mark = Mark("ops", "status_error", "fno<b>", True, 12.5)
    assert Mark.parse(mark.field(), mark.value()) == mark
    assert Mark.parse(mark.field().decode(), mark.value().encode()) == mark
    for field, value in [
        (b"[", "firing 1"),
        (b'["a","b"]', "firing 1"),
        (mark.field(), "open 1"),
        (mark.field(), "firing nan"),
        (mark.field(), "firing"),
        (b"x" * 2000, "firing 1"),
    ]:
        assert Mark.parse(field, value) is None, (field, value)


def test_a_new_holder_sends_only_what_was_not_delivered() -> None:
    """adopt(): a delivered firing is not repeated; an undelivered one is sent by the next plan;
    a delivered firing that resolved while nobody held the lease gets its resolve now."""
    settings = parse_alerts(
        {"receivers": [{"name": "ops", "type": "webhook", "url": "http://127.0.0.1:9/h"}]}
    )
    dispatcher = Dispatcher(settings)
    delivered = alert("status_error", "a", AlertState.FIRING, 10.0)
    missed = alert("status_error", "b", AlertState.FIRING, 11.0)
    gone = alert("status_error", "c", AlertState.RESOLVED, 12.0)
    marks = [
        Mark("ops", "status_error", "a", True, 10.0),
        Mark("ops", "status_error", "c", True, 9.0),
        Mark("ops", "status_error", "z", True, 9.0),  # unknown here: nothing to send
    ]
    [resolves] = dispatcher.adopt(marks, [delivered, missed], [gone])
    assert (resolves.receiver, resolves.alerts) == ("ops", (gone,))
    [firing] = dispatcher.plan([delivered, missed], [], lambda _: False, 20.0)
    assert firing.alerts == (missed,)
    assert dispatcher.adopt(marks[:1], [delivered], []) == []
    assert dispatcher.plan([delivered], [], lambda _: False, 21.0) == []
