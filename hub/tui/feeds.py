"""The monitor's I/O: the hub's JSON API and its SSE stream over httpx, with readable errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from hub.tui.streams import SSEMessage, SSEParser

__all__ = ["FeedError", "HubFeed"]

_MAX_JSON = 16 << 20  # bytes of one API answer the monitor reads (an export can be large)
_STREAM_SILENCE = 60.0  # the hub's keep-alive comes every 15 s: this much silence is a dead link


class FeedError(Exception):
    """The hub could not be asked, or answered something else than expected; says how to fix it."""


class HubFeed:
    """One hub's `/api/telemetry/*` endpoints, signed in with an API token when given."""

    def __init__(
        self, url: str, token: str = "", transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        timeout = httpx.Timeout(10.0, read=_STREAM_SILENCE)
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def _get(self, path: str, params: dict[str, Any]) -> bytes:
        try:
            response = await self._http.get(path, params=params)
        except httpx.HTTPError as exc:
            raise FeedError(
                f"cannot reach a hub at {self.url} ({type(exc).__name__}: {exc})"
            ) from None
        _check(response, self.url)
        if len(response.content) > _MAX_JSON:
            raise FeedError(f"the hub's answer to {path} is larger than {_MAX_JSON} bytes")
        return response.content

    async def json(self, path: str, **params: Any) -> Any:
        """GET `path` as JSON."""
        body = await self._get(path, params)
        try:
            return json.loads(body)
        except ValueError:
            raise FeedError(
                f"{self.url}{path} did not answer JSON; is --url an Engine Hub?"
            ) from None

    async def engines(self) -> Any:
        """`/api/telemetry/engines`."""
        return await self.json("/api/telemetry/engines")

    async def events(self, event_type: str, engine: str, limit: int) -> list[Any]:
        """Recent events of one type and engine, newest first."""
        answer = await self.json(
            "/api/telemetry/events", event_type=event_type, engine=engine, limit=limit
        )
        events = answer.get("events") if isinstance(answer, dict) else answer
        return events if isinstance(events, list) else []

    async def logs(self, engine: str, lines: int) -> list[Any]:
        """The engine's log tail, oldest first."""
        answer = await self.json("/api/telemetry/engine_logs", engine=engine, lines=lines)
        found = answer.get("lines") if isinstance(answer, dict) else None
        return found if isinstance(found, list) else []

    async def export(self, engine: str, since: float, until: float) -> bytes:
        """The engine's incident bundle over [since, until) (what `engine-hub export` writes)."""
        return await self._get(
            "/api/telemetry/export", {"engine": engine, "since": since, "until": until}
        )

    @asynccontextmanager
    async def stream(self, **filters: str) -> AsyncIterator[AsyncIterator[SSEMessage]]:
        """Open `/api/telemetry/stream` with `filters` (`engine`, `event_type`); yields its messages."""
        request = self._http.build_request(
            "GET",
            "/api/telemetry/stream",
            params=filters,
            headers={"Accept": "text/event-stream"},
        )
        try:
            response = await self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise FeedError(f"cannot reach a hub at {self.url} ({type(exc).__name__})") from None
        try:
            if response.status_code != 200:
                await response.aread()
                _check(response, self.url)
            yield _messages(response)
        finally:
            await response.aclose()


async def _messages(response: httpx.Response) -> AsyncIterator[SSEMessage]:
    parser = SSEParser()
    try:
        async for chunk in response.aiter_text():
            for message in parser.feed(chunk):
                yield message
    except httpx.HTTPError as exc:
        raise FeedError(f"the stream broke off ({type(exc).__name__})") from None
    except ValueError as exc:
        raise FeedError(str(exc)) from None


def _check(response: httpx.Response, url: str) -> None:
    """Turn a non-200 answer into a FeedError that says what to do."""
    code = response.status_code
    if code == 200:
        return
    if code == 401:
        raise FeedError(
            "this hub needs sign-in: pass --token TOKEN (or set ENGINE_HUB_API_TOKEN) with a "
            "token from `engine-hub token create --role viewer`"
        )
    if code == 403:
        raise FeedError("the API token is not allowed to read this (403); ask for a viewer token")
    detail = ""
    try:
        body = response.json()
        if isinstance(body, dict):
            detail = str(body.get("detail") or body.get("error") or "")
    except ValueError:
        detail = response.text[:200]
    raise FeedError(f"{url} answered {code}{': ' + detail if detail else ''}")
