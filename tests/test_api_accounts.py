"""Administrators' accounts across levels: one login namespace for god, brand and client
administrators (a name says who logs in), and what removing a client or a client admin
takes with it on every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from callcontrol.api.accounts import AccountError, create_platform_admin
from callcontrol.cli import app as cli
from dialplan.errors import ProvisioningError
from models.provisioning import load_text
from tests.api_world import World, world_on

NEWCOMER = """
clients:
  - name: east
    brand: iberia
    sip_domain: east.example.com
    admins:
      - {{username: {name}, password: east-admin-pass}}
"""


@pytest.fixture
async def world(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[World]:
    async with world_on(sqlite_template, tmp_path) as world:
        yield world


async def test_provisioning_refuses_a_client_admin_named_as_a_god_or_brand_admin(
    world: World,
) -> None:
    for taken in ("root", "iberia-admin"):
        with pytest.raises(ProvisioningError) as refused:
            await load_text(world.engine, NEWCOMER.format(name=taken))
        assert str(refused.value).splitlines() == [
            f"clients[0].admins[0].username: {taken} is already the login"
            " of a god or brand administrator"
        ]
    await load_text(world.engine, NEWCOMER.format(name="east-admin"))  # a free name is fine


async def test_the_api_refuses_a_client_admin_named_as_a_god_admin(world: World) -> None:
    base = f"/api/clients/{world.clients['north']}/admins"
    answer = await world.http.post(
        base, headers=await world.as_("root"), json={"username": "root", "password": "pass-1234"}
    )
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert detail.startswith("admins[")  # its place in the client's list
    assert detail.endswith("].username: root is already the login of a god or brand administrator")
    listed = await world.http.get(base, headers=await world.as_("root"))
    assert "root" not in {admin["username"] for admin in listed.json()}


async def test_a_god_or_brand_admin_named_as_a_client_admin_is_refused(world: World) -> None:
    for brand in (None, "iberia"):
        with pytest.raises(AccountError) as refused:
            await create_platform_admin(world.engine, "north-admin", "a-long-password", brand=brand)
        assert str(refused.value) == (
            "username: 'north-admin' is already the login of a client administrator"
        )


def test_the_command_line_refuses_a_god_admin_named_as_a_client_admin(
    world: World, tmp_path: Path
) -> None:
    url = f"sqlite:///{world.database}"
    made = CliRunner().invoke(
        cli,
        ["admin", "create", "--god", "thames-admin", "--database-url", url],
        input="a-long-password\n",
    )
    assert made.exit_code == 1
    assert (
        made.output.strip()
        .splitlines()[-1]
        .endswith("username: 'thames-admin' is already the login of a client administrator")
    )


async def count(engine: AsyncEngine, table: str, where: str) -> int:
    from sqlalchemy import text

    async with engine.connect() as connection:
        return int(await connection.scalar(text(f"SELECT count(*) FROM {table} WHERE {where}")))
