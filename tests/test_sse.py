"""`/api/telemetry/stream`: live delivery, filters, Last-Event-ID resume and keep-alives."""

from __future__ import annotations

from tests.conftest import RunningHub, connect_engine, running_hub, sse, unique


async def test_stream_delivers_live_events_with_filters(hub: RunningHub) -> None:
    """A subscriber gets matching events as they arrive, with ids and typed names."""
    name = unique("live")
    async with sse(hub, engine=name, event_type="order_event") as stream:
        engine = await connect_engine(hub, name)
        await engine.send(
            {"kind": "event", "type": "signal_event", "payload": {"skip": True}},
            {"kind": "event", "type": "order_event", "payload": {"status": "fill"}},
        )
        event = await stream.next()
        assert event.event == "order_event" and event.id is not None
        assert event.data["payload"] == {"status": "fill"} and event.data["engine"] == name
        await engine.close()


async def test_stream_resumes_from_last_event_id(hub: RunningHub) -> None:
    """Reconnecting with Last-Event-ID replays exactly the events after that id."""
    name = unique("resume")
    engine = await connect_engine(hub, name)
    async with sse(hub, engine=name) as stream:
        await engine.send(
            *({"kind": "event", "type": "cycle", "payload": {"n": n}} for n in range(3)), batch=True
        )
        seen = [await stream.next() for _ in range(3)]
    await engine.send(
        *({"kind": "event", "type": "cycle", "payload": {"n": n}} for n in range(3, 6)), batch=True
    )
    await engine.wait_acked()
    async with sse(hub, headers={"Last-Event-ID": seen[1].id or ""}, engine=name) as stream:
        replayed = [(await stream.next()).data["payload"]["n"] for _ in range(4)]
    assert replayed == [2, 3, 4, 5]
    await engine.close()


async def test_stream_reports_evicted_history() -> None:
    """Resuming from an id older than the rings hold says so with a hub.reset event."""
    async with running_hub(ring_capacities={"cycle": 2}) as running:
        engine = await connect_engine(running, unique("evict"))
        await engine.send(
            *({"kind": "event", "type": "cycle", "payload": {"n": n}} for n in range(5)), batch=True
        )
        await engine.wait_acked()
        async with sse(running, headers={"Last-Event-ID": "0"}) as stream:
            reset = await stream.next()
            assert reset.event == "hub.reset" and reset.data["oldest_id"] == 4
            assert [(await stream.next()).data["payload"]["n"] for _ in range(2)] == [3, 4]


async def test_stream_sends_keepalive_comments_while_idle() -> None:
    """An idle stream carries keep-alive comments so proxies keep it open."""
    async with running_hub(sse_keepalive=0.05) as running:
        async with sse(running) as stream:
            comment = await stream.next(comments=True)
            assert (comment.event, comment.data) == ("comment", "keep-alive")
