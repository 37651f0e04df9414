"""``callcontrol run``: the service, wired by :func:`callcontrol.wiring.serve`."""

from __future__ import annotations

from typing import Annotated

import typer

from callcontrol.cli.common import ConfigOption, DatabaseOption, require_schema, run, settings


def run_service(
    ari_url: Annotated[
        str | None, typer.Option("--ari-url", help="ARI base URL(s), comma separated.")
    ] = None,
    app_name: Annotated[str | None, typer.Option("--app", help="Stasis application name.")] = None,
    health_port: Annotated[
        int | None, typer.Option("--health-port", help="Port of /health and /metrics (0 = off).")
    ] = None,
    database_url: DatabaseOption = None,
    config_file: ConfigOption = None,
) -> None:
    """Run the ARI application: take every call of the Asterisk(s) through the pipeline."""
    import logging

    from callcontrol import masking
    from callcontrol.wiring import serve

    config = settings(
        config_file,
        database_url=database_url,
        ari_url=ari_url,
        app=app_name,
        health_port=health_port,
    )
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Reading the schema's revision is not news: the migration tool's INFO lines stay out.
    logging.getLogger("alembic").setLevel(logging.WARNING)

    async def main() -> None:
        await require_schema(config)
        await serve(config)

    with masking.masked(config):  # from the first line on, no secret in any of them
        run(main())
