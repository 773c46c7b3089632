"""Prometheus `/metrics`: hub and engine metrics in separate namespaces, valid under promtool."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hub.core.messages import Metric
from hub.core.metrics import MetricRegistry
from hub.web.prometheus import CHUNK_BYTES, engine_exposition, engine_lines
from tests.conftest import RunningHub, connect_engine, running_hub, unique


async def test_metrics_exposition(hub: RunningHub) -> None:
    """Engine counters, gauges and histograms and hub health parse as valid Prometheus text."""
    name = unique("prom")
    engine = await connect_engine(hub, name, mode="live")
    await engine.send(
        {"kind": "heartbeat", "status": "running", "loop_tick": 42},
        {
            "kind": "metric",
            "op": "inc",
            "name": "signals.long",
            "value": 3,
            "tags": {"strategy": "mr"},
        },
        {"kind": "metric", "op": "set", "name": "equity", "value": 1000.5},
        {"kind": "metric", "op": "observe", "name": "cycle.seconds", "value": 0.2},
        batch=True,
    )
    await engine.wait_acked()
    response = await hub.http.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    labels = (("engine", name), ("mode", "live"))
    assert (
        samples[
            (
                "engine_metric_signals_long_total",
                (("engine", name), ("mode", "live"), ("strategy", "mr")),
            )
        ]
        == 3
    )
    assert samples[("engine_metric_equity", labels)] == 1000.5
    assert samples[("engine_metric_cycle_seconds_count", labels)] == 1
    assert samples[("engine_hub_engine_up", labels)] == 1
    assert samples[("engine_hub_engine_loop_tick", labels)] == 42
    assert (
        samples[
            ("engine_hub_engine_health", (("engine", name), ("health", "ok"), ("mode", "live")))
        ]
        == 1
    )
    await engine.close()


async def test_metric_kind_conflict_is_rejected(hub: RunningHub) -> None:
    """A name used with another kind, here or on another engine, is refused, not merged or hidden."""
    clash = unique("clash").replace("-", "_")
    engine = await connect_engine(hub, unique("conflict"))
    await engine.send({"kind": "metric", "op": "inc", "name": clash})
    await engine.send({"kind": "metric", "op": "set", "name": clash, "value": 2})
    assert (await engine.next_error())["code"] == "metric_conflict"
    other = await connect_engine(hub, unique("conflict2"))
    await other.send({"kind": "metric", "op": "set", "name": clash, "value": 2})
    error = await other.next_error()
    assert error["code"] == "metric_conflict" and "rename it" in error["detail"]
    text = (await hub.http.get("/metrics")).text
    [family] = [f for f in text_string_to_metric_families(text) if f.name.endswith(clash)]
    assert family.type == "counter" and len(family.samples) == 1
    await engine.close()
    await other.close()


HOSTILE = [
    # (op, name, tags) from issue 14 item 6, plus neighbours; all must be accepted or refused
    # without breaking the exposition.
    ("inc", "hub_connections", {}),
    ("set", "hub_connections_x", {"type": "engine"}),
    ("set", "cycles", {}),
    ("inc", "cycles_total", {}),
    ("inc", "a.b", {}),
    ("inc", "a_b", {}),
    ("inc", "a-b", {}),
    ("inc", "a:b", {}),
    ("inc", "orders_total", {"side": 'buy"\\\n'}),
    ("inc", "orders", {}),
    ("observe", "lat", {"quantile": "0.5"}),
    ("observe", "lat", {"le": "1"}),
    ("observe", "lat", {"venue": "x", "symbol": "é\u202e"}),
    ("set", "lat_count", {}),
    ("observe", "lat_bucket", {}),
    ("set", "up", {"__name__": "x"}),
    ("set", "up", {"__meta": "x"}),
    ("set", "up", {"engine": "other"}),
    ("set", "up", {"mode": "live"}),
    ("set", "9lives", {}),
    ("set", "_", {}),
    ("set", ":", {}),
    ("set", "x" * 128, {"k": "v" * 256}),
    ("inc", "hub", {"_": ""}),
]


def promtool() -> str:
    """The promtool scripts/test provides (PROMTOOL), one on PATH, or a skip saying why not."""
    path = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not path:
        pytest.skip(
            "promtool is not available: run scripts/test (extracts it from Debian's 'prometheus' "
            "package as root) or set PROMTOOL=/path/to/promtool"
        )
    return path


async def test_promtool_accepts_hostile_names_and_tags() -> None:
    """promtool check metrics passes on an exposition built from hostile metric names and tags."""
    tool = promtool()
    async with running_hub() as hub:  # its own: metric names have one owner per hub
        await _hostile_exposition(hub, tool)


async def _hostile_exposition(hub: RunningHub, tool: str) -> None:
    engines = [await connect_engine(hub, unique("hostile")) for _ in range(2)]
    for i, (op, name, tags) in enumerate(HOSTILE):
        for engine in engines if i % 2 else engines[:1]:
            await engine.send({"kind": "metric", "op": op, "name": name, "value": 2, "tags": tags})
    for engine in engines:
        await engine.send({"kind": "heartbeat", "status": "running"})
        await engine.wait_acked()
    text = (await hub.http.get("/metrics")).text
    result = subprocess.run(
        [tool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    # promtool's lint only advises on style (e.g. counters without _total); errors exit 1 with
    # "error while linting" or a parse error.
    assert "error" not in (result.stdout + result.stderr).lower(), result.stdout + result.stderr
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["engine_hub_connections"].type == "gauge"
    assert families["engine_metric_hub_connections"].type == "counter"
    assert "engine_metric_orders_total_total" not in text
    assert 'quantile="0.5"' not in text and '__name__="x"' not in text
    for engine in engines:
        await engine.close()


def fill_registry(metrics: MetricRegistry, engines: int, series: int) -> None:
    """Counters with long tags (some needing escapes), a gauge, and a histogram every 25th."""
    for e in range(engines):
        engine = f"big-{e}"
        for s in range(series):
            tags = {"symbol": f"SYM{s:05d}" + "x" * (s % 200), "side": 'b"u\\y\n' if s % 7 else "s"}
            metrics.apply(engine, Metric(seq=1, op="inc", name=f"fills.k{s % 3}", tags=tags), 0.0)
            if s % 25 == 0:
                msg = Metric(seq=1, op="observe", name="lat", value=s / 1000, tags={"k": str(s)})
                metrics.apply(engine, msg, 0.0)
        metrics.apply(engine, Metric(seq=1, op="set", name="equity", value=float(e)), 0.0)


def big_registry() -> MetricRegistry:
    metrics = MetricRegistry(10_000, 2**30, 2**30)
    fill_registry(metrics, 3, 1500)
    return metrics


def test_chunks_are_byte_bounded_and_join_to_the_whole() -> None:
    """Chunks end with a line, stay under the byte bound plus one series, and join to the text."""
    metrics = big_registry()
    whole = "".join(engine_lines(metrics, {})).encode()
    assert [whole] == list(engine_exposition(metrics, {}, chunk_bytes=len(whole) + 1))
    longest = max(len(text.encode()) for text in engine_lines(metrics, {}))
    chunks = list(engine_exposition(metrics, {}, chunk_bytes=4096))
    assert b"".join(chunks) == whole
    for chunk in chunks:
        assert chunk.endswith(b"\n") and len(chunk) < 4096 + longest
    assert min(len(chunk) for chunk in chunks[:-1]) >= 4096  # no needless yields either
    # A family's HELP, TYPE and samples are one run of lines, never split by another family.
    seen: list[str] = []
    for line in whole.decode().splitlines():
        name = line.split()[2] if line.startswith("#") else line.split("{")[0]
        family = name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
        if not seen or seen[-1] != family:
            assert family not in seen, f"{family} appears again after {seen[-1]}"
            seen.append(family)
    samples = sum(len(f.samples) for f in text_string_to_metric_families(whole.decode()))
    assert samples == 3 * (1500 + 60 * 20 + 1)


async def test_large_metrics_stream_is_the_whole_exposition() -> None:
    """A big /metrics response is the engine text rendered in one go, plus the hub's families."""
    async with running_hub() as running:
        fill_registry(running.hub.state.metrics, 2, 1500)
        for engine in ("big-0", "big-1"):
            running.hub.state.add_engine(engine, 0.0).mode = "live"
        response = await running.http.get("/metrics")
        assert response.status_code == 200
        body = response.content
        whole = "".join(engine_lines(running.hub.state.metrics, running.hub.state.engines))
        assert body[body.index(b"# HELP engine_metric_") :] == whole.encode()
        assert len(whole) > 10 * CHUNK_BYTES  # many chunks
        families = {f.name: f for f in text_string_to_metric_families(response.text)}
        assert {"engine_metric_fills_k0", "engine_metric_lat", "engine_hub_drops"} <= set(families)
        health = families["engine_hub_engine_health"].samples
        assert {(s.labels["engine"], s.labels["mode"]) for s in health} == {
            ("big-0", "live"),
            ("big-1", "live"),
        }
        assert sum(s.value for s in health) == 2  # one current health per engine
        assert families["engine_hub_engine_gap_messages"].type == "counter"
        tool = os.environ.get("PROMTOOL") or shutil.which("promtool")
        if tool:
            result = subprocess.run(
                [tool, "check", "metrics"],
                input=response.text,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert "error" not in (result.stdout + result.stderr).lower(), result.stderr[-2000:]
