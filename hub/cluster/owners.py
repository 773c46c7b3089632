"""One socket per engine across the cluster: the latest hello in the stream wins, the older socket closes.

Stream order decides (`hub.core.entries.supersedes`): a hello entry goes into the stream through
`CLAIM_XADD`, which in the same atomic step sets `{prefix}owner:{engine}` to "node conn" and, when
that displaced another connection, PUBLISHes a notice on `{prefix}owners`. So the owner key always
names the latest hello in the stream, and the notice tells the displaced node at once, however far
behind its stream reader is (a node catching up on a long stream reads the hello late). A close
entry goes in through `RELEASE_XADD`, which removes the key only if it still names that socket.
Pub/sub loses notices while a node's subscription is down, so after every (re)subscription the node
re-reads the owner of each engine it holds and closes the sockets another node now owns.
`OwnerBook` and `Displaced` are the sans-I/O decisions; `OwnerClaims` is the shell.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from hub.cluster.backend import replaced_by
from hub.cluster.lease import NODE_ID

__all__ = [
    "CLAIM_XADD",
    "CONN_ID",
    "RELEASE_XADD",
    "Displaced",
    "Owner",
    "OwnerBook",
    "OwnerClaims",
    "replaced_by",
]

log = logging.getLogger(__name__)

CONN_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_ENGINE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_MAX_NOTICE = 1024  # bytes; a real notice is about 200

# KEYS: the owner key, the notice channel, the stream. ARGV: "node conn", engine, maxlen, fields...
# The claim and the hello's XADD in one step: claims are ordered exactly like the stream's hellos,
# so the notice and every node's stream reader name the same winner.
CLAIM_XADD = """
local previous = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1])
if previous and previous ~= ARGV[1] then
  redis.call('PUBLISH', KEYS[2], cjson.encode({engine = ARGV[2], old = previous, new = ARGV[1]}))
end
return redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
"""
# KEYS: the owner key, the stream. ARGV: "node conn", maxlen, fields... Compare-and-delete: a
# close that comes after a newer claim must not remove the newer owner.
RELEASE_XADD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
"""


@dataclass(frozen=True, slots=True)
class Owner:
    """Which node and connection hold an engine's socket."""

    node: str
    conn: str

    def encode(self) -> str:
        """The Redis value: "node conn" (neither may contain a space)."""
        return f"{self.node} {self.conn}"

    @classmethod
    def parse(cls, raw: str | bytes | None) -> Owner | None:
        """The owner a Redis value names, or None for anything malformed."""
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
        node, _, conn = (text or "").partition(" ")
        if NODE_ID.fullmatch(node) and CONN_ID.fullmatch(conn):
            return cls(node, conn)
        return None


class _Notice(msgspec.Struct, frozen=True):
    engine: str
    old: str
    new: str


_decode_notice = msgspec.json.Decoder(_Notice).decode


@dataclass(frozen=True, slots=True)
class Displaced:
    """A notice: `engine`'s connection `old` was replaced by `new`."""

    engine: str
    old: Owner
    new: Owner

    @classmethod
    def parse(cls, data: str | bytes) -> Displaced | None:
        """The notice in a pub/sub message, or None for anything malformed or oversized."""
        if len(data) > _MAX_NOTICE:
            return None
        try:
            notice = _decode_notice(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        old, new = Owner.parse(notice.old), Owner.parse(notice.new)
        if old is None or new is None or not _ENGINE.fullmatch(notice.engine):
            return None
        return cls(notice.engine, old, new)

    @property
    def reason(self) -> str:
        """The close reason the displaced socket gets."""
        return replaced_by(self.new.node)


class OwnerBook:
    """Sans-I/O: the engine sockets this node holds, and which notice closes which of them."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.held: dict[str, str] = {}  # engine -> conn id (bounded by the hub's connection limit)

    def claimed(self, engine: str, conn: str) -> None:
        """This node's connection `conn` now speaks for `engine`."""
        self.held[engine] = conn

    def released(self, engine: str, conn: str) -> bool:
        """`conn` closed; True if it was the one held (a replaced one was already forgotten)."""
        if self.held.get(engine) != conn:
            return False
        del self.held[engine]
        return True

    def displaced(self, notice: Displaced) -> str | None:
        """The connection to close for `notice` (forgotten here), or None if it is not ours."""
        old = notice.old
        if old.node != self.node_id or self.held.get(notice.engine) != old.conn:
            return None
        del self.held[notice.engine]
        return old.conn

    def lost(self, engine: str, current: Owner | None) -> str | None:
        """After a resubscription: the connection to close if Redis names another owner."""
        conn = self.held.get(engine)
        if conn is None or current is None or current == Owner(self.node_id, conn):
            return None  # no key (a claim that failed, or Redis lost it): claim it again
        del self.held[engine]
        return conn


OnDisplaced = Callable[[str, str, str], None]  # (engine, conn id, close reason)


class OwnerClaims:
    """Claims engine sockets for this node in Redis and closes the ones claimed elsewhere."""

    def __init__(
        self, redis: Redis, node_id: str, prefix: str = "engine-hub:", retry: float = 1.0
    ) -> None:
        if not NODE_ID.fullmatch(node_id):
            raise ValueError(f"node id {node_id!r} must match [A-Za-z0-9_.:-]{{1,128}}")
        self._redis = redis
        self._prefix = prefix
        self.channel = f"{prefix}owners"
        self.book = OwnerBook(node_id)
        self._retry = retry
        self.subscribed = asyncio.Event()  # set while the notice subscription is up

    def key(self, engine: str) -> str:
        """The Redis key of an engine's owner (engine names are validated before they get here)."""
        return f"{self._prefix}owner:{engine}"

    def claim(self, engine: str, conn_id: int) -> None:
        """This node's socket `conn_id` said hello as `engine` (its hello entry claims it in Redis).

        First in the book: a notice racing the hello's XADD must not close the new socket.
        """
        self.book.claimed(engine, str(conn_id))

    def release(self, engine: str, conn_id: int) -> None:
        """The socket closed (its close entry releases the key in Redis)."""
        self.book.released(engine, str(conn_id))

    def value(self, conn_id: int) -> str:
        """The owner key's value for this node's socket `conn_id`."""
        return Owner(self.book.node_id, str(conn_id)).encode()

    async def run(self, on_displaced: OnDisplaced) -> None:
        """Follow the notices until cancelled; resubscribe (and reconcile) after Redis comes back."""
        while True:
            try:
                await self._follow(on_displaced)
            except (RedisError, OSError) as exc:
                log.warning("owner notices: Redis unreachable (%r); retrying", exc)
            finally:
                self.subscribed.clear()
            await asyncio.sleep(self._retry)

    async def _follow(self, on_displaced: OnDisplaced) -> None:
        async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
            await pubsub.subscribe(self.channel)
            await self._reconcile(on_displaced)  # notices sent while we were away are lost
            self.subscribed.set()
            async for message in pubsub.listen():
                notice = Displaced.parse(message.get("data") or b"")
                conn = self.book.displaced(notice) if notice is not None else None
                if notice is not None and conn is not None:
                    on_displaced(notice.engine, conn, notice.reason)

    async def _reconcile(self, on_displaced: OnDisplaced) -> None:
        engines = list(self.book.held)
        if not engines:
            return
        values = await self._redis.mget([self.key(engine) for engine in engines])
        for engine, raw in zip(engines, values, strict=True):
            # No key: our hello is still queued (its XADD sets it) or Redis lost it; either way
            # nobody claimed the engine after us, so the socket stays.
            current = Owner.parse(raw)
            conn = self.book.lost(engine, current)
            if conn is not None and current is not None:
                on_displaced(engine, conn, replaced_by(current.node))
