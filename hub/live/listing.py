"""Sans-I/O dense engine list: which engines one page of the overview shows, in which order.

Small hubs show one card per engine; beyond `CARD_LIMIT` engines the overview becomes a dense
list, problem engines first, `PAGE_ROWS` rows per page. The page number, the order and the
list's filter (mode, part of the name, problems only) are part of the page's view key, so a page
is sent only the rows it shows, and every distinct page is rendered once per tick whatever the
number of browsers showing it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote

from hub.core.engines import EngineRecord, Health

__all__ = [
    "CARD_LIMIT",
    "EVERY_ENGINE",
    "ListFilter",
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
MAX_NAME_FILTER = 40  # characters of the name filter (engine names are at most 64)
_MODES = ("live", "paper")

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


@dataclass(frozen=True, slots=True)
class ListFilter:
    """Which engines the list shows: one mode, names containing a text (any case), problems only."""

    mode: str = ""
    name: str = ""
    problems: bool = False

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> ListFilter:
        """The filter a URL states (`mode`, `name`, `show=problems`); malformed parts: no filter."""
        mode = params.get("mode", "")
        return cls(
            mode if mode in _MODES else "",
            params.get("name", "").strip()[:MAX_NAME_FILTER].casefold(),
            params.get("show", "") == "problems",
        )

    def __bool__(self) -> bool:
        return bool(self.mode or self.name or self.problems)

    def admits(self, engine: EngineRecord) -> bool:
        """Whether the list shows `engine`."""
        return (
            (not self.mode or engine.mode == self.mode)
            and (not self.name or self.name in engine.name.casefold())
            and (not self.problems or _RANK[engine.health] < _RANK[Health.OK])
        )

    def query(self) -> str:
        """The filter as URL query parameters (for links that keep it), `&`-prefixed."""
        parts = [("mode", self.mode), ("name", self.name), ("show", "problems" * self.problems)]
        return "".join(f"&{k}={quote(v)}" for k, v in parts if v)


EVERY_ENGINE = ListFilter()  # no filter


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
    total: int  # engines the filter admits
    known: int = 0  # engines the hub knows
    only: ListFilter = EVERY_ENGINE


def order(engines: Iterable[EngineRecord], by: ListOrder) -> list[EngineRecord]:
    """Every engine in list order (the health is the one the hub derived on its last tick)."""
    if by is ListOrder.NAME:
        return sorted(engines, key=lambda e: e.name)
    return sorted(engines, key=lambda e: (_RANK[e.health], e.name))


def listing(
    engines: Mapping[str, EngineRecord], by: ListOrder, page: int, only: ListFilter = EVERY_ENGINE
) -> Listing:
    """The engines page `page` shows (the last page if `page` is past the end)."""
    chosen = [e for e in engines.values() if only.admits(e)] if only else engines.values()
    ordered = order(chosen, by)
    last = pages(len(ordered))
    page = min(max(page, 1), last)
    start = (page - 1) * PAGE_ROWS
    shown = tuple(e.index for e in ordered[start : start + PAGE_ROWS])
    return Listing(shown, page, last, len(ordered), len(engines), only)
