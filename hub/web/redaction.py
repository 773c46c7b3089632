"""Keep secrets out of the server's own log lines: uvicorn logs each WebSocket handshake with its
query string (on the "uvicorn.error" logger, whatever `access_log` says), and an embed link
carries its token there. This filter logs the path without the query."""

from __future__ import annotations

import logging

__all__ = ["QueryRedaction", "redact_query_strings"]

_LOGGER = "uvicorn.error"


class QueryRedaction(logging.Filter):
    """Drops the query string from uvicorn's '%s - "WebSocket %s" ...' handshake lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the path argument in place; never drops a record."""
        args = record.args
        if isinstance(args, tuple) and len(args) >= 2 and "WebSocket %s" in str(record.msg):
            path = str(args[1])
            if "?" in path:
                record.args = (args[0], path.partition("?")[0] + "?[query not logged]", *args[2:])
        return True


def redact_query_strings() -> None:
    """Install the filter on uvicorn's logger once (loggers are per process)."""
    logger = logging.getLogger(_LOGGER)
    if not any(isinstance(f, QueryRedaction) for f in logger.filters):
        logger.addFilter(QueryRedaction())
