"""Engines and sessions for the shared database: SQLite (embedded default), PostgreSQL, MariaDB."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from dialplan.errors import ConfigError

DEFAULT_URL = "sqlite+aiosqlite:///callcontrol.db"

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "mysql": "mysql+aiomysql",
    "mariadb": "mariadb+aiomysql",
}


def normalise_url(url: str | URL) -> URL:
    """Give a plain ``postgresql://`` / ``mariadb://`` / ``sqlite://`` URL its async driver."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"{url!s} is not a database URL (e.g. sqlite:///callcontrol.db)"
        ) from None
    if "+" not in parsed.drivername:
        driver = _DRIVERS.get(parsed.drivername)
        if driver is None:
            raise ConfigError(f"unsupported database URL scheme {parsed.drivername!r}")
        parsed = parsed.set(drivername=driver)
    if parsed.get_backend_name() in ("mysql", "mariadb") and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed


def create_engine(url: str | URL, **kwargs: Any) -> AsyncEngine:
    """An async engine; on SQLite, foreign keys are enforced and the file is in WAL mode."""
    parsed = normalise_url(url)
    engine = create_async_engine(parsed, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA busy_timeout = 5000")
    cursor.close()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """One session per task; rows stay usable after commit (no hidden reloads)."""
    return async_sessionmaker(engine, expire_on_commit=False)


async def execute_autocommit(server_url: str | URL, statement: str) -> None:
    """Run one statement outside a transaction (``CREATE DATABASE`` and the like)."""
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.exec_driver_sql(statement)
    finally:
        await engine.dispose()
