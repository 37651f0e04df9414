"""``callcontrol cdr``: list and export the CDRs (billable calls) of the shared database.

Filters are the same for both commands: ``--client NAME``, ``--since`` / ``--until``
(UTC days, inclusive) and ``--outcome REASON``. Bad input ends in one line on stderr
and exit status 1, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, TextIO, TypeVar

import typer
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.config import Config, load_config
from callcontrol.masking import mask
from callcontrol.tables import echo_table, plural
from dialplan.errors import CallControlError, one_line
from dialplan.reasons import Reason
from models.cdrs import CDR_FIELDS, ListedCdr, stream_cdrs
from models.db import create_engine, is_unavailable

app = typer.Typer(help="CDRs (billable calls): list and export.", no_args_is_help=True)

T = TypeVar("T")
OUTCOMES = tuple(reason.value for reason in Reason)
CSV_COLUMNS = ("call_id", "client", *CDR_FIELDS[1:])
"""Every CDR field, with the client's name after the call id."""

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
DatabaseOption = Annotated[
    str | None,
    typer.Option("--database-url", help="Shared database URL (default: config, then SQLite file)."),
]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="TOML config file (default: ./callcontrol.toml).")
]


@dataclass(frozen=True, slots=True)
class Filters:
    """The checked filters of a command."""

    client: str | None
    since: date | None
    until: date | None
    outcome: str | None


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {one_line(mask(message), 400)}", err=True)
    raise typer.Exit(1)


def parse_day(option: str, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        fail(f"{option} {value!r} is not a day (YYYY-MM-DD, e.g. 2026-11-25)")


def checked(
    client: str | None, since: str | None, until: str | None, outcome: str | None
) -> Filters:
    first, last = parse_day("--since", since), parse_day("--until", until)
    if first and last and first > last:
        fail(f"--since {first} is after --until {last}")
    if outcome is not None and outcome not in OUTCOMES:
        fail(f"--outcome {outcome!r} is not an outcome reason; one of: {', '.join(OUTCOMES)}")
    return Filters(client, first, last, outcome)


def settings(config_file: Path | None, database_url: str | None) -> Config:
    try:
        return load_config(config_file, database_url=database_url)
    except CallControlError as exc:
        fail(str(exc))


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; our errors and an unreachable database become one line."""
    try:
        return asyncio.run(coroutine)
    except CallControlError as exc:
        fail(str(exc))
    except Exception as exc:  # drivers raise their own classes; only outages are expected
        if not is_unavailable(exc):
            raise
        fail(f"database unavailable: {str(exc).strip().splitlines()[0]}")


@contextlib.asynccontextmanager
async def database(config: Config) -> AsyncIterator[AsyncEngine]:
    """An engine on the configured database, once its schema is known to be current."""
    from models.migrate import current_revision, head

    revision = await current_revision(config.database_url)
    if revision != head():
        shown = make_url(config.database_url).render_as_string(hide_password=True)
        raise CallControlError(
            f"database {shown} is at revision {revision or 'none'}, "
            f"not {head()}: run `callcontrol db upgrade`"
        )
    engine = create_engine(config.database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def over_cdrs(
    config: Config, filters: Filters, consume: Callable[[AsyncIterator[ListedCdr]], Awaitable[T]]
) -> T:
    """``consume`` the CDRs matching ``filters``, once the schema is known to be current."""
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
    config = settings(config_file, database_url)

    async def collect(found: AsyncIterator[ListedCdr]) -> list[tuple[str, ...]]:
        return [table_row(listed) async for listed in found]

    rows = run(over_cdrs(config, filters, collect))
    echo_table(TABLE_HEADER, rows)
    typer.echo(plural(len(rows), "CDR"))


def csv_row(listed: ListedCdr) -> list[str]:
    values = {name: getattr(listed.cdr, name) for name in CDR_FIELDS} | {"client": listed.client}
    return [_csv_value(values[name]) for name in CSV_COLUMNS]


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
    writer.writerow(CSV_COLUMNS)
    if first is None:
        return 0
    writer.writerow(csv_row(first))
    count = 1
    async for listed in rows:
        writer.writerow(csv_row(listed))
        count += 1
    return count


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[TextIO]:
    """Write ``path`` whole or not at all: a temporary file beside it, renamed once
    complete, removed on any failure."""
    folder = path.resolve().parent
    if not folder.is_dir():
        fail(f"{path}: folder {str(folder)!r} does not exist")
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


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
    config = settings(config_file, database_url)
    if output is None:
        run(over_cdrs(config, filters, lambda rows: write_csv(sys.stdout, rows)))
        return
    with atomic_file(output) as out:
        count = run(over_cdrs(config, filters, lambda rows: write_csv(out, rows)))
    typer.echo(f"{count} CDR{'' if count == 1 else 's'} written to {output}", err=True)
