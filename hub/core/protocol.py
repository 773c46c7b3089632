"""Sans-I/O engine protocol: the hello handshake, then frames in, replies and acks out.

Like websockets' `Protocol`: the I/O shell feeds each frame (`receive_text`), acts on what comes
back (an `Ingested` to publish and store) and sends `data_to_send()`. Nothing here awaits,
touches a socket or reads a clock.
"""

from __future__ import annotations

import enum

from hub import __version__
from hub.core.access import ANY_ENGINE, EngineToken
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

    def receive_bytes(self, data: bytes) -> None:
        """A binary frame: always fatal (close 1003)."""
        self._decoder.decode_bytes(data)

    def receive_text(self, text: str, now: float) -> Ingested | None:
        """Process one text frame; returns what it changed once the engine said hello."""
        self._state.stats.frames += 1
        decoded = self._decoder.decode(text, now)
        items = decoded.items
        total = len(items)
        engine = self.engine
        if engine is None:
            out = Ingested()
            items = self._handshake(items, now, out)
            engine = self.engine
            if engine is None:
                return None
        else:
            out = Ingested(engine.name, engine.boot_id)
        self._state.ingest(engine, items, now, total - len(items) if decoded.batch else None, out)
        if len(out.events) == total and out.runs == 1:
            out.frame, out.received = decoded.text, now
        for rejected in out.rejected:
            self._reply(rejected)
        return out

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
