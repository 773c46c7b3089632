"""Delivery marks, sans-I/O: what the alert lease's holder delivered, for the node that takes over.

In a cluster only the lease's holder sends notifications (docs/alerts.md). After each delivery
it records, per (receiver, rule, engine), whether the last message delivered said firing or
resolved, and when. A node that takes the lease over reads the marks into its `Dispatcher`
(`Dispatcher.adopt`) so it repeats nothing already delivered and sends what is not: an alert
that fired while nobody held the lease, or a resolve the previous holder never delivered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import msgspec

__all__ = ["MAX_MARKS", "Mark"]

MAX_MARKS = 100_000  # marks read on taking over (receivers x rules x engines stays far below)
_MAX_FIELD = 1024  # bytes of one encoded mark's name
_decode_field = msgspec.json.Decoder(tuple[str, str, str]).decode
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class Mark:
    """The last message `receiver` was delivered about the alert (`rule`, `engine`)."""

    receiver: str
    rule: str
    engine: str
    firing: bool  # the message said firing (else: resolved)
    at: float  # when it was delivered (seconds since the epoch)

    def field(self) -> bytes:
        """The hash field naming the alert and receiver (JSON: names may hold any character)."""
        return _encode((self.receiver, self.rule, self.engine))

    def value(self) -> str:
        """The hash value: "firing|resolved <at>"."""
        return f"{'firing' if self.firing else 'resolved'} {self.at:.3f}"

    @classmethod
    def parse(cls, field: bytes | str, value: bytes | str) -> Mark | None:
        """The mark a hash entry holds, or None for anything malformed or oversized."""
        raw = field.encode() if isinstance(field, str) else field
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        if len(raw) > _MAX_FIELD or len(text) > 64:
            return None
        try:
            receiver, rule, engine = _decode_field(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        state, _, at_text = text.partition(" ")
        try:
            at = float(at_text)
        except ValueError:
            return None
        if state not in ("firing", "resolved") or not math.isfinite(at):
            return None
        return cls(receiver, rule, engine, state == "firing", at)
