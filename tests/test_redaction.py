"""Secrets stay out of the hub's own log: query strings of WebSocket handshakes, bearer tokens."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from hub.core.access import digest, new_token
from hub.web.redaction import FrameFaultLines, QueryRedaction
from tests.conftest import WAIT, serve_process


def test_the_filter_drops_the_query_of_a_handshake_line() -> None:
    """uvicorn's 'WebSocket <path>' lines keep the path and lose the query; others pass as they are."""
    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        "x",
        1,
        '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:5", "/ws/dashboard?view=embed&embed=SECRET"),
        None,
    )
    assert QueryRedaction().filter(record)
    assert (
        record.getMessage()
        == '127.0.0.1:5 - "WebSocket /ws/dashboard?[query not logged]" [accepted]'
    )
    other = logging.LogRecord("uvicorn.error", logging.INFO, "x", 1, "%s", ("a?b=c",), None)
    assert QueryRedaction().filter(other) and other.getMessage() == "a?b=c"


async def test_no_secret_reaches_the_log_of_a_running_hub(tmp_path: Path) -> None:
    """A hub at INFO that sees tokens in query strings and headers, good and bad, logs none."""
    engine_token, wrong = new_token("ehe_"), new_token("ehe_")
    config = tmp_path / "hub.toml"
    config.write_text(
        f'[hub]\nlog_level = "info"\n[[engine_tokens]]\nengines = ["*"]\nsha256 = "{digest(engine_token)}"\n'
    )
    secret_query = "query-secret-" + new_token("")
    async with serve_process("--config", str(config)) as (proc, port, _):
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/ws/dashboard?view=overview&embed={secret_query}"
        ) as dashboard:
            await dashboard.recv()  # the snapshot: the handshake was logged by now
        engine_url = f"ws://127.0.0.1:{port}/ws/engine?token={secret_query}"
        headers = {"Authorization": f"Bearer {engine_token}"}
        async with websockets.connect(engine_url, additional_headers=headers) as engine:
            await engine.send('{"kind":"hello","engine":"fno"}')
            await engine.recv()  # welcome
        with pytest.raises(InvalidStatus):
            await websockets.connect(
                engine_url, additional_headers={"Authorization": f"Bearer {wrong}"}
            )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            await http.get("/api/telemetry/engines", params={"token": secret_query})
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout is not None
        async with asyncio.timeout(WAIT):
            output = (await proc.stdout.read()).decode()
    assert "WebSocket /ws/dashboard?[query not logged]" in output  # the line is still there
    for secret in (secret_query, engine_token, wrong):
        assert secret not in output


def test_the_filter_drops_the_query_of_an_http_access_line() -> None:
    """uvicorn.access lines (when another server runs the app with access logs) lose the query."""
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "x",
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/api/telemetry/engines?token=SECRET", "1.1", 200),
        None,
    )
    assert QueryRedaction().filter(record)
    assert "SECRET" not in record.getMessage()
    assert "GET /api/telemetry/engines?[query not logged] HTTP/1.1" in record.getMessage()


def test_frame_fault_lines_are_one_warning_per_interval_without_traceback() -> None:
    """uvicorn's invalid UTF-8 ERROR becomes a WARNING without exc_info; repeats within the
    interval are held back and the next line says how many."""
    now = [0.0]
    faults = FrameFaultLines(interval=60.0, clock=lambda: now[0])

    def fault() -> logging.LogRecord:
        try:
            b"\xff".decode()
        except UnicodeDecodeError:
            info = sys.exc_info()
        msg = "Invalid UTF-8 sequence received from client."
        return logging.LogRecord("uvicorn.error", logging.ERROR, "x", 1, msg, (), info)

    first = fault()
    assert faults.filter(first)
    assert first.levelno == logging.WARNING and first.exc_info is None
    assert "1007" in first.getMessage()
    assert not faults.filter(fault()) and not faults.filter(fault())
    now[0] = 61.0
    later = fault()
    assert faults.filter(later) and "2 more" in later.getMessage()
    other = logging.LogRecord("uvicorn.error", logging.ERROR, "x", 1, "boom", (), None)
    assert faults.filter(other) and other.levelno == logging.ERROR
