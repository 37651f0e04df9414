"""Users, match lists, call ACLs and outgoing DDI rules through the API: the call ACL
section verb by verb, references to missing things refused in one line naming the field
with nothing written, the client's own DDI rule as a mark in one list, and the audit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from models.admins import AuditEntry
from models.provisioning import export_document
from models.routing import OutgoingDdiRule
from models.tenants import Client
from tests.api_world import World, world_on


@pytest.fixture
async def world(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[World]:
    async with world_on(sqlite_template, tmp_path) as world:
        yield world


def _north(document: dict[str, Any]) -> dict[str, Any]:
    return next(client for client in document["clients"] if client["name"] == "north")


async def _audit_count(world: World) -> int:
    async with world.engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(AuditEntry)) or 0)


async def test_call_acls_verb_by_verb_each_alone(world: World) -> None:
    base = f"/api/clients/{world.clients['north']}/call-acls"
    expected = {"c": (201, 403, 403, 403), "r": (403, 200, 403, 403)}
    expected |= {"u": (403, 403, 200, 403), "d": (403, 403, 403, 204)}
    for verb, statuses in expected.items():
        headers = await world.as_(f"north-acl-{verb}")
        seen = (
            await world.http.post(base, headers=headers, json={"name": f"acl-{verb}"}),
            await world.http.get(f"{base}/office", headers=headers),
            await world.http.patch(
                f"{base}/office", headers=headers, json={"default_policy": "allow"}
            ),
            await world.http.delete(f"{base}/acl-c", headers=headers),
        )
        assert tuple(answer.status_code for answer in seen) == statuses, verb
        lists = await world.http.get(
            f"/api/clients/{world.clients['north']}/match-lists", headers=headers
        )
        assert lists.status_code == (200 if verb == "r" else 403)  # the same section
    root = await world.as_("root")
    listed = (await world.http.get(base, headers=root)).json()
    assert listed == [
        {
            "name": "office",
            "default_policy": "allow",
            "rules": [{"priority": 1, "match_list": "mobiles", "policy": "allow"}],
        }
    ]


async def test_a_reference_to_a_missing_thing_is_one_line_naming_the_field_and_writes_nothing(
    world: World,
) -> None:
    north = f"/api/clients/{world.clients['north']}"
    root = await world.as_("root")
    before = await export_document(world.engine)
    entries = await _audit_count(world)
    refused = [
        (
            "POST",
            "call-acls",
            {"name": "night", "rules": [{"priority": 1, "match_list": "ghost", "policy": "deny"}]},
            "call_acls[night].rules[0].match_list: unknown match list 'ghost'",
        ),
        (
            "POST",
            "users",
            {"name": "olga", "call_acl": "ghost"},
            "users[olga].call_acl: unknown call ACL 'ghost'",
        ),
        (
            "POST",
            "users",
            {"name": "olga", "outgoing_ddi_rule": "ghost"},
            "users[olga].outgoing_ddi_rule: unknown outgoing DDI rule 'ghost'",
        ),
        (
            "POST",
            "users",
            {"name": "olga", "outgoing_ddi": "+34910000999"},
            "users[olga].outgoing_ddi: +34910000999 is not a DDI of this client",
        ),
        (
            "POST",
            "outgoing-ddi-rules",
            {
                "name": "support",
                "patterns": [{"priority": 1, "destination": "ghost", "action": "keep"}],
            },
            "outgoing_ddi_rules[support].patterns[0].destination: unknown match list 'ghost'",
        ),
        (
            "POST",
            "terminals",
            {"name": "north-x", "password": "pass-12345", "user": "ghost"},
            "terminals[north-x].user: unknown user 'ghost'",
        ),
        (
            "DELETE",
            "match-lists/mobiles",
            None,
            "call_acls[office].rules[0].match_list: unknown match list 'mobiles'",
        ),
        ("DELETE", "call-acls/office", None, "users[nora].call_acl: unknown call ACL 'office'"),
        (
            "DELETE",
            "outgoing-ddi-rules/sales",
            None,
            "users[nora].outgoing_ddi_rule: unknown outgoing DDI rule 'sales'",
        ),
        (
            "PATCH",
            "outgoing-ddi-rules/main",
            {"patterns": [{"priority": 1, "prefix": "1234*", "action": "keep"}]},
            "outgoing_ddi_rules[main].patterns[0].prefix: Value error, "
            "must be 1-3 digits followed by '*'",
        ),
        (
            "POST",
            "match-lists",
            {"name": "bad\nname"},
            "match_lists[bad name].name: Value error, holds the control character U+000A …",
        ),
        (
            "POST",
            "match-lists",
            {"name": "broken", "patterns": [{"regexp": "("}]},
            "match_lists[broken].patterns[0].regexp: Value error, invalid regular expression…",
        ),
        (
            "POST",
            "match-lists",
            {"name": "slow", "patterns": [{"regexp": "(\\d*)*x"}]},
            "match_lists[slow].patterns[0].regexp: Value error, too costly to test…",
        ),
    ]
    for method, path, body, message in refused:
        answer = await world.http.request(method, f"{north}/{path}", headers=root, json=body)
        assert answer.status_code == 422, (path, answer.text)
        detail = answer.json()["detail"]
        assert isinstance(detail, str)
        assert "\n" not in detail, detail
        if message.endswith("…"):
            assert detail.startswith(message[:-1]), detail
        else:
            assert detail == message
    huge = {"name": "huge", "patterns": [{"number": f"+3460{n:07d}"} for n in range(5000)]}
    too_big = await world.http.post(f"{north}/match-lists", headers=root, json=huge)
    assert too_big.status_code == 413
    assert too_big.json()["detail"] == "body: one item is at most 65536 characters of JSON"
    assert await export_document(world.engine) == before
    assert await _audit_count(world) == entries


async def test_outgoing_ddi_rules_are_one_list_with_the_clients_own_rule_marked(
    world: World,
) -> None:
    base = f"/api/clients/{world.clients['north']}/outgoing-ddi-rules"
    admin = await world.as_("north-admin")
    listed = (await world.http.get(base, headers=admin)).json()
    assert [(rule["name"], rule["client_rule"]) for rule in listed] == [
        ("main", True),
        ("sales", False),
    ]
    made = await world.http.post(
        base,
        headers=admin,
        json={"name": "support", "client_rule": True, "default_action": "force",
              "forced_ddi": "+34910000100"},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    listed = (await world.http.get(base, headers=admin)).json()
    marks = {rule["name"]: rule["client_rule"] for rule in listed}
    assert marks == {"main": False, "sales": False, "support": True}
    assert await _own_rule(world) == "support"
    unmarked = await world.http.patch(f"{base}/support", headers=admin, json={"client_rule": None})
    assert unmarked.status_code == 200, unmarked.text
    assert unmarked.json()["client_rule"] is False
    assert await _own_rule(world) is None
    assert _north(await export_document(world.engine)).get("outgoing_ddi_rule") is None
    wrong = await world.http.patch(f"{base}/main", headers=admin, json={"client_rule": "yes"})
    assert wrong.status_code == 422
    assert wrong.json()["detail"] == "client_rule: give true or false"
    again = await world.http.patch(f"{base}/main", headers=admin, json={"client_rule": True})
    assert again.status_code == 200, again.text
    assert await _own_rule(world) == "main"


async def _own_rule(world: World) -> str | None:
    async with world.engine.connect() as connection:
        return await connection.scalar(
            select(OutgoingDdiRule.name)
            .join(Client, Client.outgoing_ddi_rule_id == OutgoingDdiRule.id)
            .where(Client.id == world.clients["north"])
        )


async def test_a_match_list_change_is_audited_with_before_and_after(world: World) -> None:
    north = world.clients["north"]
    base = f"/api/clients/{north}/match-lists"
    admin = await world.as_("north-admin")
    changed = await world.http.patch(
        f"{base}/mobiles", headers=admin, json={"patterns": [{"regexp": "^347"}]}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json() == {"name": "mobiles", "patterns": [{"regexp": "^347"}]}
    removed_user = await world.http.delete(f"/api/clients/{north}/users/nora", headers=admin)
    assert removed_user.status_code == 422  # terminal north-desk and extension 101 name her
    trail = (await world.http.get(f"/api/audit?client_id={north}", headers=admin)).json()
    entry = next(e for e in trail if e["action"] == "match_lists.update")
    assert entry["actor"] == "north-admin"
    assert entry["actor_kind"] == "client"
    assert entry["target"] == f"{north}/mobiles"
    assert entry["before"] == {
        "name": "mobiles",
        "patterns": [{"number": "+34600000001"}, {"regexp": "^346"}],
    }
    assert entry["after"] == {"name": "mobiles", "patterns": [{"regexp": "^347"}]}
    stored = _north(await export_document(world.engine))["match_lists"]
    assert stored == [{"name": "mobiles", "patterns": [{"regexp": "^347"}]}]


async def test_users_are_created_changed_and_removed_and_another_clients_are_not_reached(
    world: World,
) -> None:
    north = world.clients["north"]
    base = f"/api/clients/{north}/users"
    admin = await world.as_("north-admin")
    made = await world.http.post(
        base, headers=admin, json={"name": "olga", "language": "en", "call_acl": "office"}
    )
    assert made.status_code == 201, made.text
    changed = await world.http.patch(
        f"{base}/olga", headers=admin, json={"call_acl": None, "timezone": "Europe/Madrid"}
    )
    assert changed.json() == {"name": "olga", "language": "en", "timezone": "Europe/Madrid"}
    assert (await world.http.delete(f"{base}/olga", headers=admin)).status_code == 204
    assert (await world.http.get(f"{base}/olga", headers=admin)).status_code == 404
    south = f"/api/clients/{world.clients['south']}/users"
    foreign = await world.http.post(south, headers=admin, json={"name": "olga"})
    assert foreign.status_code == 404
    actions = [e["action"] for e in (await world.http.get("/api/audit", headers=admin)).json()]
    assert actions[:3] == ["users.delete", "users.update", "users.create"]


async def test_the_openapi_description_has_every_new_route_under_its_tag(world: World) -> None:
    described = (await world.http.get("/api/openapi.json")).json()
    paths = described["paths"]
    for path in ("users", "match-lists", "call-acls", "outgoing-ddi-rules"):
        base = f"/api/clients/{{client_id}}/{path}"
        assert set(paths[base]) == {"get", "post"}
        assert set(paths[f"{base}/{{key}}"]) == {"get", "patch", "delete"}
        assert {op["tags"][0] for op in paths[base].values()} == {path}
    profiles = "/api/clients/{client_id}/rating-profiles"
    assert set(paths[profiles]) == {"get", "post"}
    assert set(paths[f"{profiles}/{{key}}"]) == {"get", "patch", "delete"}
    assert {op["tags"][0] for op in paths[f"{profiles}/{{key}}"].values()} == {"billing"}
    tags = {tag["name"]: tag["description"] for tag in described["tags"]}
    assert "access section `call_acls`" in tags["match-lists"]


async def test_taking_another_clients_number_terminal_or_login_does_not_name_that_client(
    world: World,
) -> None:
    north = f"/api/clients/{world.clients['north']}"
    attempts = [
        ("POST", "ddis", {"e164": "+34910000200"}, "ddis[+34910000200].e164"),
        ("POST", "terminals", {"name": "south-desk", "password": "pass-12345"}, "terminals"),
        ("POST", "admins", {"username": "south-admin", "password": "pass-12345"}, "admins"),
        ("POST", "users", {"name": "olga", "outgoing_ddi": "+34910000200"}, "users[olga]"),
        ("POST", "outgoing-ddi-rules", {"name": "x", "default_action": "force",
                                        "forced_ddi": "+34910000200"}, "outgoing_ddi_rules[x]"),
    ]  # fmt: skip
    for who in ("north-admin", "iberia-admin", "albion-admin", "root"):
        headers = await world.as_(who)
        for method, path, body, where in attempts:
            answer = await world.http.request(method, f"{north}/{path}", headers=headers, json=body)
            if who == "albion-admin":
                assert answer.status_code == 404
                continue
            assert answer.status_code == 422, (who, path, answer.text)
            detail = answer.json()["detail"]
            assert detail.startswith(where), detail
            assert ("'south'" in detail) is (who == "root"), (who, detail)
            assert who == "root" or "another client" in detail, detail
    owner = await world.as_("north-admin")
    setting = await world.http.patch(north, headers=owner, json={"outgoing_ddi": "+34910000200"})
    assert setting.status_code == 422
    assert setting.json()["detail"] == (
        "outgoing_ddi: +34910000200 is a DDI of another client, not of this client"
    )


async def test_concurrent_writes_to_one_client_lose_nothing(world: World) -> None:
    north = f"/api/clients/{world.clients['north']}"
    admin = await world.as_("north-admin")
    writes = [
        world.http.post(f"{north}/users", headers=admin, json={"name": f"user-{n}"})
        for n in range(12)
    ] + [world.http.patch(north, headers=admin, json={"language": "en"})]
    answers = await asyncio.gather(*writes)
    assert [answer.status_code for answer in answers] == [201] * 12 + [200]
    names = [
        user["name"] for user in (await world.http.get(f"{north}/users", headers=admin)).json()
    ]
    assert sorted(names) == sorted(["nora", *(f"user-{n}" for n in range(12))])
