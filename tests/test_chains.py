"""Causal chains without sockets: the index, the walk, ingest's links, and how a chain reads."""

from __future__ import annotations

import msgspec
import pytest

from hub.core.chains import ChainIndex, Link, Step, walk
from hub.core.decoding import FrameDecoder
from hub.core.ingested import Ingested
from hub.core.messages import ChainLink, Event, Hello
from hub.core.records import EventRecord
from hub.core.state import HubState
from hub.live.chains import ChainView, duration_text, stage_of, timeline_url
from hub.settings import Settings


def link(
    ident: int,
    ref: int | None,
    parent: int | None = None,
    cycle: str | None = None,
    boot: str = "b1",
    ts: float | None = None,
) -> Link:
    return Link(
        ident, "fno", boot, "order_event", float(ident) if ts is None else ts, ref, parent, cycle
    )


def record(ident: int, ts: float, kind: str, **payload: object) -> EventRecord:
    return EventRecord(
        ident, kind, ts, "fno", ident, "b1", msgspec.Raw(msgspec.json.encode(payload))
    )


def test_walk_finds_the_whole_chain_from_any_member() -> None:
    """Parents up, children down (branches too) and cycle mates across; other boots stay out."""
    index = ChainIndex()
    chain = [
        link(1, 1),
        link(2, 2, 1),
        link(3, 3, 2),
        link(4, 4, 3),
        link(5, 5, 3),
        link(6, None, None, "c"),
    ]
    chain[0] = link(1, 1, cycle="c")
    for k in [*chain, link(7, 3, 2, boot="b2"), link(8, 9)]:
        index.add(k)
    for member in chain:
        found, cut = walk(index, [member])
        assert [k.event_id for k in found] == [1, 2, 3, 4, 5, 6] and not cut


def test_walk_stops_at_the_limit_and_says_so() -> None:
    """A chain longer than the limit is cut at it."""
    index = ChainIndex()
    for n in range(1, 21):
        index.add(link(n, n, n - 1 or None))
    found, cut = walk(index, [link(10, 10, 9)], limit=5)
    assert len(found) == 5 and cut
    found, cut = walk(index, [link(10, 10, 9)], limit=20)
    assert len(found) == 20 and not cut


def test_the_index_is_bounded_and_forgets_the_oldest() -> None:
    """Beyond its capacity the oldest links go, from every lookup."""
    index = ChainIndex(capacity=3)
    for n in range(1, 6):
        index.add(link(n, n, n - 1 or None, cycle="c"))
    assert len(index) == 3 and not index.has(2) and index.has(5)
    assert index.by_ref("fno", "b1", 2, 10) == [] and index.children("fno", "b1", 1, 10) == []
    assert [k.event_id for k in index.cycle("fno", "b1", "c", 10)] == [3, 4, 5]
    assert index.step(5) == Step(link(5, 5, 4, cycle="c"), None)


def test_ingest_links_only_events_that_carry_a_chain() -> None:
    """HubState.ingest indexes chained events and hands their links to the store."""
    state = HubState(Settings())
    out = Ingested()
    engine, _ = state.hello(Hello("fno", boot_id="b1"), 1, 100.0, out)
    items = [
        Event(1, "signal_event", 99.0, msgspec.Raw(b"{}"), ChainLink(1, cycle="c-1")),
        Event(2, "cycle", 99.1),
        Event(3, "order_event", 99.2, msgspec.Raw(b"{}"), ChainLink(2, 1)),
    ]
    ingested = state.ingest(engine, list(items), 100.0)
    assert [(k.event_id, k.ref, k.parent, k.cycle) for k in ingested.links] == [
        (1, 1, None, "c-1"),
        (3, 2, 1, None),
    ]
    assert state.chains.has(1) and not state.chains.has(2) and state.chains.has(3)
    step = state.chains.step(3)
    assert step is not None and step.event is ingested.events[2]


def test_the_decoder_keeps_a_chain_and_rejects_a_bad_one() -> None:
    """`chain` decodes as a typed value; a bad ref or an overlong cycle rejects the message."""
    decoder = FrameDecoder(Settings())
    good = b'{"kind":"event","seq":1,"type":"order_event","payload":{},"chain":{"ref":3,"parent":2,"cycle":"c"}}'
    [msg] = decoder.decode(good.decode(), 100.0).items
    assert isinstance(msg, Event) and msg.chain == ChainLink(3, 2, "c")
    for bad in ('{"ref":0}', '{"parent":"x"}', '{"cycle":""}', '"c-1"'):
        text = '{"kind":"event","seq":1,"type":"order_event","chain":' + bad + "}"
        [rejected] = decoder.decode(text, 100.0).items
        assert not isinstance(rejected, Event)
        assert "chain" in rejected.detail


def test_a_chain_reads_as_steps_with_timings() -> None:
    """Stages from types and order status, time since the previous and the first step, and the
    end to end time to the last fill ("signal to fill: 420 ms")."""
    steps = [
        Step(Link(1, "fno", "b", "signal_event", 10.0, 1), record(1, 10.0, "signal_event")),
        Step(Link(2, "fno", "b", "decision_trace", 10.1, 2, 1), record(2, 10.1, "decision_trace")),
        Step(
            Link(3, "fno", "b", "order_event", 10.15, 3, 2),
            record(3, 10.15, "order_event", status="create"),
        ),
        Step(
            Link(4, "fno", "b", "order_event", 10.42, 4, 3),
            record(4, 10.42, "order_event", status="fill"),
        ),
        Step(Link(5, "fno", "b", "position_event", 11.0, None, None, "c"), None),
    ]
    view = ChainView(4, steps, False)
    assert [s.stage for s in view.steps] == [
        "signal",
        "decision",
        "order",
        "fill",
        "position_event",
    ]
    assert view.summary == "signal to fill: 420 ms" and view.outcome == "filled"
    assert [s.after_previous for s in view.steps] == [
        "",
        "+100 ms",
        "+50 ms",
        "+270 ms",
        "+580 ms",
    ]
    answer = view.as_dict()
    assert answer["total_ms"] == pytest.approx(420) and answer["steps"][4]["event"] is None
    rejected = ChainView(
        1,
        steps[:3] + [Step(steps[3].link, record(4, 10.42, "order_event", status="reject"))],
        False,
    )
    assert rejected.outcome == "rejected" and rejected.summary == "signal to reject: 420 ms"
    assert ChainView(1, steps[:3], False).outcome == "open"


def test_words_for_stages_durations_and_links() -> None:
    """Order statuses map to stages; durations read naturally; timeline links are encoded."""
    assert stage_of("order_event", {"status": "REJECTED"}) == "reject"
    assert stage_of("order_event", {"status": 7}) == "order"
    assert stage_of("custom", None) == "custom"
    assert [duration_text(s) for s in (0.0004, 0.42, 3.25, 720, 9000)] == [
        "0.4 ms",
        "420 ms",
        "3.2 s",
        "12 min",
        "2.5 h",
    ]
    assert timeline_url("fno.1", 12.5) == "/timeline?engine=fno.1&around=12.500"
