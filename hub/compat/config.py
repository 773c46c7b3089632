"""Where the compatibility faces send to: `configure(...)` arguments over the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["DEFAULT_URL", "CompatConfig"]

DEFAULT_URL = "ws://127.0.0.1:8765"


@dataclass(frozen=True, slots=True)
class CompatConfig:
    """The hub URL, engine name, mode and engine token of one compatibility face."""

    url: str = DEFAULT_URL
    engine: str = "bot"
    mode: str = "paper"
    token: str | None = None
    api_token: str | None = None  # for reading lifetime metrics back (reset_on_startup false)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> CompatConfig:
        """ENGINE_HUB_URL, _ENGINE, _MODE, _TOKEN (and _API_TOKEN), else the defaults.

        The compatibility faces are the one place that reads the environment: the replaced
        systems were configured without code, and their users' engines call `instance()` bare.
        """
        env = os.environ if environ is None else environ
        return cls(
            url=env.get("ENGINE_HUB_URL") or DEFAULT_URL,
            engine=env.get("ENGINE_HUB_ENGINE") or "bot",
            mode=env.get("ENGINE_HUB_MODE") or "paper",
            token=env.get("ENGINE_HUB_TOKEN") or None,
            api_token=env.get("ENGINE_HUB_API_TOKEN") or None,
        )

    def with_overrides(self, **overrides: Any) -> CompatConfig:
        """This config with the arguments that were given (None keeps the current value)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})
