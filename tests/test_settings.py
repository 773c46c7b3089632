"""Settings and load_settings: defaults < TOML file < environment < overrides, with clear errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from hub.settings import Settings, SettingsError, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "engine-hub.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    """With nothing configured the hub listens on 127.0.0.1:8765 with the documented limits."""
    settings = load_settings()
    assert settings == Settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8765)
    assert settings.max_message_bytes == 256 * 1024
    assert settings.max_log_line_bytes == 16 * 1024
    assert (settings.max_json_depth, settings.max_metric_tags) == (32, 15)
    assert settings.max_series_per_engine == 5000
    assert settings.max_future_seconds == 600
    assert settings.hello_timeout == 5
    assert settings.ring_capacity("signal_event") == 500
    assert settings.ring_capacity("order_event") == 1000
    assert settings.ring_capacity("cycle") == 100
    assert settings.ring_capacity("error") == 200
    assert settings.ring_capacity("anything_else") == 1000


def test_settings_are_frozen() -> None:
    """Settings cannot be changed in place; replace() makes a validated copy."""
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.port = 1  # type: ignore[misc]
    assert settings.replace(port=9000).port == 9000
    with pytest.raises(SettingsError, match="port"):
        settings.replace(port=-1)


def test_environment_port() -> None:
    """ENGINE_HUB_PORT sets the port, converted to int."""
    assert load_settings(environ={"ENGINE_HUB_PORT": "9001"}).port == 9001


def test_environment_float_and_str() -> None:
    """Environment values take the type of the setting's default."""
    settings = load_settings(
        environ={"ENGINE_HUB_ACK_INTERVAL": "0.5", "ENGINE_HUB_HOST": "0.0.0.0"}
    )
    assert settings.ack_interval == 0.5
    assert settings.host == "0.0.0.0"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("0", False), ("false", False), ("off", False), ("1", True), ("yes", True)],
)
def test_environment_bool(raw: str, expected: bool) -> None:
    """A boolean setting reads 1/true/yes/on as true and anything else as false."""
    settings = load_settings(environ={"ENGINE_HUB_DASHBOARD_DIRECT_WRITES": raw})
    assert settings.dashboard_direct_writes is expected


def test_toml_bool(tmp_path: Path) -> None:
    """A TOML boolean sets a boolean setting; the dashboard fast path is on unless turned off."""
    assert Settings().dashboard_direct_writes is True
    path = write(tmp_path, "dashboard_direct_writes = false\n")
    assert load_settings(config_file=path).dashboard_direct_writes is False


def test_unrelated_environment_is_ignored() -> None:
    """Variables without the ENGINE_HUB_ prefix do not matter."""
    assert load_settings(environ={"PORT": "1", "HUB_PORT": "2"}).port == 8765


def test_toml_file(tmp_path: Path) -> None:
    """Top-level keys of a TOML file set the matching settings."""
    path = write(tmp_path, 'port = 9100\nhost = "0.0.0.0"\nview_tick = 0.25\n')
    settings = load_settings(config_file=path)
    assert (settings.port, settings.host, settings.view_tick) == (9100, "0.0.0.0", 0.25)


def test_toml_hub_table(tmp_path: Path) -> None:
    """Settings may live in a [hub] table, including a ring_capacities sub-table."""
    path = write(tmp_path, "[hub]\nport = 9200\n[hub.ring_capacities]\ncycle = 7\n")
    settings = load_settings(config_file=path)
    assert settings.port == 9200
    assert settings.ring_capacity("cycle") == 7
    assert settings.ring_capacity("signal_event") == 500


def test_config_file_from_environment(tmp_path: Path) -> None:
    """ENGINE_HUB_CONFIG names the TOML file when no config_file is given."""
    path = write(tmp_path, "port = 9300\n")
    assert load_settings(environ={"ENGINE_HUB_CONFIG": str(path)}).port == 9300


def test_precedence_override_env_file(tmp_path: Path) -> None:
    """Overrides beat the environment, which beats the file, which beats defaults."""
    path = write(tmp_path, "port = 1111\nhost = 'file-host'\nmax_engines = 7\n")
    environ = {"ENGINE_HUB_PORT": "2222", "ENGINE_HUB_HOST": "env-host"}
    settings = load_settings(overrides={"port": 3333}, environ=environ, config_file=path)
    assert (settings.port, settings.host, settings.max_engines) == (3333, "env-host", 7)
    assert load_settings(environ=environ, config_file=path).port == 2222
    assert load_settings(config_file=path).port == 1111


def test_none_override_is_ignored() -> None:
    """An override of None (a CLI flag not given) leaves the lower layers in charge."""
    settings = load_settings(overrides={"port": None}, environ={"ENGINE_HUB_PORT": "9400"})
    assert settings.port == 9400


def test_unknown_key_in_file(tmp_path: Path) -> None:
    """An unknown key in the TOML file is an error naming the key and the file."""
    path = write(tmp_path, "prot = 9000\n")
    with pytest.raises(SettingsError, match="'prot'") as info:
        load_settings(config_file=path)
    assert str(path) in str(info.value)


def test_unknown_override() -> None:
    """An unknown override is an error naming the key."""
    with pytest.raises(SettingsError, match="'nope'"):
        load_settings(overrides={"nope": 1})


def test_missing_and_invalid_file(tmp_path: Path) -> None:
    """A missing or unparsable config file is a SettingsError, not a traceback."""
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(config_file=tmp_path / "missing.toml")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(config_file=write(tmp_path, "port = = 1\n"))


@pytest.mark.parametrize(
    ("environ", "name"),
    [
        ({"ENGINE_HUB_PORT": "abc"}, "port"),
        ({"ENGINE_HUB_PORT": "70000"}, "port"),
        ({"ENGINE_HUB_MAX_ENGINES": "-1"}, "max_engines"),
        ({"ENGINE_HUB_ACK_INTERVAL": "soon"}, "ack_interval"),
        ({"ENGINE_HUB_LATE_AFTER": "10"}, "late_after"),
        ({"ENGINE_HUB_RING_CAPACITIES": "signal_event"}, "ring_capacities"),
        ({"ENGINE_HUB_RING_CAPACITIES": "cycle=many"}, "ring_capacities"),
        ({"ENGINE_HUB_RING_CAPACITIES": "cycle=0"}, "ring_capacities"),
        ({"ENGINE_HUB_MAX_MESSAGE_BYTES": "99999999"}, "max_message_bytes"),
        ({"ENGINE_HUB_MAX_PAST_SECONDS": "0"}, "max_past_seconds"),
    ],
)
def test_bad_environment_value_names_the_setting(environ: dict[str, str], name: str) -> None:
    """A value the hub cannot use raises SettingsError naming the setting."""
    with pytest.raises(SettingsError, match=f"'{name}'"):
        load_settings(environ=environ)


def test_bad_file_value_names_the_setting(tmp_path: Path) -> None:
    """A value of the wrong type in the file is a SettingsError naming the setting."""
    with pytest.raises(SettingsError, match="'port'"):
        load_settings(config_file=write(tmp_path, 'port = "eighty"\n'))


def test_ring_capacities_from_environment() -> None:
    """ENGINE_HUB_RING_CAPACITIES="signal_event=10,cycle=5" overrides those types only."""
    settings = load_settings(environ={"ENGINE_HUB_RING_CAPACITIES": "signal_event=10, cycle=5"})
    assert settings.ring_capacity("signal_event") == 10
    assert settings.ring_capacity("cycle") == 5
    assert settings.ring_capacity("order_event") == 1000
    assert settings.ring_capacity("error") == 200


def test_ring_capacities_are_read_only() -> None:
    """The capacities mapping cannot be mutated behind the frozen Settings' back."""
    settings = Settings(ring_capacities={"cycle": 3})
    with pytest.raises(TypeError):
        settings.ring_capacities["cycle"] = 4  # type: ignore[index]
