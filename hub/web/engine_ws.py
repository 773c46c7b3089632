"""`/ws/engine`: the thin I/O shell around `EngineConnection` (receive -> core -> send)."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time

from starlette.websockets import WebSocket, WebSocketDisconnect

from hub.core.decoding import ProtocolClose
from hub.core.protocol import ConnectionPhase, EngineConnection
from hub.web.runtime import Hub

__all__ = ["engine_endpoint"]

log = logging.getLogger(__name__)


class EngineSession:
    """One engine socket: a receive loop (this task) and a writer task for replies and acks."""

    def __init__(self, hub: Hub, websocket: WebSocket) -> None:
        self.hub = hub
        self.websocket = websocket
        self.conn = EngineConnection(hub.next_conn_id(), hub.state, hub.decoder)
        self.engine_name: str | None = None
        self._wake = asyncio.Event()
        self._close: tuple[int, str] | None = None

    def committed(self, boot_id: str, seq: int) -> None:
        """The store made `seq` durable: schedule an ack."""
        engine = self.conn.engine
        if engine is not None and engine.boot_id == boot_id and seq > self.conn.committed:
            self.conn.committed = seq
            self._wake.set()

    def close_soon(self, code: int, reason: str) -> None:
        """Ask the writer to close the socket (used for replacement and shutdown)."""
        self._close = (code, reason)
        self._wake.set()

    async def run(self) -> None:
        """Serve the socket until it closes; never lets an exception reach the client."""
        hub, conn = self.hub, self.conn
        hub.sessions[conn.conn_id] = self
        writer = asyncio.create_task(self._writer(), name=f"engine-writer-{conn.conn_id}")
        try:
            async with asyncio.timeout(hub.settings.hello_timeout):
                while conn.phase is ConnectionPhase.AWAITING_HELLO:
                    await self._receive_one()
            await self._pump()
        except TimeoutError:
            self.close_soon(1008, f"no hello within {hub.settings.hello_timeout:g} s")
        except ProtocolClose as exc:
            self.close_soon(exc.code, exc.reason)
        except WebSocketDisconnect:
            pass
        except Exception:  # a bug of ours must not reach the client or other engines
            log.exception("engine connection %d failed", conn.conn_id)
            self.close_soon(1011, "internal error")
        finally:
            conn.closed(time.time())
            hub.sessions.pop(conn.conn_id, None)
            if self.engine_name is not None and hub.by_engine.get(self.engine_name) is self:
                del hub.by_engine[self.engine_name]
            if self._close is not None:
                await asyncio.wait([writer], timeout=1.0)
            writer.cancel()

    async def _pump(self) -> None:
        """The hot loop after hello: receive -> core -> store and streams, names bound once."""
        receive, conn, hub = self.websocket.receive, self.conn, self.hub
        engine = conn.engine
        assert engine is not None
        receive_text, clock = conn.receive_text, time.time
        append, publish, wake = hub.store.append, hub.broadcaster.publish, self._wake.set
        while True:
            message = await receive()
            text = message.get("text")
            if text is None:
                if message["type"] == "websocket.disconnect":
                    raise WebSocketDisconnect(message.get("code", 1000))
                conn.receive_bytes(message.get("bytes") or b"")
                continue
            ingested = receive_text(text, clock())
            assert ingested is not None  # only None before hello
            if ingested.events:
                publish(ingested.events)
            append(engine, ingested)
            if ingested.rejected:
                wake()

    async def _receive_one(self) -> None:
        """One frame before hello (the handshake path)."""
        message = await self.websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        text = message.get("text")
        if text is None:
            self.conn.receive_bytes(message.get("bytes") or b"")
            return
        conn = self.conn
        ingested = conn.receive_text(text, time.time())
        if conn.engine is not None and self.engine_name is None:
            self._opened()
        if ingested is not None and conn.engine is not None:
            if ingested.events:
                self.hub.broadcaster.publish(ingested.events)
            self.hub.store.append(conn.engine, ingested)
            if ingested.rejected:
                self._wake.set()

    def _opened(self) -> None:
        engine = self.conn.engine
        assert engine is not None
        self.engine_name = engine.name
        self.hub.by_engine[engine.name] = self
        self._wake.set()
        replaced = self.conn.replaced
        old = self.hub.sessions.get(replaced) if replaced is not None else None
        if old is not None:
            log.warning(
                "engine %s reconnected (boot %s): closing its older socket",
                engine.name,
                engine.boot_id,
            )
            old.close_soon(
                1008, f"replaced by a newer connection of this engine (boot {engine.boot_id})"
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


def _authorized(websocket: WebSocket, token: str) -> bool:
    """Whether the handshake carries `Authorization: Bearer <token>` (compared in constant time)."""
    scheme, _, given = websocket.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.encode())


async def engine_endpoint(websocket: WebSocket) -> None:
    """Accept an engine socket and serve it."""
    hub: Hub = websocket.app.state.hub
    if hub.shutting_down:
        await websocket.close(1012, "hub is restarting")
        return
    if len(hub.sessions) >= hub.settings.max_engine_connections:
        hub.state.stats.drops["engine_connection_refused"] += 1
        await websocket.close(1013, "too many engine connections; try again later")
        return
    if hub.settings.token and not _authorized(websocket, hub.settings.token):
        hub.state.stats.drops["unauthorized"] += 1
        log.warning(
            "refused an engine connection from %s: missing or wrong token", websocket.client
        )
        await websocket.close(1008, "missing or wrong token")  # before accept: HTTP 403
        return
    await websocket.accept()
    await EngineSession(hub, websocket).run()
