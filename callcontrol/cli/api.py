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
