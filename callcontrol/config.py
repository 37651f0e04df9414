"""Configuration, loaded in one place: CLI > environment > TOML file > typed defaults."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from callcontrol.source import edge_host, trusted_networks
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

    ari_url: str = "http://127.0.0.1:8088/"
    """One or more ARI base URLs, comma separated: one connection per Asterisk."""
    ari_user: str = "callcontrol"
    ari_password: str = "callcontrol"
    app: str = "callcontrol"
    """The Stasis application name this server registers."""
    server: str = "as-1"
    """This application server's name (slots, CDRs and logs carry it)."""
    health_host: str = "127.0.0.1"
    health_port: int = 8089
    """Port of the /health and /metrics (Prometheus) endpoints and the console's /calls;
    0 disables them."""
    console_token: str = ""
    """When set, the console's /calls requests must carry it (``Authorization: Bearer``)."""
    console_timeout: float = 5.0
    """Seconds ``callcontrol console`` waits for a server's (or the API's) answer."""
    console_api_url: str = ""
    """The HTTP API ``callcontrol console`` goes through (``--api``), e.g.
    ``https://cc.example.net:8090``; empty: the servers' own /calls (the direct mode)."""
    console_user: str = ""
    """The administrator ``callcontrol console`` logs in to the API as (``--user``)."""
    console_password_file: str = ""
    """A file whose first line is that administrator's password (``--password-file``);
    empty: a prompt, or stdin's first line."""
    fastagi_host: str = "127.0.0.1"
    """Address the FastAGI front listens on (beyond loopback, set ``fastagi_secret``)."""
    fastagi_secret: str = field(default="", repr=False)
    """When set, every FastAGI request must carry it (``asterisk render --fastagi`` writes
    it into the AGI URL, ``agi://HOST:PORT/decide?secret=…``); a request without it is
    refused. Letters, digits and ``-._~`` only; 32 random hex digits are plenty."""
    fastagi_port: int = 0
    """Port of the FastAGI front (Asterisk rendered with ``--fastagi``); 0 disables it."""
    agi_timeout: float = 5.0
    """Seconds a FastAGI request may take to arrive and be answered."""

    hand_back: bool = True
    """Hand dialled calls that cannot be recorded back to Asterisk's dialplan (two ARI
    requests) instead of bridging them in the app; their end still comes back."""
    decision_timeout: float = 2.0
    """Seconds the pipeline, and then the call's slot, may each take to admit a call; past
    them the call is refused with ``service_unavailable`` and its locution (a database
    that accepts connections but never answers). 0: no deadline."""
    dial_timeout: float = 30.0
    """Seconds a dialled terminal or carrier may ring before the call is no answer."""
    shutdown_timeout: float = 30.0
    """On SIGTERM, seconds live calls may go on before they are hung up."""
    reconnect_min: float = 0.5
    reconnect_max: float = 10.0
    """Backoff between ARI reconnection attempts, doubling from min to max."""
    teardown_timeout: float = 5.0
    """Seconds a call's teardown requests may take before they are abandoned."""
    config_poll_interval: float = 0.5
    """Seconds between checks of the configuration's version (a change provisioned on any
    server is in force here within this; PostgreSQL also announces it at once)."""
    slow_handler: float = 0.5
    """A call handler taking longer than this is logged as delayed."""
    notice_timeout: float = 15.0
    """Seconds a voice notification may play before the refused call is hung up anyway."""
    db_timeout: float = 5.0
    """Seconds to get or make a database connection, and for one statement on PostgreSQL,
    before the database counts as unavailable."""
    db_probe_interval: float = 2.0
    """Seconds between the database probes that ``/health`` reports."""
    db_pool_size: int = 10
    """Database connections this server keeps open; at a peak a statement waits for one
    (up to ``db_timeout``) rather than open another for itself."""
    cdr_spool_dir: str = "var/spool/cdrs"
    """Where CDRs wait while the database is unavailable (replayed when it is back)."""
    cdr_write_timeout: float = 5.0
    """Seconds a CDR write may take before the CDR is spooled instead."""
    cdr_flush_interval: float = 5.0
    """Seconds between attempts to replay spooled CDRs."""
    recordings_dir: str = "var/recordings"
    """Where recorded segments are kept (client / year / month / day / readable name)."""

    geoip_database: str = ""
    """A MaxMind country (or city) ``.mmdb``; required when a client filters by country."""
    trusted_proxies: str = ""
    """Comma-separated addresses/CIDRs of SIP proxies whose source header is believed."""
    source_header: str = "X-Forwarded-For"
    """The header a trusted proxy puts the caller's real address in."""
    mode: str = "direct"
    """``direct``: terminals register on this Asterisk and carriers reach it by address;
    ``edge``: a Kamailio edge in front of every server registers terminals, names the
    caller in ``X-CC-Terminal`` / ``X-CC-Carrier`` headers and relays every leg out."""
    edge_address: str = ""
    """``HOST:PORT`` of the edge's SIP socket, where legs leave to in ``edge`` mode; its
    host must be in ``trusted_proxies`` (the edge's headers are believed only from there)."""

    slot_lease: float = 60.0
    """Seconds a concurrent-call slot lives without a heartbeat (a dead server's expire)."""
    slot_heartbeat: float = 20.0
    """Seconds between renewals of this server's slots."""
    prepaid_call_limit: float = 3600.0
    """Longest prepaid call, in seconds: a prepaid call reserves the price of at most this
    much of its client's balance, so concurrent calls share it (0: a call may reserve all
    the balance pays, and the client's next call waits for it to end)."""

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    smtp_timeout: float = 10.0
    smtp_retries: int = 3
    """Attempts per e-mail before it is given up (and logged)."""
    smtp_from: str = "callcontrol@localhost"
    """Sender when the template names none."""
    template_cpu_limit: float = 1.0
    """CPU seconds a tenant's template (its subject, then its body) may take to render, in
    the worker process; past it the e-mail is not sent, and provisioning refuses it.
    0: no limit (as for the two below)."""
    template_memory_limit: int = 256
    """Mebibytes of address space of the process rendering tenant templates (Python and
    Jinja2 take about 25)."""
    template_timeout: float = 5.0
    """Seconds of wall-clock time a render may take before its worker is killed."""

    api_host: str = "127.0.0.1"
    """Address the HTTP API (``callcontrol api serve``) listens on; beyond loopback it
    needs ``api_tls_cert`` and ``api_tls_key``."""
    api_port: int = 8090
    api_tls_cert: str = ""
    """PEM certificate (chain) of the API's HTTPS."""
    api_tls_key: str = ""
    """PEM private key of ``api_tls_cert``."""
    api_token_ttl: float = 3600.0
    """Seconds an API login's bearer token lives."""
    api_login_attempts: int = 5
    """Failed logins per username and source address within ``api_login_window``; past
    them the API answers 429 until the oldest failure is older than the window."""
    api_login_window: float = 300.0
    api_secret_key: str = field(default="", repr=False)
    """The key (Fernet, ``callcontrol api console-key`` makes one) that seals each
    application server's console token in the shared database; without it the API lists
    and acts on no server's live calls."""
    api_poll_interval: float = 1.0
    """Seconds between two polls of every server's ``/calls`` for the live events."""
    api_public_url: str = ""
    """The API's address as an administrator's browser reaches it (``https://cc.example.net``),
    the start of the one-time link of the ``access_credentials`` e-mail; empty: ``http(s)://``
    ``api_host:api_port``."""
    api_invite_ttl: float = 259200.0
    """Seconds the one-time link of an ``access_credentials`` e-mail stays usable (3 days)."""


SECRET = re.compile(r"[A-Za-z0-9._~-]*")
"""What ``fastagi_secret`` may hold: characters an AGI URL and the dialplan carry as they
are."""


def checked_secret(secret: str) -> str:
    """``secret`` when it can travel in an AGI URL, else ConfigError (naming the setting,
    never its value)."""
    if not SECRET.fullmatch(secret):
        raise ConfigError("fastagi_secret may hold only letters, digits and - . _ ~")
    return secret


_TYPES: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}
_WORDS = {str: "string", int: "whole number", float: "number", bool: "true or false"}
_BOOLS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def load_config(
    path: Path | None = None,
    environ: dict[str, str] | None = None,
    **overrides: Any,
) -> Config:
    """Build the Config: ``overrides`` (the CLI's, None = not given) over the environment,
    over the TOML file at ``path`` (or ``$CALLCONTROL_CONFIG``, or ./callcontrol.toml if it
    exists), over the defaults. An unknown key anywhere is an error, not a silent no-op."""
    environ = dict(os.environ) if environ is None else environ
    config = Config()

    file = path
    if file is None and f"{ENV_PREFIX}CONFIG" in environ:
        file = Path(environ[f"{ENV_PREFIX}CONFIG"])
    if file is None and DEFAULT_FILE.exists():
        file = DEFAULT_FILE
    if file is not None:
        config = replace(config, **_checked(_read_toml(file), str(file)))

    from_env = {
        key[len(ENV_PREFIX) :].lower(): value
        for key, value in environ.items()
        if key.startswith(ENV_PREFIX) and key != f"{ENV_PREFIX}CONFIG"
    }
    config = replace(config, **_checked(from_env, "environment"))
    given = {key: value for key, value in overrides.items() if value is not None}
    config = replace(config, **_checked(given, "command line"))
    checked_secret(config.fastagi_secret)
    checked_mode(config)
    return config


MODES = ("direct", "edge")


def checked_mode(config: Config) -> Config:
    """``config`` when its ``mode`` and ``edge_address`` agree, else ConfigError (one line):
    edge mode needs the edge's ``HOST:PORT``, and its host inside ``trusted_proxies``."""
    if config.mode not in MODES:
        raise ConfigError(f"mode must be direct or edge, not {config.mode!r}")
    if config.mode == "direct":
        return config
    if not config.edge_address.strip():
        raise ConfigError("mode edge needs edge_address (HOST:PORT of the edge's SIP socket)")
    host = edge_host(config.edge_address)
    if host is None:
        raise ConfigError(f"edge_address {config.edge_address!r} is not IP:PORT")
    if trusted_networks(config.trusted_proxies).match(host) is None:
        raise ConfigError(
            f"edge_address {config.edge_address}: {host} is not in trusted_proxies,"
            " so the edge's headers would never be believed"
        )
    return config


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from exc


def _checked(values: dict[str, Any], where: str) -> dict[str, Any]:
    """``values`` converted to each setting's type; strings (from the environment) are parsed."""
    known = {field.name: _TYPES[str(field.type)] for field in fields(Config)}
    checked: dict[str, Any] = {}
    for key, value in values.items():
        kind = known.get(key)
        if kind is None:
            raise ConfigError(f"{where}: unknown setting {key!r}")
        if kind is bool:
            checked[key] = _boolean(value, key, where)
            continue
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError(f"{where}: {key} must be a {_WORDS[kind]}")
        if kind is str and not isinstance(value, str):
            raise ConfigError(f"{where}: {key} must be a string")
        if kind is int and isinstance(value, float):
            raise ConfigError(f"{where}: {key} must be a whole number")
        try:
            converted = kind(value)
        except ValueError:
            raise ConfigError(f"{where}: {key} must be a {_WORDS[kind]}, not {value!r}") from None
        if kind is not str and converted < 0:
            raise ConfigError(f"{where}: {key} must not be negative")
        checked[key] = converted
    return checked


def _boolean(value: object, key: str, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _BOOLS:
        return _BOOLS[value.strip().lower()]
    raise ConfigError(f"{where}: {key} must be true or false, not {value!r}")
