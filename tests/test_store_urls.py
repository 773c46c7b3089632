"""The `db` setting names a history store as a URL (or a plain path); anything else stops startup."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.settings import Settings
from hub.stores import MemoryStore, StoreError, StoreURL, check_store, open_store, parse_db
from hub.stores.sqlite import SQLiteStore
from tests.conftest import run_cli

ACCEPTED = [
    (":memory:", StoreURL("memory")),
    ("memory://", StoreURL("memory")),
    ("MEMORY://", StoreURL("memory")),
    ("sqlite:///:memory:", StoreURL("memory")),
    ("engine-hub.db", StoreURL("sqlite", "engine-hub.db")),
    ("data/hub.db", StoreURL("sqlite", "data/hub.db")),
    ("/var/lib/engine-hub/hub.db", StoreURL("sqlite", "/var/lib/engine-hub/hub.db")),
    ("./notes:old.db", StoreURL("sqlite", "./notes:old.db")),
    ("C:\\hub\\hub.db", StoreURL("sqlite", "C:\\hub\\hub.db")),
    ("C:/hub/hub.db", StoreURL("sqlite", "C:/hub/hub.db")),
    ("sqlite:///hub.db", StoreURL("sqlite", "hub.db")),
    ("sqlite:///data/hub.db", StoreURL("sqlite", "data/hub.db")),
    ("sqlite:////var/lib/engine-hub/hub.db", StoreURL("sqlite", "/var/lib/engine-hub/hub.db")),
    ("SQLite:///hub.db", StoreURL("sqlite", "hub.db")),
]


@pytest.mark.parametrize(("db", "url"), ACCEPTED)
def test_db_names_a_backend_and_its_file(db: str, url: StoreURL) -> None:
    """Plain paths (relative, absolute, Windows-like) and sqlite:/// URLs name an SQLite file;
    :memory:, memory:// and sqlite:///:memory: the memory store; `open_store` opens that one."""
    assert parse_db(db) == url
    store = open_store(Settings(db=db))
    assert isinstance(store, MemoryStore if url.backend == "memory" else SQLiteStore)
    if isinstance(store, SQLiteStore):
        assert store.path == url.path


REFUSED = [
    ("postgres://x", "no 'postgres' history store"),
    ("redis://localhost:6379", "no 'redis' history store"),
    ("foo:bar", "no 'foo' history store"),
    ("file:///var/hub.db", "no 'file' history store"),
    ("sqlite://hub.db", "three slashes"),
    ("sqlite:hub.db", "three slashes"),
    ("sqlite:///", "names no file"),
    ("sqlite:///hub.db?mode=ro", "no ?options"),
    ("memory://somewhere", "takes nothing after it"),
    ("", "names no store"),
]


@pytest.mark.parametrize(("db", "why"), REFUSED)
def test_a_db_no_backend_takes_is_refused_naming_the_accepted_forms(db: str, why: str) -> None:
    """An unknown scheme or a malformed URL is a one-line StoreError that says what is wrong and
    lists the forms the hub takes, before anything is opened."""
    settings = Settings(db=db)
    for call in (parse_db, lambda _: open_store(settings), lambda _: check_store(settings)):
        with pytest.raises(StoreError) as refused:
            call(db)
        message = str(refused.value)
        assert f"setting 'db' cannot use {db!r}" in message and why in message
        assert "sqlite:///" in message and "memory://" in message and "\n" not in message


def test_sqlite_urls_with_three_slashes_are_relative_with_four_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """check_store creates the file an sqlite URL names: sqlite:///hub.db in the working
    directory, sqlite:////... at that absolute path."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    check_store(Settings(db="sqlite:///data/relative.db"))
    check_store(Settings(db=f"sqlite:///{tmp_path}/absolute.db"))
    assert sorted(p.name for p in tmp_path.rglob("*.db")) == ["absolute.db", "relative.db"]
    assert (tmp_path / "data" / "relative.db").stat().st_size > 0


COMMANDS = [
    ("serve", "--port", "0"),
    ("demo", "--port", "0"),
    ("export", "--engine", "fno"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
async def test_an_unknown_store_stops_every_command_with_one_line(
    command: tuple[str, ...],
) -> None:
    """`engine-hub serve|demo|export --db postgres://x` exits 2 at once with one readable line
    naming the accepted forms, and no traceback."""
    code, out, err = await run_cli(*command, "--db", "postgres://x")
    assert code == 2 and out == ""
    [line] = err.splitlines()
    assert "cannot use 'postgres://x'" in line and "sqlite:///" in line and "memory://" in line


async def test_export_db_of_the_memory_store_says_to_ask_the_hub() -> None:
    """`engine-hub export --db memory://` has no file to read: exit 2, one line pointing to --url."""
    code, out, err = await run_cli("export", "--engine", "fno", "--db", "memory://")
    assert code == 2 and out == ""
    [line] = err.splitlines()
    assert "memory://" in line and "--url" in line
