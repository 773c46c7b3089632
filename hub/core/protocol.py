"""Sans-I/O engine connection: the hello handshake, then frames in, replies and acks out."""

from __future__ import annotations

import enum

from hub import __version__
from hub.core.decoding import FrameDecoder, ProtocolClose, Rejected
from hub.core.engines import EngineRecord
from hub.core.ingested import Ingested
from hub.core.messages import Ack, EngineMessage, ErrorCode, ErrorReply, Hello, Welcome, encoder
from hub.core.state import HubState, TooManyEngines

__all__ = ["ConnectionPhase", "EngineConnection"]


class ConnectionPhase(enum.Enum):
    """Where a connection is in its life."""

    AWAITING_HELLO = "awaiting_hello"
    OPEN = "open"
    CLOSED = "closed"


class EngineConnection:
    """One engine socket's protocol state. The I/O shell feeds frames and sends `data_to_send()`."""

    def __init__(self, conn_id: int, state: HubState, decoder: FrameDecoder) -> None:
        self.conn_id = conn_id
        self.phase = ConnectionPhase.AWAITING_HELLO
        self.engine: EngineRecord | None = None
        self.replaced: int | None = None
        self.committed = 0
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
        items = self._decoder.decode(text, now)
        total = len(items)
        if self.engine is None:
            items = self._handshake(items, now)
            if self.engine is None:
                return None
        first_index = total - len(items) if self._decoder.batch else None
        ingested = self._state.ingest(self.engine, items, now, first_index)
        if len(ingested.events) == total and ingested.runs == 1:
            ingested.frame, ingested.received = self._decoder.whole, now
        for rejected in ingested.rejected:
            self._reply(rejected)
        return ingested

    def _handshake(
        self, items: list[EngineMessage | Rejected], now: float
    ) -> list[EngineMessage | Rejected]:
        for index, item in enumerate(items):
            if isinstance(item, Hello):
                try:
                    self.engine, self.replaced = self._state.hello(item, self.conn_id, now)
                except TooManyEngines as exc:
                    raise ProtocolClose(1008, str(exc)) from None
                self.phase = ConnectionPhase.OPEN
                self.committed = self._acked = self.engine.committed
                welcome = Welcome(
                    hub=__version__,
                    engine=self.engine.name,
                    boot_id=self.engine.boot_id,
                    last_seq=self.engine.committed,  # durable, not merely received
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
        if self.committed > self._acked:
            self._acked = self.committed
            out.append(encoder.encode(Ack(self.committed)).decode())
        return out

    def closed(self, now: float) -> None:
        """The socket is gone; the engine turns offline unless a newer socket replaced this one."""
        self.phase = ConnectionPhase.CLOSED
        if self.engine is not None:
            self._state.disconnected(self.engine, self.conn_id, now)
