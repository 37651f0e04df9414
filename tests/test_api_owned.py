"""What a client owns through the API (terminals, extensions, DDIs, authorized sources,
client admins): each verb alone, secrets written and never read back, the provisioning
loader's validation in one line naming the field, all or nothing, and the audit trail."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from models.admins import AuditEntry
from models.provisioning import export_document
from models.provisioning.passwords import sip_ha1
from models.tenants import Terminal
from tests.api_world import World, world_on


@pytest.fixture
async def world(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[World]:
    async with world_on(sqlite_template, tmp_path) as world:
        yield world


async def test_terminals_verb_by_verb_each_alone(world: World) -> None:
    base = f"/api/clients/{world.clients['north']}/terminals"
    expected = {"c": (201, 403, 403, 403), "r": (403, 200, 403, 403)}
    expected |= {"u": (403, 403, 200, 403), "d": (403, 403, 403, 204)}
    for verb, statuses in expected.items():
        headers = await world.as_(f"north-term-{verb}")
        seen = (
            await world.http.post(
                base, headers=headers, json={"name": f"north-t{verb}", "password": "pass-12345"}
            ),
            await world.http.get(f"{base}/north-desk", headers=headers),
            await world.http.patch(f"{base}/north-desk", headers=headers, json={"codecs": "alaw"}),
            await world.http.delete(f"{base}/north-tc", headers=headers),
        )
        assert tuple(answer.status_code for answer in seen) == statuses, verb
    root = await world.as_("root")
    names = [item["name"] for item in (await world.http.get(base, headers=root)).json()]
    assert names == ["north-desk"]  # north-tc created by c, removed by d; the others refused
    desk = (await world.http.get(f"{base}/north-desk", headers=root)).json()
    assert desk == {"name": "north-desk", "user": "nora", "codecs": "alaw"}


async def test_a_terminal_password_is_stored_as_its_digest_and_never_answered(
    world: World,
) -> None:
    base = f"/api/clients/{world.clients['north']}/terminals"
    root = await world.as_("root")
    made = await world.http.post(
        base, headers=root, json={"name": "north-fax", "password": "fax-clear-secret"}
    )
    assert made.status_code == 201, made.text
    assert made.json() == {"name": "north-fax"}
    changed = await world.http.patch(
        f"{base}/north-fax", headers=root, json={"password": "fax-new-secret"}
    )
    assert changed.status_code == 200, changed.text
    async with world.engine.connect() as connection:
        ha1 = await connection.scalar(select(Terminal.ha1).where(Terminal.name == "north-fax"))
        audit = (await connection.execute(select(AuditEntry.before, AuditEntry.after))).all()
    assert ha1 == sip_ha1("north-fax", "north.example.com", "fax-new-secret")
    listed = await world.http.get(base, headers=root)
    for text in (listed.text, changed.text, json.dumps([list(row) for row in audit])):
        assert "fax-clear-secret" not in text
        assert "fax-new-secret" not in text
        assert ha1 not in text
    trail = (await world.http.get("/api/audit", headers=root)).json()
    update = next(entry for entry in trail if entry["action"] == "terminals.update")
    assert update["target"] == f"{world.clients['north']}/north-fax"
    assert update["before"]["ha1"] == update["after"]["password"] == "********"


async def test_an_invalid_item_is_one_line_naming_the_field_and_changes_nothing(
    world: World,
) -> None:
    north = world.clients["north"]
    root = await world.as_("root")
    before = await export_document(world.engine)
    refused = {
        "terminals": {"name": "north-x", "password": "pass-12345", "codecs": "ulaw;alaw"},
        "extensions": {"number": "105", "user": "ghost"},
        "ddis": {"e164": "not-a-number"},
        "authorized-sources": {"source": "300.1.2.3/8"},
        "admins": {"username": "north-x"},
    }
    for path, body in refused.items():
        answer = await world.http.post(f"/api/clients/{north}/{path}", headers=root, json=body)
        assert answer.status_code == 422, (path, answer.text)
        detail = answer.json()["detail"]
        assert isinstance(detail, str), (path, detail)
        assert "\n" not in detail, (path, detail)
        assert "clients[0]" not in detail
    detail = (
        await world.http.post(
            f"/api/clients/{north}/terminals", headers=root, json=refused["terminals"]
        )
    ).json()["detail"]
    assert detail.startswith("terminals[north-x].codecs"), detail
    duplicate = await world.http.post(
        f"/api/clients/{north}/extensions", headers=root, json={"number": "101", "user": "nora"}
    )
    assert duplicate.status_code == 409
    missing = await world.http.patch(
        f"/api/clients/{north}/ddis/+34910000555", headers=root, json={"record_calls": "all"}
    )
    assert missing.status_code == 404
    still_used = await world.http.delete(f"/api/clients/{north}/extensions/101", headers=root)
    assert still_used.status_code == 422, still_used.text  # the DDI +34910000100 rings it
    assert await export_document(world.engine) == before


async def test_a_client_admin_made_through_the_api_logs_in_and_only_unrestricted_ones_make_them(
    world: World,
) -> None:
    base = f"/api/clients/{world.clients['north']}/admins"
    owner = await world.as_("north-admin")
    made = await world.http.post(
        base,
        headers=owner,
        json={"username": "north-clerk", "password": "clerk-pass-1", "privileges": {"ddis": "r"}},
    )
    assert made.status_code == 201, made.text
    assert made.json() == {"username": "north-clerk", "privileges": {"ddis": "r"}}
    login = await world.http.post(
        "/api/login", json={"username": "north-clerk", "password": "clerk-pass-1"}
    )
    assert login.status_code == 200
    listed = await world.http.get(base, headers=owner)
    assert "password" not in listed.text
    assert "scrypt" not in listed.text
    restricted = await world.as_("north-settings")
    sources = f"/api/clients/{world.clients['north']}/authorized-sources"
    grown = await world.http.post(sources, headers=restricted, json={"source": "192.0.2.0/24"})
    assert grown.status_code == 201, grown.text
    escalation = await world.http.post(
        base, headers=restricted, json={"username": "north-boss", "password": "boss-pass-1"}
    )
    assert escalation.status_code == 403
    widened = await world.http.patch(
        f"{base}/north-settings", headers=restricted, json={"privileges": None}
    )
    assert widened.status_code == 403
    assert (await world.http.get(base, headers=restricted)).status_code == 200


async def test_removing_a_client_admin_ends_its_sessions_and_changing_one_keeps_them(
    world: World,
) -> None:
    base = f"/api/clients/{world.clients['north']}/admins"
    owner = await world.as_("north-admin")
    reader = await world.as_("north-reader")
    changed = await world.http.patch(
        f"{base}/north-admin", headers=owner, json={"email": "owner@north.example.com"}
    )
    assert changed.status_code == 200, changed.text
    assert (await world.http.get(base, headers=owner)).status_code == 200
    assert (
        await world.http.get(f"/api/clients/{world.clients['north']}", headers=reader)
    ).status_code == 200
    removed = await world.http.delete(f"{base}/north-reader", headers=owner)
    assert removed.status_code == 204, removed.text
    gone = await world.http.get(f"/api/clients/{world.clients['north']}", headers=reader)
    assert gone.status_code == 401
    login = await world.http.post(
        "/api/login", json={"username": "north-reader", "password": "north-reader-pass"}
    )
    assert login.status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "body", "detail"),
    [
        ("post", "terminals", [], "body: give a JSON object"),
        ("post", "terminals", {"password": "pass-12345"}, "name: field required"),
        (
            "patch",
            "terminals/north-desk",
            {"name": "north-other"},
            "name: cannot be changed (remove and create)",
        ),
        (
            "post",
            "authorized-sources",
            {"source": "192.0.2.0/24", "note": "x"},
            "note: not a field of an authorized source",
        ),
        (
            "post",
            "authorized-sources",
            {"source": 3232235520},
            "source: give the address or network (CIDR) as a string",
        ),
    ],
)
async def test_a_body_that_is_not_an_item_is_refused_in_one_line_and_nothing_written(
    world: World, method: str, path: str, body: object, detail: str
) -> None:
    before = await export_document(world.engine)
    url = f"/api/clients/{world.clients['north']}/{path}"
    answer = await world.http.request(
        method.upper(), url, headers=await world.as_("root"), json=body
    )
    assert (answer.status_code, answer.json()["detail"]) == (422, detail)
    assert await export_document(world.engine) == before
