"""Synchronous unit tests of the engine client's sans-I/O core (no sockets, no sleeps)."""

from __future__ import annotations

import json
import logging
import random
import threading
from typing import Any

import pytest

from hub.client import ClientCore, ClientOptions, ConnectionState, DropReason, EngineClient
from hub.client.backoff import Backoff
from hub.client.handlers import SHIPPING
from hub.client.intake import EVENT, OBSERVE, NullIntake
from hub.client.options import engine_url, make_options

URL = "ws://127.0.0.1:1"


def make_core(**options: Any) -> ClientCore:
    """A core for engine `fno` with the given client options."""
    return ClientCore(
        ClientOptions(**options),
        engine="fno",
        mode="paper",
        boot_id="b" * 32,
        pid=42,
        started_at=1000.0,
        meta={"host": "test"},
    )


def welcome(last_seq: int = 0, **fields: Any) -> str:
    """A hub `welcome` frame."""
    body = {
        "kind": "welcome",
        "hub": "0.1.0",
        "engine": "fno",
        "boot_id": "b" * 32,
        "last_seq": last_seq,
        "ack_interval": 0.1,
        "max_message_bytes": 256 * 1024,
        "max_frame_bytes": 1024 * 1024,
    }
    body.update(fields)
    return json.dumps(body)


def connect(core: ClientCore, last_seq: int = 0, **fields: Any) -> dict[str, Any]:
    """Run the handshake; returns the decoded hello."""
    hello = json.loads(core.hello())
    core.receive(welcome(last_seq, **fields))
    return hello


def online(core: ClientCore, last_seq: int = 0) -> None:
    """Connect and send the first full heartbeat, so later frames hold only what a test records."""
    connect(core, last_seq)
    core.collect(0.0)
    sent(core)


def sent(core: ClientCore) -> list[list[dict[str, Any]]]:
    """Every frame the core wants to send now, decoded."""
    frames = []
    while (frame := core.next_frame()) is not None:
        frames.append(json.loads(frame))
    return frames


def messages(core: ClientCore, kind: str | None = None) -> list[dict[str, Any]]:
    """All messages of the frames to send now, optionally only those of one kind."""
    flat = [message for frame in sent(core) for message in frame]
    return [m for m in flat if kind is None or m["kind"] == kind]


def event(core: ClientCore, ts: float = 1.0, kind: str = "signal_event", **payload: Any) -> None:
    """Record one event straight into the intake."""
    core.intake.append((EVENT, ts, kind, payload))


def client(**options: Any) -> EngineClient:
    """An engine client that is never started (so it does no I/O)."""
    return EngineClient(URL, engine="fno", mode="paper", close_on_exit=False, **options)


def test_hello_names_engine_boot_and_heartbeat_interval() -> None:
    """hello carries engine, mode, pid, boot_id, started_at, heartbeat_interval and meta."""
    core = make_core(heartbeat_interval=2.5)
    hello = json.loads(core.hello())
    assert hello["kind"] == "hello"
    assert (hello["engine"], hello["pid"], hello["boot_id"]) == ("fno", 42, "b" * 32)
    assert (hello["started_at"], hello["heartbeat_interval"], hello["meta"]) == (
        1000.0,
        2.5,
        {"host": "test"},
    )
    assert core.state is ConnectionState.HANDSHAKE


def test_seq_starts_at_one_and_increases_by_one() -> None:
    """Every message after hello gets the next seq, starting at 1."""
    core = make_core()
    connect(core)
    for n in range(3):
        event(core, n=n)
    core.collect(10.0)
    seqs = [m["seq"] for m in messages(core)]
    assert seqs == list(range(1, len(seqs) + 1))
    assert core.last_seq == len(seqs)


def test_nothing_is_sent_before_welcome() -> None:
    """Records wait in the outbox while offline and during the handshake."""
    core = make_core()
    event(core)
    core.collect(1.0)
    assert core.next_frame() is None
    core.hello()
    assert core.next_frame() is None
    core.receive(welcome())
    assert [m["type"] for m in messages(core, "event")] == ["signal_event"]


def test_batches_hold_at_most_max_batch_messages() -> None:
    """A frame is a JSON array of at most `max_batch` messages."""
    core = make_core(max_batch=4)
    online(core)
    for n in range(10):
        event(core, n=n)
    core.collect(1.0)
    frames = sent(core)
    assert [len(frame) for frame in frames] == [4, 4, 2]
    assert [m["payload"]["n"] for frame in frames for m in frame] == list(range(10))


def test_frames_stay_under_the_hubs_frame_limit() -> None:
    """Frames are cut to the welcome's max_frame_bytes."""
    core = make_core()
    connect(core, max_frame_bytes=400)
    for n in range(10):
        event(core, text="x" * 100, n=n)
    core.collect(1.0)
    frames = [core.next_frame() for _ in range(10)]
    sizes = [len(frame) for frame in frames if frame is not None]
    assert len(sizes) > 1
    assert max(sizes) <= 400


def test_flush_is_due_by_time_or_by_count() -> None:
    """flush_due turns true after flush_interval, or as soon as a batch is full."""
    core = make_core(flush_interval=0.1, max_batch=3)
    core.collect(10.0)
    assert not core.flush_due(10.05)
    assert core.flush_due(10.2)
    for _ in range(3):
        event(core)
    assert core.flush_due(10.01)


def test_a_full_batch_wakes_the_sender_once() -> None:
    """Reaching max_batch records calls the shell's wake hook."""
    core = make_core(max_batch=3)
    wakes: list[int] = []
    core.intake.wake = lambda: wakes.append(1)
    for _ in range(5):
        event(core)
    assert wakes == [1]


def test_increments_are_pre_aggregated_per_series() -> None:
    """Many increments of one series (any keyword order) become one inc message."""
    app = client()
    core = app._core
    connect(core)
    for _ in range(5):
        app.increment("signals", strategy="mr", side="long")
    app.increment("signals", side="long", strategy="mr")
    app.increment("signals", 2.5, strategy="mr", side="long")
    app.increment("signals", strategy="trend", side="long")
    core.collect(1.0)
    incs = {json.dumps(m["tags"], sort_keys=True): m for m in messages(core, "metric")}
    assert len(incs) == 2
    assert incs['{"side": "long", "strategy": "mr"}']["value"] == 8.5
    assert incs['{"side": "long", "strategy": "trend"}']["value"] == 1


def test_counter_deltas_start_from_zero_after_each_collect() -> None:
    """A collect sends only what was added since the previous one."""
    core = make_core()
    connect(core)
    core.intake.inc("ticks", 1)
    core.intake.inc("ticks", 1)
    core.collect(1.0)
    assert [m["value"] for m in messages(core, "metric")] == [2]
    core.collect(2.0)
    assert messages(core, "metric") == []
    core.intake.inc("ticks", 1)
    core.collect(3.0)
    assert [m["value"] for m in messages(core, "metric")] == [1]


def test_negative_increments_are_counted_as_invalid() -> None:
    """Counters only go up; a negative or NaN amount is dropped and counted."""
    core = make_core()
    connect(core)
    core.intake.inc("ticks", -1)
    core.intake.inc("ticks", float("nan"))
    core.intake.inc("ticks", 0)
    core.collect(1.0)
    assert messages(core, "metric") == []
    assert core.stats().dropped == {DropReason.INVALID: 2}


def test_gauges_coalesce_to_the_latest_value() -> None:
    """Several set_gauge calls between flushes send only the last value."""
    core = make_core()
    connect(core)
    for value in (1.0, 2.0, 3.5):
        core.intake.set_gauge(("pnl", (("book", "a"),)), value)
    core.intake.set_gauge("exposure", 7)
    core.collect(1.0)
    sets = {m["name"]: m for m in messages(core, "metric")}
    assert sets["pnl"]["value"] == 3.5 and sets["pnl"]["tags"] == {"book": "a"}
    assert sets["exposure"]["value"] == 7 and sets["exposure"]["op"] == "set"


def test_observations_are_sent_one_by_one() -> None:
    """observe() keeps every value (histograms need each one)."""
    core = make_core()
    connect(core)
    for value in (0.1, 0.2, 0.3):
        core.intake.append((OBSERVE, ("latency", (("venue", "nse"),)), value))
    core.collect(1.0)
    observed = messages(core, "metric")
    assert [m["value"] for m in observed] == [0.1, 0.2, 0.3]
    assert {m["op"] for m in observed} == {"observe"}


def test_full_outbox_drops_oldest_and_leaves_a_seq_gap() -> None:
    """Past max_buffer the oldest messages go, counted as buffer_full; the hub sees the gap."""
    core = make_core(max_buffer=5)
    for n in range(8):
        event(core, n=n)
        core.collect(1.0 + n)
    assert core.stats().dropped == {DropReason.BUFFER_FULL: 3}
    connect(core)
    sent_events = messages(core, "event")
    assert [m["seq"] for m in sent_events] == [4, 5, 6, 7, 8]
    assert [m["payload"]["n"] for m in sent_events] == [3, 4, 5, 6, 7]


def test_intake_overflow_drops_oldest_and_skips_seqs() -> None:
    """Records evicted before the sender drained them are counted and skip their seqs."""
    core = make_core(max_buffer=3)
    for n in range(5):
        event(core, n=n)
    core.collect(1.0)
    connect(core)
    sent_events = messages(core, "event")
    assert [m["payload"]["n"] for m in sent_events] == [2, 3, 4]
    assert [m["seq"] for m in sent_events] == [3, 4, 5]
    assert core.stats().dropped == {DropReason.INTAKE_FULL: 2}


def test_evicting_sent_messages_counts_only_if_the_hub_lost_them() -> None:
    """An evicted sent-but-unacked message is a drop only when the next welcome shows it unstored."""
    core = make_core(max_buffer=3, heartbeat_interval=1000.0)
    connect(core)
    core.collect(1.0)  # the first full heartbeat (seq 1)
    sent(core)
    for n in range(3):
        event(core, n=n)
    core.collect(2.0)
    assert core.outbox.oldest_seq() == 2
    assert core.stats().dropped == {}
    core.receive(json.dumps({"kind": "ack", "seq": 1}))  # it was stored after all
    core.connection_lost()
    connect(core, last_seq=1)
    assert core.stats().dropped == {}
    sent(core)  # seqs 2, 3, 4 are now in flight
    for n in range(3):
        event(core, n=n)
    core.collect(3.0)  # seqs 5-7 evict sent 2-4; the full heartbeat (8) evicts unsent 5
    assert core.stats().dropped == {DropReason.BUFFER_FULL: 1}
    core.connection_lost()
    connect(core, last_seq=1)  # the hub never stored 2-4
    assert core.stats().dropped == {DropReason.BUFFER_FULL: 1, DropReason.UNACKED_EVICTED: 3}


def test_acks_trim_the_outbox() -> None:
    """An ack forgets everything up to its seq, and only that."""
    core = make_core()
    connect(core)
    for n in range(5):
        event(core, n=n)
    core.collect(1.0)
    sent(core)
    last = core.last_seq
    core.receive(json.dumps({"kind": "ack", "seq": last - 2}))
    assert core.stats().buffered == 2
    assert core.stats().acked_seq == last - 2
    assert not core.is_acked(last)
    core.receive(json.dumps({"kind": "ack", "seq": last}))
    assert core.stats().buffered == 0
    assert core.is_acked(last)


def test_reconnect_replays_everything_after_welcome_last_seq() -> None:
    """After a reconnect, unacked messages above welcome.last_seq are sent again, in order."""
    core = make_core()
    connect(core)
    for n in range(6):
        event(core, n=n)
    core.collect(1.0)
    first = [m["seq"] for m in messages(core)]
    core.connection_lost()
    assert core.state is ConnectionState.OFFLINE
    assert core.next_frame() is None
    connect(core, last_seq=first[2])
    core.collect(2.0)
    replayed = [m["seq"] for m in messages(core)]
    assert replayed[: len(first) - 3] == first[3:]
    assert replayed[len(first) - 3] == first[-1] + 1  # then the fresh full heartbeat
    assert core.stats().replayed == len(first) - 3
    assert core.stats().connects == 2


def test_welcome_beyond_our_seq_moves_seq_past_it() -> None:
    """Seqs the hub already stored are never reused."""
    core = make_core()
    connect(core, last_seq=50)
    event(core)
    core.collect(1.0)
    assert min(m["seq"] for m in messages(core)) == 51


def test_error_reply_consumes_the_seq() -> None:
    """A rejected message is counted and never resent, even after a reconnect."""
    core = make_core()
    connect(core)
    for n in range(3):
        event(core, n=n)
    core.collect(1.0)
    seqs = [m["seq"] for m in messages(core)]
    bad = seqs[1]
    core.receive(json.dumps({"kind": "error", "code": "bad_message", "detail": "x", "seq": bad}))
    assert core.stats().rejected == {"bad_message": 1}
    core.connection_lost()
    connect(core, last_seq=0)
    resent = [m["seq"] for m in messages(core)]
    assert bad not in resent
    assert set(seqs) - {bad} <= set(resent)


def test_rate_limited_keeps_the_refused_messages_and_holds_sending() -> None:
    """rate_limited: messages from resume_seq are sent again, in order, after the hub's hint."""
    core = make_core(max_batch=3)
    online(core)
    for n in range(9):
        event(core, n=n)
    core.collect(1.0)
    frames = sent(core)
    seqs = [m["seq"] for f in frames for m in f]
    assert len(frames) == 3
    resume = frames[1][0]["seq"]  # the hub took the first frame and refused from the second on
    limited = {"kind": "error", "code": "rate_limited", "detail": "slow down", "seq": None}
    core.receive(json.dumps({**limited, "retry_after": 0.25, "resume_seq": resume}))
    assert core.take_hold() == 0.25 and core.take_hold() == 0.0
    again = [m["seq"] for f in sent(core) for m in f]
    assert again == [s for s in seqs if s >= resume]
    assert core.stats().rejected == {"rate_limited": 1} and not core.stats().dropped
    core.receive(json.dumps({"kind": "ack", "seq": seqs[-1]}))
    assert core.is_acked(seqs[-1])


def test_a_refusal_of_a_frame_sent_before_the_resend_is_stale_and_ignored() -> None:
    """Once the client resent from resume_seq, later refusals naming it change nothing."""
    core = make_core(max_batch=3)
    online(core)
    for n in range(9):
        event(core, n=n)
    core.collect(1.0)
    frames = sent(core)
    resume = frames[1][0]["seq"]
    limited = {"kind": "error", "code": "rate_limited", "detail": "slow down", "seq": None}
    core.receive(json.dumps({**limited, "retry_after": 0.25, "resume_seq": resume}))
    assert core.take_hold() == 0.25
    resent = sent(core)  # the hold is over: from resume_seq on, once
    core.receive(json.dumps({**limited, "retry_after": 0.2, "resume_seq": resume}))  # frame 3's
    assert core.take_hold() == 0.0 and sent(core) == []  # no new hold, nothing sent twice
    later = resent[1][0]["seq"]  # a frame of the resend refused: a real, new hold
    core.receive(json.dumps({**limited, "retry_after": 0.1, "resume_seq": later}))
    assert core.take_hold() == 0.1 and sent(core) == resent[1:]


def test_rate_limited_from_an_older_hub_shape_resends_everything_unacked() -> None:
    """Without resume_seq or retry_after the client resends all unacked and waits a second."""
    core = make_core()
    online(core)
    core.receive(json.dumps({"kind": "ack", "seq": core.last_seq}))
    for n in range(3):
        event(core, n=n)
    core.collect(1.0)
    seqs = [m["seq"] for m in messages(core)]
    core.receive(json.dumps({"kind": "error", "code": "rate_limited", "detail": "x"}))
    assert core.take_hold() == 1.0
    assert [m["seq"] for m in messages(core)] == seqs


def test_unknown_or_broken_hub_frames_are_ignored() -> None:
    """Garbage from the hub changes nothing and does not raise."""
    core = make_core()
    connect(core)
    assert core.receive("not json") == []
    assert core.receive(json.dumps({"kind": "surprise"})) == []
    assert core.state is ConnectionState.ONLINE


def test_welcome_missing_optional_fields_is_accepted() -> None:
    """A minimal welcome (kind and last_seq) still completes the handshake."""
    core = make_core()
    core.hello()
    core.receive(json.dumps({"kind": "welcome", "last_seq": 7}))
    assert core.state is ConnectionState.ONLINE
    assert core.stats().acked_seq == 7


def test_backoff_is_full_jitter_between_half_a_second_and_thirty() -> None:
    """Delays stay within [0, min(30, 0.5 * 2**n)], reach the cap, and reset."""
    backoff = Backoff(0.5, 30.0, random.Random(7))
    ceilings = []
    for _ in range(12):
        ceiling = backoff.ceiling()
        delay = backoff.next_delay()
        assert 0.0 <= delay <= ceiling
        ceilings.append(ceiling)
    assert ceilings[:4] == [0.5, 1.0, 2.0, 4.0]
    assert ceilings[-1] == 30.0
    backoff.reset()
    assert backoff.ceiling() == 0.5
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0)


def test_backoff_spreads_delays() -> None:
    """Full jitter: repeated draws at the cap are spread, not all at the cap."""
    backoff = Backoff(0.5, 30.0, random.Random(1))
    backoff.attempt = 50
    delays = [backoff.next_delay() for _ in range(200)]
    assert max(delays) <= 30.0
    assert min(delays) < 10.0 < max(delays)


def test_disabled_client_is_a_no_op() -> None:
    """enabled=False: calls do nothing, start() starts no thread, nothing is ever buffered."""
    app = client(enabled=False)
    threads = threading.active_count()
    app.start()
    assert threading.active_count() == threads
    assert isinstance(app.intake, NullIntake)
    app.increment("x")
    app.set_gauge("g", 1)
    app.observe("o", 1)
    app.publish("signal_event", {"a": 1})
    app.heartbeat(loop_tick=1)
    app.mark_error(RuntimeError("x"))
    app.log_handler().handle(logging.makeLogRecord({"msg": "hi"}))
    with app.timer("t"):
        pass
    assert app.flush() is True
    app.close()
    assert len(app._core.intake.items) == 0
    assert app.stats.last_seq == 0


def test_bad_metric_names_and_tags_are_dropped_client_side() -> None:
    """Invalid names, tag keys, tag counts and unhashable tags never raise and are counted."""
    app = client()
    core = app._core
    connect(core)
    app.increment("bad name!")
    app.increment("ok", **{"1bad": "x"})
    app.set_gauge("ok", 1, **{f"t{n}": "v" for n in range(16)})
    app.observe("ok", 1.0, tag=["unhashable"])
    app.increment("ok", tag=["unhashable"])
    app.observe("ok", "not a number")
    app.set_gauge("x" * 129, 1)
    app.increment("ok", "three")  # type: ignore[arg-type]
    app.increment("fine", venue=7)
    core.collect(1.0)
    metrics = messages(core, "metric")
    assert [(m["name"], m["tags"]) for m in metrics] == [("fine", {"venue": "7"})]
    assert core.stats().dropped == {DropReason.INVALID: 8}


def test_metric_tags_may_share_a_name_with_the_parameters() -> None:
    """Tags called name, value, amount, seconds or self are tags: the fixed parameters are positional-only."""
    app = client()
    connect(app._core)
    tags = {"name": "a", "value": "b", "amount": "c", "seconds": "d", "self": "e"}
    app.increment("orders", **tags)
    app.increment("orders", 2, **tags)
    app.set_gauge("equity", 5, **tags)
    app.observe("slippage", 0.5, **tags)
    app.record_timing("fetch", 0.25, **tags)
    with app.timer("block", **tags):
        pass
    app._core.collect(1.0)
    sent = {m["name"]: m for m in messages(app._core, "metric")}
    assert set(sent) == {"orders", "equity", "slippage", "fetch", "block"}
    assert all(m["tags"] == tags for m in sent.values()), sent
    values = [sent[n]["value"] for n in ("orders", "equity", "slippage", "fetch")]
    assert values == [3, 5, 0.5, 0.25]
    assert app._core.stats().dropped == {}


def test_extra_fields_may_share_a_name_with_positional_parameters() -> None:
    """log's level/message and a `self` extra are extras; documented keywords still work as such."""
    app = client()
    connect(app._core)
    app.log("WARNING", "hello", logger="engine", level="debug-ish", message="m", self="s")
    app.heartbeat(loop_tick=3, self="kept")
    app.record_cycle(duration=0.5, number=2, self="x")
    app.record_signal(symbol="NIFTY", side="long", price=1.5, self="y")
    app.record_order(order_id="o1", symbol="NIFTY", side="buy", quantity=5, status="fill")
    app._core.collect(1.0)
    sent = messages(app._core)
    [line] = [m for m in sent if m["kind"] == "log"]
    assert (line["level"], line["message"], line["logger"]) == ("WARNING", "hello", "engine")
    assert line["extra"] == {"level": "debug-ish", "message": "m", "self": "s"}
    [beat] = [m for m in sent if m["kind"] == "heartbeat"]
    assert beat["loop_tick"] == 3 and beat["state"]["self"] == "kept"
    events = {m["type"]: m["payload"] for m in sent if m["kind"] == "event"}
    assert events["cycle"] == {"duration": 0.5, "number": 2, "self": "x"}
    assert events["signal_event"]["symbol"] == "NIFTY" and events["signal_event"]["self"] == "y"
    assert events["order_event"]["quantity"] == 5 and events["order_event"]["status"] == "fill"
    assert app._core.stats().dropped == {}


def test_too_many_series_are_dropped_with_a_reason() -> None:
    """Counters and gauges beyond max_series are counted as too_many_series."""
    app = client(max_series=2)
    connect(app._core)
    for n in range(4):
        app.increment("c", n=str(n))
        app.set_gauge("g", n, n=str(n))
    app._core.collect(1.0)
    assert len(messages(app._core, "metric")) == 4
    assert app._core.stats().dropped == {DropReason.TOO_MANY_SERIES: 4}


def test_bad_events_are_dropped_and_odd_payloads_degraded() -> None:
    """Bad event types and non-mapping payloads are counted; unknown objects become strings."""
    app = client()
    core = app._core
    connect(core)
    app.publish("bad type!", {"a": 1})
    app.publish("signal_event", "not a mapping")  # type: ignore[arg-type]
    app.publish("custom_thing", {"obj": object(), "set": {1}, "bad": "\ud800"})
    core.collect(1.0)
    (only,) = messages(core, "event")
    assert only["type"] == "custom_thing"
    assert only["payload"]["obj"].startswith("<object object")
    assert only["payload"]["set"] == [1]
    assert only["payload"]["bad"] == "?"
    assert core.stats().dropped == {DropReason.INVALID: 2}


def test_oversized_messages_are_dropped_not_sent() -> None:
    """A message above max_message_bytes is dropped as too_large and uses no seq."""
    core = make_core(max_message_bytes=1000)
    connect(core, max_message_bytes=500)
    event(core, blob="x" * 600)
    event(core, small=1)
    core.collect(1.0)
    events = messages(core, "event")
    assert [e["payload"] for e in events] == [{"small": 1}]
    assert events[0]["seq"] == 1  # the oversized one used no seq
    assert core.stats().dropped == {DropReason.TOO_LARGE: 1}


def test_first_heartbeat_after_welcome_is_full_then_partial() -> None:
    """Welcome triggers a full heartbeat; later updates send only what changed."""
    app = client(heartbeat_interval=10.0)
    core = app._core
    app.heartbeat(loop_tick=3, universe_size=5, next_cycle_at="09:15")
    core.collect(1.0)  # offline: merged, not sent
    connect(core)
    core.collect(2.0)
    (full,) = messages(core, "heartbeat")
    assert full["status"] == "running" and full["loop_tick"] == 3 and full["interval"] == 10.0
    assert full["universe_size"] == 5 and full["state"] == {"next_cycle_at": "09:15"}
    assert full["ts"] == 2.0
    app.heartbeat(loop_tick=4)
    core.collect(3.0)
    (partial,) = messages(core, "heartbeat")
    assert {k: v for k, v in partial.items() if k not in ("seq", "ts")} == {
        "kind": "heartbeat",
        "loop_tick": 4,
    }
    core.collect(4.0)
    assert messages(core, "heartbeat") == []
    core.collect(12.0)
    assert messages(core, "heartbeat")[0]["loop_tick"] == 4  # periodic full heartbeat


def test_invalid_heartbeat_fields_are_counted() -> None:
    """Bad status, negative counts and reserved keys are dropped with reason invalid."""
    app = client()
    core = app._core
    connect(core)
    core.collect(1.0)
    sent(core)
    app.heartbeat(status="sleepy", loop_tick=-1, universe_size=2.5, seq=9, open_positions=-2)
    core.collect(2.0)
    (beat,) = messages(core, "heartbeat")
    assert beat["open_positions"] == -2 and "status" not in beat and "loop_tick" not in beat
    assert core.stats().dropped == {DropReason.INVALID: 4}


def test_heartbeats_report_drops() -> None:
    """The cumulative drop counts reach the hub in heartbeats."""
    core = make_core(max_buffer=2)
    for n in range(4):
        event(core, n=n)
        core.collect(1.0)
    connect(core)
    core.collect(2.0)
    (beat,) = messages(core, "heartbeat")
    assert beat["dropped"] == {"buffer_full": 2}
    assert core.stats().dropped == {DropReason.BUFFER_FULL: 3}  # pushing the beat evicted one


def test_heartbeat_provider_fields_are_merged_by_the_shell_path() -> None:
    """Fields pushed through update_health before a due heartbeat land in it."""
    core = make_core()
    connect(core)
    assert core.heartbeat_due(1.0)
    core.intake.update_health({"open_positions": 4})
    core.collect(1.0)
    assert messages(core, "heartbeat")[0]["open_positions"] == 4
    assert not core.heartbeat_due(1.5)


def test_mark_error_sets_status_and_publishes_an_error_event() -> None:
    """mark_error: status error, last_error 'Type: message', and an `error` event."""
    app = client()
    core = app._core
    connect(core)
    core.collect(1.0)
    sent(core)
    try:
        raise ValueError("feed stalled")
    except ValueError as exc:
        app.mark_error(exc)
    app.mark_error("plain text")
    core.collect(2.0)
    errors = messages(core)
    events = [m for m in errors if m["kind"] == "event"]
    assert [e["payload"]["error_type"] for e in events] == ["ValueError", "error"]
    assert "Traceback" in events[0]["payload"]["traceback"]
    (beat,) = [m for m in errors if m["kind"] == "heartbeat"]
    assert beat["status"] == "error"
    assert beat["last_error"] in ("ValueError: feed stalled", "plain text")


def test_mark_stopped_sends_bye_last_and_drops_later_records() -> None:
    """bye follows everything recorded before it; records after it are counted as after_bye."""
    app = client()
    core = app._core
    connect(core)
    app.publish("cycle", {"n": 1})
    app.increment("ticks")
    app.mark_stopped()
    core.collect(1.0)
    out = messages(core)
    assert out[-1]["kind"] == "bye"
    assert {"event", "metric"} <= {m["kind"] for m in out[:-1]}
    app.publish("cycle", {"n": 2})
    app.increment("ticks")
    core.collect(2.0)
    assert messages(core) == []
    assert core.stats().dropped == {DropReason.AFTER_BYE: 2}
    core.receive(json.dumps({"kind": "ack", "seq": core.last_seq}))
    assert core.finished


def test_log_records_carry_level_logger_exception_and_extra() -> None:
    """Logs ship level, logger, formatted message, exception text and JSON-safe extras."""
    app = client(max_log_bytes=64)
    core = app._core
    connect(core)
    logger = logging.getLogger("engine.test.logs")
    logger.propagate = False
    handler = app.log_handler(level=logging.DEBUG)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        logger.warning("order %s filled", "o-1", extra={"order": {"qty": 5}, "obj": object()})
        try:
            raise KeyError("k")
        except KeyError:
            logger.exception("lookup failed")
        logger.info("x" * 500)
    finally:
        logger.removeHandler(handler)
    core.collect(1.0)
    logs = messages(core, "log")
    assert logs[0]["message"] == "order o-1 filled" and logs[0]["level"] == "WARNING"
    assert logs[0]["logger"] == "engine.test.logs"
    assert logs[0]["extra"]["order"] == {"qty": 5}
    assert logs[0]["extra"]["obj"].startswith("<object")
    assert logs[1]["level"] == "ERROR" and logs[1]["exc"].startswith("Traceback")
    assert "truncated" in logs[2]["message"] and len(logs[2]["message"]) < 120


def test_log_handler_never_ships_its_own_path() -> None:
    """Records from websockets, hub.client or the sender's context are skipped, not queued."""
    app = client()
    handler = app.log_handler(level=logging.DEBUG)
    handler.handle(logging.makeLogRecord({"name": "websockets.client", "msg": "x"}))
    handler.handle(logging.makeLogRecord({"name": "hub.client.sender", "msg": "x"}))
    token = SHIPPING.set(True)
    try:
        handler.handle(logging.makeLogRecord({"name": "engine", "msg": "inside sender"}))
    finally:
        SHIPPING.reset(token)
    assert len(app.intake.items) == 0
    handler.handle(logging.makeLogRecord({"name": "engine", "msg": "shipped"}))
    assert len(app.intake.items) == 1


def test_log_handler_never_raises_on_broken_records() -> None:
    """A record whose message cannot be formatted is counted, not raised."""
    app = client()
    connect(app._core)
    handler = app.log_handler()
    handler.handle(logging.makeLogRecord({"msg": "%d items", "args": ("not a number",)}))
    app._core.collect(1.0)
    assert messages(app._core, "log") == []
    assert app._core.stats().dropped == {DropReason.INVALID: 1}


def test_timer_times_blocks_and_decorated_functions() -> None:
    """timer() works as a context manager and a decorator, observing seconds."""
    app = client()
    connect(app._core)
    with app.timer("block", step="a") as timer:
        pass
    assert timer.elapsed is not None and timer.elapsed >= 0

    @app.timer("call")
    def work(x: int) -> int:
        return x * 2

    assert work(21) == 42
    app._core.collect(1.0)
    observed = [(m["name"], m["op"]) for m in messages(app._core, "metric")]
    assert observed == [("block", "observe"), ("call", "observe")]


def test_convenience_events_have_documented_payloads() -> None:
    """record_signal/order/cycle/error publish their types with keyword-named payload keys."""
    app = client()
    connect(app._core)
    app.record_signal("NIFTY", "long", price=101.5, strategy="mr", confidence=0.8, reason="z", z=2)
    app.record_order("o1", "NIFTY", "buy", 50, price=101.0, status="fill")
    app.record_cycle(0.25, number=7, symbols=40)
    app.record_error("FeedError", "stale quotes", {"feed": "nse"})
    app._core.collect(1.0)
    events = {e["type"]: e["payload"] for e in messages(app._core, "event")}
    assert events["signal_event"]["symbol"] == "NIFTY" and events["signal_event"]["z"] == 2
    assert events["signal_event"]["confidence"] == 0.8
    assert events["order_event"]["status"] == "fill" and events["order_event"]["quantity"] == 50
    assert events["cycle"] == {"duration": 0.25, "number": 7, "symbols": 40}
    assert events["error"] == {
        "error_type": "FeedError",
        "message": "stale quotes",
        "context": {"feed": "nse"},
    }


def test_publish_copies_the_payload() -> None:
    """Mutating a payload dict after publish does not change what is sent."""
    app = client()
    connect(app._core)
    payload = {"n": 1}
    app.publish("cycle", payload)
    payload["n"] = 2
    app._core.collect(1.0)
    assert messages(app._core, "event")[0]["payload"] == {"n": 1}


def test_concurrent_increments_are_exact() -> None:
    """Several threads incrementing at once lose nothing (lock-free unit increments)."""
    app = client()
    connect(app._core)

    def spin() -> None:
        for _ in range(20_000):
            app.increment("hits", venue="nse")
            app.increment("volume", 2, venue="nse")

    threads = [threading.Thread(target=spin) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    app._core.collect(1.0)
    values = {m["name"]: m["value"] for m in messages(app._core, "metric")}
    assert values == {"hits": 80_000, "volume": 160_000}


def test_shrink_frames_halves_the_frame_budget() -> None:
    """After a close 1009 the core sends smaller frames."""
    core = make_core()
    connect(core, max_frame_bytes=4000, max_message_bytes=1000)
    core.shrink_frames()
    for n in range(20):
        event(core, text="y" * 200, n=n)
    core.collect(1.0)
    assert max(len(frame) for frame in iter(core.next_frame, None)) <= 2000


def test_close_counts_what_never_reached_the_hub() -> None:
    """Closing with unacked messages counts them as close_timeout."""
    core = make_core()
    for n in range(3):
        event(core, n=n)
    core.collect(1.0)
    event(core)
    core.close()
    assert core.state is ConnectionState.CLOSED
    assert core.stats().dropped == {DropReason.CLOSE_TIMEOUT: 4}


def test_options_are_validated_with_helpful_errors() -> None:
    """Unknown options, bad names and bad URLs fail at construction, not later."""
    with pytest.raises(TypeError, match="max_bufer"):
        make_options({"max_bufer": 10})
    with pytest.raises(ValueError, match="positive"):
        make_options({"max_buffer": 0})
    with pytest.raises(ValueError, match="engine name"):
        EngineClient(URL, engine="bad name")
    with pytest.raises(ValueError, match="mode"):
        EngineClient(URL, engine="fno", mode="x" * 20)
    with pytest.raises(ValueError, match="hub URL"):
        EngineClient("ftp://x", engine="fno")


def test_urls_are_normalized_to_the_engine_endpoint() -> None:
    """A bare host gets /ws/engine and http(s) becomes ws(s)."""
    assert engine_url("ws://h:1") == "ws://h:1/ws/engine"
    assert engine_url("https://h/") == "wss://h/ws/engine"
    assert engine_url("ws://h:1/custom/path") == "ws://h:1/custom/path"


def test_report_pnl_rides_on_heartbeat_state() -> None:
    """report_pnl sets state["pnl"] in the documented shape, leaving other state keys alone."""
    app = client()
    core = app._core
    connect(core)
    app.heartbeat(state={"next_cycle_at": 5})
    app.report_pnl(realized=120.5, unrealized=-20, exposure=1000, currency="INR")
    app.report_pnl(realized=130.0, currency="INR")  # replaces the whole report
    core.collect(1.0)
    (beat,) = messages(core, "heartbeat")
    assert beat["state"] == {"next_cycle_at": 5, "pnl": {"realized": 130.0, "currency": "INR"}}


def test_state_keys_from_two_heartbeats_between_flushes_both_arrive() -> None:
    """Two heartbeat(state=...) calls before one flush merge key by key (the first is not lost);
    a state that is not a mapping is counted as invalid."""
    app = client()
    core = app._core
    connect(core)
    app.heartbeat(state={"next_cycle_at": 5, "a": 1})
    app.heartbeat(state={"trading_hours_active": True, "a": 2}, loop_tick=3)
    app.heartbeat(state="not a mapping")
    core.collect(1.0)
    (beat,) = messages(core, "heartbeat")
    assert beat["state"] == {"next_cycle_at": 5, "a": 2, "trading_hours_active": True}
    assert beat["loop_tick"] == 3
    assert app.stats.dropped.get("invalid") == 1


def test_state_helpers_write_the_keys_the_monitor_reads() -> None:
    """set_bot_state, set_next_cycle_time, set_trading_hours_active, set_active_strategies and
    record_cycle/set_last_cycle land in heartbeat state (datetimes as Unix seconds)."""
    from datetime import UTC, datetime

    app = client()
    core = app._core
    connect(core)
    app.set_bot_state(is_running=True, bot_start_time=datetime(2026, 1, 7, 14, 30, tzinfo=UTC))
    app.set_next_cycle_time(datetime(2026, 1, 7, 14, 40, 15, tzinfo=UTC))
    app.set_trading_hours_active(True, "06:00-19:00 UTC")
    app.set_active_strategies(["mean_reversion", "breakout"], total=3)
    app.record_cycle(12.3, 7, success=False, error="timeout")
    core.collect(1.0)
    (beat,) = messages(core, "heartbeat")
    state = beat["state"]
    assert state["is_running"] is True and state["bot_start_time"] == 1767796200.0
    assert state["next_cycle_at"] == 1767796815.0
    assert state["trading_hours_active"] is True and state["trading_hours"] == "06:00-19:00 UTC"
    assert state["active_strategies"] == ["mean_reversion", "breakout"]
    assert state["strategies_total"] == 3
    last = state["last_cycle"]
    assert last["ok"] is False and last["duration"] == 12.3 and last["error"] == "timeout"
    app.set_last_cycle(True, 1.5)
    app.set_active_strategies(2)
    core.collect(2.0)
    (beat,) = messages(core, "heartbeat")
    assert beat["state"]["last_cycle"]["ok"] is True and "error" not in beat["state"]["last_cycle"]
    assert beat["state"]["active_strategies"] == 2


def test_record_calls_return_chain_refs_that_travel_in_the_event() -> None:
    """record_signal/decision/order return 1, 2, 3...; `parent=` and `cycle_id=` ride in the
    event's top-level `chain` (not the payload); a bad parent is left out; publish sends none."""
    engine = client()
    core = engine._core
    online(core)
    signal = engine.record_signal("NIFTY", "long", cycle_id=17)
    decision = engine.record_decision("buy", symbol="NIFTY", parent=signal, cycle_id="c" * 200)
    order = engine.record_order("o-1", "NIFTY", "buy", 5, parent=decision)
    fill = engine.record_order("o-1", "NIFTY", "buy", 5, status="fill", parent="3")
    engine.publish("cycle", {"n": 1})
    assert (signal, decision, order, fill) == (1, 2, 3, 4)
    core.collect(1.0)
    events = messages(core, "event")
    assert [e.get("chain") for e in events] == [
        {"ref": 1, "cycle": "17"},
        {"ref": 2, "parent": 1, "cycle": "c" * 128},
        {"ref": 3, "parent": 2},
        {"ref": 4},
        None,
    ]
    assert events[2]["payload"] == {
        "order_id": "o-1",
        "symbol": "NIFTY",
        "side": "buy",
        "quantity": 5,
        "price": None,
        "status": "create",
        "reason": None,
    }
    assert events[1]["type"] == "decision_trace"
    assert events[1]["payload"] == {"decision": "buy", "symbol": "NIFTY", "reason": None}
