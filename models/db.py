"""Engines and sessions for the shared database: SQLite (embedded default), PostgreSQL,
MariaDB; what an outage looks like on each (:func:`is_unavailable`), and the one way the
service's writers run a transaction (:func:`transact`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import PoolResetState
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.util import await_only, greenlet_spawn

from dialplan.errors import ConfigError, DatabaseUnavailable

log = logging.getLogger("callcontrol.db")

READ_COMMITTED = "READ COMMITTED"
_MYSQL_GONE = frozenset({0, 2002, 2003, 2006, 2013, 2055})
"""MySQL client errors of a connection that is not there: not connected, cannot connect,
server gone away, lost during a query."""

T = TypeVar("T")

ATTEMPTS = 3
"""Tries of a transaction the database aborted to break a deadlock (or that met a
pooled connection the server had dropped)."""
_RETRY_SQLSTATES = frozenset({"40001", "40P01"})  # PostgreSQL: serialization failure, deadlock
_RETRY_MYSQL_ERRORS = frozenset({1213})  # MariaDB: deadlock found, transaction rolled back

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
        # Only what follows a user:password@, never the credentials.
        shown = str(url).rpartition("@")[2]
        raise ConfigError(
            f"{shown[:80]!r} is not a database URL (e.g. sqlite:///callcontrol.db)"
        ) from None
    if "+" not in parsed.drivername:
        driver = _DRIVERS.get(parsed.drivername)
        if driver is None:
            raise ConfigError(f"unsupported database URL scheme {parsed.drivername!r}")
        parsed = parsed.set(drivername=driver)
    if parsed.get_backend_name() in ("mysql", "mariadb") and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed


def create_engine(url: str | URL, *, timeout: float | None = None, **kwargs: Any) -> AsyncEngine:
    """An async engine; on SQLite, foreign keys are enforced and the file is in WAL mode;
    on PostgreSQL and MariaDB every connection is at READ COMMITTED from its start (the
    slots' lock protocol needs it, and setting it per transaction costs two round trips).

    ``timeout`` (the service's engine) bounds waiting for a pooled connection and making
    one, and on PostgreSQL each statement: a server that accepts connections but never
    answers is then an outage after that long, not a wait of minutes. (aiomysql bounds
    only the TCP connect with it, not the server's greeting: on MariaDB the callers'
    deadlines, the decision's and the writer's, bound a silent server.)"""
    parsed = normalise_url(url)
    backend = parsed.get_backend_name()
    if backend != "sqlite":
        kwargs.setdefault("isolation_level", READ_COMMITTED)
    else:
        kwargs.setdefault("pool_reset_on_return", None)  # _sqlite_reset does it
    if timeout is not None:
        kwargs.setdefault("pool_timeout", timeout)
        connect = dict(kwargs.pop("connect_args", {}))
        if backend == "postgresql":
            connect.setdefault("timeout", timeout)
            connect.setdefault("command_timeout", timeout)
        elif backend in ("mysql", "mariadb"):
            connect.setdefault("connect_timeout", timeout)
        kwargs["connect_args"] = connect
    engine = create_async_engine(parsed, **kwargs)
    if kwargs.get("isolation_level") == READ_COMMITTED:
        _READ_COMMITTED.add(engine.sync_engine)
    if backend == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        if kwargs["pool_reset_on_return"] is None:
            event.listen(engine.sync_engine.pool, "reset", _sqlite_reset)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA busy_timeout = 5000")
    cursor.close()


def _sqlite_reset(dbapi_connection: Any, _record: Any, state: PoolResetState) -> None:
    """A connection back in the pool is rolled back only if a transaction is open. The
    pool's own reset rolls back every time, and on aiosqlite each rollback is a trip to
    the driver's thread even when the driver has nothing to undo: half of what a
    decision's counters read cost (:func:`sqlite_row`)."""
    if state.transaction_was_reset or state.terminate_only or not state.asyncio_safe:
        return  # already done; or the connection is being closed, not reused
    if dbapi_connection.driver_connection.in_transaction:
        dbapi_connection.rollback()


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


@contextlib.asynccontextmanager
async def scratch_database(server_url: str, prefix: str) -> AsyncIterator[str]:
    """A database created on the server at ``server_url`` for the block and dropped after
    it, also on an error: its URL. Every connection to it must be closed by then."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    await execute_autocommit(server_url, f"CREATE DATABASE {name}")
    try:
        yield make_url(server_url).set(database=name).render_as_string(False)
    finally:
        await execute_autocommit(server_url, f"DROP DATABASE IF EXISTS {name}")


async def driver_row(engine: AsyncEngine, statement: str, *args: object) -> Any:
    """PostgreSQL: ``statement`` (``$1``-style parameters) sent straight on a pooled
    connection's asyncpg driver, outside a transaction; its first row. A call's admission
    is one such statement: prepared once per connection by asyncpg, it skips the
    execution layer of SQLAlchemy, whose Python costs more than the round trip's own.
    Tried again, as by :func:`transact`, after a deadlock the server broke, and on a pooled
    connection found dropped (so ``statement`` must be idempotent); outages are
    DatabaseUnavailable."""
    attempt = 1
    while True:
        for listener in _DRIVER_STATEMENTS.get(engine.sync_engine, ()):
            listener()
        sent: list[bool] = []
        try:
            return await greenlet_spawn(_pooled_row, engine.sync_engine, sent, statement, args)
        except Exception as exc:
            # Dropped while pooled (the server restarted, or cut it): found out on sending,
            # in whichever way the driver meets it. Not a timeout: a server that does not
            # answer is not asked twice. Sending again is safe: a call's admission is
            # idempotent (a call holding its slot keeps it).
            lost = bool(sent) and not isinstance(exc, TimeoutError) and not _server_said(exc)
            if attempt < ATTEMPTS and (lost or _state(exc) in _RETRY_SQLSTATES):
                attempt += 1
                continue
            if is_unavailable(exc) or isinstance(exc, TimeoutError):
                raise unavailable(engine, exc) from exc
            raise


def _pooled_row(engine: Engine, sent: list[bool], statement: str, args: tuple[object, ...]) -> Any:
    """:func:`driver_row`'s checkout, statement and checkin in one switch to SQLAlchemy's
    greenlet (an ``async with engine.connect()`` takes three, which cost more than the
    statement's own Python). ``sent`` gets an item once the statement is on its way."""
    pooled = engine.raw_connection()
    try:
        driver = pooled.driver_connection
        assert driver is not None  # a pooled connection has its driver's
        sent.append(True)
        return await_only(driver.fetchrow(statement, *args))
    except BaseException as exc:
        if not _server_said(exc):
            # Cut short (a timeout, a cancellation, a broken socket): nobody knows the
            # connection's state, so it does not go back to the pool.
            pooled.invalidate()
        raise
    finally:
        pooled.close()


async def sqlite_row(
    engine: AsyncEngine, statement: ClauseElement, params: Mapping[str, Any]
) -> tuple[Any, ...]:
    """SQLite: the first row of ``statement`` read in one trip to the driver's thread (the
    connection's return costs none, see :func:`_sqlite_reset`). Through SQLAlchemy's
    adapter one statement costs four trips (cursor, execute, fetch, close) and the
    return a fifth, each waiting for the event loop and the GIL on a busy server: a
    decision's counters read took over 5 ms two to five times as often. The statement
    is compiled once and its parameters converted by SQLAlchemy's own processors; the
    values come back as SQLite holds them. An outage (a locked or unreadable file) is
    DatabaseUnavailable."""
    known = _SQLITE_COMPILED.get(id(statement))
    if known is None or known[0] is not statement:
        compiled = statement.compile(dialect=engine.dialect)
        assert isinstance(compiled, SQLCompiler)
        known = _SQLITE_COMPILED[id(statement)] = (statement, compiled)
    state = known[1].construct_expanded_state(params)
    for listener in _DRIVER_STATEMENTS.get(engine.sync_engine, ()):
        listener()
    processors = state.processors
    args = [
        processors[name](value) if name in processors else value
        for name, value in zip(state.positiontup or (), state.positional_parameters, strict=True)
    ]
    try:
        rows = await greenlet_spawn(_sqlite_rows, engine.sync_engine, state.statement, args)
    except Exception as exc:  # the driver's own OperationalError: locked, unreadable, …
        if isinstance(exc, sqlite3.OperationalError) or is_unavailable(exc):
            raise unavailable(engine, exc) from exc
        raise
    return tuple(rows[0])  # a statement of aggregates: always one row


def _sqlite_rows(engine: Engine, statement: str, args: list[Any]) -> list[Any]:
    """:func:`sqlite_row`'s checkout, statement and checkin in one switch to SQLAlchemy's
    greenlet, so the statement is the only wait: ``async with engine.connect()`` adds a
    task to close the connection, one more turn of a busy event loop."""
    pooled = engine.raw_connection()
    driver = pooled.driver_connection
    assert driver is not None  # a pooled connection has its driver's
    try:
        return list(await_only(driver.execute_fetchall(statement, args)))
    except BaseException as exc:
        if not isinstance(exc, sqlite3.Error):
            # Cut short (a timeout, a cancellation): the statement still runs on the
            # driver's thread. It is interrupted (or closing the connection would wait
            # for its end), and the connection does not go back to the pool.
            await_only(driver.interrupt())
            pooled.invalidate()
        raise
    finally:
        pooled.close()


_SQLITE_COMPILED: dict[int, tuple[ClauseElement, SQLCompiler]] = {}
"""Statements read by :func:`sqlite_row`, compiled (few, and alive for the whole run)."""


def _state(exc: BaseException) -> str:
    state = getattr(exc, "sqlstate", None)
    return state if isinstance(state, str) else ""


def _server_said(exc: BaseException) -> bool:
    """An error the server answered with (the statement's), on a connection still sound."""
    state = _state(exc)
    return bool(state) and not state.startswith(("08", "57P"))


_DRIVER_STATEMENTS: weakref.WeakKeyDictionary[Engine, list[Callable[[], None]]] = (
    weakref.WeakKeyDictionary()
)


def on_driver_statement(engine: AsyncEngine, listener: Callable[[], None]) -> None:
    """Call ``listener`` for every statement :func:`driver_row` or :func:`sqlite_row`
    sends on ``engine`` (they pass no SQLAlchemy event): the benchmark counts them as
    round trips."""
    _DRIVER_STATEMENTS.setdefault(engine.sync_engine, []).append(listener)


def is_unavailable(exc: BaseException) -> bool:
    """True when the database cannot be reached or is not serving now (worth a retry
    later); False for errors in the statement or the data."""
    if isinstance(exc, DatabaseUnavailable | OSError | PoolTimeout):  # refused, reset, timed out
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError):
            return True
        exc = exc.orig or exc
    # aiomysql raises its driver's errors unwrapped from a pooled connection's set-up.
    if type(exc).__module__.startswith("pymysql") and exc.args and exc.args[0] in _MYSQL_GONE:
        return True
    # PostgreSQL classes 08 (connection), 53 (resources), 57P (shutdown, starting up);
    # asyncpg raises these unwrapped when connecting.
    state = getattr(exc, "sqlstate", None)
    return isinstance(state, str) and state.startswith(("08", "53", "57P"))


def first_line(exc: BaseException) -> str:
    """The first line of an error's text, at most 200 characters (drivers write pages)."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def unavailable(engine: AsyncEngine, exc: BaseException) -> DatabaseUnavailable:
    """The outage ``exc`` (see :func:`is_unavailable`) as our one error, naming the database
    without its password."""
    return DatabaseUnavailable(engine.url.render_as_string(hide_password=True), first_line(exc))


async def transact(
    engine: AsyncEngine,
    work: Callable[[AsyncConnection], Awaitable[T]],
    *,
    write: bool = True,
    autocommit: bool = False,
) -> T:
    """Run ``work`` in one transaction (serialised writes with ``write``), again when the
    database broke a deadlock; outages become ``DatabaseUnavailable``. With ``autocommit``
    no transaction is opened: each statement of ``work`` is its own (no BEGIN, no COMMIT,
    on PostgreSQL not even a request to say so)."""
    attempt = 1
    while True:
        try:
            async with transaction(engine, write, autocommit) as connection:
                return await work(connection)
        except DBAPIError as exc:
            if attempt < ATTEMPTS and worth_retrying(exc):
                log.debug("transaction retried after %s", first_line(exc))
                attempt += 1
                continue
            if is_unavailable(exc):
                raise unavailable(engine, exc) from exc
            raise
        except Exception as exc:  # drivers raise their own classes when connecting
            if is_unavailable(exc):
                raise unavailable(engine, exc) from exc
            raise


@contextlib.asynccontextmanager
async def transaction(
    engine: AsyncEngine, write: bool = True, autocommit: bool = False
) -> AsyncIterator[AsyncConnection]:
    """A connection in a transaction: at READ COMMITTED on PostgreSQL and MariaDB (whatever
    their default), ``BEGIN IMMEDIATE`` on SQLite when ``write``; with ``autocommit``, in
    none."""
    async with engine.connect() as connection:
        if autocommit:
            yield await connection.execution_options(isolation_level="AUTOCOMMIT")
        elif not write:
            yield connection
        elif engine.dialect.name == "sqlite":
            # The driver's own BEGIN is deferred: two transactions could count before
            # either writes. IMMEDIATE takes the write lock first (waiting busy_timeout).
            # Writers of this process queue for it here: SQLite's busy wait polls with
            # sleeps of up to 100 ms, and fifty pollers starve each other for seconds.
            async with sqlite_writers(engine):
                await connection.execution_options(isolation_level="AUTOCOMMIT")
                await connection.exec_driver_sql("BEGIN IMMEDIATE")
                try:
                    yield connection
                except BaseException:
                    with contextlib.suppress(Exception):
                        await connection.exec_driver_sql("ROLLBACK")
                    raise
                await connection.exec_driver_sql("COMMIT")
        else:
            if engine.sync_engine not in _READ_COMMITTED:  # an engine made elsewhere
                await connection.execution_options(isolation_level=READ_COMMITTED)
            async with connection.begin():
                yield connection


_READ_COMMITTED: weakref.WeakSet[Engine] = weakref.WeakSet()
"""Engines whose connections are at READ COMMITTED from the start."""
_WRITERS: weakref.WeakKeyDictionary[Engine, asyncio.Lock] = weakref.WeakKeyDictionary()


def sqlite_writers(engine: AsyncEngine) -> asyncio.Lock:
    """The queue of this process's write transactions on an SQLite engine."""
    lock = _WRITERS.get(engine.sync_engine)
    if lock is None:
        lock = _WRITERS[engine.sync_engine] = asyncio.Lock()
    return lock


def worth_retrying(exc: DBAPIError) -> bool:
    """A deadlock the database broke, or a pooled connection the server had dropped."""
    if exc.connection_invalidated:
        return True
    cause = exc.orig
    if getattr(cause, "sqlstate", None) in _RETRY_SQLSTATES:
        return True
    code = cause.args[0] if cause is not None and cause.args else None
    return isinstance(code, int) and code in _RETRY_MYSQL_ERRORS
