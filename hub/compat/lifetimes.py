"""Lifetime counter totals read back from the hub, for `reset_on_startup: false`."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

__all__ = ["api_url", "fetch_lifetimes", "lifetimes"]

log = logging.getLogger(__name__)

MAX_BODY = 8 * 1024 * 1024


def api_url(url: str, path: str, engine: str) -> str:
    """The hub's API endpoint `path` for `engine`, from the engine URL (ws -> http)."""
    parts = urllib.parse.urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    query = urllib.parse.urlencode({"engine": engine})
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, query, ""))


def lifetimes(snapshot: Any, engine: str, ours: bool) -> dict[str, float]:
    """Counter name -> earlier boots' total (summed over tags) from a `/metrics` API body.

    `ours`: the snapshot's session is this boot's (its increments are counted locally), so it
    is taken off the lifetime; otherwise the whole lifetime is earlier boots'.
    """
    totals: dict[str, float] = {}
    if not isinstance(snapshot, Mapping):
        return totals
    engines = snapshot.get("engines")
    mine = engines.get(engine) if isinstance(engines, Mapping) else None
    counters = mine.get("counters") if isinstance(mine, Mapping) else None
    for series in counters if isinstance(counters, list) else []:
        if isinstance(series, Mapping) and isinstance(series.get("name"), str):
            lifetime, session = series.get("lifetime"), series.get("session")
            if isinstance(lifetime, int | float) and isinstance(session, int | float):
                earlier = lifetime - session if ours else lifetime
                totals[series["name"]] = totals.get(series["name"], 0.0) + earlier
    return totals


def _get(url: str, api_token: str | None, timeout: float) -> Any:
    request = urllib.request.Request(url)
    if api_token:
        request.add_header("Authorization", f"Bearer {api_token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read(MAX_BODY))


def _current_boot(url: str, engine: str, api_token: str | None, timeout: float) -> Any:
    body = _get(api_url(url, "/api/telemetry/engines", engine), api_token, timeout)
    engines = body.get("engines") if isinstance(body, Mapping) else None
    for card in engines if isinstance(engines, list) else []:
        if isinstance(card, Mapping) and card.get("name") == engine:
            return card.get("boot_id")
    return None


def fetch_lifetimes(
    url: str, engine: str, boot_id: str, api_token: str | None, timeout: float = 5.0
) -> dict[str, float]:
    """Earlier boots' counter totals from the hub; {} (logged) when the hub cannot say."""
    metrics_url = api_url(url, "/api/telemetry/metrics", engine)
    try:
        for _ in range(3):
            # The hub's boot before and after the snapshot tells whose session it holds: our
            # hello may arrive between the two requests, and then the snapshot is ambiguous.
            before = _current_boot(url, engine, api_token, timeout)
            body = _get(metrics_url, api_token, timeout)
            after = _current_boot(url, engine, api_token, timeout)
            if before == after:
                return lifetimes(body, engine, ours=after == boot_id)
        return {}
    except urllib.error.HTTPError as exc:
        if exc.code != 404:  # 404: the hub never saw this engine, so there is nothing to add
            log.warning(
                "lifetime metrics unavailable (HTTP %s from the hub; an API token goes in "
                "ENGINE_HUB_API_TOKEN); counters start at 0",
                exc.code,
            )
        return {}
    except (OSError, ValueError) as exc:
        log.warning("lifetime metrics unavailable (%s); counters start at 0", exc)
        return {}
    return lifetimes(body, engine)
