"""Keep the server's own log lines safe to keep and read.

Secrets: uvicorn logs each WebSocket handshake with its query string (on the "uvicorn.error"
logger, whatever `access_log` says), and an embed link carries its token there; its HTTP access
lines (off in `engine-hub serve`, on when another server runs the app) carry the query too. These
filters log the path without the query.

Floods: uvicorn logs an ERROR with a full traceback for every text frame that is not UTF-8 (it
closes the socket with 1007). A peer can send those as fast as it can connect, so that line
becomes one WARNING without a traceback, at most once per `interval`, saying how many were held.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from hub.core.throttles import LogThrottle

__all__ = ["FrameFaultLines", "QueryRedaction", "redact_query_strings"]

_LOGGER = "uvicorn.error"
_ACCESS_LOGGER = "uvicorn.access"
_HIDDEN = "?[query not logged]"
# uvicorn's per-frame faults (websockets_sansio_impl): the message it logs -> what we say instead
_FAULTS = {
    "Invalid UTF-8 sequence received from client.": (
        "closed a WebSocket with 1007: a text frame was not valid UTF-8 "
        "(engine sockets: counted as drops invalid_utf8 in /api/telemetry/stats)"
    ),
}


def _without_query(path: object) -> object:
    text = str(path)
    return text.partition("?")[0] + _HIDDEN if "?" in text else path


class QueryRedaction(logging.Filter):
    """Drops the query string from uvicorn's handshake lines and HTTP access lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the path argument in place; never drops a record."""
        args = record.args
        if not isinstance(args, tuple):
            return True
        if len(args) >= 2 and "WebSocket %s" in str(record.msg):
            record.args = (args[0], _without_query(args[1]), *args[2:])
        elif record.name == _ACCESS_LOGGER and len(args) >= 3:
            # uvicorn.access: '%s - "%s %s HTTP/%s" %d' (client, method, path?query, version, status)
            record.args = (*args[:2], _without_query(args[2]), *args[3:])
        return True


class FrameFaultLines(logging.Filter):
    """uvicorn's per-frame fault lines: one WARNING, no traceback, at most once per interval."""

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.throttle = LogThrottle(interval)
        self.clock = clock

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite a known fault line (or hold it back); every other record passes untouched."""
        said = _FAULTS.get(str(record.msg))
        if said is None:
            return True
        held = self.throttle.due(said, self.clock())
        if held is None:
            return False
        more = f" ({held} more since the last such line)" if held else ""
        record.msg, record.args = f"{said}{more}", ()
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text = None, None
        return True


def redact_query_strings() -> None:
    """Install the filters on uvicorn's loggers once (loggers are per process)."""
    logger = logging.getLogger(_LOGGER)
    if not any(isinstance(f, QueryRedaction) for f in logger.filters):
        logger.addFilter(QueryRedaction())
    if not any(isinstance(f, FrameFaultLines) for f in logger.filters):
        logger.addFilter(FrameFaultLines())
    access = logging.getLogger(_ACCESS_LOGGER)
    if not any(isinstance(f, QueryRedaction) for f in access.filters):
        access.addFilter(QueryRedaction())
