"""`log_handler()`: a logging.Handler that ships records to the hub without blocking the engine."""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import TYPE_CHECKING

from hub.client.intake import LOG, DropReason

if TYPE_CHECKING:
    from hub.client.recorder import Recorder

__all__ = ["SHIPPING", "HubLogHandler"]

# True inside the sender (its task, and every task and callback it starts): whatever the shipping
# path logs is never shipped, or one log line could cause another, forever.
SHIPPING: ContextVar[bool] = ContextVar("hub_client_shipping", default=False)
_OWN_LOGGERS = ("websockets", "hub.client")


class HubLogHandler(logging.Handler):
    """Queues each record (level, logger, message, exception text, `extra`) for the sender.

    `emit` only formats the message (so later changes to the arguments cannot alter it) and
    appends to the client's bounded intake; `extra` fields are made JSON-safe by the sender.
    Nothing here takes the handler lock, blocks, prints or raises.
    """

    def __init__(self, client: Recorder, level: int | str = logging.INFO) -> None:
        super().__init__(level)
        self._client = client
        self._exc_formatter = logging.Formatter()

    def handle(self, record: logging.LogRecord) -> bool:
        """Filter and emit without the handler lock: `emit` is thread-safe on its own."""
        if not self.filters:
            self.emit(record)
            return True
        result = self.filter(record)
        if isinstance(result, logging.LogRecord):  # Python 3.12+: a filter may return a record
            record = result
        if result:
            self.emit(record)
        return bool(result)

    def emit(self, record: logging.LogRecord) -> None:
        """Queue `record` for the hub; records from the shipping path itself are skipped."""
        intake = self._client.intake
        try:
            if SHIPPING.get() or record.name.startswith(_OWN_LOGGERS):
                return  # the client's own records (and websockets') stay local by design
            exc = record.exc_text
            if record.exc_info and not exc:
                exc = self._exc_formatter.formatException(record.exc_info)
            if record.stack_info:
                exc = f"{exc}\n{record.stack_info}" if exc else record.stack_info
            message = record.getMessage()
            intake.append(
                (LOG, record.created, record.levelname, record.name, message, exc, record)
            )
        except Exception:
            intake.count_drop(DropReason.INVALID)
