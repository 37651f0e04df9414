"""Brand administrators in provisioning documents (``brands[].admins``): stored hashed,
exported as their hashes and reloaded unchanged, able to log in to the API and see only
their brand; a brand without the key keeps its administrators, with it has exactly those;
one login namespace with god and client administrators; a refused document changes
nothing -- on every backend."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import selectinload

import models
from callcontrol.api.accounts import create_platform_admin, utc_now
from callcontrol.api.app import build_app
from callcontrol.api.invites import issue, platform_invitee
from dialplan.errors import ProvisioningError
from models.admins import PlatformAdmin
from models.db import session_factory
from models.provisioning import dump_yaml, export_document, load_text
from models.provisioning.passwords import hash_password, verify_password
from models.provisioning.syntax import read_yaml
from models.tenants import Brand, ClientAdmin
from tests.conftest import admin_rows

HASHED = hash_password("albion-boss-pass")

DOCUMENT = f"""
currencies:
  - {{code: EUR, name: Euro, symbol: "€"}}
  - {{code: GBP, name: Pound sterling, symbol: "£"}}
brands:
  - name: iberia
    default_language: es
    default_timezone: Europe/Madrid
    default_currency: EUR
    default_country: ES
    admins:
      - {{username: iberia-boss, password: iberia-boss-pass, email: boss@iberia.example}}
      - username: iberia-auditor
        password: iberia-auditor-pass
        privileges: {{client: r, audit: r}}
      - username: iberia-helper
        password: iberia-helper-pass
        restricted_sections: [invoices, rating_profiles]
  - name: albion
    default_language: en
    default_timezone: Europe/London
    default_currency: GBP
    default_country: GB
    admins:
      - {{username: albion-boss, password_hash: "{HASHED}"}}
clients:
  - {{name: north, brand: iberia, sip_domain: north.example.com,
     admins: [{{username: north-admin, password: north-admin-pass}}]}}
  - {{name: thames, brand: albion, sip_domain: thames.example.co.uk}}
"""


def parsed(text: str = DOCUMENT) -> dict[str, Any]:
    data = read_yaml(text)
    assert isinstance(data, dict)
    return data


def brand_of(document: dict[str, Any], name: str) -> dict[str, Any]:
    return next(brand for brand in document["brands"] if brand["name"] == name)


async def admins(engine: AsyncEngine) -> dict[str, tuple[str, str | None]]:
    """Each platform administrator: its role and brand name."""
    query = select(PlatformAdmin.username, PlatformAdmin.role, Brand.name).outerjoin(
        Brand, Brand.id == PlatformAdmin.brand_id
    )
    async with engine.connect() as connection:
        return {name: (role, brand) for name, role, brand in await connection.execute(query)}


async def ids(engine: AsyncEngine) -> dict[str, set[tuple[Any, ...]]]:
    """Every row's primary key, per table (but the audit trail)."""
    found: dict[str, set[tuple[Any, ...]]] = {}
    async with engine.connect() as connection:
        for table in models.Base.metadata.sorted_tables:
            if table.name != "audit_entries":
                rows = await connection.execute(select(*table.primary_key.columns))
                found[table.name] = {tuple(row) for row in rows}
    return found


async def stored(engine: AsyncEngine, username: str) -> PlatformAdmin:
    async with session_factory(engine)() as session:
        row = await session.scalar(
            select(PlatformAdmin)
            .where(PlatformAdmin.username == username)
            .options(selectinload(PlatformAdmin.privileges))
        )
    assert row is not None
    return row


async def test_brand_admins_load_hashed_with_their_privileges_and_export_as_hashes(
    engine: AsyncEngine,
) -> None:
    await load_text(engine, DOCUMENT)

    assert await admins(engine) == {
        "iberia-boss": ("brand", "iberia"),
        "iberia-auditor": ("brand", "iberia"),
        "iberia-helper": ("brand", "iberia"),
        "albion-boss": ("brand", "albion"),
    }
    boss = await stored(engine, "iberia-boss")
    assert boss.password_hash.startswith("scrypt$")
    assert verify_password("iberia-boss-pass", boss.password_hash)
    assert (boss.email, boss.restricted, boss.privileges) == ("boss@iberia.example", False, [])
    auditor = await stored(engine, "iberia-auditor")
    assert auditor.restricted
    assert {p.section: p.verbs() for p in auditor.privileges if p.verbs()} == {
        "client": {"read"},
        "audit": {"read"},
    }
    helper = await stored(engine, "iberia-helper")
    denied = {p.section for p in helper.privileges if not p.verbs()}
    assert denied == {"invoices", "rating_profiles"}
    assert (await stored(engine, "albion-boss")).password_hash == HASHED

    exported = await export_document(engine)
    assert brand_of(exported, "iberia")["admins"] == [
        {"username": "iberia-auditor", "password_hash": auditor.password_hash}
        | {"privileges": {"client": "r", "audit": "r"}},
        {"username": "iberia-boss", "email": "boss@iberia.example"}
        | {"password_hash": boss.password_hash},
        {"username": "iberia-helper", "password_hash": helper.password_hash}
        | {"restricted_sections": ["invoices", "rating_profiles"]},
    ]
    text = dump_yaml(exported)
    assert "iberia-boss-pass" not in text
    assert "password:" not in text


async def test_an_export_with_brand_admins_reloads_unchanged_and_into_an_empty_database(
    engine: AsyncEngine,
) -> None:
    await load_text(engine, DOCUMENT)
    before = await ids(engine)
    text = dump_yaml(await export_document(engine))

    assert str(await load_text(engine, text, "export.yaml")) == "no changes"
    assert str(await load_text(engine, DOCUMENT)) == "no changes"  # clear passwords verify
    assert await ids(engine) == before

    async with engine.begin() as connection:
        for table in reversed(models.Base.metadata.sorted_tables):
            await connection.execute(table.delete())
    await load_text(engine, text, "export.yaml")
    assert dump_yaml(await export_document(engine)) == text


async def test_a_brand_without_the_admins_key_keeps_the_administrators_it_has(
    engine: AsyncEngine,
) -> None:
    await load_text(engine, DOCUMENT)
    await create_platform_admin(engine, "iberia-cli", "iberia-cli-pass", brand="iberia")
    document = parsed()
    del brand_of(document, "iberia")["admins"]
    before = await ids(engine)

    assert str(await load_text(engine, dump_yaml(document))) == "no changes"

    assert await ids(engine) == before
    assert {name for name, (_, brand) in (await admins(engine)).items() if brand == "iberia"} == {
        "iberia-boss",
        "iberia-auditor",
        "iberia-helper",
        "iberia-cli",
    }


@pytest.mark.parametrize("emptied", [[], None], ids=["admins: []", "admins: (nothing)"])
async def test_an_empty_admins_key_removes_every_administrator_of_its_brand(
    engine: AsyncEngine, emptied: list[Any] | None
) -> None:
    await load_text(engine, DOCUMENT)
    await create_platform_admin(engine, "root", "root-password")
    await create_platform_admin(engine, "iberia-cli", "iberia-cli-pass", brand="iberia")
    document = parsed()
    brand_of(document, "iberia")["admins"] = emptied
    text = dump_yaml(document)

    report = await load_text(engine, text)

    assert set(await admins(engine)) == {"root", "albion-boss"}
    assert report.deleted >= 4
    assert "admins" not in brand_of(await export_document(engine), "iberia")


async def test_the_admins_key_replaces_the_brands_administrators_with_their_sessions(
    engine: AsyncEngine,
) -> None:
    await load_text(engine, DOCUMENT)
    await create_platform_admin(
        engine, "iberia-cli", "iberia-cli-pass", brand="iberia", privileges={"client": "r"}
    )
    app = build_app(engine)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api.test"
    ) as http:
        headers = {}
        for name in ("iberia-cli", "iberia-auditor", "iberia-boss", "albion-boss"):
            password = f"{name}-pass"
            answer = await http.post("/api/login", json={"username": name, "password": password})
            assert answer.status_code == 200, answer.text
            headers[name] = {"Authorization": f"Bearer {answer.json()['token']}"}
            invitee = await platform_invitee(engine, name)
            assert invitee is not None
            await issue(engine, invitee, 3600, utc_now)  # a pending one-time link each
        gone = [(await stored(engine, n)).id for n in ("iberia-cli", "iberia-auditor")]
        # admins, privileges (the command line's one; the document's a row per section),
        # sessions, one-time links
        assert await admin_rows(engine, "platform", gone) == (2, 1 + 13, 2, 2)
        document = parsed()
        iberia = brand_of(document, "iberia")
        iberia["admins"] = [
            admin for admin in iberia["admins"] if admin["username"] == "iberia-boss"
        ] + [{"username": "iberia-new", "password": "iberia-new-pass"}]

        await load_text(engine, dump_yaml(document))

        assert await admin_rows(engine, "platform", gone) == (0, 0, 0, 0)
        assert await admins(engine) == {
            "iberia-boss": ("brand", "iberia"),
            "iberia-new": ("brand", "iberia"),
            "albion-boss": ("brand", "albion"),
        }
        for name, status in [
            ("iberia-cli", 401),
            ("iberia-auditor", 401),
            ("iberia-boss", 200),
            ("albion-boss", 200),
        ]:
            answer = await http.get("/api/clients", headers=headers[name])
            assert answer.status_code == status, name


async def test_a_brand_admin_from_a_document_logs_in_and_sees_only_its_brand(
    engine: AsyncEngine,
) -> None:
    document = parsed()
    document["clients"].append({"name": "south", "brand": "iberia", "sip_domain": "south.test"})
    await load_text(engine, dump_yaml(document))
    app = build_app(engine)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api.test"
    ) as http:

        async def clients_seen(name: str, password: str) -> list[str] | int:
            answer = await http.post("/api/login", json={"username": name, "password": password})
            if answer.status_code != 200:
                return answer.status_code
            token = {"Authorization": f"Bearer {answer.json()['token']}"}
            listed = await http.get("/api/clients", headers=token)
            assert listed.status_code == 200, listed.text
            return sorted(client["name"] for client in listed.json())

        assert await clients_seen("iberia-boss", "iberia-boss-pass") == ["north", "south"]
        assert await clients_seen("albion-boss", "albion-boss-pass") == ["thames"]
        assert await clients_seen("iberia-boss", "not-the-password") == 401


async def refused(engine: AsyncEngine, document: dict[str, Any]) -> str:
    """The one line refusing ``document``; the database is left as it was."""
    before = await ids(engine)
    with pytest.raises(ProvisioningError) as error:
        await load_text(engine, dump_yaml(document))
    assert await ids(engine) == before
    lines = str(error.value).splitlines()
    assert len(lines) == 1
    return lines[0]


async def test_a_login_taken_by_a_god_brand_or_client_admin_is_refused_naming_its_path(
    engine: AsyncEngine,
) -> None:
    await load_text(engine, DOCUMENT)
    await create_platform_admin(engine, "root", "root-password")
    clashes = {
        "root": "is already the login of a god administrator",
        "albion-boss": "is already the login of an administrator of brand 'albion'",
        "north-admin": "is already a login of client 'north'",
    }
    for taken, why in clashes.items():
        document = parsed()
        del document["clients"]  # north keeps its stored admin
        iberia = brand_of(document, "iberia")
        iberia["admins"].append({"username": taken, "password": "some-password"})
        if taken == "albion-boss":
            del brand_of(document, "albion")["admins"]  # albion keeps it
        assert await refused(engine, document) == f"brands[0].admins[3].username: {taken} {why}"


async def test_a_login_given_twice_in_one_document_is_refused_at_the_second(
    engine: AsyncEngine,
) -> None:
    await load_text(engine, DOCUMENT)
    document = parsed()
    brand_of(document, "albion")["admins"].append({"username": "iberia-boss", "password": "x" * 8})
    assert await refused(engine, document) == (
        "brands[1].admins[1].username: iberia-boss is already the login of an administrator"
        " of brand 'iberia'"
    )

    document = parsed()
    brand_of(document, "iberia")["admins"].append({"username": "iberia-boss", "password": "x" * 8})
    assert await refused(engine, document) == (
        "brands[0].admins[3].username: duplicate login 'iberia-boss', already at"
        " brands[0].admins[0].username"
    )

    document = parsed()
    document["clients"][1]["admins"] = [{"username": "albion-boss", "password": "x" * 8}]
    assert await refused(engine, document) == (
        "clients[1].admins[0].username: albion-boss is already the login of a god or brand"
        " administrator"
    )


async def test_a_login_the_document_frees_may_be_taken_in_the_same_document(
    engine: AsyncEngine,
) -> None:
    await load_text(engine, DOCUMENT)
    document = copy.deepcopy(parsed())
    iberia, albion = brand_of(document, "iberia"), brand_of(document, "albion")
    moved = iberia["admins"].pop(0)  # iberia-boss becomes albion's, keeping its row
    albion["admins"].append(moved)
    document["clients"][0]["admins"] = []  # north-admin becomes a brand administrator
    iberia["admins"].append({"username": "north-admin", "password": "north-admin-pass"})
    boss = (await stored(engine, "iberia-boss")).id

    await load_text(engine, dump_yaml(document))

    assert (await admins(engine))["iberia-boss"] == ("brand", "albion")
    assert (await stored(engine, "iberia-boss")).id == boss
    assert (await admins(engine))["north-admin"] == ("brand", "iberia")
    async with engine.connect() as connection:
        assert await connection.scalar(select(func.count()).select_from(ClientAdmin)) == 0


async def test_clear_passwords_are_hashed_off_the_event_loop(engine: AsyncEngine) -> None:
    # scrypt takes tens of milliseconds a password: a document with many (a tenant's
    # admins, through the API) must not stall every call and request of the process.
    count = 24
    many = [{"username": f"north-{n}", "password": f"north-pass-{n}"} for n in range(count)]
    document = parsed()
    document["clients"][0]["admins"] = many
    started = time.perf_counter()
    hash_password("one to time")
    on_the_loop = count * (time.perf_counter() - started)
    gaps: list[float] = []
    loading = asyncio.create_task(load_text(engine, json.dumps(document)))
    last = time.perf_counter()
    while not loading.done():
        await asyncio.sleep(0.005)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
    await loading
    # Hashed on the loop, they would have stopped it for all of ``on_the_loop`` at once.
    assert max(gaps) < on_the_loop / 2, f"the loop stopped {max(gaps):.2f} s of {on_the_loop:.2f}"
    async with session_factory(engine)() as session:
        rows = (await session.scalars(select(ClientAdmin).order_by(ClientAdmin.id))).all()
    assert [row.username for row in rows] == [admin["username"] for admin in many]
    assert all(verify_password(f"north-pass-{n}", row.password_hash) for n, row in enumerate(rows))
