"""Sans-I/O dense engine list: which engines one page of the overview shows, in which order.

Small hubs show one card per engine; beyond `CARD_LIMIT` engines the overview becomes a dense
list, problem engines first, `PAGE_ROWS` rows per page. The page number and the order are part of
the page's view key, so a page is sent only the rows it shows, and every distinct page is
rendered once per tick whatever the number of browsers showing it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from hub.core.engines import EngineRecord, Health

__all__ = [
    "CARD_LIMIT",
    "MAX_PAGE",
    "PAGE_ROWS",
    "ListOrder",
    "Listing",
    "listing",
    "order",
    "page_of",
    "pages",
]

CARD_LIMIT = 24  # up to this many engines the overview shows cards
PAGE_ROWS = 50  # rows per page of the dense list: about one screen
MAX_PAGE = 10_000  # page numbers beyond every hub's engine limit are clamped here

# Problems first, worst first (as the hub status counts them); then healthy, then stopped.
_RANK = {
    health: rank
    for rank, health in enumerate(
        (
            Health.ERROR,
            Health.OFFLINE,
            Health.STALE,
            Health.STALLED,
            Health.LATE,
            Health.OK,
            Health.STOPPED,
        )
    )
}


class ListOrder(enum.Enum):
    """How the dense list is sorted: problems first (default), or by name."""

    HEALTH = "health"
    NAME = "name"

    @classmethod
    def parse(cls, raw: str) -> ListOrder:
        """The order a URL names; anything else is the default."""
        return next((order for order in cls if order.value == raw), cls.HEALTH)


def page_of(raw: str) -> int:
    """The 1-based page a URL names; anything malformed is page 1."""
    if raw.isascii() and raw.isdigit() and len(raw) <= 6:
        return max(1, min(int(raw), MAX_PAGE))
    return 1


def pages(count: int) -> int:
    """How many pages `count` engines fill (at least one)."""
    return max(1, -(-count // PAGE_ROWS))


@dataclass(frozen=True, slots=True)
class Listing:
    """One page of the dense list: its engines' indices, in order, and where it is."""

    indices: tuple[int, ...]
    page: int
    pages: int
    total: int


def order(engines: Iterable[EngineRecord], by: ListOrder) -> list[EngineRecord]:
    """Every engine in list order (the health is the one the hub derived on its last tick)."""
    if by is ListOrder.NAME:
        return sorted(engines, key=lambda e: e.name)
    return sorted(engines, key=lambda e: (_RANK[e.health], e.name))


def listing(engines: Mapping[str, EngineRecord], by: ListOrder, page: int) -> Listing:
    """The engines page `page` shows (the last page if `page` is past the end)."""
    ordered = order(engines.values(), by)
    last = pages(len(ordered))
    page = min(max(page, 1), last)
    start = (page - 1) * PAGE_ROWS
    shown = tuple(e.index for e in ordered[start : start + PAGE_ROWS])
    return Listing(shown, page, last, len(ordered))
