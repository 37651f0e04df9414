"""Config layers: command line over environment over file over defaults; unknown keys refused."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from callcontrol.config import Config, load_config
from dialplan.errors import ConfigError


def test_defaults_use_the_embedded_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no callcontrol.toml here
    assert load_config(environ={}) == Config()
    assert Config().database_url.startswith("sqlite+aiosqlite:///")


def test_each_layer_overrides_the_one_below(tmp_path: Path) -> None:
    file = tmp_path / "cc.toml"
    file.write_text('database_url = "sqlite:///file.db"\nlog_level = "DEBUG"\n')
    from_file = load_config(file, environ={})
    from_env = load_config(file, environ={"CALLCONTROL_DATABASE_URL": "sqlite:///env.db"})
    from_cli = load_config(
        file,
        environ={"CALLCONTROL_DATABASE_URL": "sqlite:///env.db"},
        database_url="sqlite:///cli.db",
    )
    assert (from_file.database_url, from_file.log_level) == ("sqlite:///file.db", "DEBUG")
    assert from_env.database_url == "sqlite:///env.db"
    assert from_cli.database_url == "sqlite:///cli.db"
    assert from_cli.log_level == "DEBUG"


def test_the_config_file_can_come_from_the_environment(tmp_path: Path) -> None:
    file = tmp_path / "cc.toml"
    file.write_text('log_level = "WARNING"\n')
    assert load_config(environ={"CALLCONTROL_CONFIG": str(file)}).log_level == "WARNING"


def test_an_unknown_setting_is_an_error_wherever_it_comes_from(tmp_path: Path) -> None:
    file = tmp_path / "cc.toml"
    file.write_text('databse_url = "typo"\n')
    with pytest.raises(ConfigError, match="unknown setting 'databse_url'"):
        load_config(file, environ={})
    with pytest.raises(ConfigError, match="environment: unknown setting 'colour'"):
        load_config(environ={"CALLCONTROL_COLOUR": "red"})


def test_a_broken_or_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("database_url = \n")
    with pytest.raises(ConfigError, match=r"broken\.toml"):
        load_config(broken, environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.toml", environ={})


def test_a_setting_of_the_wrong_type_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "cc.toml"
    file.write_text("database_url = 5\n")
    with pytest.raises(ConfigError, match="database_url must be a string"):
        load_config(file, environ={})


def test_numbers_from_the_environment_are_parsed_and_checked() -> None:
    config = load_config(
        environ={"CALLCONTROL_HEALTH_PORT": "9000", "CALLCONTROL_DIAL_TIMEOUT": "2.5"}
    )
    assert (config.health_port, config.dial_timeout) == (9000, 2.5)
    with pytest.raises(ConfigError, match="health_port must be a whole number, not 'x'"):
        load_config(environ={"CALLCONTROL_HEALTH_PORT": "x"})
    with pytest.raises(ConfigError, match="dial_timeout must not be negative"):
        load_config(environ={"CALLCONTROL_DIAL_TIMEOUT": "-1"})


def test_a_fraction_is_not_a_port(tmp_path: Path) -> None:
    file = tmp_path / "cc.toml"
    file.write_text("health_port = 80.5\n")
    with pytest.raises(ConfigError, match="health_port must be a whole number"):
        load_config(file, environ={})


def test_switches_read_true_or_false_from_every_source(tmp_path: Path) -> None:
    toml = tmp_path / "callcontrol.toml"
    toml.write_text("smtp_starttls = true\n")
    assert load_config(toml, environ={}).smtp_starttls is True
    assert load_config(None, environ={"CALLCONTROL_SMTP_STARTTLS": "no"}).smtp_starttls is False
    assert load_config(None, environ={}, smtp_starttls=True).smtp_starttls is True
    with pytest.raises(ConfigError, match="smtp_starttls must be true or false, not 'maybe'"):
        load_config(None, environ={"CALLCONTROL_SMTP_STARTTLS": "maybe"})


def test_every_setting_is_documented() -> None:
    documented = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    missing = [f.name for f in fields(Config) if f"| `{f.name}` |" not in documented]
    assert missing == []
