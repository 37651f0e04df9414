"""A client's rating profiles through the API: billing, so god and brand admins write
them and a client admin reads them at most (only when its client shows them); no billing
feature, no section; a profile is named by its activation instant, however written."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from callcontrol.api.accounts import create_platform_admin
from models.billing import RatingPlanGroup, RatingProfile
from models.provisioning import export_document
from tests.api_world import World, world_on

NEW = {"rating_plan_group": "reduced", "activation_time": "2026-01-01T00:00:00+01:00"}


@pytest.fixture
async def world(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[World]:
    async with world_on(sqlite_template, tmp_path) as world:
        yield world


async def _groups(world: World, client: str) -> list[str]:
    async with world.engine.connect() as connection:
        rows = await connection.execute(
            select(RatingPlanGroup.name)
            .join(RatingProfile, RatingProfile.rating_plan_group_id == RatingPlanGroup.id)
            .where(RatingProfile.client_id == world.clients[client])
            .order_by(RatingProfile.activation_time)
        )
        return [name for (name,) in rows]


async def test_a_brand_admin_adds_changes_and_removes_a_profile_each_audited(world: World) -> None:
    north = world.clients["north"]
    base = f"/api/clients/{north}/rating-profiles"
    brand = await world.as_("iberia-admin")
    made = await world.http.post(base, headers=brand, json=NEW)
    assert made.status_code == 201, made.text
    assert made.json() == NEW
    assert await _groups(world, "north") == ["standard", "reduced"]
    listed = (await world.http.get(base, headers=brand)).json()
    assert [(p["rating_plan_group"], p["currency"]) for p in listed] == [
        ("standard", "EUR"),
        ("reduced", "EUR"),
    ]
    same_instant = f"{base}/2025-12-31T23:00:00Z"
    assert (await world.http.get(same_instant, headers=brand)).json() == NEW
    twice = await world.http.post(
        base,
        headers=brand,
        json={"rating_plan_group": "standard", "activation_time": "2025-12-31T23:00:00+00:00"},
    )
    assert twice.status_code == 409
    changed = await world.http.patch(
        same_instant, headers=brand, json={"rating_plan_group": "standard"}
    )
    assert changed.status_code == 200, changed.text
    assert await _groups(world, "north") == ["standard", "standard"]
    assert (await world.http.delete(same_instant, headers=brand)).status_code == 204
    assert await _groups(world, "north") == ["standard"]
    trail = (await world.http.get(f"/api/audit?client_id={north}", headers=brand)).json()
    entries = [e for e in trail if e["action"].startswith("rating_profiles.")]
    assert [(e["action"], e["actor"], e["target"]) for e in entries] == [
        ("rating_profiles.delete", "iberia-admin", f"{north}/2025-12-31T23:00:00+00:00"),
        ("rating_profiles.update", "iberia-admin", f"{north}/2025-12-31T23:00:00+00:00"),
        ("rating_profiles.create", "iberia-admin", f"{north}/2025-12-31T23:00:00+00:00"),
    ]
    update = entries[1]
    assert update["before"] == NEW
    assert update["after"] == {**NEW, "rating_plan_group": "standard"}


async def test_a_client_admin_never_writes_its_rating_profiles(world: World) -> None:
    before = await export_document(world.engine)
    north = f"/api/clients/{world.clients['north']}/rating-profiles"  # shown to its admins
    one = f"{north}/2025-01-01T00:00:00+01:00"
    owner = await world.as_("north-admin")
    assert (await world.http.get(one, headers=owner)).status_code == 200
    assert (await world.http.post(north, headers=owner, json=NEW)).status_code == 403
    patch = await world.http.patch(one, headers=owner, json={"rating_plan_group": "reduced"})
    assert patch.status_code == 403
    assert (await world.http.delete(one, headers=owner)).status_code == 403
    south = f"/api/clients/{world.clients['south']}/rating-profiles"  # hidden from its admins
    south_admin = await world.as_("south-admin")
    assert (await world.http.post(south, headers=south_admin, json=NEW)).status_code == 404
    assert await export_document(world.engine) == before


async def test_without_the_billing_feature_there_is_no_rating_profile_section(
    world: World,
) -> None:
    south = world.clients["south"]
    root = await world.as_("root")
    base = f"/api/clients/{south}/rating-profiles"
    dropped = await world.http.patch(
        f"/api/clients/{south}", headers=root, json={"features": [], "billing_method": "none"}
    )
    assert dropped.status_code == 200, dropped.text
    for who in ("root", "iberia-admin"):
        headers = await world.as_(who)
        assert (await world.http.post(base, headers=headers, json=NEW)).status_code == 404
        assert (await world.http.get(base, headers=headers)).status_code == 404
        one = f"{base}/2025-01-01T00:00:00+01:00"
        assert (await world.http.delete(one, headers=headers)).status_code == 404
    assert await _groups(world, "south") == ["standard"]


async def test_a_bad_profile_is_refused_in_one_line_naming_the_field(world: World) -> None:
    base = f"/api/clients/{world.clients['north']}/rating-profiles"
    root = await world.as_("root")
    before = await export_document(world.engine)
    refused = {
        "2026-02-01T00:00:00+01:00": (
            {"rating_plan_group": "uk"},
            "rating_profiles[2026-02-01T00:00:00+01:00].rating_plan_group: "
            "unknown rating plan group 'uk' of brand 'iberia'",
        ),
        "2026-03-01T00:00:00": (
            {},
            "rating_profiles[2026-03-01T00:00:00].activation_time: Input should have timezone info",
        ),
    }
    for moment, (body, message) in refused.items():
        answer = await world.http.post(
            base,
            headers=root,
            json={"rating_plan_group": "standard", "activation_time": moment} | body,
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"] == message
    assert await export_document(world.engine) == before


async def test_the_audit_keeps_hidden_billing_and_unread_sections_from_client_admins(
    world: World,
) -> None:
    south = world.clients["south"]  # show_rating_profiles off
    brand = await world.as_("iberia-admin")
    made = await world.http.post(f"/api/clients/{south}/rating-profiles", headers=brand, json=NEW)
    assert made.status_code == 201, made.text
    brand_trail = (await world.http.get(f"/api/audit?client_id={south}", headers=brand)).json()
    assert "rating_profiles.create" in [e["action"] for e in brand_trail]
    south_trail = await world.http.get("/api/audit", headers=await world.as_("south-admin"))
    assert south_trail.status_code == 200
    assert "rating_profiles" not in south_trail.text
    assert "reduced" not in south_trail.text
    north = world.clients["north"]
    owner = await world.as_("north-admin")
    acl = await world.http.post(f"/api/clients/{north}/call-acls", headers=owner, json=_NIGHT)
    assert acl.status_code == 201, acl.text
    sources = f"/api/clients/{north}/authorized-sources"
    grown = await world.http.post(sources, headers=owner, json={"source": "192.0.2.0/24"})
    assert grown.status_code == 201, grown.text
    reader = await world.as_("north-reader")  # reads the audit and the client, not the ACLs
    actions = [e["action"] for e in (await world.http.get("/api/audit", headers=reader)).json()]
    assert "authorized_sources.create" in actions
    assert "call_acls.create" not in actions
    owners = [e["action"] for e in (await world.http.get("/api/audit", headers=owner)).json()]
    assert owners[:2] == ["authorized_sources.create", "call_acls.create"]


_NIGHT = {"name": "night", "default_policy": "deny"}


async def test_a_restricted_brand_admin_reads_only_its_sections_changes_in_the_audit(
    world: World,
) -> None:
    await create_platform_admin(
        world.engine,
        "iberia-auditor",
        "iberia-auditor-pass",
        brand="iberia",
        privileges={"audit": "r", "client": "r"},
    )
    north = world.clients["north"]
    owner = await world.as_("north-admin")
    acl = await world.http.post(f"/api/clients/{north}/call-acls", headers=owner, json=_NIGHT)
    assert acl.status_code == 201, acl.text
    sources = f"/api/clients/{north}/authorized-sources"
    grown = await world.http.post(sources, headers=owner, json={"source": "192.0.2.0/24"})
    assert grown.status_code == 201, grown.text
    login = await world.http.post(
        "/api/login", json={"username": "iberia-auditor", "password": "iberia-auditor-pass"}
    )
    auditor = {"Authorization": f"Bearer {login.json()['token']}"}
    actions = [e["action"] for e in (await world.http.get("/api/audit", headers=auditor)).json()]
    assert "authorized_sources.create" in actions  # the client section's
    assert "call_acls.create" not in actions
    brand = await world.as_("iberia-admin")  # unrestricted: every change of its brand
    actions = [e["action"] for e in (await world.http.get("/api/audit", headers=brand)).json()]
    assert {"authorized_sources.create", "call_acls.create"} <= set(actions)
