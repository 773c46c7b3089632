"""EventRings: per-type bounded rings, eviction counts, the type limit, and the read queries."""

from __future__ import annotations

import msgspec
import pytest

from hub.core.records import EventRecord
from hub.core.rings import EventRings, TooManyTypes
from hub.settings import KNOWN_EVENT_TYPES, Settings

SMALL = Settings(
    ring_capacities={"signal_event": 3, "order_event": 2, "cycle": 2, "error": 2},
    ring_default_capacity=4,
    max_event_types=2,
)


def record(id: int, type: str = "signal_event", engine: str = "fno") -> EventRecord:
    payload = msgspec.Raw(msgspec.json.encode({"n": id}))
    return EventRecord(id, type, 1_700_000_000.0 + id, engine, id, "boot-1", payload)


def filled(*records: EventRecord, settings: Settings = SMALL) -> EventRings:
    rings = EventRings(settings)
    for rec in records:
        rings.append(rec)
    return rings


def ids(records: object) -> list[int]:
    return [rec.id for rec in records]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("event_type", "capacity"),
    [
        ("signal_event", 500),
        ("order_event", 1000),
        ("cycle", 100),
        ("error", 200),
        ("indicator_event", 1000),
        ("decision_trace", 1000),
    ],
)
def test_default_capacities(event_type: str, capacity: int) -> None:
    """Without configuration each known type gets its documented capacity."""
    assert EventRings(Settings()).rings[event_type].capacity == capacity


def test_every_known_type_has_a_ring() -> None:
    """Known types have rings before any event arrives."""
    assert set(EventRings(Settings()).rings) == set(KNOWN_EVENT_TYPES)


def test_custom_capacities_and_default_for_new_types() -> None:
    """Configured capacities apply; a new type gets ring_default_capacity."""
    rings = filled(record(1, "my_type"))
    assert rings.rings["signal_event"].capacity == 3
    assert rings.rings["indicator_event"].capacity == 4
    assert rings.rings["my_type"].capacity == 4


def test_full_ring_evicts_oldest_and_counts() -> None:
    """Appending to a full ring drops the oldest record and counts the eviction."""
    rings = filled(*(record(i) for i in range(1, 6)))
    ring = rings.rings["signal_event"]
    assert ids(ring.items) == [3, 4, 5]
    assert (ring.total, ring.evicted) == (5, 2)


def test_flood_of_one_type_keeps_the_others() -> None:
    """A flood of signals never evicts the rare order events."""
    rings = filled(record(1, "order_event"), *(record(i) for i in range(2, 100)))
    assert ids(rings.rings["order_event"].items) == [1]
    assert rings.rings["order_event"].evicted == 0
    assert rings.rings["signal_event"].evicted == 95


def test_too_many_types_beyond_the_limit() -> None:
    """New types past max_event_types raise TooManyTypes; known and existing types still work."""
    rings = filled(record(1, "custom_a"), record(2, "custom_b"))
    with pytest.raises(TooManyTypes, match="custom_c"):
        rings.append(record(3, "custom_c"))
    assert "custom_c" not in rings.rings
    rings.append(record(4, "custom_a"))
    rings.append(record(5, "universe_scan"))
    assert ids(rings.rings["custom_a"].items) == [1, 4]
    assert ids(rings.rings["universe_scan"].items) == [5]


def test_recent_is_newest_first_across_types() -> None:
    """recent() merges every ring newest first."""
    rings = filled(record(1), record(2, "order_event"), record(3, "cycle"), record(4))
    assert ids(rings.recent(10)) == [4, 3, 2, 1]


def test_recent_limit() -> None:
    """recent() returns at most `limit` records, the newest ones."""
    rings = filled(record(1), record(2, "order_event"), record(3))
    assert ids(rings.recent(2)) == [3, 2]


def test_recent_filters_by_type_and_engine() -> None:
    """event_type and engine filters narrow the result."""
    rings = filled(
        record(1, engine="fno"),
        record(2, engine="equity"),
        record(3, "order_event", engine="fno"),
        record(4, engine="fno"),
    )
    assert ids(rings.recent(10, event_type="signal_event")) == [4, 2, 1]
    assert ids(rings.recent(10, engine="fno")) == [4, 3, 1]
    assert ids(rings.recent(10, event_type="signal_event", engine="equity")) == [2]
    assert rings.recent(10, event_type="never_seen") == []


def test_recent_before_id_pages_backwards() -> None:
    """before_id returns only records older than the given id."""
    rings = filled(record(1), record(2, "order_event"), record(3), record(4, "cycle"))
    assert ids(rings.recent(2, before_id=4)) == [3, 2]
    assert ids(rings.recent(10, before_id=2)) == [1]
    assert rings.recent(10, before_id=1) == []


def test_after_resumes_in_id_order_across_types() -> None:
    """after(last_id) yields newer records oldest first across all types."""
    rings = filled(record(1), record(2, "order_event"), record(3, "cycle"), record(4))
    assert ids(rings.after(1)) == [2, 3, 4]
    assert ids(rings.after(0)) == [1, 2, 3, 4]
    assert ids(rings.after(4)) == []


def test_after_filters_by_type() -> None:
    """after() with event_type resumes only that type."""
    rings = filled(record(1), record(2, "order_event"), record(3), record(4, "order_event"))
    assert ids(rings.after(1, event_type="signal_event")) == [3]
    assert ids(rings.after(0, event_type="order_event")) == [2, 4]
    assert ids(rings.after(0, event_type="never_seen")) == []


def test_after_skips_evicted_records() -> None:
    """after() can only replay what the ring still holds."""
    rings = filled(*(record(i) for i in range(1, 6)))
    assert ids(rings.after(0)) == [3, 4, 5]


def test_oldest_id() -> None:
    """oldest_id() is the smallest id still held anywhere, None when empty."""
    rings = EventRings(SMALL)
    assert rings.oldest_id() is None
    rings.append(record(5, "order_event"))
    for i in range(6, 10):
        rings.append(record(i))
    assert rings.oldest_id() == 5
    for i in range(10, 12):
        rings.append(record(i, "order_event"))
    assert rings.oldest_id() == 7


SHARED = Settings(ring_capacities={"signal_event": 10})


def test_a_flooding_engine_evicts_its_own_events_not_the_others() -> None:
    """One engine far above the others keeps the rest; the others keep every recent event."""
    rings = filled(record(1, engine="calm"), record(2, engine="calm"), settings=SHARED)
    for id in range(3, 1000):
        rings.append(record(id, engine="flood"))
    ring = rings.rings["signal_event"]
    assert ids(rings.recent(10, engine="calm")) == [2, 1]
    assert len(ring.lanes["flood"]) == 8 and ring.size == 10
    assert (ring.total, ring.evicted) == (999, 989)


def test_each_engine_keeps_at_least_its_share() -> None:
    """A quiet engine's new event evicts the most represented engine's oldest one."""
    rings = filled(*(record(id, engine="flood") for id in range(1, 11)), settings=SHARED)
    rings.append(record(11, engine="calm"))
    rings.append(record(12, engine="other"))
    ring = rings.rings["signal_event"]
    assert ids(ring.lanes["flood"]) == list(range(3, 11))
    assert ids(rings.recent(20)) == [12, 11, *range(10, 2, -1)]
    for id in range(13, 40):  # three engines: at its share (10 // 3) calm evicts its own oldest
        rings.append(record(id, engine="calm"))
    assert ids(ring.lanes["calm"]) == [37, 38, 39] and ids(ring.lanes["other"]) == [12]
    assert ids(ring.lanes["flood"]) == list(range(5, 11)) and ring.size == 10


def test_the_hot_path_lanes_trim_like_append() -> None:
    """Appending straight to a lane and calling `added` once trims like appending one by one."""
    ring = filled(record(1, engine="calm"), settings=SHARED).rings["signal_event"]
    lane = ring.lane("flood")
    for id in range(2, 102):
        lane.append(record(id, engine="flood"))
    ring.added("flood", 100)
    assert ids(ring.items) == [1, *range(93, 102)]
    assert (ring.size, ring.total, ring.evicted_upto) == (10, 101, 92)


def test_horizon_is_above_every_evicted_id_of_any_engine() -> None:
    """Below the horizon some engine's events may be gone: readers take those from the store."""
    rings = filled(record(1, engine="calm"), settings=SHARED)
    assert rings.horizon() == 0
    for id in range(2, 30):
        rings.append(record(id, engine="flood"))
    assert rings.horizon("signal_event") == 21 and rings.oldest_id() == 1
    assert [r.id for r in rings.after(25)] == [26, 27, 28, 29]


def test_after_a_forget_the_engines_left_share_the_whole_ring() -> None:
    """Forgetting an engine raises the others' share: one below it takes from the biggest."""
    rings = filled(
        *(record(id, engine="big") for id in range(1, 8)),
        *(record(id, engine="small") for id in range(8, 10)),
        record(10, engine="gone"),
        settings=SHARED,
    )
    ring = rings.rings["signal_event"]
    assert rings.forget("gone") == {"signal_event": 1}
    rings.append(record(11, engine="small"))  # fills the ring: 7 big, 3 small
    rings.append(record(12, engine="small"))  # small (3) is below its share of 10 // 2
    assert ids(ring.lanes["small"]) == [8, 9, 11, 12] and ids(ring.lanes["big"]) == [
        2,
        3,
        4,
        5,
        6,
        7,
    ]
