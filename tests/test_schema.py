"""The schema itself: migrations reach the models' shape and constraints hold on every backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

import models
from models import Brand, Client, DailyUsage, Terminal
from models.db import create_engine, session_factory
from models.migrate import current_revision, downgrade, head, upgrade_async
from models.provisioning.passwords import sip_ha1
from tests.conftest import brand_and_client, database_at


async def test_database_is_at_the_latest_migration_and_upgrade_is_idempotent(db_url: str) -> None:
    assert await current_revision(db_url) == head()
    await upgrade_async(db_url)
    assert await current_revision(db_url) == head()


async def test_money_round_trips_exactly_and_instants_come_back_in_utc(
    engine: AsyncEngine,
) -> None:
    client_id = await brand_and_client(engine)
    crossing = datetime(2026, 3, 29, 1, 30, 15, 250000, tzinfo=UTC)
    async with session_factory(engine)() as session, session.begin():
        session.add(
            DailyUsage(
                client_id=client_id,
                day=crossing.date(),
                amount=Decimal("12.3456"),
                notified_at=crossing,
            )
        )
    async with session_factory(engine)() as session:
        usage = (await session.execute(select(DailyUsage))).scalar_one()
    assert usage.amount == Decimal("12.3456")
    assert usage.notified_at == crossing


KAMAILIO_TABLES = {"location", "version"}
"""Tables migration 0009 makes for Kamailio (usrloc's schema): no model maps them."""


def _ours(item: Any, name: str | None, kind: str, _reflected: bool, _compared: Any) -> bool:
    table = name if kind == "table" else getattr(getattr(item, "table", None), "name", None)
    return table not in KAMAILIO_TABLES


async def test_the_migrations_build_exactly_the_models_tables(engine: AsyncEngine) -> None:
    def differences(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"include_object": _ours})
        return list(compare_metadata(context, models.Base.metadata))

    async with engine.connect() as connection:
        found = await connection.run_sync(differences)
    assert found == []


async def test_a_client_name_is_unique_within_its_brand(engine: AsyncEngine) -> None:
    await brand_and_client(engine)
    with pytest.raises(IntegrityError):
        async with session_factory(engine)() as session, session.begin():
            brand = (await session.execute(select(Brand))).scalar_one()
            session.add(
                Client(
                    brand_id=brand.id,
                    name="c",
                    sip_domain="other.example.net",
                    language="en",
                    timezone="UTC",
                    currency="EUR",
                    country="GB",
                )
            )


async def test_negative_max_calls_is_refused_by_the_database(engine: AsyncEngine) -> None:
    client_id = await brand_and_client(engine)
    # MariaDB reports a failed CHECK as an OperationalError, the others as IntegrityError.
    with pytest.raises(DBAPIError, match="ck_clients_max_calls"):
        async with session_factory(engine)() as session, session.begin():
            client = await session.get(Client, client_id)
            assert client is not None
            client.max_calls = -1


async def test_an_unknown_billing_method_is_refused_by_the_database(engine: AsyncEngine) -> None:
    client_id = await brand_and_client(engine)
    with pytest.raises(DBAPIError, match="ck_clients_billing_method"):
        async with session_factory(engine)() as session, session.begin():
            client = await session.get(Client, client_id)
            assert client is not None
            client.billing_method = "free"


async def test_a_static_distribution_needs_an_application_server(engine: AsyncEngine) -> None:
    client_id = await brand_and_client(engine)
    with pytest.raises(DBAPIError, match="ck_clients_static_needs_server"):
        async with session_factory(engine)() as session, session.begin():
            client = await session.get(Client, client_id)
            assert client is not None
            client.distribute_method = "static"


async def test_a_naive_datetime_is_refused_before_reaching_the_database(
    engine: AsyncEngine,
) -> None:
    client_id = await brand_and_client(engine)
    with pytest.raises(Exception, match="naive datetime"):
        async with session_factory(engine)() as session, session.begin():
            session.add(
                DailyUsage(
                    client_id=client_id,
                    day=datetime(2026, 1, 1).date(),
                    notified_at=datetime(2026, 1, 1),
                )
            )


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
async def url_at_0006(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh database migrated to revision 0006 only, on each backend."""
    async with database_at(request.param, "0006", tmp_path) as url:
        yield url


async def test_0007_turns_clear_sip_passwords_into_digests_and_a_downgrade_leaves_them(
    url_at_0006: str,
) -> None:
    engine = create_engine(url_at_0006)
    try:
        client_id = await brand_and_client(engine)  # sip_domain c.example.net
        async with engine.begin() as connection:
            for name, password in (("t-ana", "ana-secret-1"), ("t-bruno", "bruno;secret")):
                await connection.execute(
                    text(
                        "INSERT INTO terminals (client_id, name, password, codecs)"
                        " VALUES (:client, :name, :password, 'ulaw')"
                    ),
                    {"client": client_id, "name": name, "password": password},
                )

        await upgrade_async(url_at_0006)

        async with engine.connect() as connection:
            stored = dict((await connection.execute(select(Terminal.name, Terminal.ha1))).all())
            columns = await connection.run_sync(
                lambda sync: {c["name"] for c in inspect(sync).get_columns("terminals")}
            )
        assert stored == {
            "t-ana": sip_ha1("t-ana", "c.example.net", "ana-secret-1"),
            "t-bruno": sip_ha1("t-bruno", "c.example.net", "bruno;secret"),
        }
        assert "password" not in columns
        # Down again the passwords are not back, only the digests, which the next upgrade keeps.
        await asyncio.to_thread(downgrade, url_at_0006, "0006")
        async with engine.connect() as connection:
            left = dict(
                (await connection.execute(text("SELECT name, password FROM terminals"))).all()
            )
        assert left == {name: f"ha1:{digest}" for name, digest in stored.items()}
        await upgrade_async(url_at_0006)
        async with engine.connect() as connection:
            again = dict((await connection.execute(select(Terminal.name, Terminal.ha1))).all())
        assert again == stored
    finally:
        await engine.dispose()
