"""`engine-hub serve` as a real process: startup, settings errors, and graceful SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.conftest import WAIT, serve_process


async def test_sigterm_closes_engines_with_1012_and_ends_streams() -> None:
    """SIGTERM closes engine sockets with 1012, ends SSE streams and exits within the timeout."""
    async with serve_process("--log-level", "info") as (proc, port, _):
        ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws/engine")
        await ws.send(json.dumps({"kind": "hello", "engine": "term", "boot_id": "b"}))
        assert json.loads(await ws.recv())["kind"] == "welcome"
        async with httpx.AsyncClient(timeout=WAIT) as http:
            async with http.stream(
                "GET", f"http://127.0.0.1:{port}/api/telemetry/stream"
            ) as stream:
                lines = stream.aiter_lines()
                async with asyncio.timeout(WAIT):
                    async for line in lines:
                        if line.startswith(": connected"):
                            break
                proc.send_signal(signal.SIGTERM)
                async with asyncio.timeout(WAIT):
                    rest = [line async for line in lines]  # ends when the hub closes the stream
                assert all(not line.startswith("data:") for line in rest)
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(WAIT):
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
        async with asyncio.timeout(WAIT):
            assert await proc.wait() == 0


async def test_serve_reads_environment_and_rejects_bad_settings() -> None:
    """A bad setting stops the CLI with exit code 2 and a message naming the setting."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub",
        "serve",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"ENGINE_HUB_HELLO_TIMEOUT": "soon", "PATH": ""},
    )
    async with asyncio.timeout(WAIT):
        _, err = await proc.communicate()
    assert proc.returncode == 2
    assert b"hello_timeout" in err and b"Traceback" not in err


async def test_port_in_use_is_a_clear_error() -> None:
    """Serving on a taken port fails fast with a readable message and exit code 2."""
    async with serve_process() as (_, port, _):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hub",
            "serve",
            "--port",
            str(port),
            "--db",
            ":memory:",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        async with asyncio.timeout(WAIT):
            out, _ = await proc.communicate()
        assert proc.returncode == 2 and b"cannot listen" in out and b"Traceback" not in out
