"""The engine page's charts in real Chromium on a real hub: points and axis labels for a range,
a URL that reproduces a picked chart, engine text kept as text, no JavaScript, live updates."""

from __future__ import annotations

import math
import time
from typing import Any

from playwright.async_api import Browser, Page, expect

from hub.core.ingested import Ingested
from hub.core.metrics import MetricKind
from hub.core.series import Bucket, Point, Tier
from tests.conftest import WAIT, RunningHub, connect_engine, running_hub, unique, watched_page

MS = WAIT * 1000
HOUR = 3600.0
GAP = range(100, 120)  # ten-second steps without data: the line breaks there
LONE = 200  # a step with no neighbour on either side: drawn as a dot


def point(
    engine: str, name: str, kind: MetricKind, start: float, *values: float, **tags: str
) -> Point:
    """A fine bucket of `values`, as the hub's downsampler hands it to the store."""
    bucket = Bucket(start, kind is MetricKind.HISTOGRAM)
    for value in values:
        bucket.add(value)
    return Point(engine, name, tuple(sorted(tags.items())), kind, Tier.FINE, bucket)


def start_of_range() -> float:
    """A whole ten minutes about two hours ago: inside the fine tier, steps of 10 s."""
    return math.floor(time.time() / 600) * 600 - 2 * HOUR


def loop_points(engine: str, t0: float) -> list[Point]:
    """An hour of the `cycles` counter: rates 0.1 to 0.5 per second, a gap and a lone point."""
    kept = [k for k in range(360) if k not in GAP and k not in (LONE - 1, LONE + 1)]
    return [point(engine, "cycles", MetricKind.COUNTER, t0 + 10 * k, (k % 5 + 1)) for k in kept]


async def feed(running: RunningHub, points: list[Point]) -> None:
    """Hand buckets to the hub's store (the memory store keeps them at once)."""
    ingested = Ingested()
    ingested.points = points
    running.hub.store.append(ingested)


async def vertices(page: Page, chart: str) -> int:
    """Points drawn in chart `chart`: polyline vertices plus lone dots."""
    count: int = await page.eval_on_selector(
        chart,
        """el => [...el.querySelectorAll('polyline.chart-line')]
                 .reduce((n, p) => n + p.points.numberOfItems, 0)
               + el.querySelectorAll('circle.chart-dot').length""",
    )
    return count


async def labels(page: Page, selector: str) -> list[str]:
    texts: list[str] = await page.eval_on_selector_all(
        selector, "els => els.map(e => e.textContent)"
    )
    return texts


def expected_times(t0: float) -> list[str]:
    """Every ten minutes (UTC) of [t0, t0 + 1 h]; midnight shows the date."""
    out = []
    for k in range(7):
        moment = time.gmtime(t0 + 600 * k)
        midnight = moment.tm_hour == 0 and moment.tm_min == 0
        out.append(time.strftime("%b %d" if midnight else "%H:%M", moment))
    return out


async def test_a_range_draws_every_point_and_its_axis_labels(
    hub: RunningHub, browser: Browser
) -> None:
    """An hour at 10 s steps: every stored bucket is a vertex or a dot (338 of 360 steps), the
    gap breaks the line, ticks every ten minutes in UTC, and 'nice' values in /s."""
    name, t0 = unique("charts"), start_of_range()
    engine = await connect_engine(hub, name)
    await feed(hub, loop_points(name, t0))
    index = hub.hub.state.engines[name].index
    async with watched_page(browser) as watched:
        page = watched.page
        await page.goto(f"{hub.http.base_url}/engines/{name}?since={t0:.0f}&until={t0 + HOUR:.0f}")
        chart = f"#chart-{index}-loop"
        await expect(page.locator(chart + " svg")).to_be_visible(timeout=MS)
        assert await vertices(page, chart) == 360 - len(GAP) - 2
        assert await page.locator(chart + " polyline.chart-line").count() == 3
        assert await page.locator(chart + " circle.chart-dot").count() == 1
        assert await labels(page, chart + " text.x-tick") == expected_times(t0)
        assert await labels(page, chart + " text.y-tick") == [
            "0",
            "0.1",
            "0.2",
            "0.3",
            "0.4",
            "0.5",
        ]
        await expect(page.locator(chart + " .chart-unit")).to_have_text("(/s)")
        await expect(page.locator(chart + " .time-unit")).to_have_text("UTC, every 10 min")
        # Hover values: one band per step with data, its time and value as text.
        bands = page.locator(chart + " .chart-bands rect")
        assert await bands.count() == 338
        first = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t0))
        await expect(bands.first.locator("title")).to_have_text(f"{first} UTC\nrate: 0.1 /s")
        # Standard charts the engine sends nothing for say what to send.
        await expect(page.locator(f"#chart-{index}-cycle")).to_contain_text("timer(")
        assert watched.problems == []
    await engine.close()


async def test_a_picked_metric_url_reproduces_the_chart_after_reload(
    hub: RunningHub, browser: Browser
) -> None:
    """Picking a metric and a tag filter in the form puts range, metric and tags in the URL;
    reloading (or opening that URL elsewhere) draws the same chart."""
    name, t0 = unique("charts"), start_of_range()
    engine = await connect_engine(hub, name)
    points = [
        point(name, "fill.seconds", MetricKind.HISTOGRAM, t0 + 10 * k, 0.010, 0.020, 0.200, venue=v)
        for k in range(0, 360, 3)
        for v in ("nse", "bse")
    ]
    await feed(hub, points)
    index = hub.hub.state.engines[name].index
    async with watched_page(browser) as watched:
        page = watched.page
        await page.goto(f"{hub.http.base_url}/engines/{name}?since={t0:.0f}&until={t0 + HOUR:.0f}")
        await page.select_option("#chart-form select[name=metric]", "fill.seconds")
        await page.fill("#chart-form input[name=tags]", "venue=nse")
        await page.click("#chart-form button[type=submit]")
        chart = f"#chart-{index}-pick"
        await expect(page.locator(chart + " svg")).to_be_visible(timeout=MS)
        url = page.url
        assert "metric=fill.seconds" in url and "tags=venue%3Dnse" in url
        assert f"since={t0:.0f}" in url and f"until={t0 + HOUR:.0f}" in url
        before = await page.inner_html(chart)
        # One series (nse), three quantiles, one vertex each per third step.
        assert await vertices(page, chart) == 3 * 120
        assert await labels(page, chart + " .chart-legend li") == ["p50", "p95", "p99"]
        await expect(page.locator(chart + " .chart-unit")).to_have_text("(ms)")
        await page.reload()
        await expect(page.locator(chart + " svg")).to_be_visible(timeout=MS)
        assert await page.inner_html(chart) == before
        await expect(page.locator("#chart-form select[name=metric]")).to_have_value("fill.seconds")
        await expect(page.locator("#chart-form input[name=tags]")).to_have_value("venue=nse")
        # The range picker keeps the picked chart: a preset changes the range only.
        await page.click("#range-picker a.range-preset >> text=6h")
        await expect(page.locator(chart + " .time-unit")).to_have_text(
            "UTC, every hour", timeout=MS
        )
        assert "range=6h" in page.url and "metric=fill.seconds" in page.url
        assert "tags=venue%3Dnse" in page.url and "since=" not in page.url
        assert watched.problems == []
    await engine.close()


HOSTILE = '<img src=x onerror="document.title=1">"\u202e'


async def test_engine_text_in_tags_stays_text_in_the_svg(hub: RunningHub, browser: Browser) -> None:
    """A tag value with markup, quotes and a bidi override shows as text in the hover titles and
    the legend: no element is created, nothing loads, the override is made visible."""
    name, t0 = unique("charts"), start_of_range()
    engine = await connect_engine(hub, name)
    points = [
        point(name, "depth", MetricKind.GAUGE, t0 + 10 * k, float(k), side=side)
        for k in range(360)
        for side in (HOSTILE, "plain")
    ]
    await feed(hub, points)
    index = hub.hub.state.engines[name].index
    async with watched_page(browser) as watched:
        page = watched.page
        url = (
            f"{hub.http.base_url}/engines/{name}?since={t0:.0f}&until={t0 + HOUR:.0f}&metric=depth"
        )
        await page.goto(url)
        chart = f"#chart-{index}-pick"
        await expect(page.locator(chart + " svg")).to_be_visible(timeout=MS)
        shown = HOSTILE.replace("\u202e", "⟨U+202E⟩")
        legend = await labels(page, chart + " .chart-legend li")
        assert f"side={shown}" in legend
        title = await page.locator(chart + " .chart-bands rect title").first.text_content()
        assert title is not None and f"side={shown}: 0" in title
        assert await page.locator(f"{chart} img").count() == 0
        assert not any("/x" in r for r in watched.requests)
        assert await page.title() != "1"
        assert watched.problems == []
    await engine.close()


async def test_the_page_without_javascript_shows_the_charts(
    hub: RunningHub, browser: Browser
) -> None:
    """With JavaScript off the first render already holds the SVG, its points and labels."""
    name, t0 = unique("charts"), start_of_range()
    engine = await connect_engine(hub, name)
    await feed(hub, loop_points(name, t0))
    index = hub.hub.state.engines[name].index
    context = await browser.new_context(java_script_enabled=False)
    try:
        page = await context.new_page()
        await page.goto(f"{hub.http.base_url}/engines/{name}?since={t0:.0f}&until={t0 + HOUR:.0f}")
        chart = page.locator(f"#chart-{index}-loop")
        await expect(chart.locator("svg")).to_be_visible(timeout=MS)
        points = await chart.locator("polyline.chart-line").evaluate_all(
            "els => els.map(e => e.getAttribute('points').trim().split(/\\s+/).length)"
        )
        assert sum(points) + await chart.locator("circle.chart-dot").count() == 338
        assert await chart.locator("text.x-tick").all_text_contents() == expected_times(t0)
    finally:
        await context.close()
    await engine.close()


async def test_bad_chart_queries_get_a_clear_400(hub: RunningHub) -> None:
    """A malformed metric, tag filter or range is a readable 400 page, never a traceback."""
    name = unique("charts")
    engine = await connect_engine(hub, name)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"metric": "no spaces"}, "metric must be a metric name"),
        ({"metric": "x", "tags": "venue"}, "is not key=value"),
        ({"range": "soon"}, "is not a duration"),
        ({"since": "2h", "until": "3h"}, "since must be before until"),
        ({"range": "1h", "since": "2h"}, "not both"),
    ]
    for params, says in cases:
        response = await hub.http.get(f"/engines/{name}", params=params)
        assert response.status_code == 400, params
        assert says in response.text and "Traceback" not in response.text
    await engine.close()


async def test_live_charts_follow_new_buckets_through_the_nudge(browser: Browser) -> None:
    """On a page whose range includes now, a closed bucket nudges the page over its socket and
    the chart is fetched again with the page's query; no timer polls."""
    async with running_hub(series_fine_step=1.0, series_coarse_step=60.0) as running:
        name = unique("charts")
        engine = await connect_engine(running, name)
        index = running.hub.state.engines[name].index
        async with watched_page(browser) as watched:
            page = watched.page
            await page.goto(f"{running.http.base_url}/engines/{name}?range=15m")
            await expect(page.locator("#conn")).to_have_text("live", timeout=MS)
            chart = f"#chart-{index}-loop"
            await expect(page.locator(chart)).to_contain_text("No series")
            fetched = len([r for r in watched.requests if "/charts" in r])
            await engine.send({"kind": "metric", "op": "inc", "name": "cycles", "value": 3})
            await engine.wait_acked()
            # The next second's snapshot closes the bucket; the one after nudges the page.
            await expect(page.locator(chart + " svg")).to_be_visible(timeout=MS)
            assert await vertices(page, chart) >= 1
            charts = [r for r in watched.requests if "/charts" in r]
            assert len(charts) > fetched and "range=15m" in charts[-1]
            assert watched.problems == []
        await engine.close()


async def test_one_metric_across_engines_on_one_chart(hub: RunningHub, browser: Browser) -> None:
    """`/charts` overlays a metric of the engines asked for, one line each named by engine; the
    form's URL reproduces it; more engines than lines, or a bad stat, is a clear 400."""
    first, second, t0 = unique("charts-a"), unique("charts-b"), start_of_range()
    engines = [await connect_engine(hub, name) for name in (first, second)]
    await feed(hub, loop_points(first, t0))
    await feed(
        hub, [point(second, "cycles", MetricKind.COUNTER, t0 + 10 * k, 2) for k in range(90)]
    )
    window = f"since={t0:.0f}&until={t0 + HOUR:.0f}"
    async with watched_page(browser) as watched:
        page = watched.page
        await page.goto(f"{hub.http.base_url}/charts?engine={first}&engine={second}&{window}")
        await page.select_option("#compare-form select[name=name]", "cycles")
        await page.click("#compare-form button[type=submit]")
        chart = "#chart-0-compare"
        await expect(page.locator(chart + " svg")).to_be_visible(timeout=MS)
        assert await labels(page, chart + " .chart-legend li") == [first, second]
        assert await vertices(page, chart) == 338 + 90
        assert await labels(page, chart + " text.x-tick") == expected_times(t0)
        before = await page.inner_html(chart)
        assert "name=cycles" in page.url and f"engine={second}" in page.url
        await page.reload()
        await expect(page.locator(chart + " svg")).to_be_visible(timeout=MS)
        assert await page.inner_html(chart) == before
        assert watched.problems == []
    many = "&".join(f"engine=e{i}" for i in range(9))
    for query, says in ((many, "at most 8 engines"), ("name=cycles&stat=p42", "stat must be")):
        response = await hub.http.get(f"/charts?{query}")
        assert response.status_code == 400 and says in response.text
    for engine in engines:
        await engine.close()
