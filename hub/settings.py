"""One frozen `Settings` built from defaults, an optional TOML file, the environment and CLI flags."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from hub.core.access import ApiToken, EngineToken, Role, User
from hub.core.alert_settings import AlertSettings, AlertSettingsError, parse_alerts

__all__ = [
    "ENV_PREFIX",
    "Settings",
    "SettingsError",
    "check_cluster_url",
    "load_settings",
    "redacted_url",
]

ENV_PREFIX = "ENGINE_HUB_"

KNOWN_EVENT_TYPES = (
    "signal_event",
    "indicator_event",
    "order_event",
    "position_event",
    "engine_health",
    "decision_trace",
    "universe_scan",
    "performance_update",
    "cycle",
    "error",
)

_DEFAULT_CAPACITIES: Mapping[str, int] = MappingProxyType(
    {"signal_event": 500, "order_event": 1000, "cycle": 100, "error": 200}
)


_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
_NODE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def redacted_url(url: str) -> str:
    """`url` with its password (if any) replaced by ***: what logs, errors and pages may show."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        port = f":{parts.port}" if parts.port is not None else ""
        netloc = f"{parts.username or ''}:***@{parts.hostname or ''}{port}"
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "(a malformed URL)"


def check_cluster_url(url: str) -> None:
    """Raise SettingsError (never naming the password) unless `url` is redis[s]://HOST[:PORT][/DB]."""
    shown, example = redacted_url(url), "use redis://HOST:PORT/DB, e.g. redis://127.0.0.1:6379/0"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # raises ValueError for a port that is not a number
    except ValueError:
        raise SettingsError(f"cluster_url {shown} is malformed: {example}") from None
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise SettingsError(f"cluster_url {shown} is not a Redis URL: {example}")
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise SettingsError(f"cluster_url {shown}: the database must be a number: {example}")


class SettingsError(ValueError):
    """A setting has a value the hub cannot use; the message names the setting and the fix."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Every tunable of the hub. Nothing below the CLI reads the environment."""

    host: str = "127.0.0.1"
    port: int = 8765
    db: str = "engine-hub.db"
    log_level: str = "info"
    token: str = field(
        default="", repr=False
    )  # when set, engines must send "Authorization: Bearer <token>" (any engine)

    # Who may connect (docs/security.md). Tables of their own in the TOML file.
    users: tuple[User, ...] = field(
        default=(), repr=False
    )  # [[users]]: viewers who sign in with a password
    api_tokens: tuple[ApiToken, ...] = field(
        default=(), repr=False
    )  # [[api_tokens]]: bearer tokens for programs
    engine_tokens: tuple[EngineToken, ...] = field(
        default=(), repr=False
    )  # [[engine_tokens]]: per-engine credentials
    allow_anonymous_viewers: bool = False  # off loopback without viewer auth: refuse, unless this
    public_url: str = ""  # how browsers reach the hub, e.g. https://hub.example.com
    allowed_hosts: tuple[str, ...] = ()  # Host headers served (besides loopback and public_url)
    trusted_proxies: tuple[str, ...] = ()  # addresses whose X-Forwarded-* / user header count
    proxy_user_header: str = ""  # e.g. X-Forwarded-User (oauth2-proxy), only from trusted_proxies
    proxy_admins: tuple[str, ...] = ()  # proxy-signed-in users who get the admin role
    revoked_embeds: tuple[str, ...] = ()  # embed link ids that no longer work
    session_secret: str = field(
        default="", repr=False
    )  # signs session cookies and embed links; random per start if empty
    session_idle: float = 8 * 3600.0  # a session ends after this long without a request
    session_lifetime: float = 7 * 86400.0  # and this long after sign-in, whatever
    login_attempts_per_minute: int = 10  # per client address

    # History store.
    db_synchronous: str = (
        "normal"  # "full" also survives power loss, at a cost (docs/operations.md)
    )
    commit_interval: float = 0.25
    # /healthz says "degraded" once records have waited this long past commit_interval (0: never).
    store_stall_after: float = 5.0
    store_max_pending: int = 200_000
    retention_events: int = 200_000  # per event type
    retention_logs: int = 100_000  # per engine
    retention_days: float = 30.0
    retention_interval: float = 60.0
    export_max_records: int = 100_000
    # Metric time series (docs/history.md): fine buckets kept series_fine_days, coarse ones
    # retention_days; a series beyond max_history_series_per_engine is live only (counted).
    series_fine_step: float = 10.0
    series_fine_days: float = 1.0
    series_coarse_step: float = 300.0
    max_history_series_per_engine: int = 500
    card_metrics: str = "session"  # which metric values cards show: session or lifetime

    # Engine protocol limits.
    max_message_bytes: int = 256 * 1024
    max_frame_bytes: int = 1024 * 1024
    max_log_line_bytes: int = 16 * 1024
    max_json_depth: int = 32
    max_future_seconds: float = 600.0
    # Older timestamps are accepted but counted (stats "flagged": past_timestamp): clocks lie.
    max_past_seconds: float = 7 * 86400.0
    reject_past_timestamps: bool = False  # refuse them instead (error past_timestamp)
    max_metric_tags: int = 15
    max_series_per_engine: int = 5000
    max_series_bytes_per_engine: int = 8 * 1024 * 1024  # metric names + tags, estimated bytes
    max_series_bytes: int = 256 * 1024 * 1024  # the same, summed over every engine
    max_engines: int = 256
    max_engine_connections: int = 1024  # open /ws/engine sockets, including ones awaiting hello
    max_event_types: int = 64
    max_pending_replies: int = 256

    # Per-engine fairness (docs/operations.md, "Limits and what is counted"); 0 turns one off.
    engine_messages_per_second: float = 2000.0  # refilled steadily into the engine's bucket
    engine_message_burst: int = 10_000  # messages an engine may send at once above that rate
    engine_bytes_per_second: float = 2 * 1024 * 1024  # frame text, refilled likewise
    engine_byte_burst: int = 10 * 1024 * 1024
    flood_close_after: float = 10.0  # refused for this long without one accepted frame: close 1008
    max_bad_frames_in_a_row: int = 100  # frames whose every message was rejected: close 1008

    # Connection behaviour.
    hello_timeout: float = 5.0
    handshake_timeout: float = 5.0  # to send a whole request head (HTTP or WebSocket upgrade)
    max_pending_per_ip: int = 64  # connections from one address still sending their request head
    ack_interval: float = 0.1
    ws_ping_interval: float = 20.0
    ws_ping_timeout: float = 20.0
    graceful_timeout: float = 10.0
    # Long-lived objects stay out of full garbage collections, thawed this often (s); 0: CPython's
    # own policy (hub/web/collector.py).
    gc_thaw_interval: float = 600.0

    # Health rules, as multiples of the engine's heartbeat interval.
    heartbeat_interval: float = 5.0
    late_after: float = 2.0
    stale_after: float = 6.0
    stalled_after: float = 6.0

    # Buffers.
    ring_capacities: Mapping[str, int] = field(default_factory=lambda: _DEFAULT_CAPACITIES)
    ring_default_capacity: int = 1000
    log_tail_lines: int = 1000
    history_points: int = 120

    # Readers.
    api_max_limit: int = 1000
    view_tick: float = 0.1
    table_refresh: float = (
        0.25  # tables and log tails re-render at most this often (cards: every tick)
    )
    sse_keepalive: float = 15.0
    sse_queue_events: int = 10_000
    max_sse_clients: int = 256

    # Dashboard.
    dashboard_queue_bytes: int = 1024 * 1024
    # The kernel send buffer of a dashboard socket on the direct path; Linux would autotune it to
    # MiBs that a frozen browser holds uncounted by dashboard_queue_bytes. 0 leaves the kernel's.
    dashboard_socket_buffer_bytes: int = 256 * 1024
    max_dashboards: int = 1000
    max_browser_message_bytes: int = 4096
    embed_origins: tuple[str, ...] = ()
    # Write frames straight to uvicorn's socket; False sends every frame through ASGI `send`.
    dashboard_direct_writes: bool = True
    # Dashboards that offer permessage-deflate get frames compressed once for all of them
    # (server_no_context_takeover); engines never (hub/web/fastwrite.py).
    dashboard_deflate: bool = True

    # Cluster (docs/operations.md, "Several nodes"): unset, the hub is one process and never
    # loads redis. The URL's password is never logged or shown (see `redacted_url`).
    cluster_url: str = field(default="", repr=False)  # redis://[:PASSWORD@]HOST:PORT/DB
    node_id: str = ""  # this node's name in the cluster (default: hostname-pid)
    cluster_prefix: str = "engine-hub"  # Redis keys start with this and a colon
    cluster_stream_maxlen: int = 1_000_000  # entries the stream keeps (approximately; trimmed)
    cluster_stream_max_age: float = 86_400.0  # seconds the stream keeps an entry (0: no age limit)
    cluster_buffer: int = 10_000  # frames held while Redis is unreachable; then sockets close
    cluster_lease_ttl: float = 10.0  # seconds an alert lease lasts without renewal
    cluster_node_timeout: float = 10.0  # a node silent this long is gone: its engines go offline

    # Alerts (docs/alerts.md): the [alerts] TOML table; receiver URLs and tokens are secrets.
    alerts: AlertSettings = field(default_factory=AlertSettings, repr=False)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
                raise SettingsError(f"setting {f.name!r} must not be negative (got {value})")
        if self.db_synchronous not in ("normal", "full"):
            raise SettingsError("'db_synchronous' must be normal or full")
        if self.card_metrics not in ("session", "lifetime"):
            raise SettingsError("'card_metrics' must be session or lifetime")
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"setting 'port' must be 0..65535 (got {self.port})")
        if self.max_message_bytes > self.max_frame_bytes:
            raise SettingsError("'max_message_bytes' must not exceed 'max_frame_bytes'")
        if self.session_secret and len(self.session_secret) < 16:
            raise SettingsError(
                "'session_secret' is too short to sign anything: use 32 random characters or more"
            )
        if self.max_series_bytes_per_engine > self.max_series_bytes:
            raise SettingsError("'max_series_bytes_per_engine' must not exceed 'max_series_bytes'")
        if not 0 < self.series_fine_step <= self.series_coarse_step or (
            self.series_coarse_step % self.series_fine_step
        ):
            raise SettingsError(
                "'series_coarse_step' must be a whole multiple of 'series_fine_step' (both above "
                "0), e.g. 300 and 10"
            )
        if self.max_past_seconds == 0:
            raise SettingsError(
                "'max_past_seconds' must be positive: it is how old a timestamp may be before it "
                "is flagged (a week, 604800, is the default)"
            )
        if self.handshake_timeout <= 0 or self.max_pending_per_ip < 1:
            raise SettingsError(
                "'handshake_timeout' must be above 0 and 'max_pending_per_ip' at least 1"
            )
        for rate, burst in (
            ("engine_messages_per_second", "engine_message_burst"),
            ("engine_bytes_per_second", "engine_byte_burst"),
        ):
            if getattr(self, rate) > 0 and getattr(self, burst) < 1:
                raise SettingsError(
                    f"{burst!r} must be at least 1 while {rate!r} is set (0 turns the limit off)"
                )
        if not math.isfinite(self.gc_thaw_interval):
            raise SettingsError("'gc_thaw_interval' must be a number of seconds (0 turns it off)")
        if not self.late_after < self.stale_after:
            raise SettingsError("'late_after' must be smaller than 'stale_after'")
        # A partial map (e.g. only "cycle") overrides those types and keeps the other defaults.
        capacities = {**_DEFAULT_CAPACITIES, **self.ring_capacities}
        if any(type(v) is not int or v < 1 for v in capacities.values()):
            raise SettingsError("'ring_capacities' values must be positive integers")
        object.__setattr__(self, "ring_capacities", MappingProxyType(capacities))
        if self.cluster_url:
            check_cluster_url(self.cluster_url)
        if self.node_id and not _NODE_ID.match(self.node_id):
            raise SettingsError(
                f"'node_id' {self.node_id!r} must be 1-64 of A-Z a-z 0-9 _ . : - (e.g. hub-a)"
            )
        if not _NODE_ID.match(self.cluster_prefix):
            raise SettingsError("'cluster_prefix' must be 1-64 of A-Z a-z 0-9 _ . : -")
        if self.cluster_buffer < 1 or self.cluster_stream_maxlen < 1:
            raise SettingsError("'cluster_buffer' and 'cluster_stream_maxlen' must be at least 1")
        if self.cluster_stream_max_age != 0 and not 0.5 <= self.cluster_stream_max_age <= 3e7:
            raise SettingsError(
                "'cluster_stream_max_age' must be 0 (no age limit) or 0.5 s to a year (e.g. 86400)"
            )
        if not 0.5 <= self.cluster_node_timeout <= 3600:
            raise SettingsError(
                "'cluster_node_timeout' must be between 0.5 and 3600 seconds (e.g. 10)"
            )
        if not 0.05 <= self.cluster_lease_ttl <= 3600:
            raise SettingsError(
                "'cluster_lease_ttl' must be between 0.05 and 3600 seconds (e.g. 10)"
            )
        for origin in self.embed_origins:
            if not _ORIGIN.match(origin):
                raise SettingsError(
                    f"embed origin {origin!r} must look like https://example.com (scheme and host, no path)"
                )

    def ring_capacity(self, event_type: str) -> int:
        """Capacity of the ring that keeps events of `event_type`."""
        return self.ring_capacities.get(event_type, self.ring_default_capacity)

    def replace(self, **changes: Any) -> Settings:
        """A copy with `changes` applied (validated like the original)."""
        return dataclasses.replace(self, **changes)


_ENTRY_TABLES = ("users", "api_tokens", "engine_tokens")


def _seconds(raw: Any) -> float | None:
    """A TOML datetime, an ISO-8601 string or Unix seconds, as Unix seconds."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, datetime):
        return raw.timestamp()
    if isinstance(raw, str):
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    return float(raw)


def _entries(name: str, raw: Any) -> tuple[Any, ...]:
    """The [[users]], [[api_tokens]] or [[engine_tokens]] tables as typed entries."""
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise SettingsError(f"{name!r} must be an array of tables ([[{name}]] in TOML)")
    out: list[Any] = []
    for item in raw:
        try:
            if name == "users":
                out.append(
                    User(str(item["name"]), Role(item.get("role", "viewer")), str(item["password"]))
                )
            elif name == "api_tokens":
                out.append(
                    ApiToken(
                        str(item["sha256"]),
                        Role(item.get("role", "viewer")),
                        str(item.get("name", "")),
                        _seconds(item.get("expires")),
                    )
                )
            else:
                engines, modes = item.get("engines", "*"), item.get("modes", "*")
                out.append(
                    EngineToken(
                        str(item["sha256"]),
                        tuple([engines] if isinstance(engines, str) else engines),
                        tuple(m.lower() for m in ([modes] if isinstance(modes, str) else modes)),
                        str(item.get("name", "")),
                    )
                )
        except KeyError as exc:
            raise SettingsError(f"[[{name}]] entry is missing {exc.args[0]!r}: {item!r}") from None
        except ValueError as exc:
            raise SettingsError(f"[[{name}]]: {exc}") from None
    return tuple(out)


def _alerts(raw: Any) -> AlertSettings:
    """The [alerts] table, its problems as SettingsError."""
    try:
        return parse_alerts(raw)
    except AlertSettingsError as exc:
        raise SettingsError(str(exc)) from None


def _coerce(name: str, raw: Any, default: Any) -> Any:
    """Turn a TOML or environment value into the type of the setting's default."""
    try:
        if isinstance(default, bool):
            if isinstance(raw, str):
                return raw.strip().lower() in ("1", "true", "yes", "on")
            return bool(raw)
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, tuple):
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            return tuple(str(item).strip().rstrip("/") for item in items if str(item).strip())
        if isinstance(default, Mapping):
            if isinstance(raw, str):
                pairs = (item.split("=", 1) for item in raw.split(",") if item.strip())
                return {key.strip(): int(value) for key, value in pairs}
            return {str(key): int(value) for key, value in dict(raw).items()}
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"setting {name!r} cannot use {raw!r}: {exc}") from None


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
) -> Settings:
    """Build settings: defaults < TOML file < environment (ENGINE_HUB_*) < explicit overrides.

    The TOML file is `config_file`, else `ENGINE_HUB_CONFIG` from `environ`.
    """
    environ = environ if environ is not None else {}
    defaults = Settings()
    known = {f.name: getattr(defaults, f.name) for f in fields(Settings)}
    values: dict[str, Any] = {}

    path = config_file or environ.get(f"{ENV_PREFIX}CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                table = tomllib.load(fh)
        except FileNotFoundError:
            raise SettingsError(f"config file {str(path)!r} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
        root, table = table, table.get("hub", table)
        for key in _ENTRY_TABLES:  # top-level arrays of tables, appended as-is by the CLI
            raw_entries = [*(root.pop(key, None) or ()), *(table.pop(key, None) or ())]
            if raw_entries:
                values[key] = _entries(key, raw_entries)
        raw_alerts = table.pop("alerts", None) or (
            root.pop("alerts", None) if root is not table else None
        )
        if raw_alerts is not None:  # [alerts] at the top, or under [hub]
            values["alerts"] = _alerts(raw_alerts)
        for key, raw in table.items():
            if key not in known:
                raise SettingsError(f"unknown setting {key!r} in {str(path)!r}")
            values[key] = _coerce(key, raw, known[key])

    for key, default in known.items():
        env_name = f"{ENV_PREFIX}{key.upper()}"
        if env_name in environ and key not in (*_ENTRY_TABLES, "alerts"):  # TOML only
            values[key] = _coerce(key, environ[env_name], default)

    for key, raw in (overrides or {}).items():
        if raw is None:
            continue
        if key not in known:
            raise SettingsError(f"unknown setting {key!r}")
        if key == "alerts":
            values[key] = raw if isinstance(raw, AlertSettings) else _alerts(raw)
            continue
        values[key] = tuple(raw) if key in _ENTRY_TABLES else _coerce(key, raw, known[key])
    return Settings(**values)


def default_environ() -> Mapping[str, str]:
    """The process environment; only the CLI calls this."""
    return os.environ
