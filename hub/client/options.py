"""Client tunables as one frozen value, plus the validation of the engine's identity and hub URL."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from hub.core.messages import ENGINE_NAME_PATTERN

__all__ = ["ClientOptions", "HealthProvider", "engine_url", "make_options", "validate_identity"]

HealthProvider = Callable[[], Mapping[str, Any]]

_MODE = re.compile(r"[A-Za-z0-9_-]{1,16}")
_ENGINE = re.compile(ENGINE_NAME_PATTERN)
_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Every tunable of the engine client; pass any of them as keyword arguments to the client."""

    enabled: bool = True
    max_buffer: int = 10_000  # messages waiting to be sent or acknowledged (drop oldest)
    max_batch: int = 500  # messages per frame; reaching it also wakes the sender early
    flush_interval: float = 0.1  # the sender drains and sends at least this often (seconds)
    heartbeat_interval: float = 5.0  # automatic heartbeats while connected (seconds)
    heartbeat_provider: HealthProvider | None = None  # extra heartbeat fields, called per beat
    initial_status: str = "running"
    close_timeout: float = 5.0  # close() waits this long for the hub to acknowledge everything
    hello_timeout: float = 5.0  # how long to wait for `welcome` after `hello`
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    auth_backoff: float = 60.0  # wait after the hub refused our token (HTTP 401/403, close 1008)
    max_series: int = 5000  # distinct counter and gauge series kept client-side
    max_tags: int = 15
    max_message_bytes: int = 256 * 1024  # until the hub's welcome says otherwise
    max_frame_bytes: int = 1024 * 1024
    max_log_bytes: int = 16 * 1024  # log message and exception text are cut to this
    meta: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)  # sent in hello
    connect_options: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)  # for websockets
    close_on_exit: bool = True  # the sync client flushes and closes at interpreter exit

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value <= 0:
                raise ValueError(f"client option {f.name!r} must be positive (got {value!r})")
        if self.backoff_base > self.backoff_max:
            raise ValueError("client option 'backoff_base' must not exceed 'backoff_max'")
        object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))
        object.__setattr__(self, "connect_options", MappingProxyType(dict(self.connect_options)))


def make_options(options: Mapping[str, Any]) -> ClientOptions:
    """Build `ClientOptions` from keyword arguments, naming any unknown one."""
    known = {f.name for f in fields(ClientOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(
            f"unknown client option(s) {', '.join(unknown)}; valid options: {', '.join(sorted(known))}"
        )
    return ClientOptions(**options)


def validate_identity(engine: str, mode: str) -> None:
    """Fail fast, at construction, on names the hub would reject at every connection."""
    if not isinstance(engine, str) or not _ENGINE.fullmatch(engine):
        raise ValueError(f"engine name {engine!r} must match [A-Za-z0-9_.-]{{1,64}}")
    if not isinstance(mode, str) or not _MODE.fullmatch(mode):
        raise ValueError(f"mode {mode!r} must match [A-Za-z0-9_-]{{1,16}} (e.g. 'paper' or 'live')")


def engine_url(url: str) -> str:
    """The engine endpoint for `url`: http(s) becomes ws(s) and a bare host gets `/ws/engine`."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(
            f"hub URL {url!r} must look like ws://HOST:PORT or ws://HOST:PORT/ws/engine"
        )
    path = parts.path if parts.path not in ("", "/") else "/ws/engine"
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))
