"""`GET /api/telemetry/series` on a real hub: points for a range and step, the list of an engine's
series, clear 400s, and series that survive a restart (SQLite)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from hub.core.ingested import Ingested
from hub.core.metrics import MetricKind
from hub.core.series import Bucket, Point, Tier
from tests.conftest import RunningHub, connect_engine, running_hub, unique

URL = "/api/telemetry/series"


def point(engine: str, name: str, kind: MetricKind, start: float, *values: float) -> Point:
    """A fine bucket of `values` as the downsampler hands it out."""
    bucket = Bucket(start, kind is MetricKind.HISTOGRAM)
    for value in values:
        bucket.add(value)
    return Point(engine, name, (("venue", "nse"),), kind, Tier.FINE, bucket)


async def test_points_for_a_range_and_step(hub: RunningHub) -> None:
    """Buckets in the store come back as one point per step of [since, until), None where a step
    holds none; times may be Unix seconds or ISO-8601; the step used is reported."""
    name = unique("series")
    t0 = float(int(time.time() // 300 * 300 - 3600))
    ingested = Ingested()
    ingested.points = [
        point(name, "orders", MetricKind.COUNTER, t0, 2.0),
        point(name, "orders", MetricKind.COUNTER, t0 + 10, 4.0),
        point(name, "orders", MetricKind.COUNTER, t0 + 40, 1.0),
        point(name, "depth", MetricKind.GAUGE, t0 + 20, 7.0, 5.0),
    ]
    hub.hub.store.append(ingested)  # the memory store keeps it at once
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0))
    params = {"engine": name, "name": "orders", "since": iso, "until": t0 + 60, "step": "20s"}
    body = await hub.get(URL, **params, tags="venue=nse")
    assert (body["engine"], body["name"], body["step"], body["since"]) == (name, "orders", 20, t0)
    assert body["lines"] == [
        {
            "name": "orders",
            "tags": {"venue": "nse"},
            "stat": "rate",
            "unit": "/s",
            "points": [[t0, 0.3], [t0 + 20, None], [t0 + 40, 0.05]],
        }
    ]
    assert (await hub.get(URL, **params, tags="venue=bse"))["lines"] == []
    gauge = await hub.get(URL, engine=name, name="depth", since=t0, until=t0 + 30, step="10s")
    values = {line["stat"]: line["points"] for line in gauge["lines"]}
    assert values["value"] == [[t0, None], [t0 + 10, None], [t0 + 20, 5.0]]
    assert (values["min"][2], values["max"][2], values["mean"][2]) == ([t0 + 20, 5.0],
                                                                       [t0 + 20, 7.0],
                                                                       [t0 + 20, 6.0])  # fmt: skip
    listed = await hub.get(URL, engine=name)
    assert listed["series"] == [
        {"name": "depth", "tags": {"venue": "nse"}, "kind": "gauge"},
        {"name": "orders", "tags": {"venue": "nse"}, "kind": "counter"},
    ]
    default = await hub.get(URL, engine=name, name="orders", since="6h")
    assert default["step"] == 60 and len(default["lines"][0]["points"]) == 361


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({}, "engine is required"),
        ({"engine": "bad name!"}, "engine must be"),
        ({"name": "no spaces"}, "name must be a metric name"),
        ({"name": "orders", "tags": "venue"}, "is not key=value"),
        ({"name": "orders", "tags": "1x=a"}, "is not key=value"),
        ({"name": "orders", "tags": "k=" + "v" * 300}, "over 256"),
        ({"name": "orders", "step": "fast"}, "step: 'fast' is not a duration"),
        ({"name": "orders", "step": "0s"}, "step must be at least 1s"),
        ({"name": "orders", "since": "7d", "step": "10s"}, "use a step of 303s or more"),
        ({"name": "orders", "since": "1h", "until": "2h"}, "since must be before until"),
        ({"name": "orders", "since": "yesterday"}, "since: 'yesterday' is not a time"),
    ],
)
async def test_bad_input_gets_a_400_saying_what_to_change(
    hub: RunningHub, params: dict[str, Any], says: str
) -> None:
    """Every bad parameter is a 400 with the JSON error shape and a readable detail."""
    if params and "engine" not in params:
        params = {"engine": "alpha", **params}
    response = await hub.http.get(URL, params=params)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "bad_request" and says in body["detail"], body


async def test_listing_an_engine_nobody_knows_is_a_404(hub: RunningHub) -> None:
    """Without series stored or a live engine of that name, the list is a 404, not empty."""
    response = await hub.http.get(URL, params={"engine": unique("nobody")})
    assert response.status_code == 404 and response.json()["error"] == "not_found"


async def test_series_survive_a_hub_restart(tmp_path: Path) -> None:
    """Metrics sent over the engine socket are bucketed, written by the SQLite writer at
    shutdown, and read back by the restarted hub: increments add up, the histogram's count too."""
    db = f"sqlite:///{tmp_path}/hub.db"
    began = time.time()
    async with running_hub(db=db, commit_interval=0.05) as first:
        engine = await connect_engine(first, "alpha")
        await engine.send(
            {"kind": "metric", "op": "inc", "name": "orders", "value": 3, "tags": {"v": "x"}},
            {"kind": "metric", "op": "inc", "name": "orders", "value": 2, "tags": {"v": "x"}},
            {"kind": "metric", "op": "set", "name": "depth", "value": 4},
            *[{"kind": "metric", "op": "observe", "name": "lat", "value": v} for v in (0.1, 0.3)],
            batch=True,
        )
        await engine.wait_acked()
        await engine.close()
    async with running_hub(db=db) as second:
        listed = await second.get(URL, engine="alpha")
        assert [(s["name"], s["kind"]) for s in listed["series"]] == [
            ("depth", "gauge"),
            ("lat", "histogram"),
            ("orders", "counter"),
        ]
        since, until = began - 60, time.time() + 10
        window = {"engine": "alpha", "since": since, "until": until, "step": "10s"}
        orders = await second.get(URL, **window, name="orders", tags="v=x")
        [rate] = orders["lines"]
        assert sum(v for _, v in rate["points"] if v is not None) * 10 == pytest.approx(5.0)
        lat = await second.get(URL, **window, name="lat")
        counts = next(line for line in lat["lines"] if line["stat"] == "count")
        assert sum(v for _, v in counts["points"] if v is not None) == 2


async def test_range_and_around_name_the_same_window_as_since_and_until(hub: RunningHub) -> None:
    """`around=T&range=10m` is [T - 5 min, T + 5 min): the same points as those since/until."""
    name = unique("ranged")
    t0 = float(int(time.time() // 300 * 300 - 7200))
    ingested = Ingested()
    ingested.points = [
        point(name, "orders", MetricKind.COUNTER, t0 + 10 * n, 1.0) for n in range(60)
    ]
    hub.hub.store.append(ingested)
    around = await hub.get(URL, engine=name, name="orders", around=t0 + 300, range="10m", step="1m")
    plain = await hub.get(URL, engine=name, name="orders", since=t0, until=t0 + 600, step="1m")
    assert around["since"] == t0 and around["lines"] == plain["lines"]
    assert len(around["lines"][0]["points"]) == 10
    bad = await hub.http.get(URL, params={"engine": name, "name": "orders", "range": "3 parsecs"})
    assert bad.status_code == 400 and "range" in bad.json()["detail"]
