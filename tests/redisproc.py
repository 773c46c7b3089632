"""A real `redis-server` for the cluster tests: Debian's binary on a free 127.0.0.1 port.

`scripts/test` installs Debian's `redis-server` when it runs as root with apt-get; elsewhere the
tests that need it skip and say how to get it (`redis_binary`). Each server runs in its own
temporary directory with an append-only file, so `stop()` then `start()` on the same port is a
Redis restart that keeps what was acknowledged (docs/scaling.md says why the cluster needs that).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

__all__ = ["RedisServer", "redis_binary", "redis_server"]

READY = b"Ready to accept connections"
WAIT = 15.0


def redis_binary() -> str:
    """Debian's redis-server, or a skip that says how to get it."""
    found = shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if os.access(p, os.X_OK)),
        None,
    )
    if found is None:
        pytest.skip(
            "redis-server is not installed: scripts/test installs Debian's redis-server when it "
            "runs as root with apt-get; otherwise `apt-get install redis-server` (as root) and "
            "run the cluster tests again"
        )
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server process this test started (stopped by PID, never anyone else's)."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = 0
        self.proc: asyncio.subprocess.Process | None = None
        self.log = b""

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        """Start (or restart on the same port) and return once it accepts connections."""
        assert self.proc is None, "already running"
        for _ in range(5):  # a free port can be taken between choosing it and Redis binding it
            port = self.port or _free_port()
            proc = await asyncio.create_subprocess_exec(
                self.binary,
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--dir", str(self.directory),
                "--save", "",
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--daemonize", "no",
                "--loglevel", "notice",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            assert proc.stdout is not None
            said = b""
            async with asyncio.timeout(WAIT):
                while line := await proc.stdout.readline():
                    said += line
                    if READY in line:
                        break
            if READY in said:
                self.port, self.proc, self.log = port, proc, said
                asyncio.get_running_loop().create_task(self._drain(proc))
                return
            await proc.wait()
            if self.port:  # a restart must get its old port back
                break
        raise AssertionError(f"redis-server did not start: {said.decode(errors='replace')}")

    async def _drain(self, proc: asyncio.subprocess.Process) -> None:
        """Keep reading its log so a full pipe never blocks Redis."""
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            self.log += line

    async def stop(self, kill: bool = False) -> None:
        """SIGTERM (Redis flushes its append-only file) or SIGKILL, and wait for the exit."""
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.kill() if kill else proc.terminate()
        await proc.wait()


@asynccontextmanager
async def redis_server(directory: Path) -> AsyncIterator[RedisServer]:
    """A running redis-server with its data in `directory`; stopped afterwards."""
    server = RedisServer(redis_binary(), directory)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
