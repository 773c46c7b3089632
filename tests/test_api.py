"""The JSON API: documented shapes, filters, caps, and 400s for bad parameters."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

from hub.core.access import ApiToken, Role, User, digest, new_token
from hub.settings import Settings
from hub.stores import HistoryQuery
from hub.web.app import create_app
from tests.conftest import WAIT, RunningHub, connect_engine, running_hub, unique

ROUTES = create_app(Settings(db=":memory:")).routes


def json_error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    """Assert `response` is the hub's one JSON error shape with this status and code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json", response.headers
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "detail"} and body["error"] == error, body
    assert isinstance(body["detail"], str) and body["detail"], body
    return body


async def test_engines_shape(hub: RunningHub) -> None:
    """/engines lists reported fields plus hub-derived health and connection state."""
    name = unique("shape")
    engine = await connect_engine(hub, name, mode="live", started_at="2026-01-02T03:04:05+00:00")
    await engine.send(
        {
            "kind": "heartbeat",
            "status": "running",
            "loop_tick": 3,
            "last_error": "boom",
            "state": {"next_cycle_at": 5},
        }
    )
    await engine.wait_acked()
    body = await hub.get("/api/telemetry/engines")
    assert body["asof"].endswith("Z")
    [card] = [e for e in body["engines"] if e["name"] == name]
    for key in (
        "name",
        "mode",
        "pid",
        "status",
        "started_at",
        "last_heartbeat",
        "loop_tick",
        "universe_size",
        "open_positions",
        "last_error",
        "health",
        "connected",
    ):
        assert key in card
    assert card["mode"] == "live" and card["started_at"].startswith("2026-01-02T03:04:05")
    assert card["last_error"] == "boom" and card["state"] == {"next_cycle_at": 5}
    await engine.close()


async def test_events_filters_limit_and_paging(hub: RunningHub) -> None:
    """event_type, engine and limit filter; `before` pages to older events."""
    name = unique("page")
    engine = await connect_engine(hub, name)
    await engine.send(
        *(
            {"kind": "event", "type": "signal_event" if n % 2 else "cycle", "payload": {"n": n}}
            for n in range(10)
        ),
        batch=True,
    )
    await engine.wait_acked()
    signals = (await hub.get("/api/telemetry/events", engine=name, event_type="signal_event"))[
        "events"
    ]
    assert [e["payload"]["n"] for e in signals] == [9, 7, 5, 3, 1]
    assert set(signals[0]) >= {"type", "timestamp", "engine", "seq", "payload"}
    first = await hub.get("/api/telemetry/events", engine=name, limit=4)
    assert [e["payload"]["n"] for e in first["events"]] == [9, 8, 7, 6]
    second = await hub.get(
        "/api/telemetry/events", engine=name, limit=4, before=first["next_before"]
    )
    assert [e["payload"]["n"] for e in second["events"]] == [5, 4, 3, 2]
    await engine.close()


async def test_limit_is_capped() -> None:
    """A limit above the cap returns at most the cap instead of failing."""
    async with running_hub(api_max_limit=3) as running:
        engine = await connect_engine(running, unique("cap"))
        await engine.send(*({"kind": "event", "type": "cycle"} for _ in range(5)), batch=True)
        await engine.wait_acked()
        body = await running.get("/api/telemetry/events", limit=1000)
        assert body["count"] == 3


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/telemetry/events", {"limit": "ten"}),
        ("/api/telemetry/events", {"limit": "0"}),
        ("/api/telemetry/events", {"limit": "-5"}),
        ("/api/telemetry/events", {"event_type": "bad type!"}),
        ("/api/telemetry/events", {"engine": "<script>"}),
        ("/api/telemetry/events", {"before": "yesterday"}),
        ("/api/telemetry/engine_logs", {}),
        ("/api/telemetry/engine_logs", {"engine": "fno", "lines": "many"}),
        ("/api/telemetry/engine_logs", {"engine": "fno", "level": "LOUD!"}),
        ("/api/telemetry/metrics", {"engine": "a b"}),
        ("/api/telemetry/stream", {"event_type": "no spaces"}),
    ],
)
async def test_bad_parameters_get_400_json(
    hub: RunningHub, path: str, params: dict[str, str]
) -> None:
    """Invalid query parameters get a 400 with a JSON reason, never a 500."""
    json_error(await hub.http.get(path, params=params), 400, "bad_request")


@pytest.mark.parametrize(
    "path",
    [
        "/api/telemetry/engine_logs?engine=nobody-here",
        "/api/telemetry/metrics?engine=nobody-here",
        "/fragments/engines/nobody-here/card",
    ],
)
async def test_unknown_engine_is_a_json_404(hub: RunningHub, path: str) -> None:
    """The API and the card fragment answer an unknown engine with the 400's JSON shape."""
    body = json_error(await hub.http.get(path), 404, "not_found")
    assert "nobody-here" in body["detail"]


async def test_unknown_engine_page_is_an_html_404(hub: RunningHub) -> None:
    """The documented exception: a page a person opens says "not found" in HTML, not JSON."""
    response = await hub.http.get("/engines/nobody-here")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "nobody-here" in response.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/no/such/page"),
        ("GET", "/api/telemetry/nope"),
        ("POST", "/api/telemetry"),
        ("GET", "/engines/id/not-a-number"),
        ("DELETE", "/engines/a/b/c"),
        ("GET", "/static/no-such-file.js"),
    ],
)
async def test_unknown_paths_are_json_404(hub: RunningHub, method: str, path: str) -> None:
    """A path the hub does not serve is a JSON 404 naming the path, for any method."""
    body = json_error(await hub.http.request(method, path), 404, "not_found")
    assert path in body["detail"] and "docs/api.md" in body["detail"]


def _route_id(route: BaseRoute) -> str:
    return f"{type(route).__name__}:{getattr(route, 'path', '?')}"


@pytest.mark.parametrize("route", ROUTES, ids=_route_id)
async def test_every_route_answers_a_wrong_method_in_json(
    hub: RunningHub, route: BaseRoute
) -> None:
    """Each route of the app answers a method it does not take with a JSON 405 and `Allow`."""
    if isinstance(route, WebSocketRoute):
        # Plain HTTP to a socket path is the wrong protocol rather than a wrong method.
        response = await hub.http.get(route.path)
        assert "WebSocket" in json_error(response, 426, "upgrade_required")["detail"]
        assert response.headers["upgrade"] == "websocket"
        return
    if isinstance(route, Mount):
        path, allowed = f"{route.path}/favicon.svg", "GET, HEAD"
        assert (await hub.http.get(path)).status_code == 200, "the mount must serve this file"
    elif isinstance(route, Route):
        assert route.methods, f"{route.path} takes every method; pick one it refuses here"
        path, allowed = re.sub(r"\{[^}]+\}", "1", route.path), ", ".join(sorted(route.methods))
    else:
        pytest.fail(f"no wrong-method check for {route!r}; add one here")
    for method in sorted({"POST", "PUT", "DELETE", "PATCH"} - set(allowed.split(", "))):
        response = await hub.http.request(method, path)
        body = json_error(response, 405, "method_not_allowed")
        assert response.headers["allow"] == allowed
        assert body["detail"] == f"{method} is not allowed on {path}; allowed: {allowed}"


async def test_engine_logs_tail_and_level(hub: RunningHub) -> None:
    """engine_logs returns the newest `lines`, oldest first, filtered by minimum level."""
    name = unique("logs")
    engine = await connect_engine(hub, name)
    levels = ["DEBUG", "INFO", "WARN", "ERROR", "INFO"]
    await engine.send(
        *(
            {"kind": "log", "level": lvl, "message": f"m{i}", "logger": "x", "extra": {"i": i}}
            for i, lvl in enumerate(levels)
        ),
        batch=True,
    )
    await engine.wait_acked()
    tail = (await hub.get("/api/telemetry/engine_logs", engine=name, lines=2))["lines"]
    assert [line["message"] for line in tail] == ["m3", "m4"]
    warn = (await hub.get("/api/telemetry/engine_logs", engine=name, level="warning"))["lines"]
    assert [(line["message"], line["level"]) for line in warn] == [
        ("m2", "WARNING"),
        ("m3", "ERROR"),
    ]
    assert warn[0]["extra"] == {"i": 2}
    await engine.close()


async def test_stats_counts_buffers_and_drops() -> None:
    """stats reports ring size, capacity, totals, evictions, rejections and connections."""
    async with running_hub(ring_capacities={"cycle": 3}) as running:
        engine = await connect_engine(running, unique("stats"))
        await engine.send(
            *({"kind": "event", "type": "cycle"} for _ in range(5)), {"kind": "nope"}, batch=True
        )
        await engine.wait_acked()
        stats = await running.get("/api/telemetry/stats")
        assert stats["buffers"]["cycle"] == {"size": 3, "capacity": 3, "total": 5, "evicted": 2}
        assert stats["buffers"]["signal_event"]["capacity"] == 500
        assert stats["rejected"] == {"unknown_kind": 1}
        assert stats["connections"]["engines"] == 1
        await engine.close()


async def test_stats_log_tails_report_lines_held_and_the_per_engine_limit() -> None:
    """log_tails: `size` is the lines held now, `capacity_per_engine` is the log_tail_lines setting."""
    async with running_hub(log_tail_lines=4) as running:
        chatty = await connect_engine(running, unique("chatty"))
        quiet = await connect_engine(running, unique("quiet"))
        await chatty.send(
            *({"kind": "log", "level": "INFO", "message": f"m{n}"} for n in range(6)), batch=True
        )
        await quiet.send({"kind": "log", "level": "INFO", "message": "only"})
        await chatty.wait_acked()
        await quiet.wait_acked()
        tails = (await running.get("/api/telemetry/stats"))["log_tails"]
        assert tails == {"engines": 2, "size": 5, "capacity_per_engine": 4, "evicted": 2}
        await chatty.close()
        await quiet.close()


async def test_stats_counts_hello_messages() -> None:
    """stats `messages.hello` counts each engine's hello (needs the hello counter in hub/core/state.py)."""
    async with running_hub() as running:
        engine = await connect_engine(running, unique("hello"))
        stats = await running.get("/api/telemetry/stats")
        assert stats["messages"]["hello"] == 1, stats["messages"]
        await engine.close()


async def test_metrics_session_and_lifetime(hub: RunningHub) -> None:
    """A new boot restarts session counters while lifetime values continue."""
    name = unique("life")
    engine = await connect_engine(hub, name, boot_id="one")
    await engine.send(
        {"kind": "metric", "op": "inc", "name": "orders", "value": 3},
        {"kind": "metric", "op": "observe", "name": "lat", "value": 0.5},
    )
    await engine.wait_acked()
    await engine.close()
    engine = await connect_engine(hub, name, boot_id="two")
    await engine.send(
        {"kind": "metric", "op": "inc", "name": "orders", "value": 2},
        {"kind": "metric", "op": "observe", "name": "lat", "value": 1.5},
    )
    await engine.wait_acked()
    metrics = (await hub.get("/api/telemetry/metrics", engine=name))["engines"][name]
    [counter] = metrics["counters"]
    assert (counter["session"], counter["lifetime"]) == (2, 5)
    [hist] = metrics["histograms"]
    assert (hist["session"]["count"], hist["lifetime"]["count"]) == (1, 2)
    assert set(hist["lifetime"]) == {"count", "sum", "min", "max", "p50", "p95", "p99"}
    assert hist["lifetime"]["max"] == 1.5
    await engine.close()


async def test_audit_trail_is_served_newest_first_and_filtered_by_engine() -> None:
    """/api/admin/audit lists what Hub.audit recorded, newest first, one engine's on request."""
    async with running_hub() as running:
        running.hub.audit("alice", "sign_in", "from 127.0.0.1")
        running.hub.audit("bob", "engine_forgotten", "retired", engine="fno")
        async with asyncio.timeout(WAIT):
            while (body := await running.get("/api/admin/audit"))["count"] < 2:
                pass
        assert [(a["actor"], a["action"], a["engine"]) for a in body["audit"]] == [
            ("bob", "engine_forgotten", "fno"),
            ("alice", "sign_in", None),
        ]
        fno = await running.get("/api/admin/audit", engine="fno")
        assert [a["actor"] for a in fno["audit"]] == ["bob"]


async def test_reloaded_credentials_reach_the_audit_trail_by_name_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A reload that adds and removes users and tokens records each by name; no token, full
    digest or password hash reaches the trail or the log."""
    token = new_token("ehv_")
    entry = ApiToken(digest(token), Role.VIEWER, "grafana")
    user = User("carol", Role.ADMIN, "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA")
    async with running_hub() as running:
        hub, settings = running.hub, running.hub.settings
        hub.reload_credentials(settings.replace(api_tokens=(entry,), users=(user,)), "ops")
        hub.reload_credentials(settings.replace(users=(user,)), "ops")
        trail = await hub.store.history("audit", HistoryQuery(10))
    assert [(a.actor, a.action, a.detail) for a in trail] == [
        ("ops", "credential_removed", "api token grafana"),
        ("ops", "credential_added", "api token grafana"),
        ("ops", "credential_added", "user carol"),
    ]
    text = repr(trail) + caplog.text
    assert token not in text and entry.sha256 not in text and "argon2" not in text


async def test_audit_page_lists_the_trail_as_escaped_text() -> None:
    """/admin/audit shows each entry; a hostile detail is text, not markup, under the strict CSP."""
    async with running_hub() as running:
        running.hub.audit("alice", "sign_in_failed", '<script>alert("x")</script>')
        response = await running.http.get("/admin/audit")
    assert response.status_code == 200
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert "sign_in_failed" in response.text and "<script>alert" not in response.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in response.text


async def healthz_until(running: RunningHub, status: str) -> dict[str, Any]:
    """Poll /healthz until it reports `status` (its stall verdict is a matter of elapsed time)."""
    async with asyncio.timeout(WAIT):
        while True:
            body: dict[str, Any] = await running.get("/healthz")
            if body["status"] == status:
                return body
            await asyncio.sleep(0.05)  # polling a clock-driven verdict, not synchronizing


async def test_healthz_is_degraded_while_a_held_write_lock_stalls_acks(tmp_path: Path) -> None:
    """Another connection holding the SQLite write lock past store_stall_after while an engine
    sends: /healthz says degraded (200) with the reason; once released it says ok and acks flow."""
    db = str(tmp_path / "hub.db")
    async with running_hub(db=db, commit_interval=0.05, store_stall_after=0.5) as running:
        engine = await connect_engine(running, unique("stall"))
        await engine.send({"kind": "event", "type": "cycle", "payload": {"n": 1}})
        await engine.wait_acked()
        assert (await running.get("/healthz"))["status"] == "ok"
        with closing(sqlite3.connect(db, isolation_level=None)) as locker:
            locker.execute("BEGIN IMMEDIATE")  # another program holds the write lock
            try:
                sent = await engine.send({"kind": "event", "type": "cycle", "payload": {"n": 2}})
                response = await running.http.get("/healthz")
                assert response.status_code == 200 and response.json()["status"] == "ok"
                body = await healthz_until(running, "degraded")
                assert engine.acked < sent  # it really is stalled, not only said to be
            finally:
                locker.execute("ROLLBACK")
        assert body["store"]["acking"] is False and body["store"]["pending_seconds"] > 0.5
        assert body["store"]["problem"] is None  # not failing: waiting for the lock
        (reason,) = body["reasons"]
        assert "not committed" in reason and "store_stall_after" in reason
        await engine.wait_acked()
        body = await healthz_until(running, "ok")
        assert body["reasons"] == [] and body["store"]["acking"] is True
        await engine.close()


async def test_a_1970_timestamp_is_stored_as_sent_and_flagged(hub: RunningHub) -> None:
    """An event stamped in 1970 is accepted with its own time and counted in stats `flagged`;
    a heartbeat stamped in 1970 shows as a clock skew of decades. The engine counts both, and a
    rejected far-future one, in `flagged_timestamps`."""
    engine = await connect_engine(hub, unique("epoch"))
    before = (await hub.get("/api/telemetry/stats"))["flagged"].get("past_timestamp", 0)
    await engine.send(
        {"kind": "event", "type": "cycle", "ts": 86_400.0, "payload": {"n": 1}},
        {"kind": "heartbeat", "ts": 86_400.0, "status": "running"},
    )
    await engine.wait_acked()
    assert engine.errors == []
    await engine.send({"kind": "log", "message": "from the future", "ts": 4e9})
    assert (await engine.next_error())["code"] == "future_timestamp"
    (stored,) = (await hub.get("/api/telemetry/events", engine=engine.name))["events"]
    assert stored["timestamp"].startswith("1970-01-02T00:00:00")
    assert (await hub.get("/api/telemetry/stats"))["flagged"]["past_timestamp"] == before + 2
    (record,) = [
        e for e in (await hub.get("/api/telemetry/engines"))["engines"] if e["name"] == engine.name
    ]
    assert record["clock_skew"] < -50 * 365 * 86400
    assert record["last_heartbeat_ts"].startswith("1970-01-02")
    assert record["flagged_timestamps"] == 3
    await engine.close()


async def test_reject_past_timestamps_answers_past_timestamp_and_stores_nothing() -> None:
    """With reject_past_timestamps an event a month old is refused with `past_timestamp` and a
    reason naming the limit; it is not stored and counts on the engine and in stats `rejected`."""
    async with running_hub(reject_past_timestamps=True) as running:
        engine = await connect_engine(running, unique("strict"))
        await engine.send({"kind": "event", "type": "cycle", "ts": 1e9, "payload": {"n": 1}})
        error = await engine.next_error()
        assert (error["code"], error["seq"]) == ("past_timestamp", 1)
        assert "in the past; the limit is 604800 s" in error["detail"]
        await engine.send({"kind": "event", "type": "cycle", "payload": {"n": 2}})
        await engine.wait_acked()
        events = (await running.get("/api/telemetry/events", engine=engine.name))["events"]
        assert [e["payload"] for e in events] == [{"n": 2}]
        stats = await running.get("/api/telemetry/stats")
        assert stats["rejected"]["past_timestamp"] == 1 and "past_timestamp" not in stats["flagged"]
        (record,) = [
            e
            for e in (await running.get("/api/telemetry/engines"))["engines"]
            if e["name"] == engine.name
        ]
        assert record["flagged_timestamps"] == 1 and record["rejected"] == 1
        await engine.close()
