"""Engine protocol v1 messages as typed values (msgspec Structs), shared by the hub and the client.

This module imports nothing but msgspec so the client library can use it without the server stack.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

__all__ = [
    "ENGINE_NAME_PATTERN",
    "EVENT_TYPE_PATTERN",
    "INT64_MAX",
    "METRIC_NAME_PATTERN",
    "TAG_KEY_PATTERN",
    "Ack",
    "Bye",
    "ChainLink",
    "CloseCode",
    "EngineMessage",
    "ErrorCode",
    "ErrorReply",
    "Event",
    "HubMessage",
    "Heartbeat",
    "Hello",
    "Log",
    "Metric",
    "Status",
    "Welcome",
    "epoch",
]

ENGINE_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
EVENT_TYPE_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
METRIC_NAME_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
TAG_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
INT64_MAX = 2**63 - 1


class Status(enum.StrEnum):
    """Engine-reported run status."""

    STARTING = "starting"
    RUNNING = "running"
    STOPPED = "stopped"
    ERROR = "error"


class CloseCode(enum.IntEnum):
    """WebSocket close codes the hub and the client use (RFC 6455 7.4.1), named in one place."""

    NORMAL = 1000
    GOING_AWAY = 1001
    UNSUPPORTED_DATA = 1003  # a binary frame
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008  # auth, no hello in time, engine limit
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012  # the hub is shutting down: reconnect and replay
    TRY_AGAIN_LATER = 1013  # a connection limit, or a dashboard too slow to keep up
    REPLACED = 4001  # a newer socket of this engine (here or on another node) took over


class ErrorCode(enum.StrEnum):
    """Why one message was rejected (sent in `error` replies and counted in stats)."""

    BAD_JSON = "bad_json"
    BAD_MESSAGE = "bad_message"
    UNKNOWN_KIND = "unknown_kind"
    HELLO_REQUIRED = "hello_required"
    ALREADY_HELLO = "already_hello"
    TOO_LARGE = "too_large"
    TOO_DEEP = "too_deep"
    BAD_NUMBER = "bad_number"
    FUTURE_TIMESTAMP = "future_timestamp"
    PAST_TIMESTAMP = "past_timestamp"  # only with the reject_past_timestamps setting
    TOO_MANY_TYPES = "too_many_types"
    TOO_MANY_SERIES = "too_many_series"
    TOO_MANY_ENGINES = "too_many_engines"
    METRIC_CONFLICT = "metric_conflict"
    RATE_LIMITED = "rate_limited"  # the whole frame: resend from `resume_seq` after `retry_after`


Name = Annotated[str, Meta(pattern=ENGINE_NAME_PATTERN)]
Mode = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,16}$")]
BootId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
Seq = Annotated[int, Meta(ge=1, le=INT64_MAX)]
Count = Annotated[int, Meta(ge=0, le=INT64_MAX)]
Pid = Annotated[int, Meta(ge=0, le=2**31)]
Interval = Annotated[float, Meta(gt=0, le=86_400)]
Timestamp = Annotated[datetime, Meta(tz=True)] | float
LoggerName = Annotated[str, Meta(max_length=256)]
TagValue = Annotated[str, Meta(max_length=256)]
Tags = dict[Annotated[str, Meta(pattern=TAG_KEY_PATTERN)], TagValue]
Json = dict[str, Any]


def epoch(value: datetime | float) -> float:
    """A protocol timestamp as Unix seconds (ISO-8601 with a timezone or seconds already)."""
    return value.timestamp() if isinstance(value, datetime) else float(value)


class _Message(Struct, tag_field="kind", forbid_unknown_fields=False, omit_defaults=True, gc=False):
    """Base of all protocol messages; unknown fields are ignored for forward compatibility.

    gc=False: decoded JSON cannot form reference cycles, so the cyclic collector need not track
    (and repeatedly scan) one object per message.
    """


class Hello(_Message, tag="hello"):
    """First message of a connection: who the engine is and which boot this is."""

    engine: Name
    mode: Mode = "paper"
    pid: Pid | None = None
    boot_id: BootId | None = None
    started_at: Timestamp | None = None
    heartbeat_interval: Interval | None = None
    meta: Json = {}
    # Highest seq a hub acknowledged earlier in this boot: a hub that lost its memory (restarted
    # without a persistent store) takes it as stored instead of reporting a false gap.
    acked_seq: Count | None = None


class Heartbeat(_Message, tag="heartbeat"):
    """Partial health update: omitted fields keep their last value."""

    seq: Seq
    ts: Timestamp | None = None
    status: Status | UnsetType = UNSET
    loop_tick: Count | UnsetType = UNSET
    universe_size: Count | UnsetType = UNSET
    open_positions: Annotated[int, Meta(ge=-INT64_MAX, le=INT64_MAX)] | UnsetType = UNSET
    last_error: str | None | UnsetType = UNSET
    interval: Interval | UnsetType = UNSET
    dropped: dict[Annotated[str, Meta(max_length=64)], Count] | UnsetType = UNSET
    state: Json | UnsetType = UNSET


class ChainLink(Struct, forbid_unknown_fields=False, omit_defaults=True, gc=False):
    """Where an event sits in a causal chain (docs/protocol.md): its own `ref`, the `ref` of the
    event it follows from (`parent`) and the engine's `cycle` id; refs are per boot."""

    ref: Seq | UnsetType = UNSET
    parent: Seq | UnsetType = UNSET
    cycle: Annotated[str, Meta(min_length=1, max_length=128)] | UnsetType = UNSET


class Event(_Message, tag="event"):
    """A trading event (signal, order, cycle, ...) with a free-form JSON payload."""

    seq: Seq
    type: Annotated[str, Meta(min_length=1, max_length=64)]  # pattern: checked once per name
    ts: Timestamp | None = None
    payload: msgspec.Raw = msgspec.Raw(b"{}")  # a JSON object, kept verbatim
    # Optional, top level so the hub reads it without decoding the payload; hubs before it
    # ignore it (unknown fields are ignored), and events without it cost one attribute check.
    chain: ChainLink | UnsetType = UNSET


class Metric(_Message, tag="metric"):
    """A counter increment, gauge value or histogram/timer observation."""

    seq: Seq
    op: Literal["inc", "set", "observe"]
    name: Annotated[str, Meta(pattern=METRIC_NAME_PATTERN)]
    value: float = 1.0
    tags: Tags = {}
    ts: Timestamp | None = None


class Log(_Message, tag="log"):
    """One log record from the engine."""

    seq: Seq
    message: str
    level: Annotated[str, Meta(pattern=r"^[A-Za-z]{1,16}$")] = "INFO"
    logger: LoggerName = ""
    ts: Timestamp | None = None
    exc: str | None = None
    extra: Json = {}


class Bye(_Message, tag="bye"):
    """Graceful stop: the engine will not send more in this boot."""

    seq: Seq
    status: Status = Status.STOPPED
    ts: Timestamp | None = None


EngineMessage = Hello | Heartbeat | Event | Metric | Log | Bye


class Welcome(_Message, tag="welcome"):
    """Hub reply to `hello`: replay everything after `last_seq`."""

    hub: str
    engine: str
    boot_id: str
    last_seq: int
    ack_interval: float
    max_message_bytes: int
    max_frame_bytes: int


class Ack(_Message, tag="ack"):
    """Everything up to `seq` is stored; the client may forget it."""

    seq: int


class ErrorReply(_Message, tag="error", omit_defaults=False):
    """One message was rejected; the connection stays open (`seq`/`index` are null when unknown).

    `rate_limited` alone carries `retry_after` (seconds), `resume_seq` (the first seq the hub
    did not take) and the engine's limits (`messages_per_second`, `bytes_per_second`; 0 when
    off), so a client can pace itself below them; they are left out of every other error, and
    clients that predate them ignore them (and lose nothing: `seq` is null, so nothing is marked
    as rejected).
    """

    code: ErrorCode
    detail: str
    seq: int | None = None
    index: int | None = None
    retry_after: float | UnsetType = UNSET
    resume_seq: int | UnsetType = UNSET
    messages_per_second: float | UnsetType = UNSET
    bytes_per_second: float | UnsetType = UNSET


HubMessage = Welcome | Ack | ErrorReply

encoder = msgspec.json.Encoder()
