"""`EngineClient`: the engine client for plain Python; a daemon thread runs the asyncio sender."""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from hub.client.intake import NullIntake
from hub.client.recorder import Recorder
from hub.client.sender import Sender

__all__ = ["EngineClient"]


class EngineClient(Recorder):
    """Engine client for any Python program; record calls are thread-safe and never block.

    ```python
    with EngineClient("ws://127.0.0.1:8765", engine="fno", mode="paper") as hub:
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
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sender: Sender | None = None
        self._main: asyncio.Task[None] | None = None
        self._lifecycle = threading.Lock()  # start() and close() only, never a record call
        self._closed = False

    def start(self) -> EngineClient:
        """Start the sender thread; returns at once (the hub may still be away)."""
        with self._lifecycle:
            if not self.options.enabled or self._thread is not None or self._closed:
                return self
            ready = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(ready,), name=f"engine-hub-{self.engine}", daemon=True
            )
            self._thread.start()
            ready.wait()
            if self.options.close_on_exit:
                atexit.register(self.close)
        return self

    def flush(self, timeout: float = 5.0) -> bool:
        """Send everything recorded so far; True once the hub acknowledged it within `timeout`."""
        if not self.options.enabled:
            return True
        loop, sender = self._loop, self._sender
        if loop is None or sender is None or self._on_sender_thread() or not self._running():
            return False
        future = asyncio.run_coroutine_threadsafe(sender.flush(timeout), loop)
        try:
            return future.result(timeout + 1.0)
        except Exception:
            future.cancel()
            return False

    def close(self, timeout: float | None = None) -> None:
        """Send `bye`, deliver what is buffered within `timeout` (default `close_timeout`), stop."""
        with self._lifecycle:
            if self._closed:
                return
            self._closed = True
        timeout = self.options.close_timeout if timeout is None else timeout
        self.mark_stopped()
        loop, sender, thread = self._loop, self._sender, self._thread
        if loop is not None and sender is not None and thread is not None and self._running():
            loop.call_soon_threadsafe(sender.request_stop, timeout)
            if not self._on_sender_thread():
                thread.join(timeout + 0.5)
                if thread.is_alive() and self._main is not None:
                    loop.call_soon_threadsafe(self._main.cancel)
                    thread.join(0.5)
        if self.options.enabled:
            self._core.close()
        self._intake = NullIntake()
        atexit.unregister(self.close)

    def __enter__(self) -> EngineClient:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exited(exc)
        self.close()

    def _run(self, ready: threading.Event) -> None:
        """The sender thread: a private event loop until the sender finishes."""
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve(ready))
        except asyncio.CancelledError:
            pass
        finally:
            ready.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._main = asyncio.current_task()
        self._sender = Sender(self._core, self.urls, self.token, self.options)
        self._intake.wake = self._sender.wake
        ready.set()
        await self._sender.run()

    def _running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _on_sender_thread(self) -> bool:
        return self._thread is not None and threading.get_ident() == self._thread.ident
