"""``callcontrol api serve``: the HTTP API (roles, permissions, audit) on ``api_host``:``api_port``.

Beyond loopback it serves HTTPS only (``api_tls_cert`` and ``api_tls_key``), and refuses
to start without them.
"""

from __future__ import annotations

from typing import Annotated

import typer

from callcontrol.cli.common import ConfigOption, DatabaseOption, one_line_errors, run, settings

app = typer.Typer(help="The HTTP API: roles, permissions, audit.", no_args_is_help=True)


@app.command("serve")
def serve_command(
    host: Annotated[str | None, typer.Option("--host", help="Listen address.")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Listen port.")] = None,
    database_url: DatabaseOption = None,
    config_file: ConfigOption = None,
) -> None:
    """Serve the API until interrupted (OpenAPI at /api/openapi.json)."""
    from callcontrol.api.serve import check_listen, serve
    from callcontrol.cli.common import require_schema

    config = settings(config_file, database_url=database_url, api_host=host, api_port=port)
    with one_line_errors():
        check_listen(config)

    async def work() -> None:
        await require_schema(config)
        await serve(config)

    run(work())


@app.command("console-key")
def console_key_command() -> None:
    """Print a new api_secret_key (it seals the servers' console tokens in the database)."""
    from callcontrol.api.servers import new_key

    typer.echo(new_key())


@app.command("server-console")
def server_console_command(
    server: Annotated[str, typer.Argument(help="The application server's name.")],
    url: Annotated[str, typer.Option("--url", help="Its console, e.g. http://10.0.0.5:8089.")],
    database_url: DatabaseOption = None,
    config_file: ConfigOption = None,
) -> None:
    """Store where a server's console answers, with its console token sealed by
    api_secret_key (the token is this configuration's console_token, e.g. from
    CALLCONTROL_CONSOLE_TOKEN; never a command-line argument)."""
    import urllib.parse

    from callcontrol.api.servers import register
    from callcontrol.cli.common import database, fail
    from dialplan.errors import shown_plain
    from models.admins import command_line

    config = settings(config_file, database_url=database_url)
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.username:
        fail(f"--url {shown_plain(url)} is not an http(s) URL without credentials")
    if config.console_token and not config.api_secret_key:
        fail("api_secret_key is not set: make one with `callcontrol api console-key`")

    async def work() -> bool:
        async with database(config) as engine:
            return await register(
                engine,
                config.api_secret_key,
                server,
                url,
                config.console_token,
                audited=command_line(),
            )

    with one_line_errors():
        found = run(work())
    if not found:
        fail(f"no application server named {shown_plain(server)}")
    sealed = "sealed" if config.console_token else "none"
    typer.echo(f"server {server}: console {url.rstrip('/')} (token: {sealed})")
