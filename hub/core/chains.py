"""Causal chains, sans-I/O: which events follow from which (signal -> decision -> order -> fills).

An engine's client gives each chained event a `ref` (per boot), the `parent` ref it follows from
and optionally a `cycle` id (docs/protocol.md). Any member finds the whole chain: `walk` follows
parents up, children down and cycle mates across, from any `LinkSource` (the in-memory
`ChainIndex` here, the stores' links tables), stopping at `limit` members.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable
from itertools import islice
from typing import Protocol, TypeVar

import msgspec
from msgspec import UNSET

from hub.core.messages import ChainLink
from hub.core.records import EventRecord

__all__ = [
    "CHAIN_CAPACITY",
    "MAX_CHAIN",
    "ChainIndex",
    "Link",
    "LinkSource",
    "Step",
    "link_of",
    "walk",
]

MAX_CHAIN = 100  # members of one chain at most; a longer one is cut (and says so)
CHAIN_CAPACITY = 50_000  # chained events the hub keeps in memory (the oldest are forgotten)
K = TypeVar("K", bound=Hashable)
Ids = int | deque[int]  # the event ids under one key, oldest first


class Link(msgspec.Struct, frozen=True, gc=False):
    """One chained event: where it is, when it happened, and the refs that join it to others.

    gc=False (as the records): tens of thousands are held, and tracking them made every
    collection of the ingest path's garbage scan them all.
    """

    event_id: int
    engine: str
    boot_id: str
    type: str
    ts: float
    ref: int | None = None
    parent: int | None = None
    cycle: str | None = None


class Step(msgspec.Struct, frozen=True, gc=False):
    """A member of a chain and its event (None: history no longer holds the event)."""

    link: Link
    event: EventRecord | None


def link_of(record: EventRecord, chain: ChainLink) -> Link:
    """The link of an accepted event that carried `chain`."""
    return Link(
        record.id,
        record.engine,
        record.boot_id,
        record.type,
        record.ts,
        None if chain.ref is UNSET else chain.ref,
        None if chain.parent is UNSET else chain.parent,
        None if chain.cycle is UNSET else chain.cycle,
    )


class LinkSource(Protocol):
    """Where `walk` finds links: each lookup returns at most `limit` of them."""

    def by_ref(self, engine: str, boot_id: str, ref: int, limit: int) -> list[Link]:
        """Events whose own ref is `ref` (normally one)."""

    def children(self, engine: str, boot_id: str, ref: int, limit: int) -> list[Link]:
        """Events whose parent is `ref`."""

    def cycle(self, engine: str, boot_id: str, cycle: str, limit: int) -> list[Link]:
        """Events of cycle `cycle`."""


def walk(
    source: LinkSource, seeds: Iterable[Link], limit: int = MAX_CHAIN
) -> tuple[list[Link], bool]:
    """Every link joined to `seeds` (time order) and whether the chain was cut at `limit`."""
    found: dict[int, Link] = {}
    queue = deque(seeds)
    cut = False
    while queue:
        link = queue.popleft()
        if link.event_id in found:
            continue
        if len(found) >= limit:
            cut = True
            break
        found[link.event_id] = link
        engine, boot_id = link.engine, link.boot_id
        if link.parent is not None:
            queue.extend(source.by_ref(engine, boot_id, link.parent, limit))
        if link.ref is not None:
            queue.extend(source.children(engine, boot_id, link.ref, limit + 1))
        if link.cycle is not None:
            queue.extend(source.cycle(engine, boot_id, link.cycle, limit + 1))
    return sorted(found.values(), key=lambda k: (k.ts, k.event_id)), cut


class ChainIndex:
    """Chained events held in memory, oldest forgotten first beyond `capacity`; a `LinkSource`."""

    def __init__(self, capacity: int = CHAIN_CAPACITY) -> None:
        self._capacity = capacity
        self._order: deque[int] = deque()  # event ids, oldest first
        self._steps: dict[int, Step] = {}
        # (engine, boot_id, ref / parent ref / cycle) -> event ids, oldest first
        # One id per key as a plain int (the usual case: small, nothing more to allocate), a deque
        # from the second on, so forgetting the oldest is O(1) however many events share a key.
        self._refs: dict[tuple[str, str, int], Ids] = {}
        self._children: dict[tuple[str, str, int], Ids] = {}
        self._cycles: dict[tuple[str, str, str], Ids] = {}

    def __len__(self) -> int:
        return len(self._steps)

    def add(self, link: Link, event: EventRecord | None = None) -> None:
        """Keep `link` (and its event), forgetting the oldest when full."""
        if link.event_id in self._steps:
            return
        if len(self._order) >= self._capacity:
            self._forget(self._order.popleft())
        self._order.append(link.event_id)
        self._steps[link.event_id] = Step(link, event)
        engine, boot_id, event_id = link.engine, link.boot_id, link.event_id
        if link.ref is not None:
            _keep(self._refs, (engine, boot_id, link.ref), event_id)
        if link.parent is not None:
            _keep(self._children, (engine, boot_id, link.parent), event_id)
        if link.cycle is not None:
            _keep(self._cycles, (engine, boot_id, link.cycle), event_id)

    def _forget(self, event_id: int) -> None:
        step = self._steps.pop(event_id)
        link = step.link
        key = (link.engine, link.boot_id)
        if link.ref is not None:
            _drop_first(self._refs, (*key, link.ref), event_id)
        if link.parent is not None:
            _drop_first(self._children, (*key, link.parent), event_id)
        if link.cycle is not None:
            _drop_first(self._cycles, (*key, link.cycle), event_id)

    def step(self, event_id: int) -> Step | None:
        """The chained event of that id, if held."""
        return self._steps.get(event_id)

    def has(self, event_id: int) -> bool:
        """Whether the event of that id is a chain member held here."""
        return event_id in self._steps

    def _links(self, ids: Ids | None, limit: int) -> list[Link]:
        if ids is None:
            return []
        if isinstance(ids, int):
            return [self._steps[ids].link]
        return [self._steps[i].link for i in islice(ids, limit)]

    def by_ref(self, engine: str, boot_id: str, ref: int, limit: int) -> list[Link]:
        """Events whose own ref is `ref`."""
        return self._links(self._refs.get((engine, boot_id, ref)), limit)

    def children(self, engine: str, boot_id: str, ref: int, limit: int) -> list[Link]:
        """Events whose parent is `ref`."""
        return self._links(self._children.get((engine, boot_id, ref)), limit)

    def cycle(self, engine: str, boot_id: str, cycle: str, limit: int) -> list[Link]:
        """Events of cycle `cycle`."""
        return self._links(self._cycles.get((engine, boot_id, cycle)), limit)


def _keep(index: dict[K, Ids], key: K, event_id: int) -> None:
    """Add `event_id` under `key`."""
    ids = index.get(key)
    if ids is None:
        index[key] = event_id
    elif isinstance(ids, int):
        index[key] = deque((ids, event_id))
    else:
        ids.append(event_id)


def _drop_first(index: dict[K, Ids], key: K, event_id: int) -> None:
    """Remove `event_id` (the oldest of its key, as ids are forgotten in order) from `index`."""
    ids = index.get(key)
    if ids is None:
        return
    if isinstance(ids, int):
        if ids == event_id:
            del index[key]
        return
    if ids[0] == event_id:
        ids.popleft()
    elif event_id in ids:
        ids.remove(event_id)
    if len(ids) == 1:
        index[key] = ids[0]
