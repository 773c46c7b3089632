"""`/api/telemetry/stream`: Server-Sent Events with Last-Event-ID resume and keep-alives."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from hub.live.sse_fanout import Subscriber, TooManySubscribers, sse_frame
from hub.web.api import json_response
from hub.web.params import BadRequest, engine_param, event_type_param
from hub.web.runtime import Hub

__all__ = ["stream"]

_RETRY_MS = 1000


def _last_event_id(request: Request) -> int:
    raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id") or ""
    if not raw:
        return -1
    if not raw.isdigit() or len(raw) > 19:
        raise BadRequest("Last-Event-ID must be an event id (a non-negative integer)")
    return int(raw)


async def stream(request: Request) -> Response:
    """Live events (filtered by `event_type` and `engine`), resuming after Last-Event-ID."""
    hub: Hub = request.app.state.hub
    event_type, engine = event_type_param(request), engine_param(request)
    last_id = _last_event_id(request)
    if hub.shutting_down:
        return json_response({"error": "unavailable", "detail": "hub is shutting down"}, 503)
    try:
        subscriber = hub.broadcaster.subscribe(event_type, engine)
    except TooManySubscribers as exc:
        return json_response({"error": "too_many_streams", "detail": str(exc)}, 503)
    # Taken in the same step as subscribing, so nothing falls between backlog and live frames.
    backlog: list[bytes] = []
    if last_id >= 0:
        oldest = hub.state.rings.oldest_id()
        if oldest is not None and last_id + 1 < oldest:
            backlog.append(
                b'event: hub.reset\ndata: {"reason":"evicted","oldest_id":%d}\n\n' % oldest
            )
        backlog += [
            sse_frame(r)
            for r in hub.state.rings.after(last_id, event_type)
            if engine is None or r.engine == engine
        ]
    return StreamingResponse(
        _frames(hub, subscriber, backlog),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _frames(hub: Hub, subscriber: Subscriber, backlog: list[bytes]) -> AsyncIterator[bytes]:
    try:
        yield b"retry: %d\n: connected\n\n" % _RETRY_MS
        if backlog:
            yield b"".join(backlog)
        while True:
            try:
                async with asyncio.timeout(hub.settings.sse_keepalive):
                    frames = await subscriber.wait()
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if frames:
                yield b"".join(frames)
            if subscriber.closed:
                if subscriber.reason == "slow":
                    yield b'event: hub.closed\ndata: {"reason":"slow_client"}\n\n'
                return
    finally:
        hub.broadcaster.unsubscribe(subscriber)
