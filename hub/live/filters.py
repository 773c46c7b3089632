"""The overview's row filter, read from the page URL (sans-I/O).

Browsers filter rows themselves (static/js/filters.js), so the tables are still rendered once per
tick for every viewer. The server applies the engine and mode parts to the first paint too, so a
shared link shows the filtered view before any script runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["MAX_FILTER_TEXT", "RowFilter"]

MAX_FILTER_TEXT = 100
_MODES = ("paper", "live")


@dataclass(frozen=True, slots=True)
class RowFilter:
    """Rows to show: one engine (hub index), one mode (live or paper), text they contain."""

    engine: int | None = None
    mode: str = ""
    q: str = ""

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> RowFilter:
        """The filter a URL's query states; a malformed part means no filter on that part."""
        engine = params.get("engine", "")
        mode = params.get("mode", "")
        return cls(
            int(engine) if engine.isascii() and engine.isdigit() and len(engine) <= 9 else None,
            mode if mode in _MODES else "",
            params.get("q", "")[:MAX_FILTER_TEXT],
        )

    def admits(self, tag: tuple[int, str] | None) -> bool:
        """Whether a row of the engine tagged (index, mode) passes the engine and mode parts."""
        if tag is None:
            return self.engine is None and not self.mode
        index, mode = tag
        return (self.engine is None or index == self.engine) and (
            not self.mode or mode == self.mode
        )
