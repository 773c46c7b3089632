"""The engine-facing calls shared by both clients: each one is tiny, never blocks and never raises."""

from __future__ import annotations

import functools
import inspect
import itertools
import logging
import os
import socket
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar

from hub import __version__
from hub.client.core import ClientCore, ClientStats, ConnectionState
from hub.client.endpoints import engine_urls
from hub.client.handlers import HubLogHandler
from hub.client.intake import EVENT, LOG, OBSERVE, DropReason, Intake, NullIntake
from hub.client.options import ClientOptions, make_options, validate_identity
from hub.core.messages import ChainLink, Status

__all__ = ["Recorder", "Timer"]

F = TypeVar("F", bound=Callable[..., Any])
_MAX_STRATEGIES = 64  # names kept in state["active_strategies"]; the count stays exact
_MAX_CYCLE = 128  # characters of a cycle id (the hub's limit)
_MAX_REF = 2**63 - 1


def _link(ref: int, cycle_id: Any, parent: Any) -> ChainLink:
    """The chain link of a new event; a parent that is no ref, or an empty cycle id, is left out."""
    link = ChainLink(ref)
    if type(parent) is int and 0 < parent <= _MAX_REF:
        link.parent = parent
    if cycle_id is not None:
        text = cycle_id if isinstance(cycle_id, str) else str(cycle_id)
        if text:
            link.cycle = text[:_MAX_CYCLE]
    return link


def _seconds(value: Any) -> Any:
    """A datetime as Unix seconds (naive means UTC); anything else unchanged."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return value


class Recorder:
    """Health, metrics, events and logs for one engine boot (the part of the client engines call)."""

    def __init__(
        self,
        url: str | None,
        engine: str,
        mode: str,
        token: str | None,
        options: Mapping[str, Any],
        urls: Sequence[str] | None = None,
    ) -> None:
        self.options: ClientOptions = make_options(options)
        validate_identity(engine, mode)
        self.urls = engine_urls(url, urls)  # the nodes, tried round robin (docs/client.md)
        self.url = self.urls[0]
        self.engine = engine
        self.mode = mode
        self.token = token
        self.boot_id = uuid.uuid4().hex
        meta = {
            "client": f"engine-hub/{__version__}",
            "host": socket.gethostname(),
            **self.options.meta,
        }
        self._core = ClientCore(
            self.options,
            engine=engine,
            mode=mode,
            boot_id=self.boot_id,
            pid=os.getpid(),
            started_at=time.time(),
            meta=meta,
        )
        self._intake: Intake = self._core.intake if self.options.enabled else NullIntake()
        self._refs = itertools.count(1)  # chain refs of this boot (next() is atomic under the GIL)

    @property
    def intake(self) -> Intake:
        """Where records go (log handlers hold the client and append here)."""
        return self._intake

    @property
    def stats(self) -> ClientStats:
        """Delivery counters: state, seqs, buffered, sent, replayed, rejected and dropped by reason."""
        return self._core.stats()

    @property
    def connected(self) -> bool:
        """True while the hub has welcomed this client."""
        return self._core.state is ConnectionState.ONLINE

    # Health.

    def heartbeat(self, /, **fields: Any) -> None:
        """Update health fields (status, loop_tick, universe_size, open_positions, last_error, state)."""
        try:
            self._intake.update_health(fields)
        except Exception:
            self._intake.count_drop(DropReason.INVALID)

    def mark_error(self, error: BaseException | str) -> None:
        """Set status `error` and `last_error`, and publish an `error` event."""
        try:
            payload: dict[str, Any]
            if isinstance(error, BaseException):
                kind, message = type(error).__name__, str(error)
                text = "".join(traceback.format_exception(error))
                payload = {"error_type": kind, "message": message, "traceback": text}
                last_error = f"{kind}: {message}" if message else kind
            else:
                last_error = str(error)
                payload = {"error_type": "error", "message": last_error}
            self._intake.update_health({"status": "error", "last_error": last_error})
            self._intake.append((EVENT, time.time(), "error", payload))
        except Exception:
            self._intake.count_drop(DropReason.INVALID)

    def report_pnl(
        self,
        /,
        realized: float | None = None,
        unrealized: float | None = None,
        exposure: float | None = None,
        currency: str | None = None,
    ) -> None:
        """Report P&L and exposure; rides on heartbeat `state["pnl"]` (see docs/protocol.md)."""
        report = {"realized": realized, "unrealized": unrealized, "exposure": exposure}
        pnl: dict[str, Any] = {k: v for k, v in report.items() if v is not None}
        if currency:
            pnl["currency"] = currency
        # As a keyword of its own (it lands in state["pnl"]), not state={...}: pending heartbeat
        # fields coalesce per keyword, so a state= here would replace the engine's own pending one.
        self.heartbeat(pnl=pnl)

    # Engine state (heartbeat `state`; the dashboard and `engine-hub tui` read these keys).

    def set_bot_state(self, /, **state: Any) -> None:
        """Merge free-form keys into the heartbeat `state` (datetimes travel as Unix seconds)."""
        self.heartbeat(state={key: _seconds(value) for key, value in state.items()})

    def set_next_cycle_time(self, when: float | datetime | None) -> None:
        """When the next cycle starts (Unix seconds or a datetime; None: not scheduled)."""
        self.heartbeat(state={"next_cycle_at": _seconds(when)})

    def set_trading_hours_active(self, active: bool, window: str | None = None) -> None:
        """Whether trading hours are on now, and the window in words (e.g. "06:00-19:00 UTC")."""
        state: dict[str, Any] = {"trading_hours_active": bool(active)}
        if window is not None:
            state["trading_hours"] = str(window)
        self.heartbeat(state=state)

    def set_active_strategies(self, active: Iterable[str] | int, total: int | None = None) -> None:
        """The strategies running now (names or a count) out of `total` configured."""
        try:
            value: Any = active if isinstance(active, int) else [str(n) for n in active]
            if isinstance(value, list) and len(value) > _MAX_STRATEGIES:
                value = [*value[:_MAX_STRATEGIES], f"+{len(value) - _MAX_STRATEGIES} more"]
            state: dict[str, Any] = {"active_strategies": value}
            if total is not None:
                state["strategies_total"] = total
            self.heartbeat(state=state)
        except Exception:
            self._intake.count_drop(DropReason.INVALID)

    def set_last_cycle(
        self, ok: bool, duration: float | None = None, error: str | None = None
    ) -> None:
        """The last cycle's result: ok or failed, how long it took (seconds), and why it failed."""
        try:
            result: dict[str, Any] = {"ok": bool(ok), "at": time.time()}
            if duration is not None:
                result["duration"] = duration
            if error is not None:
                result["error"] = str(error)
            self.heartbeat(state={"last_cycle": result})
        except Exception:
            self._intake.count_drop(DropReason.INVALID)

    def mark_stopped(self) -> None:
        """Report status `stopped` and send `bye` after everything recorded so far."""
        self._finish(Status.STOPPED)

    def _finish(self, status: Status) -> None:
        """Queue the final status and `bye` (only the first call counts)."""
        if self.options.enabled and not self._core.bye_requested:
            self._intake.update_health({"status": status})
            self._core.request_bye(status)
            self._intake.wake()

    def _exited(self, exc: BaseException | None) -> None:
        """Leaving a `with` block: an exception marks the engine as failed before `bye`."""
        if isinstance(exc, Exception):
            self.mark_error(exc)
            self._finish(Status.ERROR)

    # Metrics.

    def increment(self, name: str, amount: float = 1, /, **tags: Any) -> None:
        """Add `amount` to counter `name`; calls are summed per series until the next flush."""
        try:
            self._intake.inc((name, tuple(tags.items())) if tags else name, amount)
        except Exception:
            self._intake.count_drop(DropReason.INVALID)

    def set_gauge(self, name: str, value: float, /, **tags: Any) -> None:
        """Set gauge `name`; only the latest value per series is sent each flush."""
        try:
            self._intake.set_gauge((name, tuple(tags.items())) if tags else name, value)
        except Exception:
            self._intake.count_drop(DropReason.INVALID)

    def observe(self, name: str, value: float, /, **tags: Any) -> None:
        """Record one observation of histogram `name`."""
        try:
            self._intake.append((OBSERVE, (name, tuple(tags.items())) if tags else name, value))
        except Exception:
            self._intake.count_drop(DropReason.INVALID)

    def record_timing(self, name: str, seconds: float, /, **tags: Any) -> None:
        """Record one duration (seconds) of timer `name`."""
        try:
            self._intake.append((OBSERVE, (name, tuple(tags.items())) if tags else name, seconds))
        except Exception:
            self._intake.count_drop(DropReason.INVALID)

    def timer(self, name: str, /, **tags: Any) -> Timer:
        """Time a `with` block, or every call of the decorated (sync or async) function."""
        return Timer(self, name, tags)

    # Events.

    def publish(self, type: str, payload: Mapping[str, Any] | None = None) -> None:
        """Publish an event of `type` (payload is copied shallowly; do not mutate nested values)."""
        try:
            self._intake.append((EVENT, time.time(), type, dict(payload) if payload else {}))
        except Exception:
            self._intake.count_drop(DropReason.INVALID)

    def _chained(self, type: str, payload: dict[str, Any], cycle_id: Any, parent: Any) -> int:
        """Publish an event with a chain link; returns its ref (0 if the call failed)."""
        try:
            ref = next(self._refs)
            link = _link(ref, cycle_id, parent)
            self._intake.append((EVENT, time.time(), type, payload, link))
            return ref
        except Exception:
            self._intake.count_drop(DropReason.INVALID)
            return 0

    def record_signal(
        self,
        /,
        symbol: str,
        side: str,
        *,
        price: float | None = None,
        strategy: str | None = None,
        confidence: float | None = None,
        reason: str | None = None,
        cycle_id: str | int | None = None,
        parent: int | None = None,
        **extra: Any,
    ) -> int:
        """Publish a `signal_event` (what the strategy decided and why); returns its chain ref.

        Pass the ref as `parent=` of the decision or order that follows from it (docs/client.md).
        """
        payload = {"symbol": symbol, "side": side, "price": price, "strategy": strategy}
        payload.update(confidence=confidence, reason=reason, **extra)
        return self._chained("signal_event", payload, cycle_id, parent)

    def record_decision(
        self,
        /,
        decision: str,
        *,
        symbol: str | None = None,
        reason: str | None = None,
        cycle_id: str | int | None = None,
        parent: int | None = None,
        **extra: Any,
    ) -> int:
        """Publish a `decision_trace` (what was decided from the inputs); returns its chain ref."""
        payload = {"decision": decision, "symbol": symbol, "reason": reason, **extra}
        return self._chained("decision_trace", payload, cycle_id, parent)

    def record_order(
        self,
        /,
        order_id: str,
        symbol: str,
        side: str,
        quantity: float,
        *,
        price: float | None = None,
        status: str = "create",
        reason: str | None = None,
        cycle_id: str | int | None = None,
        parent: int | None = None,
        **extra: Any,
    ) -> int:
        """Publish an `order_event`; `status` is create, fill, reject or cancel; returns its chain ref.

        A fill or reject names the order's create (or the signal or decision) as `parent=`.
        """
        payload = {"order_id": order_id, "symbol": symbol, "side": side, "quantity": quantity}
        payload.update(price=price, status=status, reason=reason, **extra)
        return self._chained("order_event", payload, cycle_id, parent)

    def record_cycle(self, /, duration: float, number: int | None = None, **extra: Any) -> None:
        """Publish a `cycle` event (how long one loop iteration took, seconds); sets the last cycle.

        `ok=False`, `success=False` or an `error` in `extra` marks the cycle as failed.
        """
        self.publish("cycle", {"duration": duration, "number": number, **extra})
        error = extra.get("error")
        failed = extra.get("ok") is False or extra.get("success") is False or bool(error)
        self.set_last_cycle(not failed, duration, None if error is None else error)

    def record_error(
        self, error_type: str, message: str, context: Mapping[str, Any] | None = None
    ) -> None:
        """Publish an `error` event without changing the engine's status (see `mark_error`)."""
        self.publish("error", {"error_type": error_type, "message": message, "context": context})

    # Logs.

    def log(
        self,
        level: str,
        message: str,
        /,
        *,
        logger: str = "",
        exc: str | None = None,
        **extra: Any,
    ) -> None:
        """Ship one log line directly, without the `logging` machinery (about a microsecond).

        `level` is a name such as "INFO" or "warning"; `extra` fields travel as the line's extra.
        Use `log_handler()` to ship what the engine already logs through `logging`.
        """
        try:
            self._intake.append((LOG, time.time(), level, logger, message, exc, extra or None))
        except Exception:
            self._intake.count_drop(DropReason.INVALID)

    def log_handler(self, level: int | str = logging.INFO) -> logging.Handler:
        """A `logging.Handler` that ships records to the hub without blocking."""
        return HubLogHandler(self, level)


class Timer:
    """Times a block or a function into `record_timing(name, seconds, **tags)`."""

    __slots__ = ("_recorder", "_name", "_tags", "_start", "elapsed")

    def __init__(self, recorder: Recorder, name: str, tags: dict[str, Any]) -> None:
        self._recorder = recorder
        self._name = name
        self._tags = tags
        self._start = 0.0
        self.elapsed: float | None = None

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.elapsed = time.perf_counter() - self._start
        self._recorder.record_timing(self._name, self.elapsed, **self._tags)

    def __call__(self, func: F) -> F:
        """Decorate `func` so each call is timed (coroutine functions are timed until they return)."""
        recorder, name, tags = self._recorder, self._name, self._tags
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return await func(*args, **kwargs)
                finally:
                    recorder.record_timing(name, time.perf_counter() - start, **tags)

            return timed_async  # type: ignore[return-value]

        @functools.wraps(func)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                recorder.record_timing(name, time.perf_counter() - start, **tags)

        return timed  # type: ignore[return-value]
