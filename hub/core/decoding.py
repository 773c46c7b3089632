"""Sans-I/O decoding and validation of engine frames: text in, typed messages and rejections out."""

from __future__ import annotations

import re
import struct
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from hub.core.messages import (
    EVENT_TYPE_PATTERN,
    INT64_MAX,
    Bye,
    CloseCode,
    EngineMessage,
    ErrorCode,
    Event,
    Heartbeat,
    Hello,
    Log,
    Metric,
    epoch,
)
from hub.settings import Settings

__all__ = ["Decoded", "FrameDecoder", "ProtocolClose", "Rejected"]

_SCAN = bytes.maketrans(b"0123456789[]E", b"0000000000{}e")
_LONG_INT = b"0" * 19  # a run of 19+ digits: maybe an integer beyond int64
# ... and "e000" in the scan: a 3-digit exponent, maybe a float beyond its range.
_EVENT_TYPE = re.compile(EVENT_TYPE_PATTERN)
_SEQ = re.compile(rb'"seq"\s*:\s*([0-9]{1,19})\b')
_NOT_CURLY = bytes(b for b in range(256) if b not in b"{}")
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},]', re.DOTALL)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
# The first byte of a buffer, as a 1-tuple: no memoryview per message (~60 ns, not ~150).
_first_byte = struct.Struct("B").unpack_from
_OPEN_BRACE = (0x7B,)  # "{": a payload must be an object
_MAX_TEXT_CHARS = 4096
_TRUNCATED = "… [truncated {} bytes]"


@dataclass(frozen=True, slots=True)
class Rejected:
    """One message that failed validation; `seq` is set when the message carried a usable one."""

    code: ErrorCode
    detail: str
    seq: int | None = None
    index: int | None = None


class Decoded:
    """One decoded frame: its messages and rejections in order, and how it was sent.

    A plain slotted class: one is made per frame, and that costs half a frozen dataclass.
    """

    __slots__ = ("batch", "flagged", "items", "text")

    def __init__(
        self,
        items: list[EngineMessage | Rejected],
        batch: bool,
        text: bytes | None,
        flagged: int = 0,
    ) -> None:
        self.items = items
        # Messages whose ts was too old or too far ahead (kept and flagged, or rejected): the
        # sender's clock is suspect.
        self.flagged = flagged
        self.batch = batch  # the frame was a JSON array: rejections carry their index in it
        # The frame's text when every message was decoded from it as it is (not from parts of
        # it) and none was changed (a time given as ISO-8601 is): what the store may keep
        # verbatim (hub/stores/chunks.py). None otherwise.
        self.text = text


class ProtocolClose(Exception):
    """The connection must close with `code` and a readable `reason` (never a traceback)."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _Probe(msgspec.Struct, forbid_unknown_fields=False):
    """Best-effort look at a rejected message, to report its seq."""

    seq: Any = None


def _truncate(text: str, limit: int) -> tuple[str, int]:
    """Cut `text` to at most `limit` UTF-8 bytes, marking the cut; returns (text, bytes removed)."""
    if len(text) * 4 <= limit:
        return text, 0
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text, 0
    kept = data[:limit].decode("utf-8", "ignore")
    removed = len(data) - len(kept.encode("utf-8"))
    return kept + _TRUNCATED.format(removed), removed


class FrameDecoder:
    """Turns one text frame (a message or a batch) into messages and per-message rejections.

    Rejections never poison the rest of a batch. Only problems with the frame itself (binary,
    too big) are fatal and raise `ProtocolClose`.
    """

    def __init__(self, settings: Settings, drops: Counter[str] | None = None) -> None:
        self._settings = settings
        self.drops: Counter[str] = drops if drops is not None else Counter()
        self.flagged: Counter[str] = Counter()  # accepted, but worth a look (past_timestamp)
        self._odd_times = 0  # timestamps out of range, kept or rejected, in this frame
        self._typed = msgspec.json.Decoder(EngineMessage)
        self._typed_batch = msgspec.json.Decoder(list[EngineMessage])
        self._batch = msgspec.json.Decoder(list[msgspec.Raw])
        self._probe = msgspec.json.Decoder(_Probe)
        self._event_types: set[str] = set()  # names that matched the pattern already

    def decode_bytes(self, data: bytes) -> Decoded:
        """Binary frames are not part of the protocol."""
        raise ProtocolClose(
            CloseCode.UNSUPPORTED_DATA,
            "binary frames are not supported: send UTF-8 JSON text frames",
        )

    def decode(self, text: str, now: float) -> Decoded:
        """Decode one text frame received at `now` (Unix seconds)."""
        settings = self._settings
        self._odd_times = 0
        try:
            data, suspect = text.encode(), False
        except UnicodeEncodeError:  # lone surrogates (a real socket never delivers them)
            data, suspect = text.encode("utf-8", "surrogatepass"), True
        if len(data) > settings.max_frame_bytes:
            raise ProtocolClose(
                CloseCode.MESSAGE_TOO_BIG,
                f"frame of {len(data)} bytes exceeds the limit of {settings.max_frame_bytes}",
            )
        head = data[:1] if data[:1] in (b"{", b"[") else data.lstrip()[:1]
        if head == b"{":
            walk = suspect or self._needs_walk(data, 1)
            one, verbatim = self._one(data, now, None, walk)
            return Decoded(
                [one], False, data if verbatim and not suspect else None, self._odd_times
            )
        if head != b"[":
            problem = "a frame must hold one JSON message object or a JSON array of them"
            return Decoded([Rejected(ErrorCode.BAD_JSON, problem)], False, None)
        walk = suspect or self._needs_walk(data, 2)  # the array and the message add two levels
        if len(data) <= settings.max_message_bytes:
            # Fast path: the whole batch is valid, so decode it in one call.
            try:
                messages = self._typed_batch.decode(data)
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, UnicodeError):
                pass
            else:
                items, verbatim = self._validated(messages, now, walk, 0)
                text_kept = data if verbatim and not suspect else None
                return Decoded(items, True, text_kept, self._odd_times)
        try:
            parts = [bytes(raw) for raw in self._batch.decode(data)]
        except (msgspec.DecodeError, RecursionError, UnicodeError) as exc:
            split = _split_array(data)
            if split is None:
                return Decoded([_rejected_json(data, exc, None)], True, None)
            parts = split
        items = [self._one(part, now, index, walk)[0] for index, part in enumerate(parts)]
        return Decoded(items, True, None, self._odd_times)

    def _validated(
        self, messages: list[EngineMessage], now: float, walk: bool, first_index: int | None
    ) -> tuple[list[EngineMessage | Rejected], bool]:
        """Every check of decoded messages, for a lone message and a batch alike.

        Returns the messages (or their rejections) and whether none was rewritten. The common
        event (a type seen before, a time in seconds within range, an object payload) passes in
        the loop itself; anything else goes through `_check`, which applies the same rules and
        says which one failed.
        """
        out: list[EngineMessage | Rejected] = []
        append, known = out.append, self._event_types
        latest = now + self._settings.max_future_seconds
        earliest = now - self._settings.max_past_seconds  # older ones are counted in `_check`
        verbatim = True
        for index, msg in enumerate(messages):
            if not walk and type(msg) is Event and msg.type in known:
                ts = msg.ts
                if (ts is None or (type(ts) is float and earliest <= ts <= latest)) and _first_byte(
                    msg.payload
                ) == _OPEN_BRACE:
                    append(msg)
                    continue
            if verbatim and _rewritten(msg):
                verbatim = False
            problem = self._check(msg, now, walk)
            if problem is None:
                append(msg)
            else:
                position = None if first_index is None else first_index + index
                append(Rejected(problem[0], problem[1], getattr(msg, "seq", None), position))
        return out, verbatim

    def _needs_walk(self, data: bytes, enclosing: int) -> bool:
        """Cheap frame-level bound: only frames that might nest too deep or hold huge ints are walked.

        `enclosing` is how many bracket levels wrap a payload (1 for a lone message, 2 in a batch).
        """
        limit = self._settings.max_json_depth + enclosing
        # One pass: digits -> "0", "[" -> "{", "E" -> "e", "+" dropped (so e+400 reads e400).
        scanned = data.translate(_SCAN, b"+")
        brackets = scanned.translate(None, _NOT_CURLY)  # cheaper than counting them in `scanned`
        if len(brackets) > limit and not _shallow(brackets, limit):
            return True
        # rfind, not `in`: it tests the needle's first byte ("e") before the rest, and "0" (every
        # digit) is far more common than "e" here; about a third faster on batches.
        return _LONG_INT in scanned or scanned.rfind(b"e000") >= 0

    def _one(
        self, data: bytes, now: float, index: int | None, walk: bool
    ) -> tuple[EngineMessage | Rejected, bool]:
        """One message's text: the message or its rejection, and whether it was kept as sent."""
        settings = self._settings
        if len(data) > settings.max_message_bytes:
            detail = (
                f"message of {len(data)} bytes exceeds the limit of {settings.max_message_bytes}"
            )
            return self._reject(data, ErrorCode.TOO_LARGE, detail, index), False
        try:
            msg = self._typed.decode(data)
        except msgspec.ValidationError as exc:
            return self._reject(data, *_classify_validation(str(exc)), index), False
        except (msgspec.DecodeError, RecursionError, UnicodeError) as exc:
            return _rejected_json(data, exc, index), False
        items, verbatim = self._validated([msg], now, walk, index)
        return items[0], verbatim

    def _reject(self, data: bytes, code: ErrorCode, detail: str, index: int | None) -> Rejected:
        seq: int | None = None
        try:
            probed = self._probe.decode(data).seq
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, UnicodeError):
            probed = None
        if type(probed) is int and 1 <= probed <= INT64_MAX:
            seq = probed
        return Rejected(code, detail, seq, index)

    def _check(self, msg: EngineMessage, now: float, walk: bool) -> tuple[ErrorCode, str] | None:
        """Checks msgspec's types cannot express; normalizes timestamps to Unix seconds."""
        settings = self._settings
        if walk:
            problem = _check_json(msg, settings.max_json_depth)
            if problem is not None:
                return problem
        if isinstance(msg, Hello):
            if msg.started_at is not None:
                msg.started_at = epoch(msg.started_at)
            return None
        ts = msg.ts
        if ts is not None:
            if type(ts) is not float:
                ts = msg.ts = epoch(ts)  # so the frame's text no longer says what was accepted
            if ts > now + settings.max_future_seconds:
                self._odd_times += 1
                return (
                    ErrorCode.FUTURE_TIMESTAMP,
                    f"ts is {ts - now:.0f} s in the future; the limit is "
                    f"{settings.max_future_seconds:.0f} s (check the engine's clock)",
                )
            if ts < 0:
                return (ErrorCode.BAD_MESSAGE, "ts must not be before 1970")
            if ts < now - settings.max_past_seconds:
                self._odd_times += 1
                if settings.reject_past_timestamps:
                    return (
                        ErrorCode.PAST_TIMESTAMP,
                        f"ts is {now - ts:.0f} s in the past; the limit is "
                        f"{settings.max_past_seconds:.0f} s (check the engine's clock, or leave "
                        "ts out to use the hub's receive time)",
                    )
                self.flagged["past_timestamp"] += 1  # kept as sent: the clock may be wrong
        if isinstance(msg, Event):  # the common case: a known type name, an object payload
            if msg.type not in self._event_types:
                if not _EVENT_TYPE.match(msg.type):
                    return (ErrorCode.BAD_MESSAGE, f"event type must match {EVENT_TYPE_PATTERN}")
                if len(self._event_types) < 4096:
                    self._event_types.add(msg.type)
            if _first_byte(msg.payload) != _OPEN_BRACE:
                return (ErrorCode.BAD_MESSAGE, "payload must be a JSON object")
            return None
        if isinstance(msg, Metric):
            if len(msg.tags) > settings.max_metric_tags:
                return (
                    ErrorCode.BAD_MESSAGE,
                    f"metric has {len(msg.tags)} tags; the limit is {settings.max_metric_tags}",
                )
            if msg.op == "inc" and msg.value < 0:
                return (ErrorCode.BAD_MESSAGE, "a counter increment must not be negative")
        elif isinstance(msg, Log):
            msg.message, removed = _truncate(msg.message, settings.max_log_line_bytes)
            if removed:
                self.drops["log_truncated"] += 1
            if msg.exc is not None:
                msg.exc, removed = _truncate(msg.exc, settings.max_log_line_bytes)
                if removed:
                    self.drops["log_truncated"] += 1
        elif isinstance(msg, Heartbeat) and isinstance(msg.last_error, str):
            msg.last_error, _ = _truncate(msg.last_error, _MAX_TEXT_CHARS)
        return None


def _rewritten(msg: EngineMessage | Rejected) -> bool:
    """Whether `_check` will change this message (an ISO-8601 time becomes seconds)."""
    ts = getattr(msg, "ts", None)
    return ts is not None and type(ts) is not float


def _shallow(brackets: bytes, limit: int) -> bool:
    """True if the brackets (strings included, so an over-estimate) nest at most `limit`.

    `brackets` is the frame's brackets alone after the `_SCAN` translation, all "{" or "}".
    """
    for _ in range(limit):
        if not brackets:
            return True
        brackets = brackets.replace(b"{}", b"")  # one nesting level per pass
    return not brackets


def _split_array(data: bytes) -> list[bytes] | None:
    """Split a top-level JSON array into element texts without parsing them (for invalid JSON)."""
    depth = 0
    start = 0
    parts: list[bytes] = []
    for match in _TOKEN.finditer(data):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth == 1:
                start = match.end()
        elif token in (b"]", b"}"):
            depth -= 1
            if depth == 0:
                tail = data[start : match.start()].strip()
                if tail:
                    parts.append(tail)
                return parts if not data[match.end() :].strip() else None
        elif token == b"," and depth == 1:
            parts.append(data[start : match.start()].strip())
            start = match.end()
    return None


def _classify_validation(text: str) -> tuple[ErrorCode, str]:
    if "at `$.kind`" in text and text.startswith("Invalid value"):
        return ErrorCode.UNKNOWN_KIND, (
            f"{text}; kind must be one of hello, heartbeat, event, metric, log, bye"
        )
    if "out of range" in text or str(INT64_MAX) in text:
        return ErrorCode.BAD_NUMBER, text
    return ErrorCode.BAD_MESSAGE, text


def _rejected_json(data: bytes, exc: Exception, index: int | None) -> Rejected:
    if isinstance(exc, RecursionError):
        return Rejected(
            ErrorCode.TOO_DEEP, "JSON nesting is too deep", _seq_of_invalid(data), index
        )
    if isinstance(exc, UnicodeError):
        return Rejected(
            ErrorCode.BAD_JSON,
            "text holds a lone UTF-16 surrogate (not valid UTF-8)",
            _seq_of_invalid(data),
            index,
        )
    if _SURROGATE_ESCAPE.search(data):
        return Rejected(
            ErrorCode.BAD_JSON,
            f"{exc} (a string holds a lone UTF-16 surrogate escape such as \\ud800)",
            _seq_of_invalid(data),
            index,
        )
    if b"NaN" in data or b"Infinity" in data:
        return Rejected(
            ErrorCode.BAD_NUMBER,
            f"{exc} (NaN and Infinity are not valid JSON)",
            _seq_of_invalid(data),
            index,
        )
    return Rejected(ErrorCode.BAD_JSON, str(exc), _seq_of_invalid(data), index)


def _free_form(msg: EngineMessage) -> Sequence[tuple[str, object]]:
    match msg:
        case Hello():
            return (("meta", msg.meta),)
        case Heartbeat():
            return (("state", msg.state),)
        case Event():
            return (("payload", msg.payload),)  # raw: decoded by _check_json
        case Log():
            return (("extra", msg.extra),)
        case Metric() | Bye():
            return ()


def _check_json(msg: EngineMessage, max_depth: int) -> tuple[ErrorCode, str] | None:
    """Reject free-form JSON that nests deeper than `max_depth` or holds integers beyond int64."""
    for name, root in _free_form(msg):
        if isinstance(root, msgspec.Raw):
            try:
                root = msgspec.json.decode(root)
            except (
                msgspec.DecodeError,
                msgspec.ValidationError,
                RecursionError,
                UnicodeError,
            ) as exc:
                code = ErrorCode.BAD_NUMBER if "out of range" in str(exc) else ErrorCode.BAD_JSON
                return code, f"{name}: {exc}"
        stack: list[tuple[object, int]] = [(root, 1)]
        while stack:
            value, depth = stack.pop()
            if isinstance(value, dict):
                children: Any = value.values()
            elif isinstance(value, list):
                children = value
            else:
                if type(value) is int and not -INT64_MAX - 1 <= value <= INT64_MAX:
                    return ErrorCode.BAD_NUMBER, f"{name} holds an integer outside the int64 range"
                continue
            if depth > max_depth:
                return ErrorCode.TOO_DEEP, f"{name} nests deeper than {max_depth} levels"
            stack.extend((child, depth + 1) for child in children)
    return None


def _seq_of_invalid(data: bytes) -> int | None:
    """The seq of a message that is not even valid JSON, read by pattern (best effort)."""
    match = _SEQ.search(data)
    seq = int(match.group(1)) if match else 0
    return seq if 1 <= seq <= INT64_MAX else None
