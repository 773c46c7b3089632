"""One started `EngineClient` per (url, engine, mode, token) for the old systems' singletons."""

from __future__ import annotations

import threading
from dataclasses import replace

from hub.client import ConnectionState, EngineClient
from hub.compat.config import CompatConfig

__all__ = ["shared_client"]

# The replaced systems were process-wide singletons (`TelemetryCollector.instance()`, the bus);
# the collector and the bus of one process must share one boot of the engine, or the hub would
# see two connections fight over one name. This registry is that API's price, kept here only.
_CLIENTS: dict[CompatConfig, EngineClient] = {}
_LOCK = threading.Lock()


def shared_client(config: CompatConfig) -> EngineClient:
    """The started client for `config` (created on first use or after it was closed)."""
    with _LOCK:
        config = replace(config, api_token=None)  # one client per engine boot, whatever token
        client = _CLIENTS.get(config)
        if client is None or client.stats.state is ConnectionState.CLOSED:
            client = EngineClient(
                config.url, engine=config.engine, mode=config.mode, token=config.token
            ).start()
            _CLIENTS[config] = client
        return client
