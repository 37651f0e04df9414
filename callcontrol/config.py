"""Configuration, loaded in one place: CLI > environment > TOML file > typed defaults."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from dialplan.errors import ConfigError
from models.db import DEFAULT_URL

ENV_PREFIX = "CALLCONTROL_"
DEFAULT_FILE = Path("callcontrol.toml")


@dataclass(frozen=True, slots=True)
class Config:
    """Every setting of the service, typed; timeouts and limits live here, not in code."""

    database_url: str = DEFAULT_URL
    """The shared database; the embedded default is an SQLite file in the working folder."""
    log_level: str = "INFO"


def load_config(
    path: Path | None = None,
    environ: dict[str, str] | None = None,
    **overrides: Any,
) -> Config:
    """Build the Config: ``overrides`` (the CLI's, None = not given) over the environment,
    over the TOML file at ``path`` (or ``$CALLCONTROL_CONFIG``, or ./callcontrol.toml if it
    exists), over the defaults. An unknown key anywhere is an error, not a silent no-op."""
    environ = dict(os.environ) if environ is None else environ
    known = {field.name: field.type for field in fields(Config)}
    config = Config()

    file = path or (
        Path(environ[f"{ENV_PREFIX}CONFIG"]) if f"{ENV_PREFIX}CONFIG" in environ else None
    )
    if file is None and DEFAULT_FILE.exists():
        file = DEFAULT_FILE
    if file is not None:
        config = replace(config, **_checked(_read_toml(file), known, str(file)))

    from_env = {
        key[len(ENV_PREFIX) :].lower(): value
        for key, value in environ.items()
        if key.startswith(ENV_PREFIX) and key != f"{ENV_PREFIX}CONFIG"
    }
    config = replace(config, **_checked(from_env, known, "environment"))
    given = {key: value for key, value in overrides.items() if value is not None}
    return replace(config, **_checked(given, known, "command line"))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from exc


def _checked(values: dict[str, Any], known: dict[str, Any], where: str) -> dict[str, Any]:
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown setting {key!r}")
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key} must be a string")
    return values
