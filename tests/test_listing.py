"""The dense engine list: problem engines first, pages of PAGE_ROWS, URL parts parsed safely."""

from __future__ import annotations

from hub.core.engines import EngineRecord, Health
from hub.live.listing import (
    MAX_PAGE,
    PAGE_ROWS,
    ListFilter,
    ListOrder,
    listing,
    page_of,
    pages,
)


def engines(count: int, sick: dict[int, Health] | None = None) -> dict[str, EngineRecord]:
    out = {}
    for n in range(count):
        record = EngineRecord(name=f"e{n:03d}", first_seen=0.0, index=n + 1)
        record.health = (sick or {}).get(n, Health.OK)
        out[record.name] = record
    return out


def test_problems_come_first_worst_first_then_by_name() -> None:
    """Error, offline, stale, stalled, late, then ok, then stopped; names break ties."""
    sick = {5: Health.LATE, 3: Health.ERROR, 7: Health.STOPPED, 9: Health.OFFLINE, 1: Health.LATE}
    shown = listing(engines(10, sick), ListOrder.HEALTH, 1)
    assert shown.indices[:5] == (4, 10, 2, 6, 1)
    assert shown.indices[-1] == 8


def test_pages_hold_page_rows_and_a_page_past_the_end_is_the_last() -> None:
    """120 engines: three pages, the last one partial; page 9 shows page 3."""
    all_ = engines(120)
    first = listing(all_, ListOrder.NAME, 1)
    assert len(first.indices) == PAGE_ROWS and (first.page, first.pages, first.total) == (1, 3, 120)
    last = listing(all_, ListOrder.NAME, 9)
    assert last.page == 3 and len(last.indices) == 120 - 2 * PAGE_ROWS
    assert pages(0) == 1 and pages(PAGE_ROWS) == 1 and pages(PAGE_ROWS + 1) == 2


def test_url_parts_are_parsed_to_bounded_values() -> None:
    """Malformed page or sort means the default; huge pages are clamped."""
    assert [page_of(raw) for raw in ("", "0", "-1", "abc", "2", "٣", "99999999")] == [
        1,
        1,
        1,
        1,
        2,
        1,
        1,
    ]
    assert page_of("999999") == MAX_PAGE
    assert ListOrder.parse("name") is ListOrder.NAME
    assert ListOrder.parse("<script>") is ListOrder.HEALTH


def test_the_list_filter_picks_engines_before_paging() -> None:
    """Mode, part of a name (any case) and problems only: every page holds only admitted
    engines, and the counts say how many of how many."""
    all_ = engines(120, {n: Health.ERROR for n in range(0, 120, 10)})
    for n, record in enumerate(all_.values()):
        record.mode = "live" if n % 2 else "paper"
    only = ListFilter.parse({"mode": "live", "name": "E0", "show": "problems"})
    assert only == ListFilter("live", "e0", True) and only
    assert listing(all_, ListOrder.NAME, 1, only).indices == ()  # errors are at even n: paper
    shown = listing(all_, ListOrder.NAME, 1, ListFilter("", "e0", True))
    assert shown.indices == tuple(n + 1 for n in range(0, 100, 10))
    assert (shown.total, shown.known, shown.pages) == (10, 120, 1)
    live = listing(all_, ListOrder.NAME, 2, ListFilter.parse({"mode": "live"}))
    assert live.total == 60 and len(live.indices) == 10
    assert all(all_[f"e{i - 1:03d}"].mode == "live" for i in live.indices)


def test_list_filter_urls_are_bounded_and_quoted() -> None:
    """Malformed parts mean no filter; the name is cut to 40 characters; links quote it."""
    assert not ListFilter.parse({"mode": "<b>", "show": "all"})
    long = ListFilter.parse({"name": "x" * 500})
    assert long.name == "x" * 40
    assert ListFilter("live", "a&b c", True).query() == "&mode=live&name=a%26b%20c&show=problems"
