"""``callcontrol cdr``: list and export the CDRs (billable calls) of the shared database.

Filters are the same for both commands: ``--client NAME``, ``--since`` / ``--until``
(UTC days, inclusive) and ``--outcome REASON``. Bad input ends in one line on stderr
and exit status 1, never a traceback.
"""

from __future__ import annotations

import contextlib
import csv
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO, TypeVar

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
    from callcontrol.config import Config
    from models.cdrs import ListedCdr

app = typer.Typer(help="CDRs (billable calls): list and export.", no_args_is_help=True)

T = TypeVar("T")
OUTCOMES = tuple(reason.value for reason in Reason)

ClientOption = Annotated[str | None, typer.Option("--client", help="Only this client's CDRs.")]
SinceOption = Annotated[
    str | None, typer.Option("--since", help="From this UTC day on (YYYY-MM-DD).")
]
UntilOption = Annotated[
    str | None, typer.Option("--until", help="Up to this UTC day, included (YYYY-MM-DD).")
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
    config: Config, filters: Filters, consume: Callable[[AsyncIterator[ListedCdr]], Awaitable[T]]
) -> T:
    """``consume`` the CDRs matching ``filters``, once the schema is known to be current."""
    from models.cdrs import stream_cdrs

    async with database(config) as engine:
        found = stream_cdrs(engine, filters.client, filters.since, filters.until, filters.outcome)
        async with contextlib.aclosing(found) as rows:
            return await consume(rows)


def table_row(listed: ListedCdr) -> tuple[str, ...]:
    cdr = listed.cdr
    price = "-" if cdr.price is None else f"{cdr.price} {cdr.currency or ''}".strip()
    return (
        f"{cdr.start_time:%Y-%m-%d %H:%M:%S}",
        listed.client,
        f"{cdr.caller} → {cdr.callee}",
        cdr.direction,
        f"{cdr.duration}s",
        f"{cdr.billed_seconds}s",
        price,
        cdr.outcome_reason or "-",
    )


TABLE_HEADER = (
    "start (UTC)",
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

    async def collect(found: AsyncIterator[ListedCdr]) -> list[tuple[str, ...]]:
        return [table_row(listed) async for listed in found]

    rows = run(over_cdrs(config, filters, collect))
    echo_table(TABLE_HEADER, rows)
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
        run(over_cdrs(config, filters, lambda rows: write_csv(sys.stdout, rows)))
        return
    with atomic_file(output) as out:
        count = run(over_cdrs(config, filters, lambda rows: write_csv(out, rows)))
    typer.echo(f"{count} CDR{'' if count == 1 else 's'} written to {output}", err=True)
