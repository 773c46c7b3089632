"""Bytes per overview page at 1,000 engines, and what compress-once deflate would save.

Runs the hub's own view tick (`Hub.push_views`, sans-I/O: `now` is simulated) over 1,000 engines
heartbeating once a second, with one page of each kind watching through a counting writer, for
SECONDS simulated seconds. Baseline, same run: every changed card sent whole and every engine a
card (what the overview sent before the dense list and value deltas).

Then, on the frames page 1 received, permessage-deflate (RFC 7692) three ways for PAGES pages:
plain frames (framed once, shared), compress-once (no context takeover: one compressed frame
serves every page) and per-socket deflate with context takeover (what a server does when it
negotiates compression per connection: one compressor per page).

    python -m benchmarks.live_bytes [--engines 1000] [--seconds 30] [--pages 1000]
"""

from __future__ import annotations

import argparse
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from hub.core.ingested import Ingested
from hub.core.messages import Heartbeat, Hello, Status
from hub.core.stats import Dirty, Topic
from hub.live import listing, views
from hub.live.listing import ListOrder
from hub.live.views import ViewKey, ViewKind
from hub.settings import Settings
from hub.stores import MemoryStore
from hub.web.runtime import Hub

T0 = 1_800_000_000.0
TICK = 0.1


class Counting:
    """A FrameWriter that takes everything and keeps the frames."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def write(self, wire: bytes) -> bool:
        self.frames.append(wire)
        return True

    def backlog(self) -> int:
        return 0

    def abort(self) -> bool:
        return False


def simulate(engines: int, seconds: float) -> tuple[dict[str, list[bytes]], float]:
    """Frames each watched view received, and the hub's CPU seconds spent in view ticks."""
    settings = Settings(max_engines=engines + 10, heartbeat_interval=3600.0)
    hub = Hub(settings, MemoryStore())
    records = []
    for n in range(engines):
        hello = Hello(engine=f"engine-{n:04d}", boot_id=f"b{n}", mode="live" if n % 10 else "paper")
        record, _ = hub.state.hello(hello, n + 1, T0, Ingested())
        hub.state.ingest(record, [Heartbeat(seq=1, loop_tick=0, status=Status.RUNNING)], T0)
        records.append(record)
    watched = {
        "page 1": ViewKey(ViewKind.OVERVIEW),
        "page 5 by name": ViewKey(ViewKind.OVERVIEW, page=5, order=ListOrder.NAME),
    }
    writers = {}
    for label, view in watched.items():
        viewer = hub.fanout.join(view)
        assert viewer is not None
        viewer.writer = writers[label] = Counting()
    hub.push_views(T0)  # the snapshots
    for writer in writers.values():
        writer.frames.clear()
    cpu, seq, ticks = 0.0, 1, int(seconds / TICK)
    per_tick = max(1, engines * TICK)  # each engine once a second, spread over the ticks
    for tick in range(1, ticks + 1):
        now = T0 + tick * TICK
        seq += 1
        start = int((tick * per_tick) % engines)
        for record in (records[(start + i) % engines] for i in range(int(per_tick))):
            beat = Heartbeat(seq=seq, loop_tick=seq * 7, open_positions=seq % 5)
            hub.state.ingest(record, [beat], now)
        began = time.process_time()
        hub.state.refresh(now)
        if tick % 10 == 0:
            hub.state.measure_rate(now)
        hub.push_views(now)
        cpu += time.process_time() - began
    return {label: w.frames for label, w in writers.items()}, cpu


@contextmanager
def baseline() -> Iterator[None]:
    """Every engine a card, every changed card whole: the overview before this change."""
    limit, plan = listing.CARD_LIMIT, views.Views.plan
    views.CARD_LIMIT = 10**9

    def whole(self: views.Views, dirty: set[Dirty], now: float) -> dict[int, views.Change]:
        changed = (self.state.engines.get(n) for t, n in dirty if t is Topic.ENGINE)
        return {e.index: views.Change.FULL for e in changed if e is not None}

    views.Views.plan = whole  # type: ignore[method-assign]
    try:
        yield
    finally:
        views.CARD_LIMIT, views.Views.plan = limit, plan  # type: ignore[method-assign]


def payloads(frames: list[bytes]) -> list[bytes]:
    """The text of each framed message (server frames: no mask)."""
    out = []
    for wire in frames:
        size, at = wire[1] & 0x7F, 2
        if size >= 126:
            width = 2 if size == 126 else 8
            size, at = int.from_bytes(wire[2 : 2 + width], "big"), 2 + width
        out.append(wire[at : at + size])
    return out


def deflate_once(data: bytes) -> bytes:
    """One message compressed without context takeover (RFC 7692 7.2.1)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def compression(frames: list[bytes], seconds: float, pages: int) -> None:
    """Bytes per page per second and hub CPU per second for `pages` pages, three ways."""
    texts = payloads(frames)
    plain = sum(len(w) for w in frames)
    began = time.process_time()
    once = sum(len(deflate_once(t)) + 4 for t in texts)  # + frame header, about
    once_cpu = time.process_time() - began
    began = time.process_time()
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    takeover = sum(len(compressor.compress(t) + compressor.flush(zlib.Z_SYNC_FLUSH)) for t in texts)
    takeover_cpu = (time.process_time() - began) * pages  # one compressor per page
    print(f"  {'':28} {'bytes/s per page':>17} {'hub CPU s/s':>12} {'total MB/s':>11}")
    for label, size, spent in (
        ("plain (framed once)", plain, 0.0),
        ("compress-once, no takeover", once, once_cpu),
        ("per-socket, context takeover", takeover, takeover_cpu),
    ):
        rate = size / seconds
        print(
            f"  {label:28} {rate:>17,.0f} {spent / seconds:>12.4f} "
            f"{rate * pages / 1e6:>11.1f}   ({size / plain:.2f}x plain bytes)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--pages", type=int, default=1000)
    args = parser.parse_args()
    with baseline():
        old, old_cpu = simulate(args.engines, args.seconds)
    new, new_cpu = simulate(args.engines, args.seconds)
    old_rate = sum(len(w) for w in old["page 1"]) / args.seconds
    print(f"{args.engines} engines heartbeating 1/s, {args.seconds:.0f} s simulated, 100 ms ticks")
    print(f"  baseline (all cards, whole): {old_rate:>12,.0f} B/s per overview page")
    for label, frames in new.items():
        rate = sum(len(w) for w in frames) / args.seconds
        print(f"  {label:27}: {rate:>12,.0f} B/s per page ({rate / old_rate:.3f}x baseline)")
    print(
        f"  view tick CPU: {new_cpu / args.seconds:.3f} s/s "
        f"(baseline {old_cpu / args.seconds:.3f} s/s, {new_cpu / old_cpu:.2f}x)"
    )
    print(f"compression of page 1's frames for {args.pages} pages:")
    compression(new["page 1"], args.seconds, args.pages)
    print(f"compression of the baseline's frames for {args.pages} pages:")
    compression(old["page 1"], args.seconds, args.pages)


if __name__ == "__main__":
    main()
