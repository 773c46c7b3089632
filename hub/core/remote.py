"""Remote ingest, sans-I/O: entries other nodes published, applied to this node's `HubState`.

The same decoder validates a remote frame as a local one and the same `HubState.ingest` dedupes
it by (engine, boot_id, seq), so every node keeps the same history exactly once. What is in the
stream is in Redis, so it is committed: the welcome a node sends after a move says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from hub.core.decoding import FrameDecoder, Rejected
from hub.core.engines import EngineRecord
from hub.core.entries import Entry, EntryKind
from hub.core.ingested import Ingested
from hub.core.messages import EngineMessage, Hello
from hub.core.state import HubState, TooManyEngines
from hub.core.stats import Topic

__all__ = ["Applied", "RemoteIngest"]

_MAX_REMOTE_CONNS = 65_536  # (node, conn) pairs remembered; the oldest go first


@dataclass(slots=True)
class Applied:
    """What one remote entry changed: records to keep, the local connection it replaces."""

    ingested: Ingested | None = None
    replaced: int | None = None  # a connection id of this node the remote hello supersedes


class RemoteIngest:
    """Applies decoded stream entries of other nodes to `state` (every method takes `now`)."""

    def __init__(
        self, state: HubState, decoder: FrameDecoder, next_conn_id: Callable[[], int]
    ) -> None:
        self._state = state
        self._decoder = decoder
        self._next_conn_id = next_conn_id
        self._conns: dict[tuple[str, int], int] = {}  # (node, its conn id) -> a local conn id
        self._stored: Mapping[tuple[str, str], int] = {}  # (engine, boot) -> last stored seq

    def resume(self, stored: Mapping[tuple[str, str], int]) -> None:
        """What this node's store holds of each boot: a restarted node rereads the stream from
        its start, and a boot the state no longer tracks must not take those messages as new."""
        self._stored = stored

    def _resumed(self, engine: EngineRecord) -> None:
        stored = self._stored.get((engine.name, engine.boot_id), 0)
        if stored > engine.hwm:
            engine.hwm = stored

    def _local_conn(self, node: str, conn: int) -> int:
        key = (node, conn)
        found = self._conns.get(key)
        if found is None:
            if len(self._conns) >= _MAX_REMOTE_CONNS:
                del self._conns[next(iter(self._conns))]
            found = self._conns[key] = self._next_conn_id()
        return found

    def apply(self, entry: Entry, now: float) -> Applied:
        """Apply one entry of another node; a malformed or unusable one changes nothing."""
        match entry.kind:
            case EntryKind.HELLO:
                return self._hello(entry, now)
            case EntryKind.FRAME:
                return Applied(self._frame(entry, now))
            case EntryKind.CLOSE:
                return Applied(self._close(entry, now))

    def _hello(self, entry: Entry, now: float) -> Applied:
        items = self._decoder.decode(entry.data, now).items
        hello = items[0] if items else None
        if not isinstance(hello, Hello) or hello.engine != entry.engine:
            self._state.stats.drops["cluster_bad_entry"] += 1
            return Applied()
        out = Ingested()
        try:
            _, replaced = self._state.hello(
                hello, self._local_conn(entry.node, entry.conn), now, out
            )
        except TooManyEngines:
            self._state.stats.drops["cluster_engine_refused"] += 1
            return Applied()
        engine = self._state.engines[entry.engine]
        self._resumed(engine)
        engine.committed = max(engine.committed, engine.hwm)  # the stream is the commit
        return Applied(out, replaced)

    def _frame(self, entry: Entry, now: float) -> Ingested | None:
        state = self._state
        out = Ingested(entry.engine, entry.boot_id)
        engine = state.engines.get(entry.engine)
        if engine is None or engine.boot_id != entry.boot_id:
            # Its hello was trimmed away or this node missed it: register the boot the way its
            # hello would have (mode unknown), so its history is not silently lost.
            hello = Hello(engine=entry.engine, boot_id=entry.boot_id)
            try:
                state.hello(hello, self._local_conn(entry.node, entry.conn), now, out)
            except TooManyEngines:
                state.stats.drops["cluster_engine_refused"] += 1
                return None
            engine = state.engines[entry.engine]
            self._resumed(engine)
        elif not engine.connected and engine.conn_id == self._conns.get((entry.node, entry.conn)):
            # Its node was judged gone (node_gone) but is back: the socket never closed.
            engine.connected, engine.disconnected_at = True, None
            state.dirty.mark(Topic.ENGINE, engine.name)
        decoded = self._decoder.decode(entry.data, now)
        items: list[EngineMessage | Rejected] = [
            item for item in decoded.items if not isinstance(item, Hello)
        ]
        state.ingest(engine, items, now, None, out)
        engine.committed = max(engine.committed, engine.hwm)
        out.rejected.clear()  # the origin replied to its engine; nothing to reply here
        return out

    def node_gone(self, node: str, now: float) -> Ingested:
        """`node` stopped stamping itself alive: its engines go offline, except those that
        reconnected elsewhere since (their record names another connection)."""
        theirs = {local for (origin, _), local in self._conns.items() if origin == node}
        out = Ingested()
        for engine in self._state.engines.values():
            if engine.connected and engine.conn_id in theirs:
                self._state.disconnected(engine, engine.conn_id, now, out)
        return out

    def _close(self, entry: Entry, now: float) -> Ingested | None:
        engine = self._state.engines.get(entry.engine)
        conn = self._conns.get((entry.node, entry.conn))
        if engine is None or conn is None:
            return None
        out = Ingested()
        self._state.disconnected(engine, conn, now, out)
        return out if out.boots else None
