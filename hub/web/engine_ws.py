"""`/ws/engine`: the thin I/O shell around `EngineConnection` (receive -> core -> send).

Who may connect is decided twice: at the handshake (a token the current credentials know, when
the hub needs one; else HTTP 403) and at `hello` (the engine name and mode that token admits; else
close 1008). A settings reload closes the open sockets whose token it took away (`close_revoked`).
"""

from __future__ import annotations

import asyncio
import logging
import time

from starlette.websockets import WebSocket, WebSocketDisconnect

from hub.core.access import ANY_ENGINE, Credentials, EngineToken, digest
from hub.core.decoding import ProtocolClose
from hub.core.messages import CloseCode
from hub.core.protocol import EngineConnection, TokenRefused
from hub.web.runtime import Hub

__all__ = ["EngineSession", "close_revoked", "engine_endpoint"]

log = logging.getLogger(__name__)

_CLUSTER_FULL = (
    "cluster degraded (Redis unreachable) and this node's buffer is full; reconnect later"
)


class EngineSession:
    """One engine socket: a receive loop (this task) and a writer task for replies and acks."""

    def __init__(
        self,
        hub: Hub,
        websocket: WebSocket,
        grant: EngineToken = ANY_ENGINE,
        token_digest: str | None = None,
    ) -> None:
        self.hub = hub
        self.websocket = websocket
        self.conn = EngineConnection(hub.next_conn_id(), hub.state, hub.decoder, grant)
        self.token_digest = token_digest  # what a reload judges this socket by (never the token)
        self.engine_name: str | None = None
        self._wake = asyncio.Event()
        self._close: tuple[CloseCode, str] | None = None
        self._shared = 0  # the highest seq this socket put into the cluster stream

    def wake(self) -> None:
        """Something may be due to send (the store committed more: an ack)."""
        self._wake.set()

    def close_soon(self, code: CloseCode, reason: str) -> None:
        """Ask the writer to close the socket (used for replacement, revocation and shutdown)."""
        self._close = (code, reason)
        self._wake.set()

    @property
    def closing(self) -> bool:
        """Whether the socket was already asked to close."""
        return self._close is not None

    def revoked(self, credentials: Credentials) -> str | None:
        """Why freshly reloaded `credentials` no longer admit this socket (None while they do)."""
        if not credentials.engines_need_a_token:
            self.conn.grant = ANY_ENGINE
            return None
        if self.token_digest is None:
            return "this hub now requires an engine token"
        grant = credentials.engine_grant(self.token_digest)
        if grant is None:
            return "token revoked"
        self.conn.grant = grant  # a hello still to come is judged by the token's new terms
        engine = self.conn.engine
        return grant.refusal(engine.name, engine.mode) if engine is not None else None

    async def run(self) -> None:
        """Serve the socket until it closes; never lets an exception reach the client."""
        hub, conn = self.hub, self.conn
        hub.sessions[conn.conn_id] = self
        writer = asyncio.create_task(self._writer(), name=f"engine-writer-{conn.conn_id}")
        try:
            await self._feed()
        except TimeoutError:
            reason = f"no hello within {hub.settings.hello_timeout:g} s"
            self.close_soon(CloseCode.POLICY_VIOLATION, reason)
        except TokenRefused as exc:
            what = f"an engine hello (token {conn.grant.name!r})"
            _warn_refused(hub, self.websocket, "hello", what, exc.reason)
            self.close_soon(exc.code, exc.reason)
        except ProtocolClose as exc:
            self.close_soon(exc.code, exc.reason)
        except WebSocketDisconnect as exc:
            if exc.code == CloseCode.INVALID_DATA:  # uvicorn closed it: a text frame not UTF-8
                hub.state.stats.drops["invalid_utf8"] += 1  # its one log line: hub/web/redaction.py
        except Exception:  # a bug of ours must not reach the client or other engines
            log.exception("engine connection %d failed", conn.conn_id)
            self.close_soon(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            ended = conn.closed(time.time())
            if ended is not None:
                hub.store.append(ended)
            if self.engine_name is not None:
                hub.owners.release(self.engine_name, conn.conn_id)
            if hub.cluster.enabled and self.engine_name is not None:
                hub.replication.closed(conn.conn_id, self.engine_name, conn.boot_id)
            hub.sessions.pop(conn.conn_id, None)
            if self.engine_name is not None and hub.by_engine.get(self.engine_name) is self:
                del hub.by_engine[self.engine_name]
            if self._close is not None:
                await asyncio.wait([writer], timeout=1.0)
            writer.cancel()

    async def _feed(self) -> None:
        """The one receive loop: each frame -> the core -> what it changed to the streams and store.

        Names are bound once: this loop runs for every frame an engine sends.
        """
        receive, conn, clock = self.websocket.receive, self.conn, time.time
        receive_text, publish, append = (
            conn.receive_text,
            self.hub.broadcaster.publish,
            self.hub.store.append,
        )
        # Cluster mode only: a single node pays one bool test per frame for it.
        clustered, cluster = self.hub.cluster.enabled, self.hub.cluster
        share = self.hub.replication.frame
        async with asyncio.timeout(self.hub.settings.hello_timeout) as hello_deadline:
            while True:
                message = await receive()
                text = message.get("text")
                if text is None:
                    if message["type"] == "websocket.disconnect":
                        raise WebSocketDisconnect(message.get("code", CloseCode.NORMAL))
                    conn.receive_bytes(message.get("bytes") or b"")  # raises ProtocolClose
                    continue
                if clustered and self.engine_name is None:  # a hello may be in this frame
                    await self._catch_up()
                ingested = receive_text(text, clock())
                if ingested is None:
                    continue  # no hello yet
                if self.engine_name is None:
                    hello_deadline.reschedule(None)
                    self._opened()
                # What the frame changed: events to the streams, all of it to the store.
                if ingested.events:
                    publish(ingested.events)
                append(ingested)
                if clustered and ingested.engine and ingested.seq > self._shared:
                    self._shared = ingested.seq
                    share(conn.conn_id, text, ingested)
                    if cluster.full:
                        self._cluster_full()
                if ingested.rejected:
                    self._wake.set()  # error replies are due

    async def _catch_up(self) -> None:
        """Before a hello in cluster mode: read what other nodes stored of this engine first, so
        the welcome counts it and the replay continues after it (never ahead of the reader)."""
        hub = self.hub
        if not await hub.cluster.caught_up(hub.settings.hello_timeout / 2):
            hub.state.stats.drops["cluster_catch_up_late"] += 1

    def _cluster_full(self) -> None:
        """Redis has been away longer than the buffer holds: close every engine socket (their
        clients keep what is unacked and resend it), and take none until the buffer drains."""
        hub = self.hub
        sessions = [
            s for s in hub.sessions.values() if isinstance(s, EngineSession) and not s.closing
        ]
        if not sessions:
            return  # already closing them: one warning per episode, not per frame
        hub.state.stats.drops["cluster_buffer_full"] += 1
        log.warning(
            "cluster degraded and %d frames held: closing %d engine sockets until Redis is back",
            hub.cluster.status.pending,
            len(sessions),
        )
        for session in sessions:
            session.close_soon(CloseCode.TRY_AGAIN_LATER, _CLUSTER_FULL)

    def _opened(self) -> None:
        engine = self.conn.engine
        assert engine is not None
        self.engine_name = engine.name
        self.hub.by_engine[engine.name] = self
        self.hub.owners.claim(engine.name, self.conn.conn_id)  # cluster-wide: one socket each
        if self.hub.cluster.enabled:
            self.hub.replication.opened(self.conn.conn_id, engine)
        self._wake.set()
        replaced = self.conn.replaced
        old = self.hub.sessions.get(replaced) if replaced is not None else None
        if old is not None:
            log.warning(
                "engine %r reconnected (boot %r): closing its older socket",
                engine.name,
                engine.boot_id,
            )
            old.close_soon(
                CloseCode.REPLACED,
                f"replaced by a newer connection of this engine (boot {engine.boot_id})",
            )

    async def _writer(self) -> None:
        """Send welcome, error replies and acks; acks at most once per ack_interval."""
        conn, websocket = self.conn, self.websocket
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                for frame in conn.data_to_send():
                    await websocket.send_text(frame)
                if self._close is not None:
                    code, reason = self._close
                    await websocket.close(code, reason[:120])
                    return
                await asyncio.sleep(self.hub.settings.ack_interval)
        except (WebSocketDisconnect, RuntimeError, OSError):
            return  # the socket is already gone; the receive loop cleans up


def close_revoked(hub: Hub) -> int:
    """Close (1008) every engine socket the hub's current credentials no longer admit."""
    credentials, closed = hub.credentials, 0
    for session in list(hub.sessions.values()):
        if not isinstance(session, EngineSession) or session.closing:
            continue
        reason = session.revoked(credentials)
        if reason is not None:
            hub.state.stats.drops["token_revoked"] += 1
            log.warning(
                "closing the socket of engine %s: %s",
                session.engine_name
                or "(not yet said hello)",  # a name the hello's pattern admitted
                reason,
            )
            session.close_soon(CloseCode.POLICY_VIOLATION, reason)
            closed += 1
    return closed


def _bearer(websocket: WebSocket) -> str:
    """The handshake's `Authorization: Bearer <token>`, or "" without one."""
    scheme, _, given = websocket.headers.get("authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" else ""


def _warn_refused(hub: Hub, websocket: WebSocket, kind: str, what: str, why: str) -> None:
    """One warning per address and kind per minute: a retrying engine must not flood the log."""
    host = websocket.client.host if websocket.client is not None else "an unknown address"
    held = hub.refusal_log.due(f"{kind} {host}", time.time())
    if held is not None:
        more = f" ({held} more from there since the last such line)" if held else ""
        log.warning("refused %s from %s: %s%s", what, host, why, more)


async def engine_endpoint(websocket: WebSocket) -> None:
    """Accept an engine socket and serve it."""
    hub: Hub = websocket.app.state.hub
    if hub.shutting_down:
        await websocket.close(CloseCode.SERVICE_RESTART, "hub is restarting")
        return
    if hub.cluster.full:
        hub.state.stats.drops["engine_connection_refused"] += 1
        await websocket.close(CloseCode.TRY_AGAIN_LATER, _CLUSTER_FULL)
        return
    if len(hub.sessions) >= hub.settings.max_engine_connections:
        hub.state.stats.drops["engine_connection_refused"] += 1
        await websocket.close(
            CloseCode.TRY_AGAIN_LATER, "too many engine connections; try again later"
        )
        return
    credentials = hub.credentials  # read at every handshake: a reload applies at once
    grant, token_digest = ANY_ENGINE, None
    if credentials.engines_need_a_token:
        token = _bearer(websocket)
        found = credentials.engine_token(token) if token else None
        if found is None:
            hub.state.stats.drops["unauthorized"] += 1
            why = (
                "a token this hub does not know (revoked, or not in its settings)"
                if token
                else "no Authorization: Bearer <token> header"
            )
            _warn_refused(hub, websocket, "handshake", "an engine connection", why)
            # Before accept: the client sees HTTP 403.
            await websocket.close(CloseCode.POLICY_VIOLATION, "missing or wrong token")
            return
        grant, token_digest = found, digest(token)
    await websocket.accept()
    await EngineSession(hub, websocket, grant, token_digest).run()
