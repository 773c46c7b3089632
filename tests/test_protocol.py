"""EngineConnection, sans-I/O: the hello handshake, welcome, error replies and acks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hub import __version__
from hub.core.access import EngineToken
from hub.core.decoding import FrameDecoder, ProtocolClose
from hub.core.engines import Health
from hub.core.protocol import ConnectionPhase, EngineConnection, TokenRefused
from hub.core.state import HubState
from hub.settings import Settings

T0 = 1_700_000_000.0
HELLO = {"kind": "hello", "engine": "fno", "mode": "paper", "pid": 3596, "boot_id": "boot-1"}
FNO_PAPER = EngineToken("1" * 64, ("fno*",), ("paper",), "fno paper")


def frame(*messages: dict[str, Any]) -> str:
    """One message as an object, several as a batch."""
    return json.dumps(messages[0] if len(messages) == 1 else list(messages))


def event(seq: int, type: str = "signal_event") -> dict[str, Any]:
    return {"kind": "event", "seq": seq, "type": type, "payload": {"n": seq}}


def sent(conn: EngineConnection) -> list[dict[str, Any]]:
    """Decode everything the connection wants to send now."""
    return [json.loads(text) for text in conn.data_to_send()]


def make(
    settings: Settings | None = None, grant: EngineToken | None = None
) -> tuple[EngineConnection, HubState]:
    """A fresh connection (id 1) on a fresh hub state, admitting what `grant` admits (or anything)."""
    settings = settings or Settings()
    state = HubState(settings)
    decoder = FrameDecoder(settings, state.stats.drops)
    if grant is None:
        return EngineConnection(1, state, decoder), state
    return EngineConnection(1, state, decoder, grant), state


def opened(settings: Settings | None = None) -> tuple[EngineConnection, HubState]:
    """A connection that said hello, with the welcome already taken."""
    conn, state = make(settings)
    conn.receive_text(frame(HELLO), T0)
    sent(conn)
    return conn, state


def test_messages_before_hello_get_hello_required() -> None:
    """Frames before hello are answered with hello_required and change no engine state."""
    conn, state = make()
    assert conn.receive_text(frame(event(1)), T0) is None
    [reply] = sent(conn)
    assert reply["kind"] == "error"
    assert (reply["code"], reply["seq"]) == ("hello_required", 1)
    assert "hello" in reply["detail"]
    assert conn.phase is ConnectionPhase.AWAITING_HELLO
    assert conn.engine is None
    assert state.engines == {}
    assert state.rings.recent(10) == []
    assert not any(state.stats.messages.values())
    assert state.stats.rejected["hello_required"] == 1


def test_batch_before_hello_reports_each_index() -> None:
    """Every message of a pre-hello batch gets its own hello_required with its index."""
    conn, _ = make()
    conn.receive_text(frame(event(1), {"kind": "log", "seq": 2, "message": "m"}), T0)
    replies = sent(conn)
    assert [(r["code"], r["seq"], r["index"]) for r in replies] == [
        ("hello_required", 1, 0),
        ("hello_required", 2, 1),
    ]


def test_invalid_frame_before_hello_reports_its_own_error() -> None:
    """A malformed pre-hello frame is answered with the decoder's code, not hello_required."""
    conn, _ = make()
    conn.receive_text("not json", T0)
    [reply] = sent(conn)
    assert reply["code"] == "bad_json"
    assert conn.engine is None


def test_invalid_hello_is_rejected() -> None:
    """A hello with a bad engine name is rejected and the connection keeps waiting for hello."""
    conn, _ = make()
    conn.receive_text(frame({**HELLO, "engine": "bad name!"}), T0)
    [reply] = sent(conn)
    assert reply["code"] == "bad_message"
    assert conn.phase is ConnectionPhase.AWAITING_HELLO
    conn.receive_text(frame(HELLO), T0)
    assert conn.phase is ConnectionPhase.OPEN


def test_hello_sends_welcome() -> None:
    """hello opens the connection and queues a welcome with last_seq and the limits."""
    settings = Settings(max_message_bytes=1000, max_frame_bytes=5000, ack_interval=0.25)
    conn, state = make(settings)
    ingested = conn.receive_text(frame(HELLO), T0)
    assert ingested is not None and ingested.events == []
    assert conn.phase is ConnectionPhase.OPEN
    assert sent(conn) == [
        {
            "kind": "welcome",
            "hub": __version__,
            "engine": "fno",
            "boot_id": "boot-1",
            "last_seq": 0,
            "ack_interval": 0.25,
            "max_message_bytes": 1000,
            "max_frame_bytes": 5000,
        }
    ]
    assert state.engines["fno"].connected


def test_welcome_last_seq_is_the_committed_seq() -> None:
    """A reconnect of the same boot is welcomed with the highest seq the store made durable."""
    settings = Settings()
    state = HubState(settings)
    first = EngineConnection(1, state, FrameDecoder(settings))
    first.receive_text(frame(HELLO, event(1), event(2), event(3)), T0)
    early = EngineConnection(2, state, FrameDecoder(settings))
    early.receive_text(frame(HELLO), T0 + 1)
    [welcome] = sent(early)
    assert welcome["last_seq"] == 0  # received, not yet stored: the client must keep them
    assert early.replaced == 1
    state.engines["fno"].committed = 3  # what the store's commit callback records
    second = EngineConnection(3, state, FrameDecoder(settings))
    second.receive_text(frame(HELLO), T0 + 2)
    [welcome] = sent(second)
    assert welcome["last_seq"] == 3
    assert second.data_to_send() == []  # 3 is acked by the welcome already
    state.engines["fno"].committed = 4
    assert sent(second) == [{"kind": "ack", "seq": 4}]


def test_hello_and_messages_in_one_batch() -> None:
    """A batch [hello, event, log] opens the connection and ingests the rest in order."""
    conn, state = make()
    ingested = conn.receive_text(
        frame(HELLO, event(1), {"kind": "log", "seq": 2, "message": "m"}), T0
    )
    assert ingested is not None
    assert [record.seq for record in ingested.events] == [1]
    assert [log.seq for log in ingested.logs] == [2]
    assert [m["kind"] for m in sent(conn)] == ["welcome"]
    assert state.engines["fno"].hwm == 2


def test_messages_before_hello_in_a_batch_are_not_ingested() -> None:
    """In [event, hello, event] the first event gets hello_required; the last is ingested."""
    conn, _ = make()
    ingested = conn.receive_text(frame(event(1), HELLO, event(2)), T0)
    assert ingested is not None
    assert [record.seq for record in ingested.events] == [2]
    replies = sent(conn)
    assert [r["kind"] for r in replies] == ["error", "welcome"]
    assert (replies[0]["code"], replies[0]["index"]) == ("hello_required", 0)


def test_error_reply_shape() -> None:
    """A rejected message is answered with kind, code, detail, seq and index."""
    conn, _ = opened()
    nan = '{"kind":"metric","seq":2,"op":"set","name":"g","value":NaN}'
    conn.receive_text(f"[{frame(event(1))},{nan}]", T0)
    [reply] = sent(conn)
    assert set(reply) == {"kind", "code", "detail", "seq", "index"}
    assert (reply["kind"], reply["code"], reply["seq"], reply["index"]) == (
        "error",
        "bad_number",
        2,
        1,
    )
    assert "NaN" in reply["detail"]


def test_state_level_rejection_is_replied() -> None:
    """Rejections from the hub state (a metric kind conflict) are replied with their seq."""
    conn, _ = opened()
    conn.receive_text(
        frame(
            {"kind": "metric", "seq": 1, "op": "inc", "name": "x"},
            {"kind": "metric", "seq": 2, "op": "set", "name": "x", "value": 3},
        ),
        T0,
    )
    [reply] = sent(conn)
    assert (reply["code"], reply["seq"]) == ("metric_conflict", 2)


def test_second_hello_is_already_hello() -> None:
    """A hello after the handshake is answered with already_hello."""
    conn, _ = opened()
    conn.receive_text(frame(HELLO), T0)
    [reply] = sent(conn)
    assert reply["code"] == "already_hello"


def test_ack_only_when_committed_advances() -> None:
    """data_to_send emits an ack once per advance of committed, never a repeat."""
    conn, state = opened()
    conn.receive_text(frame(event(1), event(2)), T0)
    assert conn.data_to_send() == []
    state.engines["fno"].committed = 2  # what the store's commit callback records
    assert sent(conn) == [{"kind": "ack", "seq": 2}]
    assert conn.data_to_send() == []
    state.engines["fno"].committed = 5
    assert sent(conn) == [{"kind": "ack", "seq": 5}]


def test_a_replaced_socket_never_acks_the_newer_boot() -> None:
    """Committed seqs of the engine's next boot are not acked on the socket of the old one."""
    conn, state = opened()
    newer = EngineConnection(9, state, FrameDecoder(state.settings))
    newer.receive_text(frame({**HELLO, "boot_id": "boot-2"}), T0 + 1)
    state.engines["fno"].committed = 7
    assert conn.data_to_send() == []
    assert [m["kind"] for m in sent(newer)] == ["welcome", "ack"]


def test_replies_come_before_the_ack() -> None:
    """Error replies queued for a frame are sent before the ack that covers it."""
    conn, state = opened()
    conn.receive_text(frame(event(1), {"kind": "bogus", "seq": 2}), T0)
    state.engines["fno"].committed = 2
    assert [m["kind"] for m in sent(conn)] == ["error", "ack"]


def test_pending_replies_are_bounded() -> None:
    """Past max_pending_replies unsent error replies, further ones are dropped and counted."""
    conn, state = opened(Settings(max_pending_replies=3))
    conn.receive_text(frame(*({"kind": "bogus", "seq": seq} for seq in range(1, 8))), T0)
    replies = sent(conn)
    assert [r["seq"] for r in replies] == [1, 2, 3]
    assert state.stats.drops["error_reply"] == 4
    assert state.stats.rejected["unknown_kind"] == 7
    conn.receive_text(frame({"kind": "bogus", "seq": 8}), T0)
    assert [r["seq"] for r in sent(conn)] == [8]


def test_binary_frame_is_fatal() -> None:
    """receive_bytes always raises ProtocolClose 1003."""
    conn, _ = make()
    with pytest.raises(ProtocolClose) as info:
        conn.receive_bytes(b"\x00\x01")
    assert info.value.code == 1003


def test_too_many_engines_closes_with_1008() -> None:
    """A hello that finds every engine slot connected closes the socket with 1008."""
    settings = Settings(max_engines=1)
    state = HubState(settings)
    EngineConnection(1, state, FrameDecoder(settings)).receive_text(frame(HELLO), T0)
    other = EngineConnection(2, state, FrameDecoder(settings))
    with pytest.raises(ProtocolClose) as info:
        other.receive_text(frame({**HELLO, "engine": "equity"}), T0)
    assert info.value.code == 1008
    assert "max_engines" in info.value.reason


def test_close_turns_engine_offline() -> None:
    """closed() marks the engine offline unless a newer connection replaced it."""
    settings = Settings()
    state = HubState(settings)
    old = EngineConnection(1, state, FrameDecoder(settings))
    old.receive_text(frame(HELLO), T0)
    new = EngineConnection(2, state, FrameDecoder(settings))
    new.receive_text(frame(HELLO), T0)
    assert old.closed(T0 + 1) is None  # replaced: its boot goes on on the new socket
    assert state.engines["fno"].connected
    ended = new.closed(T0 + 2)
    assert ended is not None and [(b.engine, b.ended, b.how) for b in ended.boots] == [
        ("fno", T0 + 2, "disconnected")
    ]
    assert [(c.engine, c.health) for c in state.refresh(T0 + 2)] == [("fno", Health.OFFLINE)]


def test_frames_are_counted() -> None:
    """Every text frame counts in stats.frames, before and after hello."""
    conn, state = make()
    conn.receive_text(frame(event(1)), T0)
    conn.receive_text(frame(HELLO), T0)
    conn.receive_text(frame(event(1)), T0)
    assert state.stats.frames == 3


def test_a_paper_token_cannot_say_hello_as_a_live_engine() -> None:
    """A hello in a mode the token does not admit closes 1008 before it touches any state."""
    conn, state = make(grant=FNO_PAPER)
    with pytest.raises(TokenRefused) as info:
        conn.receive_text(frame({**HELLO, "mode": "LIVE"}), T0)
    assert info.value.code == 1008
    assert info.value.reason == "this token does not admit mode 'LIVE' (it admits paper)"
    assert conn.phase is ConnectionPhase.AWAITING_HELLO and conn.engine is None
    assert state.engines == {} and state.stats.messages["hello"] == 0
    assert state.dirty.drain() == set()
    assert state.stats.drops["token_refused"] == 1
    assert sent(conn) == []  # no welcome


def test_a_token_cannot_speak_as_another_engine_nor_replace_it() -> None:
    """A hello naming an engine outside the token's globs leaves that engine's live socket alone."""
    settings = Settings()
    state = HubState(settings)
    equity = EngineConnection(1, state, FrameDecoder(settings))
    equity.receive_text(frame({**HELLO, "engine": "equity", "mode": "live", "pid": 1}), T0)
    record = state.engines["equity"]
    before = (record.connected, record.conn_id, record.mode, record.pid, record.boot_id)
    state.dirty.drain()
    intruder = EngineConnection(2, state, FrameDecoder(settings), FNO_PAPER)
    with pytest.raises(TokenRefused) as info:
        intruder.receive_text(frame({**HELLO, "engine": "equity", "boot_id": "boot-2"}), T0 + 1)
    assert "does not admit engine 'equity' (it admits fno*)" in info.value.reason
    assert intruder.replaced is None
    assert (record.connected, record.conn_id, record.mode, record.pid, record.boot_id) == before
    assert record.replaced == 0 and state.stats.drops["replaced_connection"] == 0
    assert state.dirty.drain() == set()


def test_a_token_admits_the_engines_and_modes_it_names() -> None:
    """A hello the grant admits is welcomed as usual; a batch refused at hello ingests nothing."""
    conn, state = make(grant=FNO_PAPER)
    ingested = conn.receive_text(frame({**HELLO, "engine": "fno-2"}, event(1)), T0)
    assert ingested is not None and len(ingested.events) == 1
    assert conn.phase is ConnectionPhase.OPEN and sent(conn)[0]["kind"] == "welcome"
    assert state.engines["fno-2"].mode == "paper"
    refused, other = make(grant=FNO_PAPER)
    with pytest.raises(TokenRefused):
        refused.receive_text(frame({**HELLO, "engine": "options"}, event(1)), T0)
    assert other.engines == {} and other.rings.recent(10) == []


LIMITED = Settings(engine_messages_per_second=10, engine_message_burst=20, flood_close_after=5.0)


def test_the_resend_passes_once_the_promised_tokens_are_there_even_if_it_grew() -> None:
    """The resend after retry_after passes, even with more messages than the refused frame."""
    conn, state = opened(LIMITED)
    conn.receive_text(frame(*(event(s) for s in range(1, 21))), T0)  # the burst
    conn.receive_text(frame(*(event(s) for s in range(21, 26))), T0)  # refused: 5 promised
    [error] = [r for r in sent(conn) if r["kind"] == "error"]
    later = T0 + error["retry_after"]
    resend = conn.receive_text(frame(*(event(s) for s in range(21, 31))), later)  # 10 now
    assert resend is not None and len(resend.events) == 10 and state.engines["fno"].hwm == 30
    assert [r for r in sent(conn) if r["kind"] == "error"] == []


def test_a_frame_over_the_rate_is_refused_whole_with_a_retry_hint() -> None:
    """Over the limit: nothing of the frame is ingested; one rate_limited error says when and where."""
    conn, state = opened(LIMITED)
    assert conn.receive_text(frame(*(event(s) for s in range(1, 21))), T0) is not None
    refused = conn.receive_text(frame(*(event(s) for s in range(21, 26))), T0)
    assert refused is not None and not refused.events and not refused.engine
    [error] = [r for r in sent(conn) if r["kind"] == "error"]
    assert error["code"] == "rate_limited"
    assert error["seq"] is None  # an older client must not forget the message
    assert error["resume_seq"] == 21
    assert error["retry_after"] == pytest.approx(0.5)
    # The limits, so that the client can pace itself below them (hub/client/pacing.py).
    assert error["messages_per_second"] == 10
    assert error["bytes_per_second"] == LIMITED.engine_bytes_per_second
    engine = state.engines["fno"]
    assert engine.hwm == 20 and engine.rate_limited == 5
    assert state.stats.drops["rate_limited"] == 5
    assert engine.as_dict(T0, LIMITED)["rate_limited"] == 5


def test_nothing_after_a_refused_frame_is_taken_before_its_resend() -> None:
    """A later frame is refused until the refused seqs come again: rate limits never make gaps."""
    conn, state = opened(LIMITED)
    conn.receive_text(frame(*(event(s) for s in range(1, 21))), T0)
    conn.receive_text(frame(event(21), event(22)), T0)  # refused: resume from 21
    later = conn.receive_text(frame(event(23)), T0 + 2)  # tokens enough, but it would skip 21
    assert later is not None and not later.events
    assert [r.get("resume_seq") for r in sent(conn)] == [21, 21]
    resend = conn.receive_text(frame(event(21), event(22), event(23)), T0 + 2)
    assert resend is not None and [r.seq for r in resend.events] == [21, 22, 23]
    assert state.engines["fno"].gaps == 0
    assert conn.receive_text(frame(event(24)), T0 + 2) is not None
    assert state.engines["fno"].hwm == 24


def test_a_frame_the_held_bucket_cannot_take_is_refused_undecoded() -> None:
    """During a hold with an empty bucket a frame is refused unread: no decoding, no decode error."""
    conn, state = opened(LIMITED)
    conn.receive_text(frame(*(event(s) for s in range(1, 21))), T0)
    conn.receive_text(frame(event(21)), T0)  # refused (decoded): the hold starts at 21
    sent(conn)
    refused = conn.receive_text("{not json", T0 + 0.01)  # a decoder would reply invalid_json
    assert refused is not None and not refused.events
    [error] = sent(conn)
    assert error["code"] == "rate_limited" and error["resume_seq"] == 21
    assert state.stats.drops["rate_limited_frames"] == 1 and state.engines["fno"].rate_limited == 1
    resend = conn.receive_text(frame(event(21)), T0 + 0.2)  # refilled: read and taken
    assert resend is not None and [r.seq for r in resend.events] == [21]


def test_an_engine_that_ignores_the_hint_is_closed_with_1008() -> None:
    """Refused without one accepted frame for flood_close_after seconds: close 1008, counted."""
    conn, state = opened(LIMITED)
    conn.receive_text(frame(*(event(s) for s in range(1, 21))), T0)
    seq = 21
    for step in range(100):  # keeps sending new seqs, never the refused ones again
        now = T0 + step * 0.1
        if now - T0 >= 5.0:
            with pytest.raises(ProtocolClose) as closed:
                conn.receive_text(frame(event(seq)), now)
            assert closed.value.code == 1008 and "rate limit" in closed.value.reason
            assert state.stats.drops["flood_closed"] == 1
            return
        conn.receive_text(frame(event(seq)), now)
        seq += 1
    raise AssertionError("never closed")


def test_an_engine_that_honours_the_hint_is_never_closed() -> None:
    """Publishing above the limit but resending after each hint keeps the socket open, no gaps."""
    conn, state = opened(LIMITED)
    now, next_seq, pending = T0, 1, list(range(1, 21))
    for _ in range(200):  # about 20 s of an engine that always has 5 more to send
        batch = pending + list(range(next_seq + len(pending), next_seq + len(pending) + 5))
        result = conn.receive_text(frame(*(event(s) for s in batch)), now)
        errors = [r for r in sent(conn) if r["kind"] == "error"]
        if errors:
            now += errors[-1]["retry_after"]
            pending = batch
        else:
            assert result is not None and len(result.events) == len(batch)
            next_seq, pending = batch[-1] + 1, []
            now += 0.05
    engine = state.engines["fno"]
    assert engine.gaps == 0 and engine.hwm == next_seq - 1 and engine.rate_limited > 0


def test_bad_frames_in_a_row_close_with_1008() -> None:
    """N frames whose every message is rejected close the socket; a good frame resets the count."""
    conn, state = opened(Settings(max_bad_frames_in_a_row=3))
    conn.receive_text("{not json", T0)
    conn.receive_text("{not json", T0)
    conn.receive_text(frame(event(1)), T0)  # a good one in between
    conn.receive_text("{not json", T0)
    conn.receive_text("[1, 2]", T0)
    with pytest.raises(ProtocolClose) as closed:
        conn.receive_text("{not json", T0)
    assert closed.value.code == 1008
    assert "3 frames in a row" in closed.value.reason and "bad_json" in closed.value.reason
    assert state.stats.drops["bad_frames_closed"] == 1


def test_bad_frames_before_hello_also_close() -> None:
    """An endless stream without hello is closed after N frames, not answered forever."""
    conn, _ = make(Settings(max_bad_frames_in_a_row=2))
    conn.receive_text(frame(event(1)), T0)
    with pytest.raises(ProtocolClose, match="no hello"):
        conn.receive_text(frame(event(2)), T0)


def test_the_bucket_is_the_engines_not_the_sockets() -> None:
    """Reconnecting does not refill an engine's bucket."""
    conn, state = opened(LIMITED)
    conn.receive_text(frame(*(event(s) for s in range(1, 21))), T0)
    decoder = FrameDecoder(LIMITED, state.stats.drops)
    again = EngineConnection(2, state, decoder)
    again.receive_text(frame(HELLO), T0)
    refused = again.receive_text(frame(event(21)), T0)
    assert refused is not None and not refused.events
