"""``callcontrol provision`` and ``callcontrol demo``: the provisioning document in and out."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from callcontrol.cli.common import (
    ConfigOption,
    DatabaseOption,
    atomic_file,
    fail,
    require_schema,
    run,
    settings,
    with_engine,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


def provision(
    file: Annotated[
        Path | None, typer.Argument(help="YAML document to load (or to write with --export).")
    ] = None,
    export: Annotated[
        bool, typer.Option("--export", help="Write the database as YAML instead.")
    ] = False,
    database_url: DatabaseOption = None,
    config_file: ConfigOption = None,
) -> None:
    """Load a provisioning document (validated first, all or nothing), or --export one."""
    from callcontrol.mailer import render_limits
    from models import provisioning

    config = settings(config_file, database_url=database_url)

    async def load(engine: AsyncEngine) -> str:
        assert file is not None
        limits = render_limits(config)  # templates are test-rendered as the service would
        return str(await provisioning.load_file(engine, file, limits=limits))

    async def dump(engine: AsyncEngine) -> str:
        return provisioning.dump_yaml(await provisioning.export_document(engine))

    async def main() -> str:
        await require_schema(config)
        return await with_engine(config, dump if export else load)

    if not export and file is None:
        fail("give a YAML file to load, or --export")
    output = run(main())
    if not export:
        typer.echo(output)
    elif file is None:
        sys.stdout.write(output)
    else:
        with atomic_file(file) as out:
            out.write(output)


def demo(
    database_url: DatabaseOption = None,
    config_file: ConfigOption = None,
) -> None:
    """Provision the demo dataset into a fresh SQLite file and explain representative calls."""
    from callcontrol.demo import run_demo

    config = settings(config_file, database_url=database_url)
    run(run_demo(config, typer.echo))
