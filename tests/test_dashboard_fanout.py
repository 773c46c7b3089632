"""Dashboard fan-out: bounded per-viewer queues, snapshot fallback, slow disconnect, render once."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import msgspec
import pytest
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side

from hub.core.ingested import Ingested
from hub.core.messages import Event, Heartbeat, Hello
from hub.live.dashboard_fanout import (
    RESYNC_AT,
    DashboardFanout,
    Viewer,
    Wire,
    deflated_frame,
    text_frame,
)
from hub.live.views import OVERVIEW, FragmentKey, Part, ViewKey, ViewKind
from hub.settings import Settings
from hub.stores import MemoryStore
from hub.web.runtime import Hub

T0 = 1_700_000_000.0
ENGINE_VIEW = ViewKey(ViewKind.ENGINE, 1)


def event(seq: int, type: str, payload: dict[str, Any]) -> Event:
    """An event message as the decoder makes it: the payload kept as raw JSON."""
    return Event(seq=seq, type=type, payload=msgspec.Raw(msgspec.json.encode(payload)))


def make_fanout(
    max_chars: int = 100, max_viewers: int = 10
) -> tuple[DashboardFanout, Counter[str]]:
    drops: Counter[str] = Counter()
    return DashboardFanout(max_chars, max_viewers, drops), drops


def publish(fanout: DashboardFanout, view: ViewKey, frame: str) -> None:
    """Offer one frame to every viewer of `view`, as the runtime's tick does, then prune."""
    fanout.offer_all(fanout.views.get(view, ()), frame)
    fanout.prune(view)


def ready(fanout: DashboardFanout, view: ViewKey = OVERVIEW) -> Viewer:
    """A viewer that already had its snapshot, so deltas are queued for it."""
    viewer = fanout.join(view)
    assert viewer is not None
    viewer.needs_snapshot = False
    return viewer


def woken(viewer: Viewer) -> bool:
    return viewer._wake.is_set()


class Socket:
    """A FrameWriter double: takes every frame while `open`, refuses them otherwise; holds `held` bytes."""

    def __init__(self, open: bool = True) -> None:
        self.open = open
        self.written: list[bytes] = []  # the plain frames it took
        self.held = 0  # bytes its transport has not sent yet

    def backlog(self) -> int:
        return self.held

    def write(self, wire: Wire) -> bool:
        if self.open:
            self.written.append(wire.plain)
        return self.open


def direct(fanout: DashboardFanout, socket: Socket | None = None) -> tuple[Viewer, Socket]:
    """A ready viewer whose socket can be written directly."""
    viewer = ready(fanout)
    viewer.writer = socket = socket or Socket()
    return viewer, socket


def read_frames(wire: bytes, deflate: bool = False) -> list[Frame]:
    """What a WebSocket client makes of `wire` (`deflate`: one that negotiated permessage-deflate
    with server_no_context_takeover, as a browser does with the hub)."""
    client = Protocol(Side.CLIENT)  # an open connection, as after the handshake
    if deflate:
        client.extensions = [PerMessageDeflate(True, False, 15, 15)]
    client.receive_data(wire)
    return [e for e in client.events_received() if isinstance(e, Frame)]


# -- joining and leaving -------------------------------------------------------------------------


def test_join_and_leave_keep_counts_by_view() -> None:
    """Viewers are grouped by view and counted; an emptied view disappears."""
    fanout, _ = make_fanout()
    a, b = fanout.join(OVERVIEW), fanout.join(OVERVIEW)
    c = fanout.join(ENGINE_VIEW)
    assert a is not None and b is not None and c is not None
    assert len({a.id, b.id, c.id}) == 3
    assert fanout.count == 3
    assert fanout.views == {OVERVIEW: {a, b}, ENGINE_VIEW: {c}}
    assert a.needs_snapshot and not a.closed
    fanout.leave(c)
    fanout.leave(c)  # leaving twice is harmless
    assert fanout.count == 2
    assert ENGINE_VIEW not in fanout.views


def test_join_beyond_max_viewers_is_refused_and_counted() -> None:
    """The viewer limit refuses further joins, counts them, and frees up when one leaves."""
    fanout, drops = make_fanout(max_viewers=2)
    first = fanout.join(OVERVIEW)
    assert first is not None and fanout.join(OVERVIEW) is not None
    assert fanout.join(OVERVIEW) is None
    assert fanout.join(ENGINE_VIEW) is None
    assert drops["dashboard_refused"] == 2
    assert fanout.count == 2
    fanout.leave(first)
    assert fanout.join(ENGINE_VIEW) is not None


# -- offering ------------------------------------------------------------------------------------


def test_offer_within_budget_queues_and_wakes() -> None:
    """Frames within the queue budget are queued in order and wake the sender."""
    fanout, drops = make_fanout(max_chars=100)
    viewer = ready(fanout)
    assert not woken(viewer)
    fanout.offer(viewer, "a" * 40)
    fanout.offer(viewer, "b" * 60)  # exactly the budget
    assert list(viewer.queue) == ["a" * 40, "b" * 60]
    assert viewer.queued_chars == 100
    assert woken(viewer)
    assert not viewer.needs_snapshot and not drops


def test_offer_skips_a_viewer_awaiting_its_snapshot() -> None:
    """Deltas are not queued for a viewer that will get a full snapshot anyway."""
    fanout, _ = make_fanout()
    viewer = fanout.join(OVERVIEW)
    assert viewer is not None
    fanout.offer(viewer, "delta")
    assert not viewer.queue and viewer.needs_snapshot


def test_overflow_replaces_backlog_with_snapshot() -> None:
    """A frame over budget drops the backlog and asks for a snapshot instead, counted."""
    fanout, drops = make_fanout(max_chars=100)
    viewer = ready(fanout)
    fanout.offer(viewer, "a" * 80)
    viewer._wake.clear()
    fanout.offer(viewer, "b" * 21)
    assert not viewer.queue and viewer.queued_chars == 0
    assert viewer.needs_snapshot and not viewer.closed
    assert drops == {"dashboard_backlog_replaced": 1}
    assert woken(viewer)


def test_a_lagging_viewer_is_resynced_once_its_socket_caught_up() -> None:
    """Behind: nothing more is queued; once its socket holds little, it may take a snapshot."""
    fanout, drops = make_fanout(max_chars=100)
    viewer, socket = direct(fanout, Socket(open=False))
    socket.held = 90  # written earlier, not yet taken by the browser
    fanout.offer(viewer, "x" * 20)
    assert viewer.needs_snapshot and not viewer.queue
    fanout.offer(viewer, "y")
    assert not viewer.queue  # coalesced: nothing piles up while it lags
    assert fanout.resyncable([viewer], T0) == []
    assert viewer.waiting_since == T0
    socket.held = int(100 * RESYNC_AT)  # the browser read most of it
    assert fanout.resyncable([viewer], T0 + 1) == [viewer]
    assert viewer.waiting_since is None and not viewer.closed
    assert drops == {"dashboard_backlog_replaced": 1}


def test_a_frame_bigger_than_the_budget_still_reaches_a_viewer_holding_nothing() -> None:
    """A snapshot over budget cannot wedge a page: a viewer holding nothing takes any frame."""
    fanout, drops = make_fanout(max_chars=10)
    viewer, socket = direct(fanout)
    fanout.offer(viewer, "s" * 50)
    assert socket.written == [text_frame("s" * 50)] and not viewer.needs_snapshot
    assert not drops


def test_a_viewer_stuck_past_stuck_seconds_is_cut_off_and_frees_its_slot() -> None:
    """Only a viewer that has not caught up for `stuck_seconds` is closed as slow, counted."""
    fanout, drops = make_fanout(max_chars=10, max_viewers=1)
    viewer, socket = direct(fanout, Socket(open=False))
    socket.held = 50
    publish(fanout, OVERVIEW, "x")
    assert viewer.needs_snapshot
    for second in range(11):
        assert fanout.resyncable([viewer], T0 + second, stuck_seconds=10) == []
        assert not viewer.closed
    fanout.resyncable([viewer], T0 + 10.5, stuck_seconds=10)
    assert viewer.closed and viewer.gone.is_set()
    assert drops == {"dashboard_backlog_replaced": 1, "dashboard_slow_disconnect": 1}
    fanout.prune(OVERVIEW)
    assert fanout.count == 0 and OVERVIEW not in fanout.views
    assert fanout.join(OVERVIEW) is not None


async def test_a_viewer_still_sending_waits_for_its_resync() -> None:
    """On the ASGI path, a viewer whose sender still holds frames is not yet caught up."""
    fanout, _ = make_fanout(max_chars=10)
    viewer = ready(fanout)
    fanout.offer(viewer, "x" * 8)
    assert await viewer.next_frames() == ["x" * 8]  # now being sent
    fanout.offer(viewer, "y" * 8)
    assert viewer.queue  # queued behind the batch in flight
    fanout.offer(viewer, "z" * 8)
    assert viewer.needs_snapshot and not viewer.queue
    assert fanout.resyncable([viewer], T0) == []
    viewer.sending = False  # the sender finished
    assert fanout.resyncable([viewer], T0) == [viewer]


async def test_next_frames_takes_everything_queued() -> None:
    """next_frames returns every queued frame at once and empties the queue."""
    fanout, _ = make_fanout()
    viewer = ready(fanout)
    fanout.offer(viewer, "one")
    fanout.offer(viewer, "two")
    assert await viewer.next_frames() == ["one", "two"]
    assert not viewer.queue and not woken(viewer)


def test_publish_sends_the_same_string_to_every_viewer_of_a_view() -> None:
    """publish queues the identical string object for each viewer of the view, none elsewhere."""
    fanout, _ = make_fanout(max_chars=10_000)
    overview = [ready(fanout) for _ in range(5)]
    other = ready(fanout, ENGINE_VIEW)
    frame = "".join(["<div>", "x" * 100, "</div>"])
    publish(fanout, OVERVIEW, frame)
    assert all(len(v.queue) == 1 and v.queue[0] is frame for v in overview)
    assert not other.queue
    publish(fanout, ViewKey(ViewKind.EMBED, 9), "nobody watches")  # no viewers: nothing happens


def test_close_closes_and_wakes_everyone() -> None:
    """Hub shutdown closes every viewer and wakes its sender."""
    fanout, _ = make_fanout()
    viewers = [ready(fanout), ready(fanout, ENGINE_VIEW)]
    fanout.close()
    assert all(v.closed and woken(v) for v in viewers)


# -- writing straight to the socket ----------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70_000])
def test_text_frame_is_one_text_message_to_a_websocket_client(size: int) -> None:
    """text_frame's bytes parse as exactly one final text frame with the text, at every length
    encoding boundary (7-bit, 16-bit and 64-bit sizes)."""
    text = "".join(["<p>", "x" * size])
    frames = read_frames(text_frame(text) + text_frame("next"))
    assert [(f.opcode, f.fin, f.data.decode()) for f in frames] == [
        (Opcode.TEXT, True, text),
        (Opcode.TEXT, True, "next"),
    ]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_a_deflated_frame_is_the_same_message_to_a_client_that_negotiated_deflate(
    size: int,
) -> None:
    """deflated_frame's bytes are one compressed (RSV1) text frame a deflate client inflates to
    the text, twice in a row (no state carried from one frame to the next); random text, so
    the compressed sizes cross the length encodings too."""
    text = "".join(["<p>", random.Random(size).randbytes(size).hex()[:size]])
    frames = read_frames(deflated_frame(text) + deflated_frame("next"), deflate=True)
    assert [(f.opcode, f.fin, f.data.decode()) for f in frames] == [
        (Opcode.TEXT, True, text),
        (Opcode.TEXT, True, "next"),
    ]
    assert deflated_frame(text)[0] == 0xC1  # FIN, RSV1, text
    repetitive = "<div class=card>ok</div>" * 400
    assert len(deflated_frame(repetitive)) < len(text_frame(repetitive)) / 20


def test_a_wire_frames_and_deflates_once_and_only_on_demand() -> None:
    wire = Wire("<p>tick</p>")
    assert wire.plain is wire.plain and wire.plain == text_frame("<p>tick</p>")
    assert wire._deflated is None  # no socket wanted it compressed: no compression done
    assert wire.deflated is wire.deflated and wire.deflated == deflated_frame("<p>tick</p>")


def test_text_frame_sizes_non_ascii_text_in_bytes() -> None:
    """The length in the header counts encoded bytes, not characters."""
    [frame] = read_frames(text_frame("caf\u00e9 \u00b7" * 30))
    assert frame.data.decode() == "caf\u00e9 \u00b7" * 30


def test_a_writable_socket_gets_the_frame_written_not_queued() -> None:
    """While nothing is queued or in flight, a frame goes straight to the socket, framed."""
    fanout, drops = make_fanout()
    viewer, socket = direct(fanout)
    fanout.offer(viewer, "<p>one</p>")
    assert socket.written == [text_frame("<p>one</p>")]
    assert not viewer.queue and not woken(viewer) and not drops


def test_a_socket_that_refuses_gets_the_frame_queued_and_later_ones_keep_order() -> None:
    """A refused frame takes the queue; frames after it queue behind it even once the socket
    takes writes again, so the sender delivers them in order."""
    fanout, _ = make_fanout()
    viewer, socket = direct(fanout, Socket(open=False))
    fanout.offer(viewer, "one")
    socket.open = True
    fanout.offer(viewer, "two")
    assert list(viewer.queue) == ["one", "two"] and woken(viewer)
    assert socket.written == []


async def test_frames_wait_behind_a_batch_the_sender_is_still_sending() -> None:
    """Frames offered while the sender holds a batch are queued, not written past it."""
    fanout, _ = make_fanout()
    viewer, socket = direct(fanout, Socket(open=False))
    fanout.offer(viewer, "one")
    assert await viewer.next_frames() == ["one"]  # in flight: the ASGI send may be waiting
    socket.open = True
    fanout.offer(viewer, "two")
    assert socket.written == [] and list(viewer.queue) == ["two"]
    assert await viewer.next_frames() == ["two"]


def test_offer_all_frames_once_for_every_socket() -> None:
    """Every viewer's socket is handed the same framed bytes object: framing is once per frame."""
    fanout, _ = make_fanout()
    viewers = [direct(fanout) for _ in range(5)]
    publish(fanout, OVERVIEW, "<p>tick</p>")
    written = [socket.written for _, socket in viewers]
    assert all(len(w) == 1 and w[0] is written[0][0] for w in written)
    assert written[0][0] == text_frame("<p>tick</p>")


# -- Hub.push_views ------------------------------------------------------------------------------


def make_hub() -> Hub:
    hub = Hub(Settings(), MemoryStore())
    record, _ = hub.state.hello(Hello(engine="fno", boot_id="b"), 1, T0, Ingested())
    hub.state.ingest(record, [Heartbeat(seq=1, loop_tick=1)], T0)
    return hub


def count_renders(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> Counter[FragmentKey]:
    """Count how often each fragment is rendered."""
    renders: Counter[FragmentKey] = Counter()
    original = hub.views.render

    def render(key: FragmentKey, now: float, oob: bool) -> str:
        renders[key] += 1
        return original(key, now, oob)

    monkeypatch.setattr(hub.views, "render", render)
    return renders


def test_push_views_renders_once_for_fifty_viewers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fifty viewers of a view cost one render per fragment and share one frame string."""
    hub = make_hub()
    renders = count_renders(hub, monkeypatch)
    viewers = [hub.fanout.join(OVERVIEW) for _ in range(50)]
    assert all(v is not None for v in viewers)
    hub.push_views(T0)
    names = hub.views.names(OVERVIEW)
    assert renders == dict.fromkeys(names, 1)
    snapshots = [v.queue[0] for v in viewers if v is not None]
    assert all(s is snapshots[0] for s in snapshots)
    assert all(f'id="{i}"' in snapshots[0] for i in ("hub-status", "cards", "signals", "logs"))

    renders.clear()
    record = hub.state.engines["fno"]
    hub.state.ingest(record, [event(2, "signal_event", {"symbol": "X"})], T0)
    hub.push_views(T0 + 0.1)
    assert renders == {FragmentKey(Part.SIGNALS): 1}
    deltas = [v.queue[1] for v in viewers if v is not None]
    assert all(d is deltas[0] for d in deltas)
    assert deltas[0] == hub.views.render(FragmentKey(Part.SIGNALS), T0 + 0.1, oob=True)


def test_push_views_gives_the_snapshot_to_new_viewers_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A viewer joining mid-stream gets one snapshot; the others get only the delta."""
    hub = make_hub()
    old = hub.fanout.join(OVERVIEW)
    assert old is not None
    hub.push_views(T0)
    old.queue.clear()
    old.queued_chars = 0
    new = hub.fanout.join(OVERVIEW)
    assert new is not None
    record = hub.state.engines["fno"]
    hub.state.ingest(record, [event(2, "order_event", {"order_id": "o"})], T0)
    renders = count_renders(hub, monkeypatch)
    hub.push_views(T0 + 0.1)
    assert renders == dict.fromkeys(hub.views.names(OVERVIEW), 1)  # "orders" serves both
    assert list(old.queue) == [hub.views.render(FragmentKey(Part.ORDERS), T0 + 0.1, oob=True)]
    assert len(new.queue) == 1 and not new.needs_snapshot
    assert new.queue[0] == hub.views.frame(hub.views.names(OVERVIEW), T0 + 0.1, {})


def test_push_views_skips_closed_viewers_and_idle_ticks() -> None:
    """Nothing is queued when nothing is dirty, nor for a viewer the fan-out closed."""
    hub = make_hub()
    viewer = hub.fanout.join(OVERVIEW)
    closed = hub.fanout.join(OVERVIEW)
    assert viewer is not None and closed is not None
    closed.closed = True
    hub.push_views(T0)
    assert len(viewer.queue) == 1 and not closed.queue
    hub.push_views(T0 + 0.1)
    assert len(viewer.queue) == 1


def test_push_views_forgets_viewers_the_fanout_gave_up_on() -> None:
    """A viewer closed as slow is pruned on the next tick, so it no longer holds a slot."""
    hub = make_hub()
    slow = hub.fanout.join(OVERVIEW)
    other = hub.fanout.join(OVERVIEW)
    assert slow is not None and other is not None
    slow.closed = True
    hub.push_views(T0)
    assert hub.fanout.count == 1
    assert hub.fanout.views == {OVERVIEW: {other}}


def test_a_page_for_an_unknown_engine_does_not_break_other_views() -> None:
    """A viewer of /ws/dashboard?view=engine&id=<unknown> gets placeholders; others still update."""
    hub = make_hub()
    bogus = hub.fanout.join(ViewKey(ViewKind.ENGINE, 999))
    overview = hub.fanout.join(OVERVIEW)
    assert bogus is not None and overview is not None
    hub.push_views(T0)
    assert len(overview.queue) == 1
    assert 'id="card-999"' in bogus.queue[0]


def test_bytes_the_transport_holds_count_like_a_queue_on_the_direct_path() -> None:
    """A frozen browser on the direct path (its transport holds more than the budget) is
    coalesced, not written to, and resynced only once it reads; the other browser keeps going."""
    fanout, drops = make_fanout(max_chars=100)
    frozen, held = direct(fanout)
    other, fine = direct(fanout)
    held.held = 95  # written earlier, never read
    for _ in range(4):
        publish(fanout, OVERVIEW, "x" * 11)
        assert frozen.needs_snapshot and not frozen.closed
        assert fine.written[-1] == text_frame("x" * 11)
        assert fanout.resyncable([frozen, other], T0) == []
    assert held.written == [] and not frozen.queue
    assert drops == {"dashboard_backlog_replaced": 1}
    assert not other.closed
