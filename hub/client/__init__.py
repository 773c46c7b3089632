"""Engine-side client library: ship health, metrics, events and logs to an Engine Hub.

Imports only msgspec, websockets and the standard library (never the hub's server stack).
"""

from __future__ import annotations

from hub.client.aio import AsyncEngineClient
from hub.client.core import ClientCore, ClientStats, ConnectionState
from hub.client.intake import DropReason
from hub.client.options import ClientOptions
from hub.client.recorder import Timer
from hub.client.sync import EngineClient

__all__ = [
    "AsyncEngineClient",
    "ClientCore",
    "ClientOptions",
    "ClientStats",
    "ConnectionState",
    "DropReason",
    "EngineClient",
    "Timer",
]
