"""Administrators' accounts across levels: one login namespace for god, brand and client
administrators (a name says who logs in), and what removing a client or a client admin
takes with it on every backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from callcontrol.api.accounts import (
    AccountError,
    authenticate,
    create_platform_admin,
    utc_now,
)
from callcontrol.api.app import build_app
from callcontrol.api.invites import client_invitee, issue, set_password
from callcontrol.cli import app as cli
from dialplan.errors import ProvisioningError
from models.admins import AdminInvitation, AdminPrivilege, ApiToken
from models.provisioning import load_text
from models.tenants import Client, ClientAdmin
from tests.api_world import IBERIA, World, world_on
from tests.conftest import admin_rows

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


@pytest.mark.parametrize(
    ("username", "password", "brand", "why"),
    [
        ("", "a-long-password", None, "the username must be 1 to 128 printable characters"),
        ("bad\nname", "a-long-password", None, "the username must be 1 to 128 printable"),
        ("x" * 129, "a-long-password", None, "the username must be 1 to 128 printable"),
        ("fresh", "short", None, "the password must have at least 8 characters"),
        ("fresh", "a-long-password", "nowhere", "no brand named 'nowhere'"),
    ],
)
async def test_a_platform_admin_with_a_bad_name_password_or_brand_is_refused(
    world: World, username: str, password: str, brand: str | None, why: str
) -> None:
    with pytest.raises(AccountError, match=why):
        await create_platform_admin(world.engine, username, password, brand=brand)


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


CASCADE = (
    IBERIA
    + """
clients:
  - name: west
    brand: iberia
    sip_domain: west.example.com
    admins:
      - {username: west-owner, password: west-owner-pass}
      - {username: west-reader, password: west-reader-pass, privileges: {client: r, audit: r}}
      - {username: west-clerk, password: west-clerk-pass, privileges: {client: r}}
  - name: east
    brand: iberia
    sip_domain: east.example.com
    admins:
      - {username: east-reader, password: east-reader-pass, privileges: {client: r}}
"""
)


async def test_removing_a_client_or_its_admin_takes_privileges_and_sessions_on_every_backend(
    engine: AsyncEngine,
) -> None:
    await load_text(engine, CASCADE)
    app = build_app(engine)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        headers = {}
        for name in ("west-owner", "west-reader", "west-clerk", "east-reader"):
            answer = await http.post(
                "/api/login", json={"username": name, "password": f"{name}-pass"}
            )
            assert answer.status_code == 200, answer.text
            headers[name] = {"Authorization": f"Bearer {answer.json()['token']}"}
        async with engine.connect() as connection:
            west = await connection.scalar(select(Client.id).where(Client.name == "west"))
            ids = list(
                await connection.scalars(
                    select(ClientAdmin.id).where(ClientAdmin.client_id == west)
                )
            )
        for name in ("west-owner", "west-reader", "west-clerk"):
            invitee = await client_invitee(engine, west, name)
            assert invitee is not None
            await issue(engine, invitee, 3600, utc_now)  # a pending one-time link each
        # admins, privileges (a row per section), sessions, one-time links
        assert await admin_rows(engine, "client", ids) == (3, 26, 3, 3)

        # A client admin removed through the API: its privileges, sessions and links go.
        removed = await http.delete(
            f"/api/clients/{west}/admins/west-clerk", headers=headers["west-owner"]
        )
        assert removed.status_code == 204, removed.text
        assert await admin_rows(engine, "client", ids) == (2, 13, 2, 2)
        gone = await http.get("/api/clients", headers=headers["west-clerk"])
        assert gone.status_code == 401

        # The client removed from the database: every admin of it, privilege, session, link.
        async with engine.begin() as connection:
            await connection.execute(delete(Client).where(Client.id == west))
        assert await admin_rows(engine, "client", ids) == (0, 0, 0, 0)
        async with engine.connect() as connection:
            left = await connection.scalar(select(func.count()).select_from(ApiToken))
            privileges = await connection.scalar(select(func.count()).select_from(AdminPrivilege))
        assert (left, privileges) == (1, 13)  # east's, untouched
        for name in ("west-owner", "west-reader"):
            assert (await http.get("/api/clients", headers=headers[name])).status_code == 401
        assert (await http.get("/api/clients", headers=headers["east-reader"])).status_code == 200


async def test_failed_logins_are_shared_by_two_api_processes_on_every_backend(
    engine: AsyncEngine,
) -> None:
    await load_text(engine, CASCADE)
    first, second = (build_app(engine, login_attempts=5) for _ in range(2))
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=first), base_url="http://a") as one,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=second), base_url="http://b") as two,
    ):

        async def guess(http: httpx.AsyncClient, name: str, password: str) -> int:
            answer = await http.post("/api/login", json={"username": name, "password": password})
            return answer.status_code

        # Concurrent guesses through both processes count at once: five, then refused.
        answers = await asyncio.gather(
            *(guess((one, two)[n % 2], "west-clerk", f"guess-{n}") for n in range(8))
        )
        assert sorted(answers) == [401] * 5 + [429] * 3
        for http in (one, two):
            assert await guess(http, "west-clerk", "west-clerk-pass") == 429
        assert await guess(two, "west-owner", "west-owner-pass") == 200  # another name


async def test_a_one_time_link_sets_one_password_even_when_used_twice_at_once(
    engine: AsyncEngine,
) -> None:
    await load_text(engine, CASCADE)
    async with engine.connect() as connection:
        west = await connection.scalar(select(Client.id).where(Client.name == "west"))
    assert west is not None
    invitee = await client_invitee(engine, west, "west-owner")
    assert invitee is not None
    token, _ = await issue(engine, invitee, 3600, utc_now)

    outcomes = await asyncio.gather(
        set_password(engine, token, "first-choice-1", utc_now),
        set_password(engine, token, "second-choice-2", utc_now),
    )

    assert sorted(outcomes) == [False, True]
    chosen = "first-choice-1" if outcomes[0] else "second-choice-2"
    assert await authenticate(engine, "west-owner", chosen) is not None
    assert await authenticate(engine, "west-owner", "west-owner-pass") is None
    async with engine.connect() as connection:
        assert await connection.scalar(select(func.count()).select_from(AdminInvitation)) == 0
