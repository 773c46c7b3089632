"""What each receiver type is sent, and the one small HTTP POST that sends it.

Bodies: Alertmanager's webhook JSON (version "4") for `webhook`, `{"text"}` for Slack,
`{"content"}` for Discord, Telegram's `sendMessage`, and Alertmanager's `POST /api/v2/alerts`
list. The URL (and Telegram's token inside it) is a secret: nothing here logs it, and errors
name only the receiver and what went wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

import msgspec

from hub import __version__
from hub.core.alert_settings import ReceiverConfig, ReceiverKind, Severity
from hub.core.alerts import Alert, AlertState
from hub.core.records import utc
from hub.core.routes import Outgoing

__all__ = ["DeliveryError", "post_json", "render", "send_test"]

_encode = msgspec.json.Encoder().encode
_ZERO = "0001-01-01T00:00:00Z"  # Alertmanager's "no end time"
MAX_TEXT_ALERTS = 20  # lines in a chat message; the rest are counted
MAX_RESPONSE_HEAD = 8192


class DeliveryError(Exception):
    """One attempt failed; the message is safe to log (no URL, no token)."""


def _labels(alert: Alert) -> dict[str, str]:
    return {
        "alertname": alert.rule,
        "engine": alert.engine,
        "mode": alert.mode,
        "severity": str(alert.severity),
    }


def _am_alert(alert: Alert, external_url: str) -> dict[str, Any]:
    """One alert as Alertmanager's API and webhook write it."""
    resolved = alert.state is AlertState.RESOLVED and alert.resolved_at is not None
    labels = _labels(alert)
    fingerprint = hashlib.sha256(_encode(sorted(labels.items()))).hexdigest()[:16]
    return {
        "status": "resolved" if resolved else "firing",
        "labels": labels,
        "annotations": {"summary": alert.summary},
        "startsAt": utc(alert.fired_at or alert.since).isoformat(),
        "endsAt": utc(alert.resolved_at).isoformat() if resolved and alert.resolved_at else _ZERO,
        "generatorURL": f"{external_url}/" if external_url else "",
        "fingerprint": fingerprint,
    }


def _text(out: Outgoing) -> str:
    """A chat message: one line per alert."""
    lines = []
    for alert in out.alerts[:MAX_TEXT_ALERTS]:
        state = "RESOLVED" if alert.state is AlertState.RESOLVED else "FIRING"
        where = alert.engine or "hub"
        lines.append(
            f"[{state}] {alert.rule} on {where} ({alert.mode}, {alert.severity}): {alert.summary}"
        )
    if len(out.alerts) > MAX_TEXT_ALERTS:
        lines.append(f"... and {len(out.alerts) - MAX_TEXT_ALERTS} more")
    return "\n".join(lines)


def render(receiver: ReceiverConfig, out: Outgoing, external_url: str = "") -> tuple[str, bytes]:
    """The URL to POST to and the JSON body, for `receiver`'s type."""
    kind, url = receiver.kind, receiver.url
    if kind is ReceiverKind.WEBHOOK:
        alerts = [_am_alert(a, external_url) for a in out.alerts]
        common = _labels(out.alerts[0]) if len(out.alerts) == 1 else {}
        body: Any = {
            "version": "4",
            "groupKey": f'{{}}:{{receiver="{receiver.name}"}}',
            "truncatedAlerts": 0,
            "status": str(out.status),
            "receiver": receiver.name,
            "groupLabels": {},
            "commonLabels": common,
            "commonAnnotations": {},
            "externalURL": external_url,
            "alerts": alerts,
        }
    elif kind is ReceiverKind.SLACK:
        body = {"text": _text(out)[:3000]}
    elif kind is ReceiverKind.DISCORD:
        body = {"content": _text(out)[:2000]}
    elif kind is ReceiverKind.TELEGRAM:
        url = f"{url.rstrip('/')}/bot{receiver.token}/sendMessage"
        body = {"chat_id": receiver.chat_id, "text": _text(out)[:4096]}
    else:
        url = f"{url.rstrip('/')}/api/v2/alerts"
        body = [_am_alert(a, external_url) for a in out.alerts]
    return url, _encode(body)


async def send_test(receiver: ReceiverConfig) -> int:
    """Send one made-up firing alert to `receiver` (one attempt); its HTTP status."""
    now = time.time()
    alert = Alert(
        0,
        "test",
        "engine-hub",
        "test",
        Severity.INFO,
        "a test notification from `engine-hub alerts test`: this receiver works",
        AlertState.FIRING,
        now,
        now,
    )
    url, body = render(receiver, Outgoing(receiver.name, (alert,)))
    return await post_json(url, body, receiver.timeout)


async def post_json(url: str, body: bytes, timeout: float) -> int:
    """POST `body` to `url` (HTTP/1.1, one connection); the status code. Raises DeliveryError."""
    parts = urlsplit(url)
    https = parts.scheme == "https"
    host, port = parts.hostname or "", parts.port or (443 if https else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    head = (
        f"POST {target} HTTP/1.1\r\nHost: {parts.netloc.rpartition('@')[2]}\r\n"
        f"User-Agent: engine-hub/{__version__}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            context = ssl.create_default_context() if https else None
            reader, writer = await asyncio.open_connection(host, port, ssl=context)
            writer.write(head + body)
            await writer.drain()
            line = await reader.readline()
    except TimeoutError:
        raise DeliveryError(f"no answer within {timeout:g} s") from None
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise DeliveryError(f"cannot connect ({type(exc).__name__})") from None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):  # a TLS peer that never closes: give up
                    await writer.wait_closed()
    fields = line[:MAX_RESPONSE_HEAD].split()
    if len(fields) < 2 or not fields[1].isdigit():
        raise DeliveryError("the answer was not HTTP")
    return int(fields[1])
