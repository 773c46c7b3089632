"""`AsyncEngineClient`: the engine client for asyncio engines; its sender is a task in their loop."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from hub.client.intake import NullIntake
from hub.client.recorder import Recorder
from hub.client.sender import Sender

__all__ = ["AsyncEngineClient"]


class AsyncEngineClient(Recorder):
    """Engine client for asyncio code: `await start()`, plain (non-async) record calls, `await close()`.

    ```python
    async with AsyncEngineClient("ws://127.0.0.1:8765", engine="fno", mode="paper") as hub:
        hub.increment("signals", strategy="mean_reversion")
    ```
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        urls: Sequence[str] | None = None,
        engine: str,
        mode: str = "paper",
        token: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(url, engine, mode, token, options, urls)
        self._sender: Sender | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self) -> None:
        """Start the background sender; returns at once (the hub may still be away)."""
        if not self.options.enabled or self._task is not None or self._closed:
            return
        self._sender = Sender(self._core, self.urls, self.token, self.options)
        self._intake.wake = self._sender.wake
        self._task = asyncio.create_task(self._sender.run(), name=f"engine-hub-{self.engine}")

    async def flush(self, timeout: float = 5.0) -> bool:
        """Send everything recorded so far; True once the hub acknowledged it within `timeout`."""
        if not self.options.enabled:
            return True
        if self._sender is None or self._task is None or self._task.done():
            return False
        return await self._sender.flush(timeout)

    async def close(self, timeout: float | None = None) -> None:
        """Send `bye`, deliver what is buffered within `timeout` (default `close_timeout`), stop."""
        if self._closed:
            return
        self._closed = True
        timeout = self.options.close_timeout if timeout is None else timeout
        self.mark_stopped()
        task, sender = self._task, self._sender
        if task is not None and sender is not None:
            sender.request_stop(timeout)
            done, _ = await asyncio.wait({task}, timeout=timeout + 0.5)
            if not done:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self.options.enabled:
            self._core.close()
        self._intake = NullIntake()

    async def __aenter__(self) -> AsyncEngineClient:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exited(exc)
        await self.close()
