"""The platform through the API: a client created in a brand (the provisioning loader's
validation, all or nothing), read back and removed with all it owns, each audited; who may
create and remove clients; the brands and the application servers, each to whom the seed
shows them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.api.accounts import create_platform_admin
from callcontrol.api.app import build_app
from callcontrol.api.servers import new_key, register
from models.admins import AuditEntry
from models.base import Base
from models.billing import ActiveCallSlot
from models.platform import Recording
from models.provisioning import load_text
from models.tenants import Client, ClientAdmin, Ddi, Terminal
from tests.api_world import IBERIA, World, world_on

WEST: dict[str, Any] = {
    "brand": "iberia",
    "name": "west",
    "sip_domain": "west.example.com",
    "features": ["billing"],
    "distribute_method": "static",
    "application_server": "as-1",
    "terminals": [{"name": "west-desk", "password": "west-desk-secret"}],
    "ddis": [{"e164": "+34910000300"}],
    "admins": [{"username": "west-admin", "password": "west-admin-pass"}],
}
"""A new client of iberia with what it owns, as a provisioning document has it."""


@pytest.fixture
async def world(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[World]:
    async with world_on(sqlite_template, tmp_path) as world:
        yield world


async def counts(world: World) -> tuple[int, ...]:
    """Clients, terminals, DDIs, client admins and audit entries stored."""
    async with world.engine.connect() as connection:
        return tuple(
            [
                int(await connection.scalar(select(func.count()).select_from(table)) or 0)
                for table in (Client, Terminal, Ddi, ClientAdmin, AuditEntry)
            ]
        )


async def login(world: World, username: str, password: str) -> dict[str, str]:
    answer = await world.http.post("/api/login", json={"username": username, "password": password})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['token']}"}


async def test_a_god_creates_a_client_reads_it_as_created_and_removes_it_with_all_it_owns(
    world: World,
) -> None:
    root = await world.as_("root")
    before = await counts(world)
    made = await world.http.post("/api/clients", headers=root, json=WEST)
    assert made.status_code == 201, made.text
    client = made.json()
    assert (client["name"], client["brand"]) == ("west", "iberia")
    assert (client["application_server"], client["distribute_method"]) == ("as-1", "static")
    assert client["language"] == "es"  # the brand's default, as the loader gives it
    url = f"/api/clients/{client['id']}"
    assert (await world.http.get(url, headers=root)).json() == client
    listed = (await world.http.get("/api/clients", headers=root)).json()
    assert "west" in {row["name"] for row in listed}
    terminals = (await world.http.get(f"{url}/terminals", headers=root)).json()
    assert terminals == [{"name": "west-desk"}]
    assert await counts(world) == (before[0] + 1, before[1] + 1, before[2] + 1, before[3] + 1,
                                   before[4] + 1)  # fmt: skip
    # The new client's admin logs in with the password it was created with.
    west_admin = await login(world, "west-admin", "west-admin-pass")
    assert (await world.http.get(url, headers=west_admin)).status_code == 200
    removed = await world.http.delete(url, headers=root)
    assert removed.status_code == 204, removed.text
    assert (await world.http.get(url, headers=root)).status_code == 404
    assert await counts(world) == (*before[:4], before[4] + 2)
    assert (await world.http.get(url, headers=west_admin)).status_code == 401  # gone with it


async def test_the_creation_and_the_removal_are_audited_with_the_client_as_shown_no_secret(
    world: World,
) -> None:
    root = await world.as_("root")
    client = (await world.http.post("/api/clients", headers=root, json=WEST)).json()
    assert (
        await world.http.delete(f"/api/clients/{client['id']}", headers=root)
    ).status_code == 204
    async with world.engine.connect() as connection:
        rows = (
            await connection.execute(
                select(*AuditEntry.__table__.c).where(
                    AuditEntry.action.in_(["client.create", "client.delete"])
                )
            )
        ).all()
    entries = {row.action: row for row in rows}
    created, deleted = entries["client.create"], entries["client.delete"]
    shown = {k: v for k, v in client.items() if k != "id"}
    assert (created.actor_kind, created.actor) == ("god", "root")
    assert (created.client_id, created.target) == (client["id"], str(client["id"]))
    assert (created.before, json.loads(created.after)) == (None, shown)
    assert (json.loads(deleted.before), deleted.after) == (shown, None)
    for entry in (created, deleted):
        text = f"{entry.before}{entry.after}"
        assert "west-desk-secret" not in text
        assert "west-admin-pass" not in text
    # Its brand's administrator reads both, without god's settings; the other brand's none.
    trail = (await world.http.get("/api/audit", headers=await world.as_("iberia-admin"))).json()
    seen = {entry["action"]: entry for entry in trail if entry["client_id"] == client["id"]}
    assert set(seen) == {"client.create", "client.delete"}
    assert "application_server" not in seen["client.create"]["after"]
    assert seen["client.delete"]["before"]["name"] == "west"
    other = (await world.http.get("/api/audit", headers=await world.as_("albion-admin"))).json()
    assert not [entry for entry in other if entry["action"] in {"client.create", "client.delete"}]


async def test_a_brand_admin_creates_in_its_own_brand_and_never_in_another(world: World) -> None:
    iberia = await world.as_("iberia-admin")
    mine = {"name": "east", "sip_domain": "east.example.com"}
    made = await world.http.post("/api/clients", headers=iberia, json=mine)
    assert made.status_code == 201, made.text
    assert made.json()["brand"] == "iberia"
    assert "distribute_method" not in made.json()  # god's setting, unseen by a brand admin
    before = await counts(world)
    elsewhere = {"name": "kent", "brand": "albion", "sip_domain": "kent.example.co.uk"}
    refused = await world.http.post("/api/clients", headers=iberia, json=elsewhere)
    assert (refused.status_code, refused.json()) == (404, {"detail": "no brand albion"})
    albion = await world.as_("albion-admin")
    into_iberia = await world.http.post(
        "/api/clients", headers=albion, json={**elsewhere, "brand": "iberia"}
    )
    assert into_iberia.status_code == 404
    assert await counts(world) == before
    # ... nor removes a client of another brand, which reads as absent.
    gone = await world.http.delete(f"/api/clients/{made.json()['id']}", headers=albion)
    assert gone.status_code == 404
    assert (
        await world.http.delete(f"/api/clients/{made.json()['id']}", headers=iberia)
    ).status_code == 204


async def test_god_only_settings_are_refused_to_a_brand_admin_and_nothing_is_written(
    world: World,
) -> None:
    iberia = await world.as_("iberia-admin")
    before = await counts(world)
    for field, value in (("distribute_method", "static"), ("application_server", "as-1")):
        body = {"name": "east", "sip_domain": "east.example.com", field: value}
        answer = await world.http.post("/api/clients", headers=iberia, json=body)
        assert answer.status_code == 403, answer.text
        assert answer.json() == {"detail": f"{field}: iberia-admin may not set it"}
    assert await counts(world) == before


async def test_an_invalid_client_is_one_line_422_naming_the_field_and_nothing_is_written(
    world: World,
) -> None:
    root = await world.as_("root")
    before = await counts(world)
    cases = {
        "sip_domain": {**WEST, "sip_domain": "not a domain"},
        "terminals[west-desk].password": {
            **WEST, "terminals": [{"name": "west-desk", "password": "short"}]},
        # The loader's refusal: a DDI another client holds (after west's terminal and admin).
        "ddis[+34910000100].e164": {**WEST, "ddis": [{"e164": "+34910000100"}]},
        "surname": {**WEST, "surname": "x"},
    }  # fmt: skip
    for field, body in cases.items():
        answer = await world.http.post("/api/clients", headers=root, json=body)
        assert answer.status_code == 422, (field, answer.text)
        detail = answer.json()["detail"]
        assert detail.startswith(f"{field}: "), detail
        assert "\n" not in detail
    assert await counts(world) == before


async def test_a_client_of_that_name_in_the_brand_is_a_conflict_and_is_left_as_it_was(
    world: World,
) -> None:
    root = await world.as_("root")
    north = f"/api/clients/{world.clients['north']}"
    was = (await world.http.get(north, headers=root)).json()
    body = {"brand": "iberia", "name": "north", "sip_domain": "other.example.com"}
    answer = await world.http.post("/api/clients", headers=root, json=body)
    assert answer.status_code == 409
    assert answer.json() == {"detail": "name: client north exists already"}
    assert (await world.http.get(north, headers=root)).json() == was


async def test_a_client_with_cdrs_is_kept_and_the_refusal_is_one_line_409(world: World) -> None:
    root = await world.as_("root")
    before = await counts(world)
    answer = await world.http.delete(f"/api/clients/{world.clients['south']}", headers=root)
    assert answer.status_code == 409
    assert answer.json() == {"detail": "client 'south' has 1 CDRs: it is kept"}
    assert await counts(world) == before


@pytest.mark.parametrize("holding", ["recordings", "calls in progress"])
async def test_a_client_with_a_recording_or_a_live_call_is_kept_409(
    world: World, holding: str
) -> None:
    root = await world.as_("root")
    made = await world.http.post("/api/clients", headers=root, json=WEST)
    assert made.status_code == 201, made.text
    client_id = made.json()["id"]
    at = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    async with world.engine.begin() as connection:
        if holding == "recordings":
            row = {
                "client_id": client_id,
                "call_id": "west-call",
                "segment": 1,
                "caller": "west-desk",
                "callee": "34910000999",
                "started_at": at,
                "file_path": "west/west-call-1.wav",
            }
            await connection.execute(insert(Recording).values(**row))
        else:
            row = {
                "client_id": client_id,
                "call_id": "west-call",
                "server": "as-1",
                "direction": "outbound",
                "acquired_at": at,
                "lease_until": at + timedelta(days=1),
            }
            await connection.execute(insert(ActiveCallSlot).values(**row))
    before = await counts(world)
    answer = await world.http.delete(f"/api/clients/{client_id}", headers=root)
    assert answer.status_code == 409
    assert answer.json() == {"detail": f"client 'west' has 1 {holding}: it is kept"}
    assert await counts(world) == before
    shown = await world.http.get(f"/api/clients/{client_id}", headers=root)
    assert shown.status_code == 200


async def test_only_god_and_brand_admins_with_the_client_privileges_create_and_remove(
    world: World,
) -> None:
    await create_platform_admin(
        world.engine, "iberia-reader", "reader-password", brand="iberia", privileges={"client": "r"}
    )
    await create_platform_admin(
        world.engine, "iberia-maker", "maker-password", brand="iberia", privileges={"client": "cd"}
    )
    body = {"name": "east", "sip_domain": "east.example.com"}
    for username, password in (("iberia-reader", "reader-password"),):
        headers = await login(world, username, password)
        answer = await world.http.post("/api/clients", headers=headers, json=body)
        assert (answer.status_code, answer.json()) == (
            403, {"detail": f"{username} may not create clients"})  # fmt: skip
    for username in ("north-admin", "north-settings"):  # a client admin, even with client crud
        answer = await world.http.post("/api/clients", headers=await world.as_(username), json=body)
        assert answer.status_code == 403
        north = f"/api/clients/{world.clients['north']}"
        assert (
            await world.http.delete(north, headers=await world.as_(username))
        ).status_code == 403
    maker = await login(world, "iberia-maker", "maker-password")
    # Its privileges hold no terminals: a client with terminals is more than it may create.
    with_terminal = {**body, "terminals": [{"name": "east-desk", "password": "east-desk-pass"}]}
    answer = await world.http.post("/api/clients", headers=maker, json=with_terminal)
    assert answer.json() == {"detail": "terminals: iberia-maker may not create terminals"}
    # ... nor client admins (an unrestricted administrator's).
    with_admin = {**body, "admins": [{"username": "east-admin", "password": "east-admin-pass"}]}
    answer = await world.http.post("/api/clients", headers=maker, json=with_admin)
    assert answer.json() == {"detail": "admins: iberia-maker may not create client admins"}
    made = await world.http.post("/api/clients", headers=maker, json=body)
    assert made.status_code == 201, made.text
    reader = await login(world, "iberia-reader", "reader-password")
    url = f"/api/clients/{made.json()['id']}"
    assert (await world.http.delete(url, headers=reader)).status_code == 403
    assert (await world.http.delete(url, headers=maker)).status_code == 204


async def test_brands_are_listed_with_their_defaults_to_god_and_each_brand_admin_its_own(
    world: World,
) -> None:
    root = (await world.http.get("/api/brands", headers=await world.as_("root"))).json()
    assert [brand["name"] for brand in root] == ["iberia", "albion"]
    iberia = (await world.http.get("/api/brands", headers=await world.as_("iberia-admin"))).json()
    assert iberia == [
        {
            "id": root[0]["id"],
            "name": "iberia",
            "default_language": "es",
            "default_timezone": "Europe/Madrid",
            "default_currency": "EUR",
            "default_country": "ES",
            "features": ["billing", "invoices", "recordings"],
        }
    ]
    albion = (await world.http.get("/api/brands", headers=await world.as_("albion-admin"))).json()
    assert [brand["name"] for brand in albion] == ["albion"]
    refused = await world.http.get("/api/brands", headers=await world.as_("north-admin"))
    assert refused.status_code == 403


async def test_application_servers_are_visible_to_god_only_and_never_with_their_token(
    world: World,
) -> None:
    key = new_key()
    assert await register(world.engine, key, "as-1", "http://10.0.0.5:8089", "console-secret-1")
    root = await world.http.get("/api/application-servers", headers=await world.as_("root"))
    assert "console_token" not in root.text
    assert "console-secret-1" not in root.text
    assert root.json() == [
        {
            "id": root.json()[0]["id"],
            "name": "as-1",
            "address": "192.0.2.11",
            "sip_port": 5060,
            "drained": False,
            "console_url": "http://10.0.0.5:8089",
        }
    ]
    for username in ("iberia-admin", "north-admin"):
        answer = await world.http.get("/api/application-servers", headers=await world.as_(username))
        assert answer.status_code == 403


BRAND = (
    IBERIA
    + """    features: [billing]
    rating_plan_groups:
      - {name: standard, currency: EUR, rates: [{prefix: "34", price_per_minute: 0.01}]}
"""
)
ROUTED = (
    BRAND
    + """
    carriers:
      - {name: telco-es, endpoint: carrier-es, host: 192.0.2.50}
    outbound_routes:
      - {carrier: telco-es, prefix: "34", priority: 0, client: west}
"""
)
RICH: dict[str, Any] = {
    "brand": "iberia",
    "name": "west",
    "sip_domain": "west.example.com",
    "features": ["billing"],
    "billing_method": "postpaid",
    "rating_profiles": [
        {"rating_plan_group": "standard", "activation_time": "2025-01-01T00:00:00+01:00"}
    ],
    "authorized_sources": ["198.51.100.0/24"],
    "geoip_countries": ["ES"],
    "outgoing_ddi": "+34910000300",
    "users": [{"name": "wes", "call_acl": "office", "outgoing_ddi_rule": "sales"}],
    "match_lists": [{"name": "mobiles", "patterns": [{"regexp": "^346"}]}],
    "call_acls": [{"name": "office", "rules": [
        {"priority": 1, "match_list": "mobiles", "policy": "allow"}]}],
    "outgoing_ddi_rule": {"name": "main", "patterns": [
        {"priority": 1, "prefix": "111*", "action": "force", "forced_ddi": "+34910000300"}]},
    "outgoing_ddi_rules": [
        {"name": "sales", "default_action": "force", "forced_ddi": "+34910000300"}],
    "terminals": [{"name": "west-desk", "password": "west-desk-secret", "user": "wes"}],
    "extensions": [{"number": "101", "user": "wes"}],
    "ddis": [{"e164": "+34910000300", "extension": "101"}],
    "admins": [{"username": "west-admin", "password": "west-admin-pass"}],
}  # fmt: skip
"""A client owning one of everything, its items pointing at each other (the cycles)."""


async def test_a_client_owning_one_of_everything_is_removed_whole_on_each_database(
    engine: AsyncEngine,
) -> None:
    await load_text(engine, BRAND)
    await create_platform_admin(engine, "root", "root-password")
    app = build_app(engine)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api.test"
    ) as http:
        login = await http.post(
            "/api/login", json={"username": "root", "password": "root-password"}
        )
        root = {"Authorization": f"Bearer {login.json()['token']}"}
        made = await http.post("/api/clients", headers=root, json=RICH)
        assert made.status_code == 201, made.text
        west = made.json()["id"]
        held = await rows_of(engine, west)
        owned = ("ddis", "terminals", "extensions", "users", "match_lists", "call_acls",
                 "outgoing_ddi_rules", "rating_profiles", "client_admins", "client_features",
                 "client_authorized_sources", "client_geoip_countries")  # fmt: skip
        assert [name for name in owned if not held[name]] == []
        # A route of its brand narrowed to it keeps it, until the brand's document drops it.
        await load_text(engine, ROUTED)
        kept = await http.delete(f"/api/clients/{west}", headers=root)
        assert kept.json() == {
            "detail": "client 'west' has 1 outbound routes of its brand: it is kept"
        }
        await load_text(engine, BRAND)
        removed = await http.delete(f"/api/clients/{west}", headers=root)
        assert removed.status_code == 204, removed.text
        assert set((await rows_of(engine, west)).values()) == {0}
        # The name is free again: the same client is created anew.
        assert (await http.post("/api/clients", headers=root, json=RICH)).status_code == 201


async def rows_of(engine: AsyncEngine, client_id: int) -> dict[str, int]:
    """How many rows of each table with a ``client_id`` are the client's (``clients``: its
    own row)."""
    counted = {}
    async with engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            column = table.c.id if table.name == "clients" else table.c.get("client_id")
            if column is None or table.name == "audit_entries":
                continue
            query = select(func.count()).select_from(table).where(column == client_id)
            counted[table.name] = int(await connection.scalar(query) or 0)
    return counted
