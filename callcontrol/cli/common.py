"""What every command shares: the one ``fail``, the one coroutine runner, the shared options.

Importing this module is cheap (typer and the standard library): the database, the
configuration and the masking are imported by the functions that use them, so that
``callcontrol --help`` starts fast.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TextIO, TypeVar

import typer

from dialplan.errors import CallControlError, one_line

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from callcontrol.config import Config

T = TypeVar("T")

DatabaseOption = Annotated[
    str | None,
    typer.Option("--database-url", help="Shared database URL (default: config, then SQLite file)."),
]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="TOML config file (default: ./callcontrol.toml).")
]


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr (its secrets masked) and exit ``code``."""
    from callcontrol.masking import mask

    typer.echo(f"error: {one_line(mask(message), 400)}", err=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Our errors end the command with their one line on stderr and exit status 1."""
    try:
        yield
    except CallControlError as exc:
        fail(str(exc))


def settings(config_file: Path | None, **overrides: Any) -> Config:
    """:func:`load_config`, a bad setting or file one line (masked) and exit 1."""
    from callcontrol.config import load_config

    with one_line_errors():
        return load_config(config_file, **overrides)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run one command's coroutine: our errors and an unreachable database become one line;
    anything else is a bug and keeps its traceback."""
    import asyncio

    try:
        return asyncio.run(coroutine)
    except CallControlError as exc:
        fail(str(exc))
    except Exception as exc:  # drivers raise their own classes; only outages are expected
        from sqlalchemy.exc import DBAPIError

        from models.db import first_line, is_unavailable

        if not is_unavailable(exc):
            raise
        cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        fail(f"database unavailable: {first_line(cause)}")


def parse_day(option: str, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        fail(f"{option} {value!r} is not a day (YYYY-MM-DD, e.g. 2026-11-25)")


async def require_schema(config: Config) -> None:
    """The configured database answers and is at the latest revision, or one error saying
    what to do."""
    from sqlalchemy.exc import DBAPIError

    from callcontrol.masking import shown_url
    from dialplan.errors import DatabaseUnavailable
    from models.db import first_line
    from models.migrate import current_revision, head

    try:
        revision = await current_revision(config.database_url)
    except (OSError, DBAPIError) as exc:
        raise DatabaseUnavailable(shown_url(config.database_url), first_line(exc)) from exc
    if revision != head():
        raise CallControlError(
            f"database {shown_url(config.database_url)} is at revision {revision or 'none'}, "
            f"not {head()}: run `callcontrol db upgrade`"
        )


async def with_engine(config: Config, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    from models.db import create_engine

    engine = create_engine(config.database_url)
    try:
        return await work(engine)
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def database(config: Config) -> AsyncIterator[AsyncEngine]:
    """An engine on the configured database, once its schema is known to be current."""
    from sqlalchemy.engine import make_url

    from models.db import create_engine
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


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[TextIO]:
    """Write ``path`` whole or not at all (an export may hold secrets' digests: 0600)."""
    from models.files import atomic_text

    folder = path.resolve().parent
    if not folder.is_dir():
        fail(f"{path}: folder {str(folder)!r} does not exist")
    with atomic_text(path, 0o600) as out:
        yield out
