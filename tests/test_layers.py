"""The package map is the architecture: each layer imports only the layers beneath it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

HUB = Path(__file__).resolve().parent.parent / "hub"

# What each subpackage may import from the hub (besides itself and the top-level `hub`,
# `hub.settings`). Anything not listed is a layering bug.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "client": {"core.messages"},
    "stores": {"core"},
    "live": {"core"},
    "web": {"core", "live", "stores", "cluster"},
    "cluster": {"core"},  # Redis Streams between nodes; the only package that imports redis
    "demo": {"web", "stores", "client"},
    "tui": {"core"},  # a client of the hub's HTTP API and SSE stream, nothing of the server
    # compat and bridge: the replaced systems' APIs and files, over the engine library only.
    "compat": {"client"},
    "bridge": {"client", "compat", "core.messages"},
}
# The sans-I/O core and the engine library must stay importable without the server stack.
FORBIDDEN_THIRD_PARTY: dict[str, set[str]] = {
    "core": {"starlette", "uvicorn", "jinja2", "sqlite3", "asyncio", "websockets", "socket"},
    "client": {"starlette", "uvicorn", "jinja2", "sqlite3", "prometheus_client"},
    "stores": {"starlette", "uvicorn", "jinja2"},
    "live": {"uvicorn", "sqlite3"},
    "tui": {"starlette", "uvicorn", "jinja2", "sqlite3", "websockets"},
    "compat": {"starlette", "uvicorn", "jinja2", "sqlite3", "prometheus_client"},
    "bridge": {"starlette", "uvicorn", "jinja2", "sqlite3", "prometheus_client"},
    "cluster": {"starlette", "uvicorn", "jinja2", "sqlite3", "websockets"},
}
# Dependencies only one part needs are imported only there (a server never loads textual).
ONLY_IN: dict[str, str] = {"textual": "tui", "rich": "tui", "httpx": "tui", "redis": "cluster"}


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (lazy imports inside functions count too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            if node.module == "hub":
                found.update(f"hub.{alias.name}" for alias in node.names)
    return found


def _modules(package: str) -> list[Path]:
    return sorted((HUB / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_layer_imports_only_the_layers_beneath_it(package: str) -> None:
    """No module of a layer imports a hub subpackage its layer may not depend on."""
    allowed = {package, *ALLOWED[package]}
    bad = []
    for path in _modules(package):
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] != "hub" or len(parts) < 2 or parts[1] in ("settings", "__version__"):
                continue
            target = parts[1]
            if not (HUB / target).is_dir():
                continue  # a top-level module (cli) is checked by the ones below
            if target not in allowed and ".".join(parts[1:3]) not in allowed:
                bad.append(f"{path.relative_to(HUB.parent)} imports {name}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("package", sorted(FORBIDDEN_THIRD_PARTY))
def test_layer_stays_free_of_the_io_stack(package: str) -> None:
    """The sans-I/O core imports no starlette, uvicorn, jinja2, sqlite3 or asyncio (and so on)."""
    forbidden = FORBIDDEN_THIRD_PARTY[package]
    bad = [
        f"{path.relative_to(HUB.parent)} imports {name}"
        for path in _modules(package)
        for name in _imports(path)
        if name.split(".")[0] in forbidden
    ]
    assert not bad, "\n".join(bad)


def test_every_module_belongs_to_a_room() -> None:
    """Only the entry points live at the top of the package; everything else has its layer."""
    top = sorted(p.name for p in HUB.glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "cli.py", "settings.py"]
    assert sorted(p.name for p in HUB.iterdir() if p.is_dir() and p.name != "__pycache__") == [
        "bridge",
        "client",
        "cluster",
        "compat",
        "core",
        "demo",
        "live",
        "stores",
        "tui",
        "web",
    ]


def test_single_use_dependencies_stay_in_their_package() -> None:
    """textual, rich and httpx are imported only by hub/tui (and the CLI's lazy `tui` command),
    redis only by hub/cluster."""
    bad = [
        f"{path.relative_to(HUB.parent)} imports {name}"
        for path in sorted(HUB.rglob("*.py"))
        for name in _imports(path)
        if (home := ONLY_IN.get(name.split(".")[0])) is not None
        and path.relative_to(HUB).parts[0] != home
    ]
    assert not bad, "\n".join(bad)


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The import scan finds lazy imports inside functions (so the checks above can fail)."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    import asyncio\n    from hub.web import app\n")
    assert {"asyncio", "hub.web"} <= _imports(module)
