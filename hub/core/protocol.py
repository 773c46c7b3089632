"""Sans-I/O engine protocol: the hello handshake, then frames in, replies and acks out.

Like websockets' `Protocol`: the I/O shell feeds each frame (`receive_text`), acts on what comes
back (an `Ingested` to publish and store) and sends `data_to_send()`. Nothing here awaits,
touches a socket or reads a clock.
"""

from __future__ import annotations

import enum
import math

from hub import __version__
from hub.core.access import ANY_ENGINE, EngineToken
from hub.core.buckets import NULL_BUDGET, EngineBudget
from hub.core.decoding import FrameDecoder, ProtocolClose, Rejected
from hub.core.engines import EngineRecord
from hub.core.ingested import Ingested
from hub.core.messages import (
    Ack,
    CloseCode,
    EngineMessage,
    ErrorCode,
    ErrorReply,
    Hello,
    Welcome,
    encoder,
)
from hub.core.state import HubState, TooManyEngines

__all__ = ["ConnectionPhase", "EngineConnection", "TokenRefused"]


class ConnectionPhase(enum.Enum):
    """Where a connection is in its life."""

    AWAITING_HELLO = "awaiting_hello"
    OPEN = "open"


class TokenRefused(ProtocolClose):
    """A hello the socket's token does not admit (that engine name or mode): close 1008."""


class EngineConnection:
    """One engine socket's protocol state. The I/O shell feeds frames and sends `data_to_send()`.

    `grant` is what the handshake's token admits (by default anything: the hub needs no token).
    """

    def __init__(
        self,
        conn_id: int,
        state: HubState,
        decoder: FrameDecoder,
        grant: EngineToken = ANY_ENGINE,
    ) -> None:
        self.conn_id = conn_id
        self.grant = grant
        self.phase = ConnectionPhase.AWAITING_HELLO
        self.engine: EngineRecord | None = None
        self.boot_id = ""  # the boot this socket speaks for (the record may move on to a newer one)
        self.replaced: int | None = None
        self._acked = 0
        self._state = state
        self._decoder = decoder
        self._outbox: list[str] = []
        self._budget: EngineBudget = NULL_BUDGET  # the engine's own, once it said hello
        self._held: int | None = None  # refused from this seq on: take nothing later before it
        self._promised = (0, 0)  # the refused frame's messages and bytes: its resend then passes
        self._flooding_since = 0.0  # when the current run of refused frames began
        self._bad_frames = 0  # frames in a row whose every message was rejected

    def receive_bytes(self, data: bytes) -> None:
        """A binary frame: always fatal (close 1003)."""
        self._decoder.decode_bytes(data)

    def receive_text(self, text: str, now: float) -> Ingested | None:
        """Process one text frame; returns what it changed once the engine said hello."""
        self._state.stats.frames += 1
        if self._held is not None and self._hopeless(len(text), now):
            # Held, and the bucket could not take even this frame's bytes and one message: it is
            # refused whatever it holds, so refuse it undecoded (a flood costs no decoding).
            return self._refuse_undecoded(len(text), now)
        decoded = self._decoder.decode(text, now)
        items = decoded.items
        total = len(items)
        engine = self.engine
        if engine is None:
            out = Ingested()
            items = self._handshake(items, now, out)
            engine = self.engine
            if engine is None:
                self._bad_frame(None)
                return None
        else:
            # One charge per frame; a frame after a refused one passes only as its resend.
            wait = self._budget.charge(total, len(text), now) if self._held is None else -1.0
            if wait:
                refused = self._refuse(engine, items, len(text), wait, now)
                if refused is not None:
                    return refused
            out = Ingested(engine.name, engine.boot_id)
        self._state.ingest(engine, items, now, total - len(items) if decoded.batch else None, out)
        if decoded.flagged:  # a timestamp out of range, kept or rejected: this engine's clock
            engine.flagged_timestamps += decoded.flagged
        if len(out.events) == total and out.runs == 1:
            out.frame, out.received = decoded.text, now
        if out.rejected:
            for rejected in out.rejected:
                self._reply(rejected)
            if len(out.rejected) == total:
                self._bad_frame(out.rejected[-1])
            else:
                self._bad_frames = 0
        elif self._bad_frames:
            self._bad_frames = 0
        return out

    def _refuse(
        self,
        engine: EngineRecord,
        items: list[EngineMessage | Rejected],
        size: int,
        wait: float,
        now: float,
    ) -> Ingested | None:
        """Over the engine's rate (`wait` > 0) or held (`wait` < 0): refuse the frame, whole.

        Returns None for the resend of the held frame once the bucket takes it. Nothing after a
        refused message is taken before it, so rate limiting never turns into a seq gap.
        """
        first = next(
            (seq for item in items if (seq := getattr(item, "seq", None)) is not None), None
        )
        if wait < 0:  # held: only the resend, from the first refused seq, may pass
            held = self._held
            assert held is not None
            if first is not None and first <= held:
                # The resend passes once the bucket holds what the retry hint promised, even
                # if the client put more into it: refusing it again would look to the client
                # like the refusals of the frames that were in flight (stale, same resume_seq).
                messages, promised = len(items), self._promised
                wait = self._budget.shortfall(min(messages, promised[0]), min(size, promised[1]))
                if not wait:
                    self._budget.spend(messages, size)
                    self._held = None
                    return None
            else:
                wait = self._budget.shortfall(len(items), size)
        if self._held is None:
            self._held = first if first is not None else engine.hwm + 1
            self._promised = (len(items), size)
            self._flooding_since = now
        else:
            self._check_flood(now)
        engine.rate_limited += len(items)
        self._state.stats.drops["rate_limited"] += len(items)
        return self._rate_limited(engine, wait)

    def _hopeless(self, size: int, now: float) -> bool:
        """True if the bucket can take neither one message of `size` bytes nor the promised resend."""
        budget = self._budget
        budget.refill(now)
        return bool(budget.shortfall(1, min(size, self._promised[1])))

    def _refuse_undecoded(self, size: int, now: float) -> Ingested:
        """A frame during a hold that the bucket cannot take: refused without decoding it.

        Its messages are not counted (nobody read them): `drops["rate_limited_frames"]` counts
        such frames instead.
        """
        engine = self.engine
        assert engine is not None and self._held is not None
        self._check_flood(now)
        self._state.stats.drops["rate_limited_frames"] += 1
        return self._rate_limited(engine, self._budget.shortfall(1, size))

    def _check_flood(self, now: float) -> None:
        limit = self._state.settings.flood_close_after
        if limit and now - self._flooding_since >= limit:
            self._state.stats.drops["flood_closed"] += 1
            raise ProtocolClose(
                CloseCode.POLICY_VIOLATION,
                f"over the rate limit for {limit:g} s: wait retry_after on rate_limited",
            )

    def _rate_limited(self, engine: EngineRecord, wait: float) -> Ingested:
        """Queue the rate_limited reply: resend from the held seq after `wait` seconds."""
        held = self._held
        assert held is not None
        retry = max(math.ceil(wait * 1000) / 1000, 0.001)  # never early: a resend then passes
        reply = ErrorReply(
            ErrorCode.RATE_LIMITED,
            f"engine {engine.name!r} is over its rate limit "
            f"({self._state.settings.engine_messages_per_second:,.0f} messages/s, "
            f"{self._state.settings.engine_bytes_per_second:,.0f} bytes/s): resend from seq "
            f"{held} after {retry:g} s",
            retry_after=retry,
        )
        reply.resume_seq = held
        settings = self._state.settings  # the limits, so that a client can pace itself below them
        reply.messages_per_second = max(settings.engine_messages_per_second, 0.0)
        reply.bytes_per_second = max(settings.engine_bytes_per_second, 0.0)
        out = Ingested()  # nothing to keep or commit; the rejection wakes the shell's writer
        out.rejected.append(Rejected(ErrorCode.RATE_LIMITED, reply.detail))
        if len(self._outbox) < self._state.settings.max_pending_replies:
            self._outbox.append(encoder.encode(reply).decode())
        else:
            self._state.stats.drops["error_reply"] += 1
        return out

    def _bad_frame(self, last: Rejected | None) -> None:
        """A frame had every message rejected: close after `max_bad_frames_in_a_row` of them."""
        self._bad_frames += 1
        limit = self._state.settings.max_bad_frames_in_a_row
        if limit and self._bad_frames >= limit:
            self._state.stats.drops["bad_frames_closed"] += 1
            why = f" (last: {last.code})" if last is not None else " (no hello)"
            raise ProtocolClose(
                CloseCode.POLICY_VIOLATION,
                f"{self._bad_frames} frames in a row were all rejected{why}: fix the messages",
            )

    def _handshake(
        self, items: list[EngineMessage | Rejected], now: float, out: Ingested
    ) -> list[EngineMessage | Rejected]:
        for index, item in enumerate(items):
            if isinstance(item, Hello):
                # Before the hello touches any state: a refused one registers nothing, changes
                # no mode and closes no other socket of that name.
                refusal = self.grant.refusal(item.engine, item.mode)
                if refusal is not None:
                    self._state.stats.drops["token_refused"] += 1
                    raise TokenRefused(CloseCode.POLICY_VIOLATION, refusal)
                try:
                    engine, self.replaced = self._state.hello(item, self.conn_id, now, out)
                except TooManyEngines as exc:
                    raise ProtocolClose(CloseCode.POLICY_VIOLATION, str(exc)) from None
                self.engine, self.boot_id = engine, engine.boot_id
                self._budget = self._state.budget(engine.name, now)
                out.engine, out.boot_id = engine.name, engine.boot_id
                self.phase = ConnectionPhase.OPEN
                self._acked = engine.committed
                welcome = Welcome(
                    hub=__version__,
                    engine=engine.name,
                    boot_id=engine.boot_id,
                    last_seq=engine.committed,  # durable, not merely received
                    ack_interval=self._state.settings.ack_interval,
                    max_message_bytes=self._state.settings.max_message_bytes,
                    max_frame_bytes=self._state.settings.max_frame_bytes,
                )
                self._outbox.append(encoder.encode(welcome).decode())
                return items[index + 1 :]
            if isinstance(item, Rejected):
                self._state.stats.rejected[item.code] += 1
                self._reply(item)
            else:
                self._state.stats.rejected[ErrorCode.HELLO_REQUIRED] += 1
                self._reply(
                    Rejected(
                        ErrorCode.HELLO_REQUIRED,
                        'the first message must be {"kind":"hello","engine":...}',
                        getattr(item, "seq", None),
                        index if len(items) > 1 else None,
                    )
                )
        return []

    def _reply(self, rejected: Rejected) -> None:
        if len(self._outbox) >= self._state.settings.max_pending_replies:
            self._state.stats.drops["error_reply"] += 1
            return
        reply = ErrorReply(rejected.code, rejected.detail, rejected.seq, rejected.index)
        self._outbox.append(encoder.encode(reply).decode())

    def data_to_send(self) -> list[str]:
        """Frames to send now (welcome, error replies, then an ack if one is due)."""
        out, self._outbox = self._outbox, []
        engine = self.engine
        # The engine record holds the one durable seq; ack it only for this socket's boot.
        if engine is not None and engine.boot_id == self.boot_id and engine.committed > self._acked:
            self._acked = engine.committed
            out.append(encoder.encode(Ack(engine.committed)).decode())
        return out

    def closed(self, now: float) -> Ingested | None:
        """The socket is gone: the engine turns offline unless a newer socket replaced this one.

        Returns the boot change to keep, if the engine's boot ended with this socket.
        """
        engine = self.engine
        if engine is None:
            return None
        out = Ingested()
        self._state.disconnected(engine, self.conn_id, now, out)
        return out if out.boots else None
