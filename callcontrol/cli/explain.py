"""``callcontrol explain``: one call through the pipeline, without side effects."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from callcontrol.cli.common import (
    ConfigOption,
    DatabaseOption,
    fail,
    require_schema,
    run,
    settings,
    with_engine,
)
from dialplan.text import describe_unprintable, unprintable

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


def parse_at(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        fail(f"--at {value!r} is not an ISO 8601 time (e.g. 2026-11-25T09:30:00+01:00)")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def explain_command(
    from_: Annotated[
        str, typer.Option("--from", help="Terminal (or carrier) endpoint placing the call.")
    ],
    to: Annotated[str, typer.Option("--to", help="Number dialled (or DDI called by a carrier).")],
    client: Annotated[
        str | None, typer.Option("--client", help="Client the call must belong to.")
    ] = None,
    source_ip: Annotated[
        str | None, typer.Option("--source-ip", help="Source address of the call.")
    ] = None,
    at: Annotated[
        str | None, typer.Option("--at", help="When (ISO 8601; naive = UTC). Default: now.")
    ] = None,
    duration: Annotated[
        int | None,
        typer.Option("--duration", min=0, help="Price an answered call of this many seconds."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    database_url: DatabaseOption = None,
    config_file: ConfigOption = None,
) -> None:
    """Run the pipeline for one call without side effects and print every step's verdict."""
    for option, value in (
        ("--from", from_),
        ("--to", to),
        ("--client", client),
        ("--source-ip", source_ip),
    ):
        bad = unprintable(value or "")
        if bad is not None:
            fail(f"{option} {describe_unprintable(value or '', bad)}: not a name or a number")
    config = settings(config_file, database_url=database_url)
    moment = parse_at(at)

    async def main() -> str:
        from callcontrol.explain import explain, to_json, to_text
        from models.directory import SqlDirectory

        await require_schema(config)

        async def work(engine: AsyncEngine) -> str:
            result = await explain(SqlDirectory(engine), from_, to, moment, client, source_ip)
            if as_json:
                return json.dumps(to_json(result, duration), indent=2, ensure_ascii=False)
            return to_text(result, duration)

        return await with_engine(config, work)

    typer.echo(run(main()))
