"""The sequenced, bounded buffer of encoded messages waiting to be sent or acknowledged."""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

__all__ = ["Outbox", "Taken"]

Entry = tuple[int, bytes]  # (seq, one encoded message)


class Taken(NamedTuple):
    """What `Outbox.take` produced: a frame (or None) and how many oversized messages it skipped."""

    frame: bytes | None
    messages: int
    too_large: int


class Outbox:
    """Two FIFOs of (seq, bytes): `inflight` (sent on this connection, not yet acked) then `unsent`.

    Every inflight seq is lower than every unsent seq, so the oldest message is always the head of
    `inflight` if it has one, else the head of `unsent`. Evicting the oldest keeps the buffer bounded
    and leaves a seq gap the hub records. A reconnect moves `inflight` back in front of `unsent`.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.inflight: deque[Entry] = deque()
        self.unsent: deque[Entry] = deque()
        self.evicted_inflight_seq = 0  # highest seq evicted after it was sent

    def __len__(self) -> int:
        return len(self.inflight) + len(self.unsent)

    def push(self, seq: int, data: bytes) -> tuple[int, int]:
        """Append one message; returns how many (never-sent, sent-but-unacked) messages were evicted."""
        lost_unsent = lost_inflight = 0
        while len(self.inflight) + len(self.unsent) >= self.capacity:
            if self.inflight:
                self.evicted_inflight_seq = self.inflight.popleft()[0]
                lost_inflight += 1
            else:
                self.unsent.popleft()
                lost_unsent += 1
        self.unsent.append((seq, data))
        return lost_unsent, lost_inflight

    def take(self, max_count: int, max_bytes: int, max_message: int) -> Taken:
        """Move up to `max_count` unsent messages (at most `max_bytes` as a JSON array) to inflight."""
        unsent, inflight = self.unsent, self.inflight
        parts: list[bytes] = []
        size = 2
        too_large = 0
        while unsent and len(parts) < max_count:
            seq, data = unsent[0]
            if len(data) > max_message:
                unsent.popleft()  # the hub would reject it; a smaller limit came with `welcome`
                too_large += 1
                continue
            if parts and size + len(data) + 1 > max_bytes:
                break
            unsent.popleft()
            inflight.append((seq, data))
            parts.append(data)
            size += len(data) + 1
        frame = b"[" + b",".join(parts) + b"]" if parts else None
        return Taken(frame, len(parts), too_large)

    def ack(self, seq: int) -> int:
        """Forget everything up to and including `seq`; returns how many messages that was."""
        removed = 0
        for queue in (self.inflight, self.unsent):
            while queue and queue[0][0] <= seq:
                queue.popleft()
                removed += 1
        return removed

    def reject(self, seq: int) -> bool:
        """Forget one message the hub rejected (its seq is consumed, so it must not be resent)."""
        for queue in (self.inflight, self.unsent):
            for index, (entry_seq, _) in enumerate(queue):
                if entry_seq == seq:
                    del queue[index]
                    return True
                if entry_seq > seq:
                    break
        return False

    def rewind(self) -> int:
        """The connection is gone: everything unacked goes back in front, to be replayed in order."""
        count = len(self.inflight)
        self.unsent.extendleft(reversed(self.inflight))
        self.inflight.clear()
        return count

    def rewind_from(self, seq: int) -> int:
        """The hub took nothing from `seq` on (rate limited): send those again, in order."""
        moved: list[Entry] = []
        while self.inflight and self.inflight[-1][0] >= seq:
            moved.append(self.inflight.pop())
        self.unsent.extendleft(moved)  # newest first: extendleft puts them back oldest first
        return len(moved)

    def oldest_seq(self) -> int | None:
        """The lowest seq still held, or None when empty."""
        if self.inflight:
            return self.inflight[0][0]
        return self.unsent[0][0] if self.unsent else None
