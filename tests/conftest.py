"""Shared fixtures.

``db_url`` gives each test a clean, migrated database on SQLite, PostgreSQL and
MariaDB in turn. Each test run creates its own databases on the servers (so runs
may overlap) and drops them at the end. A server that cannot be reached skips the
test with how to enable it -- except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

import models
from models import Brand, Client, Currency
from models.db import create_engine, execute_autocommit
from models.migrate import upgrade, upgrade_async

SERVERS = {
    "postgresql": os.environ.get(
        "CALLCONTROL_TEST_POSTGRESQL", "postgresql://postgres@127.0.0.1:5432/postgres"
    ),
    "mariadb": os.environ.get("CALLCONTROL_TEST_MARIADB", "mariadb://root@127.0.0.1:3306/test"),
}
IN_CI = os.environ.get("CI", "").lower() == "true"


def unavailable(what: str, how: str) -> None:
    """Skip (or, in CI, fail) a test whose real dependency is missing."""
    message = f"{what} is not available: {how}"
    if IN_CI:
        pytest.fail(f"{message} (required when CI=true)")
    pytest.skip(message)


class ServerDatabase:
    """A database created for this test run on a real server, migrated to head."""

    def __init__(self, backend: str, server_url: str) -> None:
        self.backend = backend
        self.server_url = server_url
        self.name = f"cc_test_{uuid.uuid4().hex[:10]}"
        self.url = make_url(server_url).set(database=self.name).render_as_string(False)

    async def create(self) -> None:
        await execute_autocommit(self.server_url, f"CREATE DATABASE {self.name}")
        await upgrade_async(self.url)

    def drop(self) -> None:
        asyncio.run(execute_autocommit(self.server_url, f"DROP DATABASE IF EXISTS {self.name}"))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies (faster than migrating again)."""
    path = tmp_path_factory.mktemp("db") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


_server_databases: dict[str, ServerDatabase | str] = {}


async def server_database(backend: str) -> ServerDatabase:
    known = _server_databases.get(backend)
    if isinstance(known, str):
        unavailable(backend, known)
    if isinstance(known, ServerDatabase):
        return known
    database = ServerDatabase(backend, SERVERS[backend])
    try:
        await database.create()
    except Exception as exc:  # any failure to reach or prepare the server
        reason = (
            f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]} -- start the server "
            f"or set CALLCONTROL_TEST_{backend.upper()} to a URL of it"
        )
        _server_databases[backend] = reason
        unavailable(backend, reason)
    _server_databases[backend] = database
    return database


@pytest.fixture(scope="session", autouse=True)
def _drop_server_databases() -> Iterator[None]:
    yield
    for database in _server_databases.values():
        if isinstance(database, ServerDatabase):
            database.drop()


async def _empty(url: str) -> None:
    engine = create_engine(url)
    tables = [table.name for table in reversed(models.Base.metadata.sorted_tables)]
    try:
        async with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                await connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY"))
            else:
                await connection.execute(text("SET FOREIGN_KEY_CHECKS = 0"))
                for table in tables:
                    await connection.execute(text(f"TRUNCATE TABLE {table}"))
                await connection.execute(text("SET FOREIGN_KEY_CHECKS = 1"))
    finally:
        await engine.dispose()


@asynccontextmanager
async def database_at(backend: str, revision: str, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh database on ``backend`` migrated to ``revision`` only (to test a migration
    from there); a server database is dropped afterwards."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / f'at-{revision}.db'}"
        await upgrade_async(url, revision)
        yield url
        return
    await server_database(backend)  # skips (or fails in CI) when the server is not there
    name = f"cc_test_{uuid.uuid4().hex[:10]}"
    url = make_url(SERVERS[backend]).set(database=name).render_as_string(False)
    await execute_autocommit(SERVERS[backend], f"CREATE DATABASE {name}")
    try:
        await upgrade_async(url, revision)
        yield url
    finally:
        await execute_autocommit(SERVERS[backend], f"DROP DATABASE IF EXISTS {name}")


async def brand_and_client(engine: AsyncEngine) -> int:
    """Brand ``b`` and its client ``c`` (SIP domain c.example.net); the client's id.

    The statements name only the columns given (and those with defaults), so the rows go
    into a database at an older revision too, whatever columns later ones add."""
    async with engine.begin() as connection:
        await connection.execute(insert(Currency).values(code="EUR", name="Euro", symbol="€"))
        await connection.execute(insert(Brand).values(name="b", default_currency="EUR"))
        brand_id = await connection.scalar(select(Brand.id).where(Brand.name == "b"))
        await connection.execute(
            insert(Client).values(
                brand_id=brand_id,
                name="c",
                sip_domain="c.example.net",
                language="es",
                timezone="Europe/Madrid",
                currency="EUR",
                country="ES",
            )
        )
        client_id = await connection.scalar(select(Client.id).where(Client.name == "c"))
    assert client_id is not None
    return int(client_id)


async def clients_of_one_brand(
    connection: AsyncConnection, names: Mapping[str, int], **columns: Mapping[str, Any]
) -> None:
    """Brand iberia-voice (id 1, EUR) and one Spanish client per name, with its id;
    ``columns`` gives a column's value per client name."""
    await connection.execute(insert(Currency), [{"code": "EUR", "name": "Euro"}])
    await connection.execute(insert(Brand), [{"id": 1, "name": "iberia-voice"}])
    await connection.execute(
        insert(Client),
        [
            {
                "id": number,
                "brand_id": 1,
                "name": name,
                "sip_domain": f"{name}.example.net",
                "language": "es",
                "timezone": "Europe/Madrid",
                "currency": "EUR",
                "country": "ES",
            }
            | {column: values[name] for column, values in columns.items()}
            for name, number in names.items()
        ],
    )


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
async def db_url(
    request: pytest.FixtureRequest, sqlite_template: Path, tmp_path: Path
) -> AsyncIterator[str]:
    """The URL of an empty, migrated database; the test runs once per backend."""
    backend: str = request.param
    if backend == "sqlite":
        path = tmp_path / "callcontrol.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    database = await server_database(backend)
    await _empty(database.url)
    yield database.url


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db_url)
    yield engine
    await engine.dispose()


async def admin_rows(engine: AsyncEngine, kind: str, admin_ids: list[int]) -> tuple[int, ...]:
    """How many of these administrators (``kind``: ``client`` or ``platform``) there are,
    and privileges, sessions and one-time links of them."""
    from sqlalchemy import func

    from models.admins import AdminInvitation, AdminPrivilege, ApiToken, PlatformAdmin
    from models.tenants import ClientAdmin

    admin = ClientAdmin if kind == "client" else PlatformAdmin
    of = f"{kind}_admin_id"
    columns = (
        admin.id,
        getattr(AdminPrivilege, of),
        getattr(ApiToken, of),
        getattr(AdminInvitation, of),
    )
    found = []
    async with engine.connect() as connection:
        for column in columns:
            query = select(func.count()).select_from(column.class_).where(column.in_(admin_ids))
            found.append(int(await connection.scalar(query) or 0))
    return tuple(found)


async def audit_entries(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Every audit entry, oldest first: who, what, of which brand and client, and the
    states before and after as JSON values."""
    from models.admins import AuditEntry

    columns = ("actor_kind", "actor", "action", "target", "brand_id", "client_id")
    async with engine.connect() as connection:
        rows = (
            await connection.execute(select(*AuditEntry.__table__.c).order_by(AuditEntry.id))
        ).all()
    return [
        {
            **{name: getattr(row, name) for name in columns},
            "before": None if row.before is None else json.loads(row.before),
            "after": None if row.after is None else json.loads(row.after),
        }
        for row in rows
    ]
