"""Migration 0010: a client admin's deny-list of sections becomes privileges, and back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from models.db import create_engine
from models.migrate import downgrade, upgrade_async
from tests.conftest import brand_and_client, database_at

SECTIONS = (
    "client",
    "users",
    "terminals",
    "extensions",
    "ddis",
    "call_acls",
    "outgoing_ddi_rules",
    "recordings",
    "billable_calls",
    "invoices",
    "rating_profiles",
    "notification_templates",
    "audit",
)


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
async def url_at_0008(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with database_at(request.param, "0008", tmp_path) as url:
        yield url


async def test_0010_turns_denied_sections_into_privileges_and_a_downgrade_back(
    url_at_0008: str,
) -> None:
    engine = create_engine(url_at_0008)
    try:
        client_id = await brand_and_client(engine)
        async with engine.begin() as connection:
            for number, name in ((1, "free"), (2, "kept-out")):
                await connection.execute(
                    text(
                        "INSERT INTO client_admins (id, client_id, username, password_hash, active)"
                        " VALUES (:id, :client, :name, 'scrypt$x', :active)"
                    ),
                    {"id": number, "client": client_id, "name": name, "active": True},
                )
            for section in ("recordings", "invoices"):
                await connection.execute(
                    text("INSERT INTO client_admin_restrictions VALUES (2, :section)"),
                    {"section": section},
                )

        await upgrade_async(url_at_0008)

        async with engine.connect() as connection:
            restricted = dict(
                (await connection.execute(text("SELECT username, restricted FROM client_admins")))
                .tuples()
                .all()
            )
            rows = (
                await connection.execute(
                    text(
                        "SELECT client_admin_id, section, can_create, can_read, can_update,"
                        " can_delete FROM admin_privileges"
                    )
                )
            ).all()
        assert {name: bool(flag) for name, flag in restricted.items()} == {
            "free": False,
            "kept-out": True,
        }
        granted = {row[1]: {bool(flag) for flag in row[2:]} for row in rows}
        assert {row[0] for row in rows} == {2}
        assert granted == {
            section: {section not in ("recordings", "invoices")} for section in SECTIONS
        }

        await asyncio.to_thread(downgrade, url_at_0008, "0008")
        async with engine.connect() as connection:
            denied = (
                await connection.execute(
                    text("SELECT admin_id, section FROM client_admin_restrictions")
                )
            ).all()
        assert sorted(tuple(row) for row in denied) == [(2, "invoices"), (2, "recordings")]
    finally:
        await engine.dispose()
