"""Cluster log entries, sans-I/O: what one node tells the others through the shared stream.

An entry is a typed value with one encoding (`fields`) and one decode point (`decode_entry`).
A `frame` entry carries an engine frame's text verbatim: every node decodes and validates it
again and deduplicates its messages by (engine, boot_id, seq), so the stream may hold a
message twice (a replayed frame that straddles what was stored) and history still holds it once.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Entry", "EntryKind", "StreamId", "decode_entry", "stream_id", "supersedes"]

MAX_FIELD_BYTES = 8 * 1024 * 1024  # a frame is at most max_frame_bytes; refuse anything absurd

StreamId = tuple[int, int]  # a Redis stream id "ms-seq" as numbers (ordered like the stream)


class EntryKind(enum.StrEnum):
    """What an entry says."""

    HELLO = "h"  # an engine said hello on the origin node (data: the hello message as JSON)
    FRAME = "f"  # a frame the origin node accepted (data: the frame's text)
    CLOSE = "c"  # the origin node's socket of that engine closed


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry: which node, which engine boot and connection, and the payload."""

    kind: EntryKind
    node: str
    engine: str
    boot_id: str
    conn: int
    seq: int = 0  # the highest seq a frame entry carries (dedupe in Redis)
    data: str = ""

    def fields(self) -> dict[str, str]:
        """The entry as stream fields (short names: every frame pays for them)."""
        return {
            "k": self.kind.value,
            "n": self.node,
            "e": self.engine,
            "b": self.boot_id,
            "c": str(self.conn),
            "s": str(self.seq),
            "d": self.data,
        }


def _text(raw: object) -> str:
    if isinstance(raw, bytes):
        return raw.decode()
    if isinstance(raw, str):
        return raw
    raise ValueError(f"a field is {type(raw).__name__}, not text")


def decode_entry(raw: Mapping[bytes | str, bytes | str]) -> Entry:
    """Parse stream fields into an `Entry`; raises ValueError with the reason for a bad one."""
    fields = {_text(k): v for k, v in raw.items()}
    try:
        data = fields.get("d", b"")
        if len(data) > MAX_FIELD_BYTES:
            raise ValueError("the data field is too large")
        return Entry(
            EntryKind(_text(fields["k"])),
            _text(fields["n"]),
            _text(fields["e"]),
            _text(fields["b"]),
            int(_text(fields["c"])),
            int(_text(fields["s"])),
            _text(data),
        )
    except (KeyError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed cluster entry: {exc!r}") from None


def stream_id(raw: bytes | str) -> StreamId:
    """A stream id as an ordered pair; raises ValueError if it is not one."""
    ms, _, seq = _text(raw).partition("-")
    return int(ms), int(seq or 0)


def supersedes(remote: StreamId, local: StreamId | None) -> bool:
    """Whether a remote hello at `remote` takes over from this node's socket whose hello is at
    `local` (None: not in the stream yet, so it will land later and win). The latest claim wins."""
    return local is not None and remote > local
