"""Server-Sent Events parsing, sans-I/O: text chunks in, complete messages out."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SSEMessage", "SSEParser", "StreamTooLarge"]


class StreamTooLarge(ValueError):
    """One SSE line or message is beyond the parser's limit (not a hub's stream)."""


@dataclass(frozen=True, slots=True)
class SSEMessage:
    """One dispatched event: its type (`message` when unnamed), data and id."""

    event: str
    data: str
    id: str | None


class SSEParser:
    """The WHATWG event-stream rules we need: event, data, id; comments and retry ignored."""

    def __init__(self, max_bytes: int = 1 << 20) -> None:
        self._max = max_bytes  # bounds a message: a hub event is at most 256 KiB of payload
        self._buffer = ""
        self._event = ""
        self._data: list[str] = []
        self._size = 0
        self._id: str | None = None

    def feed(self, chunk: str) -> list[SSEMessage]:
        """Parse `chunk`; returns the messages it completed (a partial line waits for more)."""
        self._buffer += chunk
        if len(self._buffer) > self._max:
            raise StreamTooLarge(f"an SSE line is longer than {self._max} characters")
        messages: list[SSEMessage] = []
        *lines, self._buffer = self._buffer.replace("\r\n", "\n").split("\n")
        for line in lines:
            if not line:
                if self._data:
                    messages.append(
                        SSEMessage(self._event or "message", "\n".join(self._data), self._id)
                    )
                self._event, self._data, self._size = "", [], 0
                continue
            if line.startswith(":"):
                continue  # a comment: the hub's keep-alive
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                self._event = value
            elif field == "data":
                self._size += len(value)
                if self._size > self._max:
                    raise StreamTooLarge(f"an SSE message is larger than {self._max} characters")
                self._data.append(value)
            elif field == "id" and "\0" not in value:
                self._id = value
        return messages
