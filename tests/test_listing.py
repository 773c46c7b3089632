"""The dense engine list: problem engines first, pages of PAGE_ROWS, URL parts parsed safely."""

from __future__ import annotations

from hub.core.engines import EngineRecord, Health
from hub.live.listing import MAX_PAGE, PAGE_ROWS, ListOrder, listing, page_of, pages


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
