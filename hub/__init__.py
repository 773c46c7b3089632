"""Engine Hub: a live telemetry hub for long-running trading engines."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
