"""Remote ingest and cluster entries, sans-I/O: another node's entries applied to a HubState."""

from __future__ import annotations

import itertools
import json

import pytest

from hub.core.decoding import FrameDecoder
from hub.core.entries import Entry, EntryKind, decode_entry, stream_id, supersedes
from hub.core.ingested import Ingested
from hub.core.messages import Hello
from hub.core.remote import RemoteIngest
from hub.core.state import HubState
from hub.settings import Settings, SettingsError, redacted_url

T0 = 1_700_000_000.0


def remote_node() -> tuple[HubState, RemoteIngest]:
    settings = Settings()
    state = HubState(settings)
    ids = itertools.count(1000)
    return state, RemoteIngest(state, FrameDecoder(settings, state.stats.drops), lambda: next(ids))


def hello(engine: str = "fno", boot: str = "b1", conn: int = 7, node: str = "a") -> Entry:
    data = json.dumps({"kind": "hello", "engine": engine, "mode": "live", "boot_id": boot})
    return Entry(EntryKind.HELLO, node, engine, boot, conn, 0, data)


def frame(*seqs: int, engine: str = "fno", boot: str = "b1", conn: int = 7) -> Entry:
    batch = [{"kind": "event", "seq": s, "type": "cycle", "payload": {"n": s}} for s in seqs]
    return Entry(EntryKind.FRAME, "a", engine, boot, conn, max(seqs), json.dumps(batch))


def test_entries_round_trip_through_stream_fields() -> None:
    """What `fields()` writes, `decode_entry` reads back (as Redis returns it: bytes)."""
    entry = frame(1, 2)
    raw = {k.encode(): v.encode() for k, v in entry.fields().items()}
    assert decode_entry(raw) == entry


def test_a_malformed_entry_is_a_value_error() -> None:
    """Missing fields or an unknown kind: ValueError with the reason, never a crash."""
    with pytest.raises(ValueError):
        decode_entry({b"k": b"f"})
    with pytest.raises(ValueError):
        decode_entry({**{k: "0" for k in "nebcsd"}, "k": "zz"})


def test_the_later_hello_in_the_stream_supersedes() -> None:
    """Stream ids order claims; a local hello not yet in the stream is the later one."""
    assert supersedes(stream_id(b"5-1"), stream_id("5-0"))
    assert not supersedes((4, 9), (5, 0))
    assert not supersedes((9, 9), None)


def test_remote_frames_are_deduplicated_and_count_as_committed() -> None:
    """A frame replayed on another node adds only its new seqs; the stream is the commit."""
    state, remote = remote_node()
    remote.apply(hello(), T0)
    first = remote.apply(frame(1, 2, 3), T0).ingested
    again = remote.apply(frame(2, 3, 4), T0).ingested
    assert first is not None and again is not None
    assert [e.seq for e in first.events] == [1, 2, 3]
    assert [e.seq for e in again.events] == [4]
    record = state.engines["fno"]
    assert record.committed == record.hwm == 4 and record.mode == "live" and record.connected


def test_a_frame_of_an_unseen_boot_registers_it() -> None:
    """A frame whose hello was trimmed away still lands (its boot registered), never dropped."""
    state, remote = remote_node()
    out = remote.apply(frame(1, boot="b9"), T0).ingested
    assert out is not None and [e.seq for e in out.events] == [1]
    assert state.engines["fno"].boot_id == "b9"


def test_a_remote_close_marks_the_engine_offline_unless_it_moved() -> None:
    """Close of node a's socket: offline; after a newer hello from node b, a's close is ignored."""
    state, remote = remote_node()
    remote.apply(hello(conn=7), T0)
    remote.apply(hello(conn=3, node="b"), T0)
    closed = Entry(EntryKind.CLOSE, "a", "fno", "b1", 7)
    assert remote.apply(closed, T0).ingested is None
    assert state.engines["fno"].connected
    remote.apply(Entry(EntryKind.CLOSE, "b", "fno", "b1", 3), T0)
    assert not state.engines["fno"].connected


def test_a_remote_hello_reports_the_connection_it_replaces() -> None:
    """The local socket a later remote hello supersedes is named, so the shell can close it."""
    state, remote = remote_node()
    state.hello(Hello(engine="fno", boot_id="b1"), 1, T0, Ingested())  # this node's socket 1
    assert remote.apply(hello(node="b", conn=3), T0).replaced == 1


def test_cluster_url_is_checked_and_its_password_never_shown() -> None:
    """A bad cluster_url names the fix; the password is masked in every message."""
    assert redacted_url("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    with pytest.raises(SettingsError) as bad:
        Settings(cluster_url="redis://:pw@h:port/0")
    assert "pw" not in str(bad.value) and "redis://HOST:PORT/DB" in str(bad.value)
    with pytest.raises(SettingsError):
        Settings(cluster_url="http://h/0")
    with pytest.raises(SettingsError):
        Settings(node_id="has space")
