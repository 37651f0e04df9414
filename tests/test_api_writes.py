"""A client's writes through the API never lose each other: two API processes (two apps,
each with its engine, on one database) or an API write and a provisioning load, writing
the same client at once, each keep their change; a write that keeps meeting other
writers' changes answers 409 and writes nothing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.api.app import build_app
from callcontrol.api.writes import CHANGED, TRIES
from dialplan.errors import ProvisioningError
from models.admins import AuditEntry
from models.changes import ConfigChanged, current
from models.db import create_engine
from models.provisioning import load_text
from models.provisioning.load import _failed
from models.tenants import Client, Terminal
from tests.api_world import IBERIA

DOCUMENT = (
    IBERIA
    + """
clients:
  - name: west
    brand: iberia
    sip_domain: west.example.com
    admins:
      - {username: west-owner, password: west-owner-pass}
    terminals:
      - {name: west-desk, password: west-desk-secret}
"""
)
WEST_TOO = DOCUMENT.replace(
    "      - {name: west-desk, password: west-desk-secret}",
    "      - {name: west-desk, password: west-desk-secret}\n"
    "      - {name: west-cli, password: west-cli-secret}",
)
"""The document as ``callcontrol provision`` would load it with a terminal more."""
EAST = """
clients:
  - name: east
    brand: iberia
    sip_domain: east.example.com
"""
"""Another client: loading it changes the configuration, not west."""


@dataclass
class Process:
    """One API process: its own engine (so its own in-process serialisation) and client."""

    engine: AsyncEngine
    http: httpx.AsyncClient


@contextlib.asynccontextmanager
async def apis(
    url: str, count: int, config_version: Callable[[AsyncEngine], Awaitable[int]] = current
) -> AsyncIterator[list[Process]]:
    engines = [create_engine(url) for _ in range(count)]
    try:
        async with contextlib.AsyncExitStack() as stack:
            opened = []
            for engine in engines:
                app = build_app(engine, config_version=config_version)
                transport = httpx.ASGITransport(app=app)
                http = httpx.AsyncClient(transport=transport, base_url="http://api.test")
                opened.append(Process(engine, await stack.enter_async_context(http)))
            yield opened
    finally:
        for engine in engines:
            await engine.dispose()


async def west_of(engine: AsyncEngine) -> tuple[int, dict[str, str]]:
    """West's id and the headers of its admin's requests (a token any process accepts)."""
    async with engine.connect() as connection:
        west = await connection.scalar(select(Client.id).where(Client.name == "west"))
    assert west is not None
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=build_app(engine)), base_url="http://api.test"
    ) as http:
        answer = await http.post(
            "/api/login", json={"username": "west-owner", "password": "west-owner-pass"}
        )
    assert answer.status_code == 200, answer.text
    return west, {"Authorization": f"Bearer {answer.json()['token']}"}


async def terminals(engine: AsyncEngine, client_id: int) -> set[str]:
    async with engine.connect() as connection:
        rows = await connection.scalars(
            select(Terminal.name).where(Terminal.client_id == client_id)
        )
        return set(rows)


class Meddler:
    """Reads the configuration's version as the API does, then -- the first ``times``
    reads -- makes another change commit before the write can (``change``)."""

    def __init__(self, times: int, change: str) -> None:
        self.times = times
        self.change = change
        self.reads = 0

    async def __call__(self, engine: AsyncEngine) -> int:
        seen = await current(engine)
        self.reads += 1
        if self.reads <= self.times:
            await load_text(engine, self.change)
        return seen


async def test_two_api_processes_adding_to_one_client_at_once_keep_every_item(
    db_url: str,
) -> None:
    reads = 0

    async def counted(engine: AsyncEngine) -> int:
        nonlocal reads
        reads += 1
        return await current(engine)

    async with apis(db_url, 2, config_version=counted) as (one, two):
        await load_text(one.engine, DOCUMENT)
        west, headers = await west_of(one.engine)
        base = f"/api/clients/{west}/terminals"

        async def add(api: Process, name: str) -> int:
            body = {"name": name, "password": f"{name}-secret"}
            return (await api.http.post(base, headers=headers, json=body)).status_code

        for round_ in range(10):
            answers = await asyncio.gather(add(one, f"west-a{round_}"), add(two, f"west-b{round_}"))
            assert answers == [201, 201], round_
        expected = {"west-desk"} | {f"west-{side}{n}" for side in "ab" for n in range(10)}
        assert await terminals(one.engine, west) == expected
        listed = await two.http.get(base, headers=headers)
        assert {item["name"] for item in listed.json()} == expected
    # Of a pair, the write that loses the race starts over once; the winner never.
    assert 20 <= reads <= 30


async def test_an_api_write_and_a_provisioning_load_at_once_keep_the_load_s_change(
    db_url: str,
) -> None:
    async with apis(db_url, 1) as (api,):
        await load_text(api.engine, DOCUMENT)
        west, headers = await west_of(api.engine)
        base = f"/api/clients/{west}/terminals"
        answers = []
        for round_ in range(5):
            # The operator's document has the terminals of the earlier rounds, the API's
            # too (a load makes the client match it exactly), and a new one of its own.
            listed = [f"west-cli{n}" for n in range(round_ + 1)]
            listed += [f"west-api{n}" for n in range(round_)]
            text = DOCUMENT + "".join(
                f"      - {{name: {name}, password: {name}-secret}}\n" for name in listed
            )
            answer, _ = await asyncio.gather(
                api.http.post(
                    base,
                    headers=headers,
                    json={"name": f"west-api{round_}", "password": "api-secret-1"},
                ),
                load_text(api.engine, text),
            )
            answers.append(answer.status_code)
            # The API's write never took the load's terminal away.
            assert f"west-cli{round_}" in await terminals(api.engine, west), round_
        assert answers == [201] * 5


async def test_a_change_between_the_read_and_the_write_starts_the_write_over(
    db_url: str,
) -> None:
    meddler = Meddler(1, WEST_TOO)
    async with apis(db_url, 1, config_version=meddler) as (api,):
        await load_text(api.engine, DOCUMENT)
        west, headers = await west_of(api.engine)
        made = await api.http.post(
            f"/api/clients/{west}/terminals",
            headers=headers,
            json={"name": "west-api", "password": "west-api-secret"},
        )
        assert made.status_code == 201, made.text
        assert meddler.reads == 2  # read, met the load's change, read again, written
        # The load's terminal came in between: the write applied its one change to it.
        assert await terminals(api.engine, west) == {"west-desk", "west-cli", "west-api"}


async def test_a_write_that_never_settles_answers_409_and_writes_nothing(
    db_url: str,
) -> None:
    meddler = Meddler(TRIES, EAST)
    async with apis(db_url, 1, config_version=meddler) as (api,):
        await load_text(api.engine, DOCUMENT)
        west, headers = await west_of(api.engine)
        made = await api.http.post(
            f"/api/clients/{west}/terminals",
            headers=headers,
            json={"name": "west-api", "password": "west-api-secret"},
        )
        # Another client's change is a change of the configuration's version too.
        assert (made.status_code, made.json()) == (409, {"detail": CHANGED})
        assert meddler.reads == TRIES
        assert await terminals(api.engine, west) == {"west-desk"}

        meddler.times = 3 * TRIES  # a settings change and a removal meet the same
        changed = await api.http.patch(
            f"/api/clients/{west}", headers=headers, json={"language": "en"}
        )
        assert (changed.status_code, changed.json()) == (409, {"detail": CHANGED})
        removed = await api.http.delete(f"/api/clients/{west}/terminals/west-desk", headers=headers)
        assert removed.status_code == 409
        assert meddler.reads == 3 * TRIES
        async with api.engine.connect() as connection:
            language = await connection.scalar(select(Client.language).where(Client.id == west))
            actions = set(await connection.scalars(select(AuditEntry.action)))
        assert language == "es"
        assert await terminals(api.engine, west) == {"west-desk"}
        assert not actions & {"terminals.create", "terminals.delete", "client.update"}

        # Once nothing meddles, the same requests go through.
        changed = await api.http.patch(
            f"/api/clients/{west}", headers=headers, json={"language": "en"}
        )
        assert changed.status_code == 200, changed.text


async def test_a_load_expecting_an_old_version_writes_nothing(engine: AsyncEngine) -> None:
    await load_text(engine, DOCUMENT)
    seen = await current(engine)
    await load_text(engine, EAST)  # the configuration moves on
    with pytest.raises(ConfigChanged):
        await load_text(engine, WEST_TOO, expect_version=seen)
    async with engine.connect() as connection:
        west = await connection.scalar(select(Client.id).where(Client.name == "west"))
    assert west is not None
    assert await terminals(engine, west) == {"west-desk"}
    assert await current(engine) == seen + 1  # only the load of east raised it

    await load_text(engine, WEST_TOO, expect_version=seen + 1)
    assert await terminals(engine, west) == {"west-desk", "west-cli"}
    assert await current(engine) == seen + 2


async def test_the_first_load_may_expect_version_zero_once(engine: AsyncEngine) -> None:
    assert await current(engine) == 0  # no change recorded yet
    await load_text(engine, DOCUMENT, expect_version=0)
    assert await current(engine) == 1
    with pytest.raises(ConfigChanged):
        await load_text(engine, WEST_TOO, expect_version=0)
    assert await current(engine) == 1


class DeadlockDetected(Exception):
    """A driver's error as PostgreSQL's deadlock reaches it (SQLSTATE 40P01)."""

    sqlstate = "40P01"


def test_a_deadlock_the_database_broke_in_an_expecting_load_is_a_change_met() -> None:
    engine = create_engine("sqlite://")
    broken = DBAPIError("UPDATE config_version", {}, DeadlockDetected("deadlock detected"))
    met = _failed(engine, "api:west-owner", broken, 7)
    assert isinstance(met, ConfigChanged)  # the API starts over
    assert met.expected == 7
    refused = _failed(engine, "provision.yaml", broken, None)  # a plain load: as before
    assert isinstance(refused, ProvisioningError)
    assert str(refused).endswith("the database refused the document: deadlock detected")
