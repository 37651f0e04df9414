"""``callcontrol db``: the shared database's schema."""

from __future__ import annotations

import typer

from callcontrol.cli.common import ConfigOption, DatabaseOption, fail, settings
from dialplan.errors import CallControlError

app = typer.Typer(help="The shared database.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade(database_url: DatabaseOption = None, config_file: ConfigOption = None) -> None:
    """Create or migrate the schema to the latest revision (idempotent)."""
    from sqlalchemy.exc import DBAPIError

    from models.migrate import head, upgrade

    config = settings(config_file, database_url=database_url)
    try:
        upgrade(config.database_url)
    except CallControlError as exc:
        fail(str(exc))
    except (OSError, DBAPIError) as exc:
        fail(f"database unavailable: {str(exc).splitlines()[0]}")
    typer.echo(f"database at revision {head()}")
