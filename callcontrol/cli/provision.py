"""``callcontrol provision`` and ``callcontrol demo``: the provisioning document in and out."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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

    from callcontrol.config import Config


async def first_schema(config: Config) -> str | None:
    """Before a first ``provision``: an embedded SQLite database that holds nothing yet (a
    new or empty file) gets the schema, and the line saying so is returned. Any other
    database must be at the latest revision already (:func:`require_schema`): a server's
    schema is its operator's to create, with ``callcontrol db upgrade``."""
    from sqlalchemy import inspect
    from sqlalchemy.exc import DBAPIError

    from callcontrol.masking import shown_url
    from dialplan.errors import DatabaseUnavailable
    from models.db import first_line, normalise_url
    from models.migrate import current_revision, head, upgrade_async

    url = normalise_url(config.database_url)
    file = url.database
    if url.get_backend_name() != "sqlite" or not file or file == ":memory:":
        await require_schema(config)
        return None
    try:
        revision = await current_revision(config.database_url)
    except (OSError, DBAPIError) as exc:
        raise DatabaseUnavailable(shown_url(config.database_url), first_line(exc)) from exc
    if revision is None:

        def tables(connection: Any) -> list[str]:
            names = inspect(connection).get_table_names()
            return [name for name in names if name != "alembic_version"]

        async def empty(engine: AsyncEngine) -> bool:
            async with engine.connect() as connection:
                return not await connection.run_sync(tables)

        if await with_engine(config, empty):
            await upgrade_async(config.database_url)
            return f"created the schema (revision {head()}) in {file}"
    await require_schema(config)
    return None


def provision(
    file: Annotated[
        Path | None, typer.Argument(help="YAML document to load (or to write with --export).")
    ] = None,
    export: Annotated[
        bool, typer.Option("--export", help="Write the database as YAML instead.")
    ] = False,
    invite: Annotated[
        bool,
        typer.Option(
            "--invite",
            help="Send each client or brand admin the document adds, when it has an e-mail "
            "address, the access_credentials e-mail (a one-time link to choose its password).",
        ),
    ] = False,
    database_url: DatabaseOption = None,
    config_file: ConfigOption = None,
) -> None:
    """Load a provisioning document (validated first, all or nothing), or --export one.

    On a new (empty) SQLite database file, the schema is created first; any other
    database needs `callcontrol db upgrade` first."""
    from callcontrol.mailer import render_limits
    from models import provisioning

    config = settings(config_file, database_url=database_url)

    async def load(engine: AsyncEngine) -> str:
        assert file is not None
        limits = render_limits(config)  # templates are test-rendered as the service would
        before = await admins(engine) if invite else set()
        report = str(await provisioning.load_file(engine, file, limits=limits))
        if invite:
            report += await invite_new(config, engine, before)
        return report

    async def dump(engine: AsyncEngine) -> str:
        return provisioning.dump_yaml(await provisioning.export_document(engine))

    async def main() -> str:
        if export:
            await require_schema(config)
            return await with_engine(config, dump)
        created = await first_schema(config)
        loaded = await with_engine(config, load)
        return loaded if created is None else f"{created}\n{loaded}"

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


async def admins(engine: AsyncEngine) -> set[tuple[str, int]]:
    """Every administrator a document may add: ``("client", id)`` and ``("brand", id)``."""
    from sqlalchemy import select

    from models.admins import PlatformAdmin
    from models.tenants import ClientAdmin

    async with engine.connect() as connection:
        clients = await connection.scalars(select(ClientAdmin.id))
        brands = await connection.scalars(
            select(PlatformAdmin.id).where(PlatformAdmin.role == "brand")
        )
        return {("client", number) for number in clients} | {("brand", n) for n in brands}


async def invite_new(config: Config, engine: AsyncEngine, before: set[tuple[str, int]]) -> str:
    """Invite the client and brand admins made since ``before`` that have an e-mail
    address; a line per invitation."""
    from sqlalchemy import select

    from callcontrol.api.invites import Invitee, client_invitee, platform_invitee
    from callcontrol.cli.admin import send_invites
    from models.admins import PlatformAdmin
    from models.tenants import ClientAdmin

    async with engine.connect() as connection:
        clients = (
            await connection.execute(
                select(ClientAdmin.id, ClientAdmin.client_id, ClientAdmin.username).where(
                    ClientAdmin.email.is_not(None)
                )
            )
        ).all()
        brands = (
            await connection.execute(
                select(PlatformAdmin.id, PlatformAdmin.username).where(
                    PlatformAdmin.role == "brand", PlatformAdmin.email.is_not(None)
                )
            )
        ).all()
    invitees: list[Invitee] = [
        invitee
        for admin_id, client_id, username in sorted(clients)
        if ("client", admin_id) not in before
        and (invitee := await client_invitee(engine, client_id, username)) is not None
    ]
    invitees += [
        invitee
        for admin_id, username in sorted(brands)
        if ("brand", admin_id) not in before
        and (invitee := await platform_invitee(engine, username)) is not None
    ]
    outcomes = await send_invites(config, engine, invitees)
    return "".join(
        f"\nsent the access_credentials e-mail to {who.username} <{who.email}>"
        if outcome is None
        else f"\nthe access_credentials e-mail to {who.username} was not sent: {outcome}"
        for who, outcome in zip(invitees, outcomes, strict=True)
    )


def demo(
    platform: Annotated[
        bool,
        typer.Option(
            "--platform",
            help="Run the calls through a real platform: edge, rtpengine, two Asterisk "
            "servers (root; needs --postgresql).",
        ),
    ] = False,
    postgresql: Annotated[
        str | None,
        typer.Option(
            "--postgresql",
            help="With --platform: PostgreSQL server URL (a scratch database is made there).",
        ),
    ] = None,
    cache: Annotated[
        Path | None,
        typer.Option("--cache", help="With --platform: the Asterisk sandboxes' chroot cache."),
    ] = None,
    database_url: DatabaseOption = None,
    config_file: ConfigOption = None,
) -> None:
    """Provision the demo dataset into a fresh SQLite file and explain representative calls.

    With --platform, the same calls go through the multi-server platform on loopback
    (`platform up`, then `platform down`), each printed with the server that handled it."""
    if platform:
        from callcontrol.platform.demo import run_platform_demo

        try:
            run(run_platform_demo(postgresql, typer.echo, cache=cache))
        except KeyboardInterrupt:
            fail("interrupted: the platform was stopped and its scratch database dropped", 130)
        return
    if postgresql is not None or cache is not None:
        fail("--postgresql and --cache go with --platform")
    from callcontrol.demo import run_demo

    config = settings(config_file, database_url=database_url)
    run(run_demo(config, typer.echo))
