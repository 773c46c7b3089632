"""Where templates and static files live: inside the package when installed, at the repo root in a checkout."""

from __future__ import annotations

from pathlib import Path

__all__ = ["static_dir", "templates_dir"]

_PACKAGE = Path(__file__).resolve().parent.parent  # hub/


def _find(name: str) -> Path:
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise RuntimeError(
        f"cannot find the {name!r} directory next to the hub package; reinstall engine-hub "
        f"(a wheel ships it as hub/{name})"
    )


def templates_dir() -> Path:
    """The Jinja2 templates directory."""
    return _find("templates")


def static_dir() -> Path:
    """The static files directory (CSS, our JS, vendored htmx)."""
    return _find("static")
