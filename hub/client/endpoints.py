"""The hub URLs a client may use and which one it tries next (sans-I/O: round robin, no clock)."""

from __future__ import annotations

from collections.abc import Sequence

from hub.client.options import engine_url

__all__ = ["MAX_URLS", "Endpoints", "engine_urls"]

MAX_URLS = 64  # a cluster is a handful of nodes; a longer list is a configuration mistake


def engine_urls(url: str | None, urls: Sequence[str] | None) -> tuple[str, ...]:
    """The engine endpoints for `url=` or `urls=` (exactly one of them), validated and deduplicated."""
    if url is not None and urls is not None:
        raise ValueError("pass either url= (one hub) or urls=[...] (several nodes), not both")
    if urls is None:
        if url is None:
            raise ValueError("pass url='ws://HOST:PORT' or urls=['ws://A:PORT', 'ws://B:PORT']")
        return (engine_url(url),)
    if isinstance(urls, str | bytes) or not isinstance(urls, Sequence):
        raise ValueError("urls= must be a list of hub URLs such as ['ws://A:8765', 'ws://B:8765']")
    if not 1 <= len(urls) <= MAX_URLS:
        raise ValueError(f"urls= must hold 1 to {MAX_URLS} hub URLs (got {len(urls)})")
    found: dict[str, None] = {}
    for item in urls:
        if not isinstance(item, str):
            raise ValueError(f"every entry of urls= must be a string (got {item!r})")
        found[engine_url(item)] = None
    return tuple(found)


class Endpoints:
    """Round robin over the hub's nodes: the sender moves on whenever a connection ends or fails.

    Moving on after a lost connection (not only after a failed attempt) is what fails over: the
    node that dropped us is the one most likely to be gone. With one URL (a single hub, or one
    DNS name behind a load balancer) `current` never changes.
    """

    def __init__(self, urls: Sequence[str]) -> None:
        if not urls:
            raise ValueError("Endpoints needs at least one URL")
        self.urls = tuple(urls)
        self._index = 0

    @property
    def current(self) -> str:
        """The URL of the next connection attempt."""
        return self.urls[self._index]

    def advance(self) -> str:
        """Move to the next URL (wrapping around) and return it."""
        self._index = (self._index + 1) % len(self.urls)
        return self.urls[self._index]

    @property
    def position(self) -> int:
        """The index of `current` in `urls`."""
        return self._index
