"""The replaced systems' APIs as thin layers over `hub.client.EngineClient`.

Code written against the old collector, reporter or bus runs with its import line changed to
`from hub.compat import ...`. Each call forwards to the typed client (which stays the primary
API: new calls go there, not here) and keeps the bounded local copy the old read side answered
from. See docs/migration.md.
"""

from __future__ import annotations

from hub.compat.buses import EVENT_TYPES, TelemetryBus
from hub.compat.collector import TelemetryCollector
from hub.compat.config import CompatConfig
from hub.compat.reporters import EngineTelemetry, EngineTelemetryReporter

__all__ = [
    "EVENT_TYPES",
    "CompatConfig",
    "EngineTelemetry",
    "EngineTelemetryReporter",
    "TelemetryBus",
    "TelemetryCollector",
]
