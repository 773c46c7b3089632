"""Causal chains over HTTP: the chain API from any member, after a restart, and the /chain page."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser

from hub.client import AsyncEngineClient
from hub.core.chains import ChainIndex
from tests.conftest import WAIT, RunningHub, connect_engine, running_hub, unique, watched_page

FAST = {"flush_interval": 0.02, "backoff_base": 0.05, "backoff_max": 0.2, "close_timeout": 3.0}


async def _events(running: RunningHub, name: str) -> list[dict[str, Any]]:
    """The engine's events, oldest first."""
    found = await running.get("/api/telemetry/events", engine=name, limit=100)
    return list(reversed(found["events"]))


async def _chain(running: RunningHub, event_id: int) -> dict[str, Any]:
    chain: dict[str, Any] = await running.get("/api/telemetry/chain", event_id=event_id)
    return chain


async def _record_chain(client: AsyncEngineClient, fill: str = "fill") -> None:
    """signal -> decision -> order -> fill (or reject), each naming the one before as parent."""
    signal = client.record_signal("NIFTY", "long", price=101.5, cycle_id="c-1")
    decision = client.record_decision("buy", symbol="NIFTY", parent=signal, cycle_id="c-1")
    order = client.record_order("o-1", "NIFTY", "buy", 50, parent=decision, cycle_id="c-1")
    client.record_order("o-1", "NIFTY", "buy", 50, status=fill, parent=order, cycle_id="c-1")
    client.publish("cycle", {"duration": 0.1})  # not chained: never part of the chain
    assert await client.flush(WAIT)


async def test_chain_is_reassembled_from_history_after_a_restart(tmp_path: Path) -> None:
    """signal -> decision -> order -> fill sent by the real client comes back whole from SQLite
    after a restart, from any member, with the steps' own times between them."""
    db, name = str(tmp_path / "hub.db"), unique("chain")
    async with running_hub(db=db) as running:
        async with AsyncEngineClient(running.ws_url, engine=name, **FAST) as client:
            await _record_chain(client)
    async with running_hub(db=db) as running:
        events = [e for e in await _events(running, name) if e["type"] != "cycle"]
        assert len(events) == 4
        ids = [e["id"] for e in events]
        page = (await running.http.get(f"/engines/{name}")).text  # restored rows link too
        for member in (ids[0], ids[1], ids[3]):  # signal, decision, the order's newest event
            assert f'href="/chain?event_id={member}"' in page
        assert len(running.hub.state.chains) == 4
        running.hub.state.chains = ChainIndex()  # history alone must answer
        for member in ids:
            chain = await _chain(running, member)
            assert [s["event_id"] for s in chain["steps"]] == ids
            assert [s["stage"] for s in chain["steps"]] == ["signal", "decision", "order", "fill"]
        times = [e["timestamp"] for e in events]
        steps = chain["steps"]
        assert [s["timestamp"] for s in steps] == times
        for previous, step in zip(steps, steps[1:], strict=False):
            gap = _seconds(step["timestamp"]) - _seconds(previous["timestamp"])
            assert step["since_previous_ms"] == pytest.approx(gap * 1000, abs=0.01)
        total = (_seconds(times[-1]) - _seconds(times[0])) * 1000
        assert chain["total_ms"] == pytest.approx(total, abs=0.01)
        assert chain["outcome"] == "filled" and chain["summary"].startswith("signal to fill: ")
        assert steps[0]["event"]["payload"]["symbol"] == "NIFTY"


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


async def test_chain_api_with_exact_timings_from_any_member(hub: RunningHub) -> None:
    """Raw protocol: the chain's timings are the steps' ts differences, "signal to fill: 420 ms"."""
    name, t0 = unique("timed"), time.time() - 60
    engine = await connect_engine(hub, name)
    await engine.send(
        {"kind": "event", "type": "signal_event", "ts": t0, "payload": {}, "chain": {"ref": 1}},
        {"kind": "event", "type": "indicator_event", "ts": t0 + 0.05, "payload": {}},
        {
            "kind": "event",
            "type": "decision_trace",
            "ts": t0 + 0.1,
            "payload": {},
            "chain": {"ref": 2, "parent": 1},
        },
        {
            "kind": "event",
            "type": "order_event",
            "ts": t0 + 0.15,
            "payload": {"status": "create"},
            "chain": {"ref": 3, "parent": 2},
        },
        {
            "kind": "event",
            "type": "order_event",
            "ts": t0 + 0.42,
            "payload": {"status": "fill"},
            "chain": {"ref": 4, "parent": 3},
        },
    )
    await engine.wait_acked()
    events = [e for e in await _events(hub, name) if e["type"] != "indicator_event"]
    for event in events:
        chain = await _chain(hub, event["id"])
        assert [s["event_id"] for s in chain["steps"]] == [e["id"] for e in events]
    gaps = [s["since_previous_ms"] for s in chain["steps"]]
    assert gaps[0] is None and gaps[1:] == pytest.approx([100, 50, 270], abs=0.01)
    assert [s["since_start_ms"] for s in chain["steps"]] == pytest.approx([0, 100, 150, 420])
    assert chain["summary"] == "signal to fill: 420 ms"
    assert chain["total_ms"] == pytest.approx(420, abs=0.01)
    await engine.close()


async def test_a_reject_ends_the_chain(hub: RunningHub) -> None:
    """signal -> decision -> order -> reject: the outcome is rejected and the end is the reject."""
    name = unique("reject")
    async with AsyncEngineClient(hub.ws_url, engine=name, **FAST) as client:
        await _record_chain(client, fill="reject")
    events = [e for e in await _events(hub, name) if e["type"] != "cycle"]
    chain = await _chain(hub, events[1]["id"])
    assert [s["stage"] for s in chain["steps"]] == ["signal", "decision", "order", "reject"]
    assert chain["outcome"] == "rejected" and chain["to"] == "reject"
    assert chain["summary"].startswith("signal to reject: ")


async def test_unknown_and_bad_event_ids(hub: RunningHub) -> None:
    """Unknown or unchained ids are a clear 404; missing or malformed ones a 400, never a 500."""
    name = unique("unchained")
    async with AsyncEngineClient(hub.ws_url, engine=name, **FAST) as client:
        client.publish("cycle", {"duration": 0.1})
        assert await client.flush(WAIT)
    [cycle] = await _events(hub, name)
    for unknown in (str(cycle["id"]), "999999999999", str(2**63 - 1)):
        response = await hub.http.get("/api/telemetry/chain", params={"event_id": unknown})
        assert response.status_code == 404, response.text
        assert response.json()["error"] == "not_found"
        assert "causal chain" in response.json()["detail"]
    for bad in ("", "abc", "-3", "0", "1.5", str(2**63), "١٢", "1e3"):
        response = await hub.http.get("/api/telemetry/chain", params={"event_id": bad})
        assert response.status_code == 400, (bad, response.text)
        assert "event_id" in response.json()["detail"]
    page = await hub.http.get("/chain", params={"event_id": "abc"})
    assert page.status_code == 400 and "event_id must be a positive integer" in page.text
    page = await hub.http.get("/chain", params={"event_id": "999999999999"})
    assert page.status_code == 404 and "Chain not found" in page.text


async def test_bad_chain_fields_are_rejected_per_message(hub: RunningHub) -> None:
    """A chain with a bad ref or an overlong cycle id is rejected with a clear error; the rest is kept."""
    engine = await connect_engine(hub, unique("badchain"))
    await engine.send(
        {"kind": "event", "type": "signal_event", "payload": {}, "chain": {"ref": -1}},
        {"kind": "event", "type": "signal_event", "payload": {}, "chain": {"cycle": "x" * 129}},
        {"kind": "event", "type": "signal_event", "payload": {}, "chain": {"ref": 7}},
        batch=True,
    )
    first, second = await engine.next_error(), await engine.next_error()
    assert first["code"] == second["code"] == "bad_message"
    assert "chain" in first["detail"] and "chain" in second["detail"]
    await engine.wait_acked()
    await engine.close()


async def test_chain_page_shows_steps_and_signal_to_fill_with_engine_text_escaped(
    hub: RunningHub, browser: Browser
) -> None:
    """/chain in Chromium: every step, the "signal to fill" time, escaped text, no CSP problem."""
    name = unique("page")
    evil = '<img src=x onerror="window.pwned=1">'
    async with AsyncEngineClient(hub.ws_url, engine=name, **FAST) as client:
        signal = client.record_signal("NIFTY", "long", reason=evil)
        order = client.record_order("o-9", "NIFTY", "buy", 5, parent=signal)
        client.record_order("o-9", "NIFTY", "buy", 5, status="fill", parent=order)
        assert await client.flush(WAIT)
    events = await _events(hub, name)
    async with watched_page(browser) as watched:
        page = watched.page
        await page.goto(f"http://127.0.0.1:{hub.port}/chain?event_id={events[-1]['id']}")
        rows = page.locator("tr.chain-step")
        assert await rows.count() == 3
        stages = await page.locator("tr.chain-step td.stage").all_inner_texts()
        assert stages == ["signal", "order", "fill"]
        summary = await page.locator("#chain-summary").inner_text()
        assert summary.startswith("signal to fill: ")
        assert evil in await page.locator("tr.chain-step").first.inner_text()
        assert await page.evaluate("window.pwned === undefined")
        assert await page.locator("img").count() == 0
        link = await rows.first.locator("a").get_attribute("href")
        assert link == f"/timeline?engine={name}&around={_seconds(events[0]['timestamp']):.3f}"
        assert watched.problems == []
