"""The background sender: connect, hello/welcome, send batches, read acks, replay, back off.

One `Sender` runs as a task in one event loop (the engine's, or the sync client's private one).
It is the only reader of the core; engine threads only touch the core's lock-free intake.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from hub.client.backoff import Backoff
from hub.client.core import ClientCore, ConnectionState
from hub.client.endpoints import Endpoints
from hub.client.handlers import SHIPPING
from hub.client.intake import DropReason
from hub.client.options import ClientOptions
from hub.client.pacing import NO_PACING, Pacer
from hub.core.messages import CloseCode, ErrorCode, ErrorReply

__all__ = ["Sender"]

log = logging.getLogger(__name__)

_AUTH_STATUSES = (401, 403)


class Sender:
    """Owns the hub connection for one client; `run()` until `request_stop()` and the final flush.

    Build it inside the event loop that will run it.
    """

    def __init__(
        self,
        core: ClientCore,
        urls: str | Sequence[str],
        token: str | None,
        options: ClientOptions,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._core = core
        self._endpoints = Endpoints((urls,) if isinstance(urls, str) else urls)
        self._options = options
        self._clock = clock
        self._backoff = Backoff(options.backoff_base, options.backoff_max)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._connect_kwargs: dict[str, Any] = {
            "additional_headers": headers,
            "compression": None,  # the hub turns permessage-deflate off
            "open_timeout": 10.0,
            "close_timeout": 2.0,
            "max_size": 2**20,
            **options.connect_options,
        }
        self._ws: ClientConnection | None = None
        self._loop = asyncio.get_running_loop()  # built inside the loop that will run it
        self._thread = threading.get_ident()
        self._wakeup = asyncio.Event()  # "drain and send now" (batch full, stop, flush)
        self._progress = asyncio.Event()  # an ack arrived or a pump round ended
        self._interrupt = asyncio.Event()  # cut a backoff pause short (stop)
        self._stopping = False
        self._deadline = math.inf
        self._send_after = 0.0  # loop time before which nothing is sent (the hub's retry hint)
        self._pacer: Pacer = NO_PACING  # below the hub's limits, from rate_limited until caught up
        self._limited = False  # this connection was rate limited (a 1008 then means flooding)
        self._quiet = False  # a failure was logged; stay quiet until the next success
        self._refusal_logged = False
        self._warned: set[str] = set()

    def wake(self) -> None:
        """Ask for a drain and send soon; safe from any thread, never raises."""
        if threading.get_ident() == self._thread:
            self._wakeup.set()
            return
        try:
            self._loop.call_soon_threadsafe(self._wakeup.set)
        except RuntimeError:
            pass  # the loop is closed: the client is gone

    def request_stop(self, timeout: float) -> None:
        """Finish within `timeout`: send everything (ending with `bye`), wait for acks, close."""
        self._stopping = True
        self._deadline = self._loop.time() + timeout
        self._interrupt.set()
        self._wakeup.set()

    async def run(self) -> None:
        """Pump and keep a connection until stopped; logs, never raises (except cancellation)."""
        SHIPPING.set(True)  # this task and everything it starts
        pump = asyncio.create_task(self._pump(), name="engine-hub-pump")
        try:
            while not self._done():
                delay = await self._session()
                if self._done():
                    break
                self._endpoints.advance()  # fail over: the next attempt goes to the next node
                if self._stopping:
                    delay = min(delay, max(0.0, self._deadline - self._loop.time()))
                await self._pause(delay)
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)

    async def flush(self, timeout: float) -> bool:
        """Drain now and wait until the hub acknowledged everything recorded so far."""
        core = self._core
        self._collect()
        target = core.last_seq
        self._wakeup.set()
        try:
            async with asyncio.timeout(timeout):
                while not core.is_acked(target):
                    self._progress.clear()
                    await self._progress.wait()
        except TimeoutError:
            pass
        return core.is_acked(target)

    def _done(self) -> bool:
        return self._stopping and (self._core.finished or self._loop.time() >= self._deadline)

    def _collect(self, limit: int | None = None) -> None:
        core, now = self._core, self._clock()
        provider = self._options.heartbeat_provider
        if provider is not None and core.heartbeat_due(now):
            try:
                core.intake.update_health(provider())
            except Exception:
                core.intake.count_drop(DropReason.INVALID)
                self._warn_once("provider", "heartbeat_provider raised", exc_info=True)
        core.collect(now, limit)

    async def _pump(self) -> None:
        """Every flush_interval (or when woken): drain, then send while online."""
        # Drain in chunks, yielding between them, so encoding a burst never holds an engine's
        # event loop (AsyncEngineClient) for long.
        chunk = 4 * self._options.max_batch
        while True:
            self._wakeup.clear()
            try:
                self._collect(chunk)
                ws, core = self._ws, self._core
                # `ws is self._ws`: never send a frame of a newer connection on an older socket.
                while ws is not None and ws is self._ws and self._wait() <= 0:
                    before = core.sent_messages
                    frame = core.next_frame()
                    if frame is None:
                        break
                    await ws.send(frame, text=True)
                    self._pacer.spend(core.sent_messages - before, len(frame), self._loop.time())
                if not core.outbox.unsent and not core.intake.items:
                    self._pacer = NO_PACING  # caught up: the hub's bucket refills from here
                if ws is not None and self._done():
                    await ws.close()
                    return
            except ConnectionClosed:
                pass  # the session notices and rewinds; unacked frames are replayed
            except Exception:
                self._warn_once("pump", "engine-hub client sender failed", exc_info=True)
            self._progress.set()
            held = self._wait()  # rate limited: send again when the hold or the pacing allows
            if self._core.intake.items and held <= 0:
                await asyncio.sleep(0)
                continue  # while held, a full batch in the intake wakes the pump instead
            try:
                async with asyncio.timeout(held if held > 0 else self._options.flush_interval):
                    await self._wakeup.wait()
            except TimeoutError:
                pass

    def _wait(self) -> float:
        """Seconds before the next frame may go: the hub's hold, then the pacing after it."""
        now = self._loop.time()
        return max(self._send_after - now, self._pacer.delay(now))

    async def _session(self) -> float:
        """One connection from connect to close; returns the delay before the next attempt."""
        core = self._core
        try:
            async with connect(self._endpoints.current, **self._connect_kwargs) as ws:
                await ws.send(core.hello(), text=True)
                async with asyncio.timeout(self._options.hello_timeout):
                    while core.state is ConnectionState.HANDSHAKE:
                        self._received(await ws.recv())
                self._online(ws)
                async for data in ws:
                    self._received(data)
            return self._closed(ws.close_code, ws.close_reason or "")
        except InvalidStatus as exc:
            return self._refused(exc.response.status_code)
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            return self._closed(rcvd.code if rcvd else None, rcvd.reason if rcvd else "")
        except (OSError, TimeoutError, WebSocketException) as exc:
            return self._failed(f"{type(exc).__name__}: {exc}")
        finally:
            self._ws = None
            core.connection_lost()

    def _online(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._backoff.reset()
        self._quiet = self._refusal_logged = self._limited = False
        stats = self._core.stats()
        url = self._endpoints.current
        log.info("connected to %s (boot %s; %d buffered)", url, stats.boot_id, stats.buffered)
        self._wakeup.set()

    def _received(self, data: str | bytes) -> None:
        limited: ErrorReply | None = None
        for reply in self._core.receive(data):
            if isinstance(reply, ErrorReply) and reply.code == ErrorCode.RATE_LIMITED:
                limited = reply
                self._warn_once(
                    reply.code, "hub rate-limits this engine, slowing down: %s", reply.detail
                )
            elif isinstance(reply, ErrorReply):
                which = "a frame" if reply.seq is None else f"seq {reply.seq}"
                self._warn_once(
                    reply.code, "hub rejected %s: %s (%s)", which, reply.detail, reply.code
                )
        hold = self._core.take_hold()
        if hold:  # nothing is lost: the refused messages wait in the outbox
            self._send_after = max(self._send_after, self._loop.time() + hold)
            self._wakeup.set()  # the pump re-arms its wait to end with the hold
        if limited is not None and hold:  # not a stale refusal (the core ignored it)
            self._pace(limited)
        self._progress.set()

    def _pace(self, reply: ErrorReply) -> None:
        """After the hold, send below the limits the hub named (an older hub names none)."""
        self._limited = True
        messages, size = reply.messages_per_second, reply.bytes_per_second
        if isinstance(messages, float | int) and isinstance(size, float | int):
            start, credit = self._send_after, self._options.flush_interval
            self._pacer = Pacer(float(messages), float(size), start, credit)

    def _closed(self, code: int | None, reason: str) -> float:
        if self._stopping and code in (CloseCode.NORMAL, CloseCode.GOING_AWAY):
            return 0.0
        if code == CloseCode.POLICY_VIOLATION and self._limited:
            # Closed for flooding, not for a token: reconnect on the usual backoff (the hub keeps
            # this engine's bucket, and the pacing and hold still apply after reconnecting).
            return self._failed(f"hub closed the connection with code {code}: {reason}")
        if code == CloseCode.REPLACED:
            # A newer connection of this engine took over (maybe on another node): not a refusal,
            # so the usual backoff (a displaced live engine must not sit out auth_backoff).
            return self._failed(f"replaced: {reason or 'a newer connection took over'}")
        if code == CloseCode.POLICY_VIOLATION:
            return self._refused(None, reason)
        if code == CloseCode.MESSAGE_TOO_BIG:
            self._core.shrink_frames()
        return self._failed(f"hub closed the connection with code {code}: {reason or 'no reason'}")

    def _refused(self, status: int | None, reason: str = "") -> float:
        if status is not None and status not in _AUTH_STATUSES:
            return self._failed(f"hub answered the WebSocket handshake with HTTP {status}")
        delay = self._options.auth_backoff
        if not self._refusal_logged:  # one clear line per refusal streak, not one per attempt
            what = f"HTTP {status}: check the token" if status else f"close 1008: {reason}"
            log.error(
                "hub at %s refused this engine (%s); retrying in %.0f s",
                self._endpoints.current,
                what,
                delay,
            )
            self._refusal_logged = self._quiet = True
        return delay

    def _failed(self, why: str) -> float:
        delay = self._backoff.next_delay()
        level = logging.DEBUG if self._quiet else logging.WARNING
        log.log(
            level,
            "hub at %s unavailable (%s); buffering, retry in %.1f s",
            self._endpoints.current,
            why,
            delay,
        )
        self._quiet = True
        return delay

    async def _pause(self, delay: float) -> None:
        """Sleep `delay`, unless `request_stop` asks for one last attempt right now."""
        try:
            async with asyncio.timeout(delay):
                await self._interrupt.wait()
        except TimeoutError:
            pass
        self._interrupt.clear()

    def _warn_once(self, key: str, message: str, *args: Any, exc_info: bool = False) -> None:
        level = logging.DEBUG if key in self._warned else logging.WARNING
        self._warned.add(key)
        log.log(level, message, *args, exc_info=exc_info)
