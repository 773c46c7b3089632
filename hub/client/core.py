"""Sans-I/O core of the engine client: drains the intake into sequenced, encoded, bounded frames.

The I/O shell calls `collect(now)` on every tick, sends `next_frame()` while online and feeds hub
frames to `receive()`. Nothing here touches a socket, a thread or the clock.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, assert_never

import msgspec

from hub.client.builders import MessageBuilder, Series
from hub.client.health import HealthState
from hub.client.intake import EVENT, LOG, DropReason, Intake
from hub.client.options import ClientOptions
from hub.client.outbox import Outbox
from hub.core.messages import (
    Ack,
    Bye,
    ErrorCode,
    ErrorReply,
    Event,
    Heartbeat,
    Hello,
    HubMessage,
    Log,
    Metric,
    Status,
    Welcome,
)

__all__ = ["ClientCore", "ClientStats", "ConnectionState"]


class ConnectionState(enum.Enum):
    """Where the client's link to the hub is."""

    OFFLINE = "offline"  # no socket: not started, hub away, or backing off
    HANDSHAKE = "handshake"  # socket open, hello sent, waiting for welcome
    ONLINE = "online"  # welcomed: sending, replaying, receiving acks
    CLOSED = "closed"  # the client was closed


@dataclass(frozen=True, slots=True)
class ClientStats:
    """A snapshot of the client's delivery counters (drops as of the last flush)."""

    state: ConnectionState
    boot_id: str
    last_seq: int  # highest seq assigned
    acked_seq: int  # highest seq the hub acknowledged
    buffered: int  # messages sent-but-unacked or unsent
    intake: int  # records not yet drained by the sender
    sent_messages: int
    sent_frames: int
    replayed: int
    connects: int
    rejected: dict[str, int]  # hub error replies by code
    dropped: dict[str, int]  # client-side drops by reason (also sent in heartbeats)


class ClientCore:
    """Sequencing, pre-aggregated metrics, heartbeats, batching, acks and replay for one engine boot."""

    def __init__(
        self,
        options: ClientOptions,
        *,
        engine: str,
        mode: str,
        boot_id: str,
        pid: int,
        started_at: float,
        meta: Mapping[str, Any],
    ) -> None:
        self.options = options
        self.intake = Intake(options.max_buffer, options.max_batch, options.max_series)
        self.outbox = Outbox(options.max_buffer)
        self.health = HealthState(options.initial_status, options.heartbeat_interval)
        self.state = ConnectionState.OFFLINE
        self.boot_id = boot_id
        self._hello = Hello(
            engine, mode, pid, boot_id, started_at, options.heartbeat_interval, dict(meta)
        )
        self._builder = MessageBuilder(options)
        self._decoder = msgspec.json.Decoder(HubMessage | list[HubMessage])
        self._seq = 0
        self._max_message = options.max_message_bytes
        self._max_frame = options.max_frame_bytes
        self._last_collect = -math.inf
        self._next_beat = math.inf
        self._bye: Status | None = None
        self._bye_sent = False
        self._rewound = 0
        self._unconfirmed = 0  # evicted after sending, not yet known to be stored
        self._hold = 0.0  # seconds the hub asked us to wait before sending more (rate_limited)
        self._resume = self._resumed = 0  # the hub's last resume_seq; the last one resent from
        self.acked_seq = 0
        self.sent_messages = self.sent_frames = self.replayed = self.connects = 0
        self.rejected: dict[str, int] = {}
        self.dropped: dict[str, int] = {}

    # Called by the I/O shell (one thread).

    def hello(self) -> bytes:
        """The first frame of every connection; moves the state to HANDSHAKE."""
        self.state = ConnectionState.HANDSHAKE
        self._hello.acked_seq = self.acked_seq or None
        data = self._builder.encode(self._hello)
        if data is None:  # meta held something even the fallback cannot encode
            self._hello.meta = {}
            data = self._builder.encode(self._hello) or b"{}"
        return data

    def flush_due(self, now: float) -> bool:
        """True when a batch is full or `flush_interval` passed since the last collect."""
        return (
            len(self.intake.items) >= self.options.max_batch
            or now - self._last_collect >= self.options.flush_interval
        )

    def heartbeat_due(self, now: float) -> bool:
        """True when the next collect sends a full heartbeat (call the health provider first)."""
        return self.state is ConnectionState.ONLINE and now >= self._next_beat

    def request_bye(self, status: Status = Status.STOPPED) -> None:
        """Send `bye` after everything recorded so far (`mark_stopped`); only the first call counts."""
        if self._bye is None:
            self._bye = status

    @property
    def bye_requested(self) -> bool:
        """True once `request_bye` was called."""
        return self._bye is not None

    def collect(self, now: float, limit: int | None = None) -> int:
        """Drain the intake (at most `limit` records) into the outbox; returns the seqs used."""
        self._last_collect = now
        before = self._seq
        for reason, count in self.intake.drops().items():
            self._drop(reason, count)
            if reason is DropReason.INTAKE_FULL:
                self._seq += count  # the hub sees lost records as a seq gap
        items, build = self.intake.items, self._builder
        for _ in range(len(items) if limit is None else min(limit, len(items))):
            try:
                item = items.popleft()
            except IndexError:
                break
            seq = self._seq + 1
            try:
                if self._bye_sent:
                    self._drop(DropReason.AFTER_BYE)
                elif item[0] == EVENT:
                    self._push(build.event(seq, *item[1:]))
                elif item[0] == LOG:
                    self._push(build.log(seq, *item[1:]))
                else:
                    self._push(build.metric(seq, "observe", item[1], item[2]))
            except Exception:  # whatever an engine recorded must not stop the sender
                self._drop(DropReason.INVALID)
        if self._bye_sent:
            self._drop(DropReason.AFTER_BYE, len(self.intake.counter_deltas()))
            self._drop(DropReason.AFTER_BYE, len(self.intake.gauges()))
            return self._seq - before
        self._counters()
        for key, value in self.intake.gauges().items():
            self._push(build.metric(self._seq + 1, "set", key, value))
        self._heartbeat(now)
        if self._bye is not None and not self._bye_sent:
            self._push(Bye(self._seq + 1, self._bye, now))
            self._bye_sent = True
        return self._seq - before

    def next_frame(self) -> bytes | None:
        """The next batch to send (a JSON array as UTF-8), or None; only while ONLINE."""
        if self.state is not ConnectionState.ONLINE:
            return None
        frame, count, too_large = self.outbox.take(
            self.options.max_batch, self._max_frame, self._max_message
        )
        self._drop(DropReason.TOO_LARGE, too_large)
        if frame is not None:
            self._resumed = self._resume  # the hold is served: this frame resends from there
            self.sent_messages += count
            self.sent_frames += 1
        return frame

    def receive(self, data: str | bytes) -> list[HubMessage]:
        """Apply one frame from the hub (welcome, ack, error); returns the decoded replies."""
        try:
            decoded = self._decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            welcome = _lenient_welcome(data, self.options)
            if welcome is None:
                return []
            decoded = welcome
        replies = decoded if isinstance(decoded, list) else [decoded]
        for reply in replies:
            match reply:
                case Welcome():
                    self._welcomed(reply)
                case Ack():
                    self.acked_seq = max(self.acked_seq, reply.seq)
                    self.outbox.ack(reply.seq)
                    if reply.seq >= self.outbox.evicted_inflight_seq:
                        self._unconfirmed = 0  # the hub stored what we evicted after sending
                case ErrorReply():
                    self.rejected[reply.code] = self.rejected.get(reply.code, 0) + 1
                    if reply.code == ErrorCode.RATE_LIMITED:
                        self._rate_limited(reply)
                    elif reply.seq is not None:
                        self.outbox.reject(reply.seq)
                case _:
                    assert_never(reply)
        return replies

    def take_hold(self) -> float:
        """Seconds the hub asked to wait before sending more (0.0 if it did not); resets it."""
        hold, self._hold = self._hold, 0.0
        return hold

    def connection_lost(self) -> None:
        """The socket is gone: unacked messages will be replayed after the next welcome."""
        if self.state is not ConnectionState.CLOSED:
            self.state = ConnectionState.OFFLINE
        self._next_beat = math.inf
        self._resume = self._resumed = 0  # holds are per connection
        self._rewound += self.outbox.rewind()

    def shrink_frames(self) -> None:
        """The hub closed with 1009 (too big): send smaller frames from now on."""
        self._max_frame = max(self._max_message, self._max_frame // 2)

    def close(self) -> None:
        """The client gave up; whatever is still buffered is counted as lost."""
        self.state = ConnectionState.CLOSED
        self._drop(DropReason.UNACKED_EVICTED, self._unconfirmed)
        self._unconfirmed = 0
        self._drop(DropReason.CLOSE_TIMEOUT, len(self.outbox) + len(self.intake.items))

    def is_acked(self, seq: int) -> bool:
        """True when nothing with a seq up to `seq` is still waiting for the hub."""
        oldest = self.outbox.oldest_seq()
        return oldest is None or oldest > seq

    @property
    def last_seq(self) -> int:
        """The highest seq assigned so far."""
        return self._seq

    @property
    def finished(self) -> bool:
        """`bye` was sent and the hub acknowledged everything."""
        return self._bye_sent and not self.outbox

    def stats(self) -> ClientStats:
        """A snapshot of the delivery counters."""
        return ClientStats(
            self.state,
            self.boot_id,
            self._seq,
            self.acked_seq,
            len(self.outbox),
            len(self.intake.items),
            self.sent_messages,
            self.sent_frames,
            self.replayed,
            self.connects,
            dict(self.rejected),
            dict(self.dropped),
        )

    # Internals.

    def _welcomed(self, welcome: Welcome) -> None:
        self.state = ConnectionState.ONLINE
        self.connects += 1
        self._rewound += self.outbox.rewind()
        trimmed = self.outbox.ack(welcome.last_seq)
        self.replayed += max(0, self._rewound - trimmed)
        self._rewound = 0
        self.acked_seq = max(self.acked_seq, welcome.last_seq)
        self._seq = max(self._seq, welcome.last_seq)  # never reuse a seq the hub already has
        if welcome.last_seq < self.outbox.evicted_inflight_seq:
            self._drop(DropReason.UNACKED_EVICTED, self._unconfirmed)
        self._unconfirmed = 0
        if welcome.max_message_bytes > 0:
            self._max_message = min(self.options.max_message_bytes, welcome.max_message_bytes)
        if welcome.max_frame_bytes > 0:
            self._max_frame = min(self.options.max_frame_bytes, welcome.max_frame_bytes)
        self._next_beat = -math.inf  # a full heartbeat right away

    def _rate_limited(self, reply: ErrorReply) -> None:
        """The hub took nothing from `resume_seq` on: keep it all, resend it after the hint."""
        resume = reply.resume_seq
        if not isinstance(resume, int):  # an older hub: resend everything unacked
            resume = self.acked_seq + 1
        elif resume <= self._resumed:
            return  # refuses a frame sent before we resent from there: stale, not a new hold
        else:
            self._resume = resume
        self.outbox.rewind_from(resume)
        retry = reply.retry_after if isinstance(reply.retry_after, float | int) else 1.0
        self._hold = max(self._hold, min(float(retry), self.options.backoff_max))

    def _drop(self, reason: DropReason, count: int = 1) -> None:
        if count:
            self.dropped[reason] = self.dropped.get(reason, 0) + count

    def _push(self, message: Heartbeat | Event | Metric | Log | Bye | None) -> None:
        """Encode one message (its seq is `_seq + 1`) into the outbox; None counts as invalid."""
        if message is None:
            self._drop(DropReason.INVALID)
            return
        data = self._builder.encode(message)
        if data is None:
            self._drop(DropReason.UNENCODABLE)
            return
        if len(data) > self._max_message:
            self._drop(DropReason.TOO_LARGE)
            return
        self._seq = message.seq
        lost_unsent, lost_inflight = self.outbox.push(message.seq, data)
        self._drop(DropReason.BUFFER_FULL, lost_unsent)
        # Sent but not yet acked: probably stored. Counted as lost only if the hub later says not.
        self._unconfirmed += lost_inflight

    def _counters(self) -> None:
        merged: dict[Series, float] = {}
        for key, amount in self.intake.counter_deltas().items():
            series = self._builder.series(key)
            if series is None or not math.isfinite(amount):
                self._drop(DropReason.INVALID)
                self.intake.forget_series(key)
                continue
            merged[series] = merged.get(series, 0) + amount  # same tags, other keyword order
        for (name, tags), amount in merged.items():
            self._push(Metric(self._seq + 1, "inc", name, amount, dict(tags)))

    def _heartbeat(self, now: float) -> None:
        updates = self.intake.health()
        changed, invalid = self.health.apply(updates) if updates else ({}, 0)
        self._drop(DropReason.INVALID, invalid)
        if self.state is not ConnectionState.ONLINE or self._bye_sent:
            return  # offline changes are merged and go out in the full heartbeat after welcome
        if now >= self._next_beat:
            changed = self.health.full()
            self._next_beat = now + self.options.heartbeat_interval
        elif not changed:
            return
        dropped = dict(self.dropped) if self.dropped else msgspec.UNSET
        self._push(Heartbeat(self._seq + 1, now, dropped=dropped, **changed))


def _lenient_welcome(data: str | bytes, options: ClientOptions) -> Welcome | None:
    """A `welcome` from a hub that omits fields this client does not strictly need."""
    try:
        raw = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None
    if not isinstance(raw, dict) or raw.get("kind") != "welcome":
        return None
    last_seq = raw.get("last_seq")
    if type(last_seq) is not int:
        return None
    return Welcome(
        str(raw.get("hub", "")),
        str(raw.get("engine", "")),
        str(raw.get("boot_id", "")),
        last_seq,
        0.0,
        options.max_message_bytes,
        options.max_frame_bytes,
    )
