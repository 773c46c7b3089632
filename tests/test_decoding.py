"""FrameDecoder: text frames in, typed messages and per-message rejections out (no sockets)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import msgspec
import pytest

from hub.core.decoding import FrameDecoder, ProtocolClose, Rejected
from hub.core.messages import Bye, ErrorCode, Event, Heartbeat, Hello, Log, Metric, Status
from hub.settings import Settings

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z
SETTINGS = Settings()

FIRST = '{"kind":"event","seq":1,"type":"signal_event","payload":{"side":"long"}}'
LAST = '{"kind":"log","seq":3,"level":"INFO","message":"after the bad one"}'


def decode(text: str, settings: Settings = SETTINGS) -> list[Any]:
    """Decode one frame with a fresh decoder at NOW."""
    return FrameDecoder(settings).decode(text, NOW).items


def one(text: str, settings: Settings = SETTINGS) -> Any:
    """Decode a frame that must yield exactly one item."""
    items = decode(text, settings)
    assert len(items) == 1, items
    return items[0]


def msg(**fields: Any) -> str:
    """A message object as JSON text."""
    return json.dumps(fields)


def nested(depth: int) -> str:
    """A JSON object nested `depth` levels deep: depth 1 is {"a":1}."""
    return '{"a":' * depth + "1" + "}" * depth


def event_with_payload(payload: str, seq: int = 2) -> str:
    return f'{{"kind":"event","seq":{seq},"type":"signal_event","payload":{payload}}}'


def assert_rejected(item: Any, code: ErrorCode, seq: int | None, index: int | None) -> None:
    assert isinstance(item, Rejected), item
    assert (item.code, item.seq, item.index) == (code, seq, index), item
    assert item.detail


# (id, message text, code as a single frame, code as a batch element, readable seq)
MALFORMED = [
    ("non_json", "not json", ErrorCode.BAD_JSON, ErrorCode.BAD_JSON, None),
    ("json_number", "42", ErrorCode.BAD_JSON, ErrorCode.BAD_MESSAGE, None),
    ("json_string", '"hello"', ErrorCode.BAD_JSON, ErrorCode.BAD_MESSAGE, None),
    ("json_null", "null", ErrorCode.BAD_JSON, ErrorCode.BAD_MESSAGE, None),
    (
        "wrong_type_seq",
        '{"kind":"event","seq":"2","type":"signal_event"}',
        ErrorCode.BAD_MESSAGE,
        ErrorCode.BAD_MESSAGE,
        None,
    ),
    (
        "wrong_type_payload",
        '{"kind":"event","seq":2,"type":"signal_event","payload":[1,2]}',
        ErrorCode.BAD_MESSAGE,
        ErrorCode.BAD_MESSAGE,
        2,
    ),
    (
        "wrong_type_value",
        '{"kind":"metric","seq":2,"op":"set","name":"g","value":"high"}',
        ErrorCode.BAD_MESSAGE,
        ErrorCode.BAD_MESSAGE,
        2,
    ),
    (
        "bad_status",
        '{"kind":"heartbeat","seq":2,"status":"zombie"}',
        ErrorCode.BAD_MESSAGE,
        ErrorCode.BAD_MESSAGE,
        2,
    ),
    ("missing_type", '{"kind":"event","seq":2}', ErrorCode.BAD_MESSAGE, ErrorCode.BAD_MESSAGE, 2),
    (
        "missing_seq",
        '{"kind":"event","type":"signal_event"}',
        ErrorCode.BAD_MESSAGE,
        ErrorCode.BAD_MESSAGE,
        None,
    ),
    ("missing_kind", '{"seq":2,"type":"x"}', ErrorCode.BAD_MESSAGE, ErrorCode.BAD_MESSAGE, 2),
    (
        "unknown_kind",
        '{"kind":"teleport","seq":2}',
        ErrorCode.UNKNOWN_KIND,
        ErrorCode.UNKNOWN_KIND,
        2,
    ),
    (
        "nan",
        '{"kind":"metric","seq":2,"op":"set","name":"g","value":NaN}',
        ErrorCode.BAD_NUMBER,
        ErrorCode.BAD_NUMBER,
        2,
    ),
    (
        "infinity",
        '{"kind":"metric","seq":2,"op":"set","name":"g","value":Infinity}',
        ErrorCode.BAD_NUMBER,
        ErrorCode.BAD_NUMBER,
        2,
    ),
    (
        "negative_infinity_in_payload",
        event_with_payload('{"x":-Infinity}'),
        ErrorCode.BAD_NUMBER,
        ErrorCode.BAD_NUMBER,
        2,
    ),
    (
        "float_overflow",
        '{"kind":"metric","seq":2,"op":"set","name":"g","value":1e999}',
        ErrorCode.BAD_NUMBER,
        ErrorCode.BAD_NUMBER,
        2,
    ),
    (
        "float_overflow_in_payload",
        event_with_payload('{"x":-1e999}'),
        ErrorCode.BAD_NUMBER,
        ErrorCode.BAD_NUMBER,
        2,
    ),
    (
        "lone_high_surrogate",
        event_with_payload('{"note":"\\ud800"}'),
        ErrorCode.BAD_JSON,
        ErrorCode.BAD_JSON,
        2,
    ),
    (
        "lone_low_surrogate",
        '{"kind":"log","seq":2,"message":"x\\udc00y"}',
        ErrorCode.BAD_JSON,
        ErrorCode.BAD_JSON,
        2,
    ),
    ("too_deep", event_with_payload(nested(40)), ErrorCode.TOO_DEEP, ErrorCode.TOO_DEEP, 2),
    (
        "too_deep_state",
        '{"kind":"heartbeat","seq":2,"state":' + nested(40) + "}",
        ErrorCode.TOO_DEEP,
        ErrorCode.TOO_DEEP,
        2,
    ),
    (
        "int_above_int64",
        event_with_payload('{"qty":9223372036854775808}'),
        ErrorCode.BAD_NUMBER,
        ErrorCode.BAD_NUMBER,
        2,
    ),
    (
        "int_below_int64",
        event_with_payload('{"qty":[-9223372036854775809]}'),
        ErrorCode.BAD_NUMBER,
        ErrorCode.BAD_NUMBER,
        2,
    ),
    (
        "negative_counter",
        '{"kind":"metric","seq":2,"op":"inc","name":"fills","value":-1}',
        ErrorCode.BAD_MESSAGE,
        ErrorCode.BAD_MESSAGE,
        2,
    ),
    (
        "future_timestamp",
        msg(kind="heartbeat", seq=2, ts=NOW + 601),
        ErrorCode.FUTURE_TIMESTAMP,
        ErrorCode.FUTURE_TIMESTAMP,
        2,
    ),
    (
        "naive_iso_timestamp",
        msg(kind="event", seq=2, type="cycle", ts="2023-11-14T22:13:20"),
        ErrorCode.BAD_MESSAGE,
        ErrorCode.BAD_MESSAGE,
        2,
    ),
]
MALFORMED_IDS = [case[0] for case in MALFORMED]


@pytest.mark.parametrize(
    ("name", "text", "code", "batch_code", "seq"), MALFORMED, ids=MALFORMED_IDS
)
def test_malformed_single_frame_is_rejected(
    name: str, text: str, code: ErrorCode, batch_code: ErrorCode, seq: int | None
) -> None:
    """A malformed message sent alone becomes one Rejected with its code and readable seq."""
    assert_rejected(one(text), code, seq, None)


@pytest.mark.parametrize(
    ("name", "text", "code", "batch_code", "seq"), MALFORMED, ids=MALFORMED_IDS
)
def test_malformed_message_does_not_poison_its_batch(
    name: str, text: str, code: ErrorCode, batch_code: ErrorCode, seq: int | None
) -> None:
    """A bad message inside a batch is rejected at its index; its neighbours decode in order."""
    items = decode(f"[{FIRST}, {text}, {LAST}]")
    assert len(items) == 3, items
    first, bad, last = items
    assert isinstance(first, Event)
    assert (first.seq, first.type, msgspec.json.decode(first.payload)) == (
        1,
        "signal_event",
        {"side": "long"},
    )
    assert_rejected(bad, batch_code, seq, 1)
    assert isinstance(last, Log)
    assert (last.seq, last.message) == (3, "after the bad one")


def test_good_batch_keeps_order() -> None:
    """A valid batch decodes to typed messages in the order they were sent."""
    frame = json.dumps(
        [
            {"kind": "heartbeat", "seq": 1, "status": "running", "loop_tick": 7},
            {"kind": "event", "seq": 2, "type": "order_event", "payload": {"id": "o1"}},
            {"kind": "metric", "seq": 3, "op": "observe", "name": "latency", "value": 0.25},
            {"kind": "log", "seq": 4, "level": "WARNING", "message": "slow"},
            {"kind": "bye", "seq": 5},
        ]
    )
    items = decode(frame)
    assert [type(item) for item in items] == [Heartbeat, Event, Metric, Log, Bye]
    assert [item.seq for item in items] == [1, 2, 3, 4, 5]
    assert items[0].status is Status.RUNNING
    assert items[2].value == 0.25


def test_empty_batch_decodes_to_nothing() -> None:
    """An empty JSON array is a valid, empty batch."""
    assert decode("[]") == []


def test_leading_whitespace_is_allowed() -> None:
    """Whitespace before the JSON value does not make the frame invalid."""
    assert isinstance(one('  \n{"kind":"bye","seq":1}'), Bye)


def test_trailing_garbage_rejects_frame_with_its_seq() -> None:
    """Text after the message object is bad JSON; the seq read from it is still reported."""
    assert_rejected(one('{"kind":"bye","seq":4} trailing'), ErrorCode.BAD_JSON, 4, None)


def test_unterminated_batch_is_rejected() -> None:
    """A batch whose array never closes is rejected as bad JSON, not raised."""
    item = one('[{"kind":"bye","seq":1}, {"kind":"bye","seq":2}')
    assert isinstance(item, Rejected)
    assert item.code is ErrorCode.BAD_JSON


def test_errors_report_their_batch_index() -> None:
    """Each rejection in a batch carries its own position, not the position of the first one."""
    frame = f'[not json, {FIRST}, {{"kind":"nope","seq":2}}, {LAST}, 7]'
    items = decode(frame)
    assert [type(item) for item in items] == [Rejected, Event, Rejected, Log, Rejected]
    assert [item.index for item in items if isinstance(item, Rejected)] == [0, 2, 4]
    assert [item.code for item in items if isinstance(item, Rejected)] == [
        ErrorCode.BAD_JSON,
        ErrorCode.UNKNOWN_KIND,
        ErrorCode.BAD_MESSAGE,
    ]


def test_unknown_kind_detail_lists_the_valid_kinds() -> None:
    """The unknown_kind detail tells the engine which kinds exist."""
    item = one('{"kind":"teleport","seq":1}')
    assert item.code is ErrorCode.UNKNOWN_KIND
    assert "hello, heartbeat, event, metric, log, bye" in item.detail


def test_unknown_fields_are_ignored() -> None:
    """Fields the hub does not know are ignored for forward compatibility."""
    item = one('{"kind":"bye","seq":1,"future_field":{"x":1}}')
    assert isinstance(item, Bye)
    assert item.seq == 1


def test_binary_frame_closes_with_1003() -> None:
    """Binary frames are not part of the protocol: the connection closes with 1003."""
    decoder = FrameDecoder(SETTINGS)
    with pytest.raises(ProtocolClose) as info:
        decoder.decode_bytes(b'{"kind":"bye","seq":1}')
    assert info.value.code == 1003
    assert "text" in info.value.reason


def test_oversize_frame_closes_with_1009() -> None:
    """A frame over max_frame_bytes is fatal (1009) and names the limit."""
    settings = Settings(max_message_bytes=100, max_frame_bytes=200)
    frame = "[" + ",".join(['{"kind":"bye","seq":1}'] * 10) + "]"
    assert len(frame.encode()) > 200
    with pytest.raises(ProtocolClose) as info:
        decode(frame, settings)
    assert info.value.code == 1009
    assert "200" in info.value.reason


def test_frame_size_is_measured_in_utf8_bytes() -> None:
    """The frame limit counts UTF-8 bytes, so multi-byte text reaches it with fewer characters."""
    settings = Settings(max_message_bytes=200, max_frame_bytes=200)
    frame = '{"kind":"log","seq":1,"message":"' + "€" * 60 + '"}'
    assert len(frame) < 200 < len(frame.encode())
    with pytest.raises(ProtocolClose) as info:
        decode(frame, settings)
    assert info.value.code == 1009


def test_frame_at_the_limit_is_accepted() -> None:
    """A frame exactly max_frame_bytes long is not too big."""
    settings = Settings(max_message_bytes=100, max_frame_bytes=100)
    frame = '{"kind":"log","seq":1,"message":"' + "x" * 65 + '"}'
    assert len(frame.encode()) == 100
    assert isinstance(one(frame, settings), Log)


def test_oversize_single_message_is_rejected_with_its_seq() -> None:
    """A lone message over max_message_bytes (but within the frame limit) is rejected too_large."""
    settings = Settings(max_message_bytes=100, max_frame_bytes=1000)
    text = msg(kind="log", seq=9, message="x" * 200)
    assert_rejected(one(text, settings), ErrorCode.TOO_LARGE, 9, None)


def test_oversize_message_in_batch_is_rejected_alone() -> None:
    """One too-large message in a batch is rejected; the others are accepted in order."""
    settings = Settings(max_message_bytes=120, max_frame_bytes=1000)
    big = msg(kind="log", seq=2, message="x" * 200)
    items = decode(f"[{FIRST},{big},{LAST}]", settings)
    assert [type(item) for item in items] == [Event, Rejected, Log]
    assert_rejected(items[1], ErrorCode.TOO_LARGE, 2, 1)
    assert "120" in items[1].detail


def test_batch_larger_than_one_message_limit_is_split() -> None:
    """A valid batch bigger than max_message_bytes is decoded element by element, in order."""
    settings = Settings(max_message_bytes=100, max_frame_bytes=2000)
    frame = "[" + ",".join(msg(kind="bye", seq=seq) for seq in range(1, 21)) + "]"
    assert len(frame.encode()) > 100
    items = decode(frame, settings)
    assert all(isinstance(item, Bye) for item in items)
    assert [item.seq for item in items] == list(range(1, 21))


def test_payload_depth_30_is_accepted() -> None:
    """A payload nested 30 levels (below max_json_depth=32) passes, alone and in a batch."""
    text = event_with_payload(nested(30))
    assert isinstance(one(text), Event)
    items = decode(f"[{FIRST},{text},{LAST}]")
    assert [type(item) for item in items] == [Event, Event, Log]


def test_payload_depth_limit_boundary_in_batch() -> None:
    """In a batch a payload of exactly max_json_depth levels passes and one more is too_deep."""
    items = decode(f"[{event_with_payload(nested(32), 1)},{event_with_payload(nested(33), 2)}]")
    assert isinstance(items[0], Event)
    assert_rejected(items[1], ErrorCode.TOO_DEEP, 2, 1)


def test_payload_one_level_too_deep_is_rejected_as_single_frame() -> None:
    """A payload one level deeper than max_json_depth is too_deep alone, just as in a batch."""
    assert_rejected(one(event_with_payload(nested(33))), ErrorCode.TOO_DEEP, 2, None)


def test_depth_limit_follows_settings() -> None:
    """The depth limit is Settings.max_json_depth, not a constant."""
    settings = Settings(max_json_depth=4)
    assert isinstance(one(event_with_payload(nested(3)), settings), Event)
    assert_rejected(one(event_with_payload(nested(10)), settings), ErrorCode.TOO_DEEP, 2, None)


def test_nesting_beyond_the_parser_limit_is_too_deep() -> None:
    """Nesting deep enough to exhaust the JSON parser is rejected as too_deep, never raised."""
    text = event_with_payload(nested(5000), seq=5)
    item = one(text)
    assert isinstance(item, Rejected)
    assert item.code is ErrorCode.TOO_DEEP
    items = decode(f"[{FIRST},{text},{LAST}]")
    assert [type(item) for item in items] == [Event, Rejected, Log]
    assert (items[1].code, items[1].index) == (ErrorCode.TOO_DEEP, 1)


def test_nesting_beyond_the_parser_limit_reports_seq() -> None:
    """A message too deep for the parser still reports its readable seq, so no false gap follows."""
    assert_rejected(one(event_with_payload(nested(5000), seq=5)), ErrorCode.TOO_DEEP, 5, None)


def test_int64_bounds_in_payload_are_accepted() -> None:
    """Integers exactly at the int64 bounds are valid payload values."""
    item = one(event_with_payload('{"hi":9223372036854775807,"lo":-9223372036854775808}'))
    assert isinstance(item, Event)
    assert msgspec.json.decode(item.payload) == {"hi": 2**63 - 1, "lo": -(2**63)}


def test_seq_beyond_int64_is_rejected_without_seq() -> None:
    """A seq beyond int64 is rejected, reports no seq, and leaves its batch intact."""
    text = '{"kind":"bye","seq":9223372036854775808}'
    item = one(text)
    assert isinstance(item, Rejected)
    assert item.seq is None
    items = decode(f"[{FIRST},{text},{LAST}]")
    assert [type(item) for item in items] == [Event, Rejected, Log]
    assert (items[1].seq, items[1].index) == (None, 1)


def test_seq_beyond_int64_is_bad_number() -> None:
    """An integer beyond int64 is bad_number in seq, as it is in a payload."""
    assert one('{"kind":"bye","seq":9223372036854775808}').code is ErrorCode.BAD_NUMBER


def test_seq_below_one_is_rejected() -> None:
    """seq starts at 1; zero is not a valid seq and is not reported as one."""
    assert_rejected(one('{"kind":"bye","seq":0}'), ErrorCode.BAD_MESSAGE, None, None)


def test_valid_surrogate_pair_is_accepted() -> None:
    """A properly paired surrogate escape decodes to the astral character."""
    item = one('{"kind":"log","seq":1,"message":"\\ud83d\\ude00"}')
    assert isinstance(item, Log)
    assert item.message == "\U0001f600"


def test_raw_lone_surrogate_character_is_rejected() -> None:
    """A str frame holding an unpaired surrogate code point is rejected as bad_json, not raised."""
    text = '{"kind":"log","seq":2,"message":"\ud800"}'
    assert_rejected(one(text), ErrorCode.BAD_JSON, 2, None)
    items = decode(f"[{FIRST},{text},{LAST}]")
    assert [type(item) for item in items] == [Event, Rejected, Log]


def test_long_log_line_is_truncated_with_marker() -> None:
    """A log message over max_log_line_bytes is cut, marked with the bytes removed, and counted."""
    decoder = FrameDecoder(Settings(max_log_line_bytes=10))
    [item] = decoder.decode(msg(kind="log", seq=1, message="0123456789abcdef"), NOW).items
    assert isinstance(item, Log)
    assert item.message == "0123456789… [truncated 6 bytes]"
    assert decoder.drops["log_truncated"] == 1


def test_log_line_at_the_limit_is_kept_whole() -> None:
    """A log message of exactly max_log_line_bytes is not truncated or counted."""
    decoder = FrameDecoder(Settings(max_log_line_bytes=10))
    [item] = decoder.decode(msg(kind="log", seq=1, message="0123456789"), NOW).items
    assert item.message == "0123456789"
    assert decoder.drops["log_truncated"] == 0


def test_multibyte_log_line_is_cut_on_a_character_boundary() -> None:
    """Truncation counts UTF-8 bytes and never splits a multi-byte character."""
    decoder = FrameDecoder(Settings(max_log_line_bytes=10))
    [item] = decoder.decode(msg(kind="log", seq=1, message="€€€€", exc="éééééé"), NOW).items
    assert item.message == "€€€… [truncated 3 bytes]"
    assert item.exc == "ééééé… [truncated 2 bytes]"
    assert decoder.drops["log_truncated"] == 2


def test_log_truncation_inside_batch_is_counted() -> None:
    """Long log lines in a batch are truncated and counted in the shared drops counter."""
    drops: Counter[str] = Counter()
    decoder = FrameDecoder(Settings(max_log_line_bytes=8), drops)
    frame = json.dumps([{"kind": "log", "seq": seq, "message": "y" * 20} for seq in (1, 2, 3)])
    items = decoder.decode(frame, NOW).items
    assert [item.message for item in items] == ["yyyyyyyy… [truncated 12 bytes]"] * 3
    assert drops["log_truncated"] == 3
    assert decoder.drops is drops


@pytest.mark.parametrize("engine", ["bad name!", "a" * 65, "", "fno/live", "ünï"])
def test_invalid_engine_name_is_rejected(engine: str) -> None:
    """A hello whose engine name is outside [A-Za-z0-9_.-]{1,64} is bad_message."""
    assert_rejected(one(msg(kind="hello", engine=engine)), ErrorCode.BAD_MESSAGE, None, None)


@pytest.mark.parametrize("engine", ["fno", "a" * 64, "eq_1.live-2"])
def test_valid_engine_name_is_accepted(engine: str) -> None:
    """Engine names of allowed characters up to 64 long are accepted."""
    item = one(msg(kind="hello", engine=engine, mode="live", pid=3596, boot_id="b-1"))
    assert isinstance(item, Hello)
    assert (item.engine, item.mode, item.pid, item.boot_id) == (engine, "live", 3596, "b-1")


@pytest.mark.parametrize("name", ["bad name", "m" * 129, "", "a/b", "é"])
def test_invalid_metric_name_is_rejected(name: str) -> None:
    """Metric names outside [A-Za-z0-9_.:-]{1,128} are bad_message with the seq reported."""
    text = msg(kind="metric", seq=4, op="inc", name=name)
    assert_rejected(one(text), ErrorCode.BAD_MESSAGE, 4, None)


@pytest.mark.parametrize("name", ["m" * 128, "orders.filled:count-1_x"])
def test_valid_metric_name_is_accepted(name: str) -> None:
    """Metric names up to 128 allowed characters are accepted."""
    assert isinstance(one(msg(kind="metric", seq=4, op="inc", name=name)), Metric)


def test_more_than_15_tags_is_rejected() -> None:
    """A metric with 16 tags is rejected; 15 is the limit."""
    sixteen = {f"t{i}": "v" for i in range(16)}
    item = one(msg(kind="metric", seq=1, op="inc", name="a", tags=sixteen))
    assert_rejected(item, ErrorCode.BAD_MESSAGE, 1, None)
    assert "16" in item.detail
    fifteen = {f"t{i}": "v" for i in range(15)}
    accepted = one(msg(kind="metric", seq=1, op="inc", name="a", tags=fifteen))
    assert isinstance(accepted, Metric)
    assert accepted.tags == fifteen


def test_invalid_tag_key_is_rejected() -> None:
    """Tag keys must look like identifiers."""
    text = msg(kind="metric", seq=1, op="inc", name="a", tags={"1bad key": "v"})
    assert_rejected(one(text), ErrorCode.BAD_MESSAGE, 1, None)


def test_negative_values_are_fine_for_gauges_and_histograms() -> None:
    """Only counter increments must be non-negative; gauges and observations may be negative."""
    gauge = one(msg(kind="metric", seq=1, op="set", name="pnl", value=-12.5))
    observed = one(msg(kind="metric", seq=2, op="observe", name="slippage", value=-0.1))
    zero = one(msg(kind="metric", seq=3, op="inc", name="fills", value=0))
    assert isinstance(gauge, Metric) and gauge.value == -12.5
    assert isinstance(observed, Metric) and observed.value == -0.1
    assert isinstance(zero, Metric) and zero.value == 0.0


def test_timestamp_five_minutes_ahead_is_accepted() -> None:
    """Clock skew of 5 minutes is tolerated."""
    item = one(msg(kind="heartbeat", seq=1, ts=NOW + 300))
    assert isinstance(item, Heartbeat)
    assert item.ts == NOW + 300


def test_timestamp_at_the_future_limit_is_accepted() -> None:
    """A timestamp exactly max_future_seconds ahead is still accepted."""
    assert isinstance(one(msg(kind="heartbeat", seq=1, ts=NOW + 600)), Heartbeat)


@pytest.mark.parametrize("kind_fields", [{"kind": "bye"}, {"kind": "log", "message": "m"}])
def test_future_timestamp_is_rejected_for_every_kind(kind_fields: dict[str, str]) -> None:
    """A ts more than 10 minutes ahead is future_timestamp whatever the message kind."""
    item = one(json.dumps({**kind_fields, "seq": 6, "ts": NOW + 11 * 60}))
    assert_rejected(item, ErrorCode.FUTURE_TIMESTAMP, 6, None)
    assert "600" in item.detail


def test_future_limit_follows_settings() -> None:
    """max_future_seconds is configurable."""
    settings = Settings(max_future_seconds=10)
    assert one(msg(kind="bye", seq=1, ts=NOW + 11), settings).code is ErrorCode.FUTURE_TIMESTAMP


def test_timestamp_before_1970_is_rejected() -> None:
    """A negative Unix timestamp is bad_message."""
    assert_rejected(one(msg(kind="bye", seq=1, ts=-5)), ErrorCode.BAD_MESSAGE, 1, None)


def test_timestamps_older_than_max_past_seconds_are_accepted_and_flagged() -> None:
    """A 1970 timestamp (and one a month old) is kept as sent and counted as past_timestamp;
    one within max_past_seconds is not counted, in a lone message and in a batch alike."""
    decoder = FrameDecoder(SETTINGS)
    events = [
        {"kind": "event", "seq": i + 1, "type": "cycle", "ts": ts, "payload": {}}
        for i, ts in enumerate([86_400.0, NOW - 30 * 86400, NOW - 60])
    ]
    items = decoder.decode(json.dumps(events), NOW).items
    assert [item.ts for item in items if isinstance(item, Event)] == [e["ts"] for e in events]
    assert decoder.flagged["past_timestamp"] == 2
    decoder.decode(json.dumps({**events[0], "kind": "log", "message": "old"}), NOW)
    assert decoder.flagged["past_timestamp"] == 3
    assert SETTINGS.max_past_seconds < 30 * 86400  # the default really is shorter than a month


def test_reject_past_timestamps_refuses_old_ones_and_each_frame_says_how_many_were_odd() -> None:
    """With reject_past_timestamps a too-old ts is `past_timestamp` with the limit and a fix in
    the detail, not flagged; either way a frame counts its out-of-range timestamps (old kept,
    old refused, future refused) for its engine, and frames without any count none."""
    old, future, fine = NOW - 8 * 86400, NOW + 3600, NOW - 60
    frame = json.dumps(
        [
            {"kind": "event", "seq": i + 1, "type": "cycle", "ts": ts, "payload": {}}
            for i, ts in enumerate([old, future, fine, old])
        ]
    )
    keeping = FrameDecoder(SETTINGS)
    decoded = keeping.decode(frame, NOW)
    assert [type(item).__name__ for item in decoded.items] == [
        "Event",
        "Rejected",
        "Event",
        "Event",
    ]
    assert decoded.flagged == 3 and keeping.flagged["past_timestamp"] == 2
    refusing = FrameDecoder(Settings(reject_past_timestamps=True))
    decoded = refusing.decode(frame, NOW)
    first, _, third, fourth = decoded.items
    assert_rejected(first, ErrorCode.PAST_TIMESTAMP, 1, 0)
    assert_rejected(fourth, ErrorCode.PAST_TIMESTAMP, 4, 3)
    assert "691200 s in the past; the limit is 604800 s" in first.detail
    assert "clock" in first.detail and isinstance(third, Event)
    assert decoded.flagged == 3 and refusing.flagged["past_timestamp"] == 0
    assert refusing.decode(msg(kind="bye", seq=5, ts=fine), NOW).flagged == 0


@pytest.mark.parametrize(
    "iso",
    ["2023-11-14T22:13:20+00:00", "2023-11-14T22:13:20Z", "2023-11-15T03:43:20+05:30"],
)
def test_iso_timestamp_with_timezone_is_normalized(iso: str) -> None:
    """ISO-8601 timestamps with a timezone become Unix seconds."""
    item = one(msg(kind="event", seq=1, type="cycle", ts=iso))
    assert isinstance(item, Event)
    assert isinstance(item.ts, float)
    assert item.ts == NOW


def test_iso_timestamp_in_batch_is_normalized() -> None:
    """Timestamps are normalized on the fast batch path too."""
    items = decode(json.dumps([{"kind": "bye", "seq": 1, "ts": "2023-11-14T22:13:20Z"}]))
    assert items[0].ts == NOW


def test_iso_timestamp_far_ahead_is_rejected() -> None:
    """The future check applies to ISO timestamps after normalization."""
    item = one(msg(kind="event", seq=1, type="cycle", ts="2023-11-14T22:33:20+00:00"))
    assert_rejected(item, ErrorCode.FUTURE_TIMESTAMP, 1, None)


def test_hello_started_at_is_normalized() -> None:
    """The hello's ISO started_at becomes Unix seconds; a naive one is rejected."""
    hello = one(msg(kind="hello", engine="fno", started_at="2023-11-14T23:13:20+01:00"))
    assert isinstance(hello, Hello)
    assert hello.started_at == NOW
    naive = one(msg(kind="hello", engine="fno", started_at="2023-11-14T23:13:20"))
    assert_rejected(naive, ErrorCode.BAD_MESSAGE, None, None)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ('{"a": 1e999}', ErrorCode.BAD_NUMBER),
        ('{"a": 1E+400}', ErrorCode.BAD_NUMBER),
        ("[1, 2]", ErrorCode.BAD_MESSAGE),
        ('"text"', ErrorCode.BAD_MESSAGE),
    ],
    ids=["exponent", "signed_exponent", "array", "string"],
)
def test_raw_payload_is_still_validated(payload: str, code: ErrorCode) -> None:
    """Payloads are kept verbatim, yet out-of-range floats and non-objects are rejected."""
    decoder = FrameDecoder(Settings())
    text = f'{{"kind":"event","seq":7,"type":"x","payload":{payload}}}'
    [rejected] = decoder.decode(text, NOW).items
    assert isinstance(rejected, Rejected) and (rejected.code, rejected.seq) == (code, 7)


def test_a_batch_rejects_only_its_non_object_payloads() -> None:
    """On the batch fast path (a known type), a payload that is not an object is rejected by
    position; its neighbours, objects with or without spaces, are accepted."""
    decoder = FrameDecoder(Settings())
    payloads = ['{"a":1}', "[1,2]", '{ "b": 2 }', '"text"', "{}"]
    batch = ",".join(
        f'{{"kind":"event","seq":{n},"type":"cycle","payload":{p}}}'
        for n, p in enumerate(payloads, 1)
    )
    decoder.decode(f"[{batch}]", NOW)  # the first time makes "cycle" a known type
    out = decoder.decode(f"[{batch}]", NOW).items
    assert [type(m).__name__ for m in out] == ["Event", "Rejected", "Event", "Rejected", "Event"]
    assert [(r.code, r.seq, r.index) for r in out if isinstance(r, Rejected)] == [
        (ErrorCode.BAD_MESSAGE, 2, 1),
        (ErrorCode.BAD_MESSAGE, 4, 3),
    ]


def test_small_exponent_and_cached_type_are_accepted() -> None:
    """1e-400 is a valid (tiny) number, and a type name checked once stays valid."""
    decoder = FrameDecoder(Settings())
    for seq in (1, 2):
        [event] = decoder.decode(
            f'{{"kind":"event","seq":{seq},"type":"t.1","payload":{{"a":1e-400}}}}', NOW
        ).items
        assert isinstance(event, Event) and msgspec.json.decode(event.payload) == {"a": 0.0}
    [bad] = decoder.decode('{"kind":"event","seq":3,"type":"no spaces","payload":{}}', NOW).items
    assert isinstance(bad, Rejected) and bad.code is ErrorCode.BAD_MESSAGE


def test_decoded_frame_keeps_its_text_only_when_nothing_was_rewritten() -> None:
    """`Decoded.text` is the frame as sent while every message is as sent; an ISO time drops it."""
    decoder = FrameDecoder(Settings())
    plain = json.dumps([{"kind": "event", "seq": s, "type": "cycle", "ts": NOW} for s in (1, 2)])
    decoded = decoder.decode(plain, NOW)
    assert decoded.batch and decoded.text == plain.encode()
    iso = json.dumps([{"kind": "event", "seq": 3, "type": "cycle", "ts": "2023-11-14T22:13:20Z"}])
    decoded = decoder.decode(iso, NOW)
    assert decoded.text is None and isinstance(decoded.items[0], Event)
    lone = json.dumps({"kind": "event", "seq": 4, "type": "cycle"})
    decoded = decoder.decode(lone, NOW)
    assert not decoded.batch and decoded.text == lone.encode()
    split = json.dumps([{"kind": "event", "seq": 5, "type": "cycle"}, {"kind": "nope"}])
    decoded = decoder.decode(split, NOW)
    assert decoded.text is None and isinstance(decoded.items[1], Rejected)


def test_a_lone_message_and_a_batch_apply_the_same_event_rules() -> None:
    """Every event rule rejects the same message alone and inside a batch, with the same reason."""
    bad = [
        {"kind": "event", "seq": 1, "type": "no spaces", "payload": {}},
        {"kind": "event", "seq": 1, "type": "t", "payload": [1]},
        {"kind": "event", "seq": 1, "type": "t", "ts": NOW + 3600},
        {"kind": "event", "seq": 1, "type": "t", "ts": -5.0},
    ]
    for message in bad:
        decoder = FrameDecoder(Settings())
        decoder.decode(json.dumps({"kind": "event", "seq": 9, "type": "t"}), NOW)  # "t" is known
        [alone] = decoder.decode(json.dumps(message), NOW).items
        [inside] = decoder.decode(json.dumps([message]), NOW).items
        assert isinstance(alone, Rejected) and isinstance(inside, Rejected), message
        assert (alone.code, alone.detail) == (inside.code, inside.detail), message
        assert (alone.index, inside.index) == (None, 0)
