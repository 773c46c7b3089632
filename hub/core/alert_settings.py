"""The `[alerts]` settings as typed values: built-in rules, user rules, receivers and routes.

Parsed once from the TOML table (`parse_alerts`); nothing deeper reads raw dicts. Receiver URLs
and tokens are secrets: `repr` hides them and `ReceiverConfig.shown` is what pages and logs get.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "BUILTIN_RULES",
    "AlertSettings",
    "AlertSettingsError",
    "Match",
    "ReceiverConfig",
    "ReceiverKind",
    "Route",
    "RuleConfig",
    "Severity",
    "UserRule",
    "parse_alerts",
    "parse_duration",
]

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
MAX_RULES = 200
MAX_RECEIVERS = 32
MAX_ROUTES = 64


class AlertSettingsError(ValueError):
    """An `[alerts]` setting the hub cannot use; the message names it and the fix."""


class Severity(enum.StrEnum):
    """How urgent an alert is; routes match on it."""

    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


class ReceiverKind(enum.StrEnum):
    """Where a receiver sends: the payload format follows from it."""

    WEBHOOK = "webhook"
    SLACK = "slack"
    DISCORD = "discord"
    TELEGRAM = "telegram"
    ALERTMANAGER = "alertmanager"


@dataclass(frozen=True, slots=True)
class RuleConfig:
    """One built-in rule: on/off, how long its condition must hold, severity and thresholds."""

    enabled: bool = True
    hold: float = 30.0  # `for` in TOML: seconds the condition holds before the alert fires
    severity: Severity = Severity.WARNING
    threshold: float = 0.0
    window: float = 300.0
    minimum: float = 0.0  # e.g. orders in the window before a reject rate means anything


# The defaults docs/alerts.md lists; a TOML table changes only the keys it names.
BUILTIN_RULES: Mapping[str, RuleConfig] = MappingProxyType(
    {
        "offline": RuleConfig(hold=30.0, severity=Severity.CRITICAL),
        "stale": RuleConfig(hold=0.0, severity=Severity.CRITICAL),
        "stalled": RuleConfig(hold=30.0, severity=Severity.WARNING),
        "status_error": RuleConfig(hold=0.0, severity=Severity.CRITICAL),
        "error_burst": RuleConfig(hold=0.0, threshold=5, window=300.0),
        "reject_rate": RuleConfig(hold=0.0, threshold=0.5, window=600.0, minimum=5),
        "no_fills": RuleConfig(hold=0.0, window=1800.0),
        "universe_collapse": RuleConfig(hold=0.0, threshold=50.0, window=600.0),
        "client_drops": RuleConfig(hold=0.0, threshold=1, window=300.0),
        "clock_skew": RuleConfig(hold=60.0, threshold=5.0),
        "store_failing": RuleConfig(hold=30.0, severity=Severity.CRITICAL),
    }
)


class Aggregate(enum.StrEnum):
    """What a user rule reads from a metric."""

    RATE = "rate"  # counter: increase per second over the rule's window
    VALUE = "value"  # gauge (or counter) value
    P95 = "p95"  # histogram session p95


_OPS = (">", ">=", "<", "<=")


@dataclass(frozen=True, slots=True)
class UserRule:
    """A threshold on an engine metric, scoped by engine glob and mode."""

    name: str
    metric: str
    aggregate: Aggregate = Aggregate.VALUE
    op: str = ">"
    threshold: float = 0.0
    tags: tuple[tuple[str, str], ...] = ()
    engine: str = "*"
    mode: str = "*"
    hold: float = 0.0
    window: float = 60.0
    severity: Severity = Severity.WARNING

    def breached(self, value: float) -> bool:
        """Whether `value` crosses the threshold."""
        t = self.threshold
        return {">": value > t, ">=": value >= t, "<": value < t, "<=": value <= t}[self.op]


@dataclass(frozen=True, slots=True)
class Match:
    """What a route matches; an empty field matches anything (engine is a glob)."""

    mode: tuple[str, ...] = ()
    engine: str = ""
    severity: tuple[str, ...] = ()
    rule: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Route:
    """Alerts that `match` go to `receiver`, repeated at most every `repeat_interval`."""

    match: Match
    receiver: str
    repeat_interval: float = 4 * 3600.0
    keep_going: bool = False  # `continue` in TOML: later routes may match too


@dataclass(frozen=True, slots=True)
class ReceiverConfig:
    """A place notifications go; `url` and `token` are secrets (never logged or served)."""

    name: str
    kind: ReceiverKind
    url: str = field(default="", repr=False)
    token: str = field(default="", repr=False)
    chat_id: str = ""
    timeout: float = 5.0
    attempts: int = 4
    queue: int = 100
    backoff: float = 1.0  # seconds before the first retry; doubles per retry (60 s at most)

    @property
    def shown(self) -> str:
        """How pages, logs and the API name this receiver: scheme and host, never path or token."""
        parts = urlsplit(self.url)
        return (
            f"{self.kind} {parts.scheme}://{parts.hostname or ''}/…" if self.url else str(self.kind)
        )


@dataclass(frozen=True, slots=True)
class AlertSettings:
    """Everything `[alerts]` configures; the defaults alert on the dashboard only."""

    enabled: bool = True
    rules: Mapping[str, RuleConfig] = field(default_factory=lambda: BUILTIN_RULES)
    user_rules: tuple[UserRule, ...] = ()
    receivers: tuple[ReceiverConfig, ...] = field(default=(), repr=False)
    routes: tuple[Route, ...] = ()
    resolve_after: float = 30.0  # the condition stays clear this long before the alert resolves
    quiet_after_resolve: float = 300.0  # a resolved alert that fires again waits this long to page
    max_alerts: int = 1000  # active (pending and firing) alerts kept; more are counted, not kept
    recent_resolved: int = 50
    max_silences: int = 500
    max_silence: float = 30 * 86400.0

    def rule(self, name: str) -> RuleConfig:
        """The settings of built-in rule `name`."""
        return self.rules.get(name, BUILTIN_RULES[name])

    def effective_routes(self) -> tuple[Route, ...]:
        """The configured routes, or by default: live engines (and the hub itself) page everyone."""
        if self.routes:
            return self.routes
        return tuple(
            Route(Match(mode=("live", "hub")), r.name, keep_going=True) for r in self.receivers
        )

    def receiver(self, name: str) -> ReceiverConfig | None:
        """The receiver called `name` (None: no such receiver)."""
        return next((r for r in self.receivers if r.name == name), None)


def parse_duration(name: str, raw: Any) -> float:
    """Seconds from "30s", "5m", "4h", "1d", "250ms" or a number."""
    if isinstance(raw, int | float) and not isinstance(raw, bool) and raw >= 0:
        return float(raw)
    match = _DURATION.match(raw) if isinstance(raw, str) else None
    if match is None:
        raise AlertSettingsError(f"{name} must be a duration like 30s, 5m or 4h (got {raw!r})")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _table(name: str, raw: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise AlertSettingsError(f"{name} must be a table (got {type(raw).__name__})")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise AlertSettingsError(
            f"{name} has unknown keys {unknown}; known: {', '.join(sorted(allowed))}"
        )
    return raw


def _number(name: str, raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw < 0:
        raise AlertSettingsError(f"{name} must be a non-negative number (got {raw!r})")
    return float(raw)


def _severity(name: str, raw: Any) -> Severity:
    try:
        return Severity(raw)
    except ValueError:
        raise AlertSettingsError(
            f"{name} must be one of {', '.join(Severity)} (got {raw!r})"
        ) from None


def _words(raw: Any) -> tuple[str, ...]:
    return tuple(str(w) for w in ([raw] if isinstance(raw, str) else raw or ()))


_RULE_KEYS = {"enabled", "for", "severity", "threshold", "window", "minimum"}
_USER_KEYS = {"metric", "aggregate", "op", "tags", "engine", "mode"} | _RULE_KEYS


def _builtin(name: str, raw: Any) -> RuleConfig:
    base = BUILTIN_RULES[name]
    table = _table(f"[alerts.rules.{name}]", raw, _RULE_KEYS)
    where = f"alerts.rules.{name}"
    return RuleConfig(
        enabled=bool(table.get("enabled", base.enabled)),
        hold=parse_duration(f"{where}.for", table.get("for", base.hold)),
        severity=_severity(f"{where}.severity", table.get("severity", base.severity)),
        threshold=_number(f"{where}.threshold", table.get("threshold", base.threshold)),
        window=parse_duration(f"{where}.window", table.get("window", base.window)),
        minimum=_number(f"{where}.minimum", table.get("minimum", base.minimum)),
    )


def _user(name: str, raw: Any) -> UserRule:
    where = f"alerts.rules.{name}"
    table = _table(f"[{where}]", raw, _USER_KEYS)
    if not _NAME.match(name):
        raise AlertSettingsError(f"rule name {name!r} must match [A-Za-z0-9_.-]{{1,64}}")
    try:
        aggregate = Aggregate(table.get("aggregate", "value"))
    except ValueError:
        raise AlertSettingsError(f"{where}.aggregate must be rate, value or p95") from None
    op = table.get("op", ">")
    if op not in _OPS:
        raise AlertSettingsError(f"{where}.op must be one of {', '.join(_OPS)} (got {op!r})")
    tags = table.get("tags", {})
    if not isinstance(tags, dict) or len(tags) > 15:
        raise AlertSettingsError(f"{where}.tags must be a table of at most 15 tags")
    return UserRule(
        name=name,
        metric=str(table["metric"])[:128],
        aggregate=aggregate,
        op=op,
        threshold=float(table.get("threshold", 0.0)),
        tags=tuple(sorted((str(k), str(v)) for k, v in tags.items())),
        engine=str(table.get("engine", "*")),
        mode=str(table.get("mode", "*")).lower(),
        hold=parse_duration(f"{where}.for", table.get("for", 0.0)),
        window=parse_duration(f"{where}.window", table.get("window", 60.0)),
        severity=_severity(f"{where}.severity", table.get("severity", "warning")),
    )


def _receiver(index: int, raw: Any) -> ReceiverConfig:
    where = f"[[alerts.receivers]] #{index + 1}"
    keys = {"name", "type", "url", "token", "chat_id", "timeout", "attempts", "queue", "backoff"}
    table = _table(where, raw, keys)
    name = str(table.get("name", ""))
    if not _NAME.match(name):
        raise AlertSettingsError(f"{where} needs a name matching [A-Za-z0-9_.-]{{1,64}}")
    try:
        kind = ReceiverKind(table.get("type", "webhook"))
    except ValueError:
        raise AlertSettingsError(f"{where} type must be one of {', '.join(ReceiverKind)}") from None
    url = str(table.get("url", "https://api.telegram.org" if kind is ReceiverKind.TELEGRAM else ""))
    if urlsplit(url).scheme not in ("http", "https"):
        raise AlertSettingsError(f"receiver {name!r} needs an http(s) url")
    if kind is ReceiverKind.TELEGRAM and not (table.get("token") and table.get("chat_id")):
        raise AlertSettingsError(f"telegram receiver {name!r} needs token and chat_id")
    attempts, queue = int(table.get("attempts", 4)), int(table.get("queue", 100))
    if not (1 <= attempts <= 20 and 1 <= queue <= 10_000):
        raise AlertSettingsError(f"receiver {name!r}: attempts 1..20 and queue 1..10000")
    return ReceiverConfig(
        name,
        kind,
        url,
        str(table.get("token", "")),
        str(table.get("chat_id", "")),
        parse_duration(f"receiver {name!r} timeout", table.get("timeout", 5.0)),
        attempts,
        queue,
        parse_duration(f"receiver {name!r} backoff", table.get("backoff", 1.0)),
    )


def _route(index: int, raw: Any, receivers: set[str]) -> Route:
    where = f"[[alerts.routes]] #{index + 1}"
    table = _table(where, raw, {"match", "receiver", "repeat_interval", "continue"})
    match = _table(f"{where} match", table.get("match", {}), {"mode", "engine", "severity", "rule"})
    receiver = str(table.get("receiver", ""))
    if receiver not in receivers:
        raise AlertSettingsError(
            f"{where} sends to receiver {receiver!r}, which no [[alerts.receivers]] defines"
        )
    return Route(
        Match(
            tuple(m.lower() for m in _words(match.get("mode"))),
            str(match.get("engine", "")),
            _words(match.get("severity")),
            _words(match.get("rule")),
        ),
        receiver,
        parse_duration(f"{where} repeat_interval", table.get("repeat_interval", "4h")),
        bool(table.get("continue", False)),
    )


_BOUNDS = (("max_alerts", 1, 100_000), ("recent_resolved", 0, 1000), ("max_silences", 1, 10_000))
_TOP = {
    "enabled",
    "rules",
    "receivers",
    "routes",
    "resolve_after",
    "quiet_after_resolve",
    "max_alerts",
    "recent_resolved",
    "max_silences",
    "max_silence",
}


def parse_alerts(raw: Any) -> AlertSettings:
    """The `[alerts]` TOML table as `AlertSettings`; raises AlertSettingsError naming the fix."""
    table = _table("[alerts]", raw, _TOP)
    try:
        rules_raw = _table("[alerts.rules]", table.get("rules", {}), set(table.get("rules", {})))
        if len(rules_raw) > MAX_RULES:
            raise AlertSettingsError(f"at most {MAX_RULES} alert rules")
        rules = dict(BUILTIN_RULES)
        user: list[UserRule] = []
        for name, body in rules_raw.items():
            if name in BUILTIN_RULES:
                rules[name] = _builtin(name, body)
            elif isinstance(body, dict) and "metric" in body:
                user.append(_user(name, body))
            else:
                raise AlertSettingsError(
                    f"[alerts.rules.{name}] is no built-in rule ({', '.join(BUILTIN_RULES)}); "
                    "a rule of your own needs `metric = ...`"
                )
        raw_receivers = table.get("receivers", [])
        raw_routes = table.get("routes", [])
        if not isinstance(raw_receivers, list) or len(raw_receivers) > MAX_RECEIVERS:
            raise AlertSettingsError(f"alerts.receivers: at most {MAX_RECEIVERS} [[tables]]")
        if not isinstance(raw_routes, list) or len(raw_routes) > MAX_ROUTES:
            raise AlertSettingsError(f"alerts.routes: at most {MAX_ROUTES} [[tables]]")
        receivers = tuple(_receiver(i, r) for i, r in enumerate(raw_receivers))
        names = [r.name for r in receivers]
        if len(set(names)) != len(names):
            raise AlertSettingsError("two [[alerts.receivers]] have the same name")
        routes = tuple(_route(i, r, set(names)) for i, r in enumerate(raw_routes))
        for key, low, high in _BOUNDS:
            value = table.get(key)
            if value is not None and (type(value) is not int or not low <= value <= high):
                raise AlertSettingsError(
                    f"alerts.{key} must be an integer {low}..{high} (got {value!r})"
                )
        return AlertSettings(
            enabled=bool(table.get("enabled", True)),
            rules=MappingProxyType(rules),
            user_rules=tuple(user),
            receivers=receivers,
            routes=routes,
            resolve_after=parse_duration("alerts.resolve_after", table.get("resolve_after", 30.0)),
            quiet_after_resolve=parse_duration(
                "alerts.quiet_after_resolve", table.get("quiet_after_resolve", 300.0)
            ),
            max_alerts=int(table.get("max_alerts", 1000)),
            recent_resolved=int(table.get("recent_resolved", 50)),
            max_silences=int(table.get("max_silences", 500)),
            max_silence=parse_duration("alerts.max_silence", table.get("max_silence", "30d")),
        )
    except AlertSettingsError:
        raise
    except (TypeError, KeyError, ValueError) as exc:
        raise AlertSettingsError(f"[alerts] cannot use this value: {exc}") from None
