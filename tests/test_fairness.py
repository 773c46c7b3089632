"""Per-engine fairness end to end: rate limits, bad-frame streaks and ring shares on a real hub."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from hub.client import EngineClient
from tests.conftest import WAIT, connect_engine, running_hub, unique

LIMITS = {
    "engine_messages_per_second": 500,
    "engine_message_burst": 500,
    "ring_capacities": {"signal_event": 50},
    "flood_close_after": 60.0,
}


def signal(n: int) -> dict[str, object]:
    return {"kind": "event", "type": "signal_event", "payload": {"n": n}}


async def test_a_flooding_engine_is_limited_and_the_other_engine_is_not() -> None:
    """A flooder gets rate_limited; a calm engine is acked at once and keeps its ring events."""
    async with running_hub(**LIMITS) as running:
        calm = await connect_engine(running, unique("calm"))
        flood = await connect_engine(running, unique("flood"))
        await calm.send(*(signal(n) for n in range(5)), batch=True)
        await calm.wait_acked()
        stop = asyncio.Event()

        async def flooding() -> None:
            while not stop.is_set():  # 100 per frame, as fast as the socket takes them
                await flood.send(*(signal(n) for n in range(100)), batch=True)

        async def errors() -> dict[str, object]:
            return await flood.next_error()

        flooder = asyncio.create_task(flooding())
        try:
            first_error = await asyncio.wait_for(errors(), WAIT)
            latencies = []
            for n in range(5, 10):  # the calm engine, while the flood goes on
                started = time.perf_counter()
                await calm.send(signal(n))
                await calm.wait_acked()
                latencies.append(time.perf_counter() - started)
        finally:
            stop.set()
            await flooder
        assert first_error["code"] == "rate_limited" and first_error["retry_after"] > 0
        assert not calm.errors and max(latencies) < 2.0  # acked like without a flood
        hub = running.hub
        flooded = hub.state.engines[flood.name]
        assert flooded.events <= 500 + 500 * 10  # burst plus rate, however long the test ran
        assert flooded.rate_limited > 0 and hub.state.engines[calm.name].rate_limited == 0
        ring = hub.state.rings.rings["signal_event"]
        assert ring.evicted > 0  # the flood overflowed the ring ...
        kept = [r.data()["n"] for r in hub.state.rings.recent(50, "signal_event", calm.name)]
        assert kept == list(range(9, -1, -1))  # ... yet the calm engine lost none of its 10
        cards = {e["name"]: e for e in (await running.get("/api/telemetry/engines"))["engines"]}
        assert cards[flood.name]["rate_limited"] > 0  # still counting what was in flight
        assert (await running.get("/api/telemetry/stats"))["drops"]["rate_limited"] > 0
        await calm.close()
        flood.ws.transport.abort()  # no close handshake behind a backlog of refused frames


@pytest.mark.parametrize("said_hello", [True, False])
async def test_bad_frames_in_a_row_close_the_socket_with_1008(said_hello: bool) -> None:
    """An engine that only sends frames the hub rejects is closed with 1008 and a reason."""
    async with running_hub(max_bad_frames_in_a_row=5) as running:
        engine = await connect_engine(running, unique("bad"))
        ws = engine.ws
        if not said_hello:
            ws = await websockets.connect(running.ws_url, compression=None)
        for _ in range(5):
            await ws.send("{not json" if said_hello else json.dumps(signal(1) | {"seq": 1}))
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(WAIT):
                while True:
                    await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        assert "5 frames in a row" in closed.value.rcvd.reason
        assert running.hub.state.stats.drops["bad_frames_closed"] == 1
        await ws.close()
        await engine.close()


async def test_a_client_flooding_its_limit_paces_itself_and_loses_nothing() -> None:
    """A real client far above its limit paces itself: not closed, every event stored once."""
    # After the frames already in flight are refused once, it sends below the limit instead of
    # resending its whole backlog after every hold (which the refusal count below tells apart).
    name, count, batch = unique("paced"), 2000, 20
    limits = {"engine_messages_per_second": 1000, "engine_message_burst": 100}
    async with running_hub(**limits, ring_default_capacity=5000, api_max_limit=5000) as running:
        fast = {"flush_interval": 0.02, "backoff_base": 0.05, "backoff_max": 0.2}
        client = EngineClient(running.ws_url, engine=name, max_batch=batch, **fast).start()
        for n in range(count):  # all at once: 20x the burst, 2 s of the limit
            client.publish("paced_probe", {"n": n})
        assert await asyncio.to_thread(client.flush, 3 * WAIT), client.stats
        stats = client.stats
        events = (await running.get("/api/telemetry/events", engine=name, limit=5000))["events"]
        assert sorted(e["payload"]["n"] for e in events) == list(range(count))
        assert stats.connects == 1 and not stats.dropped
        assert stats.rejected.get("rate_limited", 0) > 0
        drops = running.hub.state.stats.drops
        assert drops["gap"] == 0 and drops["flood_closed"] == 0
        # Messages refused, counting a frame refused unread as a whole batch. Paced, that is at
        # most the backlog in flight at the first refusal (< count); resending the backlog after
        # every hold refuses it again and again (about count**2 / (2 * batch) = 100,000).
        refused = drops["rate_limited"] + batch * drops["rate_limited_frames"]
        assert refused < 2 * count, refused
        await asyncio.to_thread(client.close)


async def test_an_engine_that_ignores_rate_limited_is_closed_with_1008() -> None:
    """A raw socket that keeps sending whatever the hub says is closed for flooding."""
    limits = {"engine_messages_per_second": 100, "engine_message_burst": 10}
    async with running_hub(**limits, flood_close_after=0.5) as running:
        engine = await connect_engine(running, unique("deaf"))

        async def flooding() -> None:
            while True:  # never waits retry_after, never resends from resume_seq
                await engine.send(*(signal(n) for n in range(10)), batch=True)
                await asyncio.sleep(0)  # let the hub, in this loop, read what was sent

        flooder = asyncio.create_task(flooding())
        try:
            with pytest.raises(ConnectionClosed) as closed:
                async with asyncio.timeout(WAIT):
                    while True:  # read the refusals, so the close frame is seen
                        await engine.ws.recv()
        finally:
            flooder.cancel()
            await asyncio.gather(flooder, return_exceptions=True)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        assert "over the rate limit" in closed.value.rcvd.reason
        assert running.hub.state.stats.drops["flood_closed"] == 1
