"""The client's I/O shell deciding what a hub reply or close means (no socket is opened)."""

from __future__ import annotations

import json
import logging

import pytest

from hub.client import ClientCore, ClientOptions
from hub.client.sender import Sender

URL = "ws://127.0.0.1:1/ws/engine"
OPTIONS = ClientOptions(backoff_base=0.05, backoff_max=0.2, auth_backoff=60.0)
RATE_LIMITED = {
    "kind": "error",
    "code": "rate_limited",
    "detail": "engine 'fno' is over its rate limit",
    "seq": None,
    "index": None,
    "retry_after": 0.05,
    "resume_seq": 1,
    "messages_per_second": 100.0,
    "bytes_per_second": 0.0,
}
FLOOD_REASON = "over the rate limit for 10 s: wait retry_after on rate_limited"


def make_sender() -> Sender:
    """A sender for engine `fno` that has not connected (built inside the test's loop)."""
    core = ClientCore(
        OPTIONS, engine="fno", mode="paper", boot_id="b" * 32, pid=1, started_at=0.0, meta={}
    )
    return Sender(core, URL, None, OPTIONS)


async def test_a_1008_after_rate_limited_reconnects_on_the_usual_backoff() -> None:
    """Closed for flooding: back on the reconnect backoff, not the 60 s of a refused token."""
    sender = make_sender()
    sender._received(json.dumps(RATE_LIMITED))
    assert sender._closed(1008, FLOOD_REASON) <= OPTIONS.backoff_max


async def test_a_1008_without_rate_limiting_waits_auth_backoff() -> None:
    """A 1008 on a connection never rate limited (a token refused or revoked) keeps auth_backoff."""
    sender = make_sender()
    assert sender._closed(1008, "token revoked") == OPTIONS.auth_backoff


async def test_an_error_without_a_seq_is_logged_as_a_rejected_frame(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An error the hub could not tie to a seq names the frame, never 'seq None'."""
    sender = make_sender()
    error = {"kind": "error", "code": "bad_json", "detail": "not JSON", "seq": None}
    with caplog.at_level(logging.WARNING, logger="hub.client.sender"):
        sender._received(json.dumps(error))
    [line] = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert "hub rejected a frame: not JSON (bad_json)" == line and "None" not in line
