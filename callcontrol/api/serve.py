"""Serving the API: refuse a non-loopback address without TLS, then run uvicorn."""

from __future__ import annotations

import ipaddress
import logging
import re
from typing import TYPE_CHECKING

from callcontrol.config import Config
from dialplan.errors import ConfigError

if TYPE_CHECKING:
    import uvicorn
    from sqlalchemy.ext.asyncio import AsyncEngine


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name or a wildcard: reachable from beyond this machine


def check_listen(config: Config) -> bool:
    """Whether to serve HTTPS; ConfigError when logins would cross a network in clear
    (a non-loopback ``api_host`` without ``api_tls_cert`` and ``api_tls_key``) or only one
    of the two is set."""
    if bool(config.api_tls_cert) != bool(config.api_tls_key):
        raise ConfigError("set both api_tls_cert and api_tls_key, or neither")
    tls = bool(config.api_tls_cert)
    if not tls and not is_loopback(config.api_host):
        raise ConfigError(
            f"api_host {config.api_host!r} is not a loopback address: "
            "set api_tls_cert and api_tls_key to serve logins beyond this machine"
        )
    return tls


def public_url(config: Config, tls: bool) -> str:
    """Where administrators' browsers reach the API: ``api_public_url``, else the address
    it listens on."""
    if config.api_public_url:
        return config.api_public_url.rstrip("/")
    host = f"[{config.api_host}]" if ":" in config.api_host else config.api_host
    return f"{'https' if tls else 'http'}://{host}:{config.api_port}"


_TOKEN = re.compile(r"(token=)[^&\s]*")


class MaskTokens(logging.Filter):
    """Masks the one-time token of a ``/set-password?token=...`` request in access logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN.sub(r"\1***", arg) if isinstance(arg, str) else arg for arg in record.args
            )
        if isinstance(record.msg, str):
            record.msg = _TOKEN.sub(r"\1***", record.msg)
        return True


def build_server(config: Config, engine: AsyncEngine) -> uvicorn.Server:
    """A uvicorn server of the API over ``engine`` (ConfigError as :func:`check_listen`)."""
    import uvicorn

    from callcontrol.api.app import build_app
    from callcontrol.mailer import Mailer

    tls = check_listen(config)
    app = build_app(
        engine,
        token_ttl=config.api_token_ttl,
        login_attempts=config.api_login_attempts,
        login_window=config.api_login_window,
        recordings_dir=config.recordings_dir,
        secret_key=config.api_secret_key,
        poll_interval=config.api_poll_interval,
        console_timeout=config.console_timeout,
        mailer=Mailer(config),
        public_url=public_url(config, tls),
        invite_ttl=config.api_invite_ttl,
    )
    logging.getLogger("uvicorn.access").addFilter(MaskTokens())
    return uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.api_host,
            port=config.api_port,
            ssl_certfile=config.api_tls_cert if tls else None,
            ssl_keyfile=config.api_tls_key if tls else None,
            log_level=config.log_level.lower(),
            proxy_headers=False,
        )
    )


async def serve(config: Config) -> None:
    """Listen on ``api_host``:``api_port`` until SIGINT/SIGTERM."""
    from models.db import create_engine

    engine = create_engine(config.database_url)
    try:
        await build_server(config, engine).serve()
    finally:
        await engine.dispose()
