"""The demo's simulated engines: each signal starts a causal chain the hub reassembles."""

from __future__ import annotations

import asyncio
import random

from hub.client import EngineClient
from hub.demo.simulator import PROFILES, Simulator
from tests.conftest import WAIT, RunningHub, unique


async def test_each_demo_signal_is_a_chain_to_a_fill_or_reject(hub: RunningHub) -> None:
    """signal -> decision -> order -> fill or reject, one chain per signal, each step timed."""
    name = unique("demo")
    client = EngineClient(hub.ws_url, engine=name, close_on_exit=False, flush_interval=0.02)
    client.start()
    try:
        sim = Simulator(name, client, PROFILES["fno"], random.Random(3))
        for tick, rsi in enumerate((20.0, 80.0, 22.0), 1):
            sim.tick = tick
            sim.signal("NIFTY-FUT", 22_500.0, rsi)
        assert await asyncio.to_thread(client.flush, WAIT)
    finally:
        await asyncio.to_thread(client.close)
    found = await hub.get("/api/telemetry/events", engine=name, event_type="signal_event")
    signals = found["events"]
    assert len(signals) == 3
    cycles = set()
    for signal in signals:
        chain = await hub.get("/api/telemetry/chain", event_id=signal["id"])
        stages = [s["stage"] for s in chain["steps"]]
        assert stages[:3] == ["signal", "decision", "order"] and stages[3] in ("fill", "reject")
        assert chain["outcome"] in ("filled", "rejected") and len(stages) == 4
        [cycle] = {s["cycle"] for s in chain["steps"]}  # one cycle id per chain
        cycles.add(cycle)
    assert len(cycles) == 3
