"""``callcontrol cdr``: list and export the CDRs (billable calls) of the shared database.

Filters are the same for both commands: ``--client NAME``, ``--since`` / ``--until``
(days, inclusive: the client's local days with ``--client``, UTC days without) and
``--outcome REASON``. With ``--client``, ``list`` shows start times in the client's zone.
Bad input ends in one line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import contextlib
import csv
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer

from callcontrol.cli.common import (
    ConfigOption,
    DatabaseOption,
    atomic_file,
    database,
    fail,
    parse_day,
    run,
    settings,
)
from callcontrol.tables import echo_table, plural
from dialplan.reasons import Reason

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from callcontrol.config import Config
    from models.cdrs import ListedCdr

app = typer.Typer(help="CDRs (billable calls): list and export.", no_args_is_help=True)

T = TypeVar("T")
OUTCOMES = tuple(reason.value for reason in Reason)

ClientOption = Annotated[str | None, typer.Option("--client", help="Only this client's CDRs.")]
SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since",
        help="From this day on (YYYY-MM-DD): the client's local day with --client, else a UTC day.",
    ),
]
UntilOption = Annotated[
    str | None,
    typer.Option(
        "--until",
        help="Up to this day, included (YYYY-MM-DD): the client's local day with --client, "
        "else a UTC day.",
    ),
]
OutcomeOption = Annotated[
    str | None,
    typer.Option("--outcome", help=f"Only this outcome reason ({', '.join(OUTCOMES)})."),
]


@dataclass(frozen=True, slots=True)
class Filters:
    """The checked filters of a command."""

    client: str | None
    since: date | None
    until: date | None
    outcome: str | None


def checked(
    client: str | None, since: str | None, until: str | None, outcome: str | None
) -> Filters:
    first, last = parse_day("--since", since), parse_day("--until", until)
    if first and last and first > last:
        fail(f"--since {first} is after --until {last}")
    if outcome is not None and outcome not in OUTCOMES:
        fail(f"--outcome {outcome!r} is not an outcome reason; one of: {', '.join(OUTCOMES)}")
    return Filters(client, first, last, outcome)


async def over_cdrs(
    config: Config,
    filters: Filters,
    consume: Callable[[AsyncIterator[ListedCdr], tzinfo], Awaitable[T]],
) -> T:
    """``consume`` the CDRs matching ``filters``, once the schema is known to be current."""
    from models.cdrs import stream_cdrs

    async with database(config) as engine:
        zone = await client_zone(engine, filters.client)
        found = stream_cdrs(
            engine, filters.client, filters.since, filters.until, filters.outcome, zone=zone
        )
        async with contextlib.aclosing(found) as rows:
            return await consume(rows, zone)


async def client_zone(engine: AsyncEngine, client: str | None) -> tzinfo:
    """The zone of the client named ``client`` (its days are the filter's days); UTC when no
    client is named, or none has that name (:func:`stream_cdrs` then says so)."""
    if client is None:
        return UTC
    from sqlalchemy import select

    from models.tenants import Client

    async with engine.connect() as connection:
        name = await connection.scalar(select(Client.timezone).where(Client.name == client))
    try:
        return UTC if name is None else ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def table_row(listed: ListedCdr, zone: tzinfo = UTC) -> tuple[str, ...]:
    cdr = listed.cdr
    price = "-" if cdr.price is None else f"{cdr.price} {cdr.currency or ''}".strip()
    start = cdr.start_time if cdr.start_time.tzinfo else cdr.start_time.replace(tzinfo=UTC)
    return (
        f"{start.astimezone(zone):%Y-%m-%d %H:%M:%S}",
        listed.client,
        f"{cdr.caller} → {cdr.callee}",
        f"{cdr.direction} (emergency)" if cdr.emergency else cdr.direction,
        f"{cdr.duration}s",
        f"{cdr.billed_seconds}s",
        price,
        cdr.outcome_reason or "-",
    )


TABLE_HEADER = (
    "start",
    "client",
    "caller → callee",
    "direction",
    "duration",
    "billed",
    "price",
    "outcome",
)


@app.command("list")
def list_command(
    client: ClientOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    outcome: OutcomeOption = None,
    database_url: DatabaseOption = None,
    config_file: ConfigOption = None,
) -> None:
    """A table of the CDRs matching the filters, by start time."""
    filters = checked(client, since, until, outcome)
    config = settings(config_file, database_url=database_url)

    shown: list[tzinfo] = [UTC]

    async def collect(found: AsyncIterator[ListedCdr], zone: tzinfo) -> list[tuple[str, ...]]:
        shown[0] = zone
        return [table_row(listed, zone) async for listed in found]

    rows = run(over_cdrs(config, filters, collect))
    echo_table((f"start ({shown[0]})", *TABLE_HEADER[1:]), rows)
    typer.echo(plural(len(rows), "CDR"))


def csv_columns() -> tuple[str, ...]:
    """Every CDR field, with the client's name after the call id."""
    from models.cdrs import CDR_FIELDS

    return ("call_id", "client", *CDR_FIELDS[1:])


def csv_row(listed: ListedCdr) -> list[str]:
    from models.cdrs import CDR_FIELDS

    values = {name: getattr(listed.cdr, name) for name in CDR_FIELDS} | {"client": listed.client}
    return [_csv_value(values[name]) for name in csv_columns()]


def _csv_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


async def write_csv(out: TextIO, rows: AsyncIterator[ListedCdr]) -> int:
    """The header and one line per CDR; nothing at all if the query fails at once
    (an unknown client)."""
    first = await anext(rows, None)
    writer = csv.writer(out)
    writer.writerow(csv_columns())
    if first is None:
        return 0
    writer.writerow(csv_row(first))
    count = 1
    async for listed in rows:
        writer.writerow(csv_row(listed))
        count += 1
    return count


@app.command("export")
def export_command(
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV with a header (the format).")] = False,
    output: Annotated[
        Path | None, typer.Option("--output", help="File to write (default: stdout).")
    ] = None,
    client: ClientOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    outcome: OutcomeOption = None,
    database_url: DatabaseOption = None,
    config_file: ConfigOption = None,
) -> None:
    """Every field of the CDRs matching the filters, by start time."""
    if not as_csv:
        fail("give the export format: --csv")
    filters = checked(client, since, until, outcome)
    config = settings(config_file, database_url=database_url)
    if output is None:
        run(over_cdrs(config, filters, lambda rows, _: write_csv(sys.stdout, rows)))
        return
    with atomic_file(output) as out:
        count = run(over_cdrs(config, filters, lambda rows, _: write_csv(out, rows)))
    typer.echo(f"{count} CDR{'' if count == 1 else 's'} written to {output}", err=True)
