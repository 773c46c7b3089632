"""A saturated fan-out never turns into false health transitions, and the hub says it lags."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterable

import pytest
from websockets.sync.client import connect

from hub.live.views import FragmentKey
from tests.conftest import WAIT, SSEEvent, dashboard, running_hub, sse

BEAT = 0.2  # the engines' heartbeat interval: late after 0.4 s of silence, stale after 1.2 s
BURN = 1.5  # seconds one slow fan-out run holds the event loop (longer than "stale")


class BeatingEngine(threading.Thread):
    """An engine in its own thread that heartbeats every BEAT s, whatever the hub's loop does."""

    def __init__(self, port: int, name: str) -> None:
        super().__init__(daemon=True)
        self.url, self.name = f"ws://127.0.0.1:{port}/ws/engine", name
        self.stop = threading.Event()
        self.welcomed = threading.Event()
        self.beats = 0

    def run(self) -> None:
        hello = {"kind": "hello", "engine": self.name, "boot_id": uuid.uuid4().hex}
        with connect(self.url, compression=None, close_timeout=1) as ws:
            ws.send(json.dumps({**hello, "heartbeat_interval": BEAT}))
            seq = json.loads(ws.recv(timeout=WAIT))["last_seq"]
            self.welcomed.set()
            while not self.stop.is_set():
                seq += 1
                ws.send(json.dumps({"kind": "heartbeat", "seq": seq, "status": "running"}))
                self.beats += 1
                self.stop.wait(BEAT)  # the heartbeat cadence itself, not a synchronization
            ws.send(json.dumps({"kind": "bye", "seq": seq + 1, "status": "stopped"}))


def burn(seconds: float) -> None:
    """Hold the GIL and the event loop like a very expensive render."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def test_a_saturated_fanout_makes_no_engine_late_and_says_the_hub_lags(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While every fan-out run holds the loop for 1.5 s (longer than the engines' stale threshold)
    engines that keep heartbeating are never reported late or stale (SSE hub.health), and the
    dashboard's hub status and /healthz say "hub lagging"."""
    async with running_hub() as running:
        hub = running.hub
        names = [f"beat-{i}" for i in range(3)]
        engines = [BeatingEngine(running.port, name) for name in names]
        canary = BeatingEngine(running.port, "canary")  # its bye ends the test's stream
        async with sse(running, event_type="hub.health") as stream:
            for engine in (*engines, canary):
                engine.start()
            loop = asyncio.get_running_loop()
            for engine in (*engines, canary):
                assert await loop.run_in_executor(None, engine.welcomed.wait, WAIT)
            slow_runs = 0
            enough = asyncio.Event()
            frame = hub.views.frame

            def slow_frame(
                keys: Iterable[FragmentKey], now: float, cache: dict[FragmentKey, str]
            ) -> str:
                nonlocal slow_runs
                if not enough.is_set():
                    burn(BURN)
                    slow_runs += 1
                    if slow_runs >= 4:
                        enough.set()
                return frame(keys, now, cache)

            async with dashboard(running) as page:
                monkeypatch.setattr(hub.views, "frame", slow_frame)
                async with asyncio.timeout(WAIT * 3):
                    while "hub lagging" not in await page.recv():
                        pass  # the hub status pill arrives as its own fragment
                    await enough.wait()
                    health = (await running.http.get("/healthz")).json()
                assert health["status"] == "degraded", health
                assert any(r.startswith("hub lagging ") for r in health["reasons"]), health
                metrics = (await running.http.get("/metrics")).text
                assert "engine_hub_loop_lag_seconds " in metrics
                blind = [
                    ln for ln in metrics.splitlines() if ln.startswith("engine_hub_loop_blind")
                ]
                assert blind and float(blind[0].split()[-1]) >= BURN * 0.9, blind
            canary.stop.set()
            seen: list[SSEEvent] = []  # every transition, in order, up to the canary's stop
            async with asyncio.timeout(WAIT):
                while not seen or seen[-1].data["engine"] != "canary":
                    seen.append(await stream.next())
        for engine in engines:
            engine.stop.set()
            await loop.run_in_executor(None, engine.join, WAIT)
        assert all(engine.beats > 10 for engine in engines)
        false = [e.data for e in seen if e.data["health"] in ("late", "stale", "stalled")]
        assert not false, f"false transitions while the hub was busy: {false}"
        assert hub.state.lag.total_blind >= 4 * BURN * 0.9
