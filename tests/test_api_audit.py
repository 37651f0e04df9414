"""Who reads which audit entry: an entry of a client belongs to the section of what it tells
(recordings, live calls, settings, billing...), and only who may read that section and the
audit reads it; a provisioning load's entry of a client is its brand's and its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from callcontrol.api.kinds import ACTION_SECTIONS
from models.admins import AuditedBy, record
from models.provisioning import load_text
from models.tenants import Client
from tests.api_world import DOCUMENT, World, world_on

AUDITOR_PASSWORD = "auditor-pass-1"


@pytest.fixture
async def world(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[World]:
    async with world_on(sqlite_template, tmp_path) as world:
        yield world


async def auditor(world: World, username: str, privileges: dict[str, str]) -> dict[str, str]:
    """The headers of a new restricted admin of north holding ``privileges``."""
    north = world.clients["north"]
    body = {"username": username, "password": AUDITOR_PASSWORD, "privileges": privileges}
    made = await world.http.post(
        f"/api/clients/{north}/admins", headers=await world.as_("root"), json=body
    )
    assert made.status_code == 201, made.text
    answer = await world.http.post(
        "/api/login", json={"username": username, "password": AUDITOR_PASSWORD}
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['token']}"}


async def brand_of(world: World, client_id: int) -> int:
    async with world.engine.connect() as connection:
        found = await connection.scalar(select(Client.brand_id).where(Client.id == client_id))
    assert found is not None
    return int(found)


async def audit(world: World, headers: dict[str, str]) -> list[dict[str, Any]]:
    answer = await world.http.get("/api/audit", headers=headers)
    assert answer.status_code == 200, answer.text
    entries: list[dict[str, Any]] = answer.json()
    return entries


async def test_an_auditor_without_the_recordings_section_learns_nothing_of_a_removed_recording(
    world: World,
) -> None:
    north = world.clients["north"]
    only_audit = await auditor(world, "north-audit", {"audit": "r"})
    with_recordings = await auditor(world, "north-audit-rec", {"audit": "r", "recordings": "r"})
    recording = f"/api/clients/{north}/recordings/{world.recordings['north']}"
    assert (await world.http.get(recording, headers=only_audit)).status_code == 403
    removed = await world.http.delete(recording, headers=await world.as_("north-admin"))
    assert removed.status_code == 204

    answer = await world.http.get("/api/audit", headers=only_audit)
    assert answer.status_code == 200
    assert "recording.delete" not in answer.text
    for detail in ("north-caller", "34910000999", "call-north"):
        assert detail not in answer.text
    (seen,) = [e for e in await audit(world, with_recordings) if e["action"] == "recording.delete"]
    assert (seen["before"]["caller"], seen["before"]["call_id"]) == ("north-caller", "call-north")
    assert (seen["brand_id"], seen["client_id"]) == (await brand_of(world, north), north)


FAMILIES: list[tuple[str, dict[str, str]]] = [
    ("client.update", {"client": "r"}),
    ("client.provision", {"client": "r"}),
    ("client.create", {"client": "r"}),
    ("client.delete", {"client": "r"}),
    ("admin.invite", {"client": "r"}),
    ("admins.update", {"client": "r"}),
    ("locution.override", {"client": "r"}),
    ("recording.delete", {"recordings": "r"}),
    ("call.hangup", {"billable_calls": "r"}),
    ("call.record_start", {"billable_calls": "r", "recordings": "r"}),
    ("call.record_stop", {"billable_calls": "r", "recordings": "r"}),
    ("terminals.update", {"terminals": "r"}),
    ("match_lists.create", {"call_acls": "r"}),
    ("outgoing_ddi_rules.delete", {"outgoing_ddi_rules": "r"}),
    ("rating_profiles.create", {"rating_profiles": "r"}),
]


def test_every_action_named_by_the_sections_table_has_a_family_test() -> None:
    tested = {action for action, _ in FAMILIES}
    for name in ACTION_SECTIONS:
        assert any(action == name or action.startswith(f"{name}.") for action in tested), name


@pytest.mark.parametrize(("action", "sections"), FAMILIES, ids=[a for a, _ in FAMILIES])
async def test_an_audit_entry_is_read_only_with_its_sections_read(
    world: World, action: str, sections: dict[str, str]
) -> None:
    north = world.clients["north"]
    async with world.engine.begin() as connection:
        note = AuditedBy("god", "root").note(
            action,
            "probe",
            client_id=north,
            before={"secret": "probe-detail"},
            after={"secret": "x"},
        )
        await record(connection, note)
    holding = await auditor(world, "north-holding", {"audit": "r", **sections})
    (probe,) = [e for e in await audit(world, holding) if e["target"] == "probe"]
    assert (probe["action"], probe["before"]["secret"]) == (action, "probe-detail")
    # Without any one of its sections (the audit kept): the entry is not there.
    for missing in sections:
        short = {section: "r" for section in sections if section != missing}
        lacking = await auditor(world, f"north-no-{missing}", {"audit": "r", **short})
        assert "probe-detail" not in (await world.http.get("/api/audit", headers=lacking)).text
    # Without the audit section, nothing at all.
    blind = await auditor(world, "north-sections-only", dict(sections))
    assert (await world.http.get("/api/audit", headers=blind)).status_code == 403


async def test_an_action_no_section_claims_is_read_by_god_alone(world: World) -> None:
    north = world.clients["north"]
    async with world.engine.begin() as connection:
        note = AuditedBy("cli", "someone").note("mystery.thing", "x", client_id=north)
        await record(connection, note)
    assert "mystery.thing" in {e["action"] for e in await audit(world, await world.as_("root"))}
    for who in ("iberia-admin", "north-admin"):
        assert "mystery.thing" not in {
            e["action"] for e in await audit(world, await world.as_(who))
        }


async def test_a_provisioning_load_is_audited_per_client_for_its_brand_and_its_admins(
    world: World,
) -> None:
    changed = DOCUMENT.replace(
        "{name: north-desk, password: north-desk-secret, user: nora}",
        "{name: north-desk, password: north-desk-other, user: nora}",
    ).replace("sip_domain: south.example.com", "sip_domain: south.example.com\n    language: en")
    assert changed.count("north-desk-other") == 1
    await load_text(world.engine, changed)

    everything = await audit(world, await world.as_("root"))
    (summary,) = [e for e in everything[:3] if e["action"] == "provision"]
    assert summary["actor_kind"] == "cli"
    per_client = {e["client_id"]: e for e in everything[:3] if e["action"] == "client.provision"}
    north, south = world.clients["north"], world.clients["south"]
    assert set(per_client) == {north, south}
    north_entry, south_entry = per_client[north], per_client[south]
    assert (north_entry["actor_kind"], north_entry["actor"]) == ("cli", summary["actor"])
    assert north_entry["brand_id"] == south_entry["brand_id"] == await brand_of(world, north)
    # The terminal whose password changed, whole on both sides, its digest masked.
    assert set(north_entry["before"]) == set(north_entry["after"]) == {"terminals"}
    desk_before = north_entry["before"]["terminals"]["north-desk"]
    desk_after = north_entry["after"]["terminals"]["north-desk"]
    assert desk_before["ha1"] == desk_after["ha1"] == "********"
    assert (desk_before["user"], desk_after["user"]) == ("nora", "nora")
    assert (south_entry["before"], south_entry["after"]) == ({"language": "es"}, {"language": "en"})

    def ids_seen(entries: list[dict[str, Any]]) -> set[int]:
        return {e["id"] for e in entries if e["action"] == "client.provision"}

    first_ids = {north_entry["id"], south_entry["id"]}
    assert ids_seen(await audit(world, await world.as_("iberia-admin"))) >= first_ids
    for admin, own in (("north-admin", north_entry), ("south-admin", south_entry)):
        assert ids_seen(await audit(world, await world.as_(admin))) & first_ids == {own["id"]}
    for outsider in ("thames-admin", "albion-admin"):
        assert ids_seen(await audit(world, await world.as_(outsider))) & first_ids == set()
    # A restricted admin of north without the terminals section: the entry told only a
    # terminal's change, so it is not shown at all; with the section, it is.
    settings_only = await auditor(world, "north-settings-audit", {"audit": "r", "client": "r"})
    assert north_entry["id"] not in ids_seen(await audit(world, settings_only))
    terminals = await auditor(world, "north-terminals-audit", {"audit": "r", "terminals": "r"})
    (seen,) = [e for e in await audit(world, terminals) if e["id"] == north_entry["id"]]
    assert seen["after"] == north_entry["after"]
    for entry in everything:
        assert "north-desk-other" not in str(entry)
