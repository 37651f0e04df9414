"""The seed's visibility rules through the API, each a named test; changes validated as
provisioning validates them, and audited."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from callcontrol.api.accounts import create_platform_admin
from tests.api_world import World, world_on


@pytest.fixture
async def world(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[World]:
    async with world_on(sqlite_template, tmp_path) as world:
        yield world


async def get(world: World, who: str, path: str) -> Any:
    answer = await world.http.get(path, headers=await world.as_(who))
    assert answer.status_code == 200, answer.text
    return answer.json()


async def status(world: World, who: str, method: str, path: str, body: Any = None) -> int:
    answer = await world.http.request(method, path, headers=await world.as_(who), json=body)
    return answer.status_code


async def test_distribute_method_and_application_server_are_visible_only_to_god(
    world: World,
) -> None:
    north = f"/api/clients/{world.clients['north']}"
    seen = await get(world, "root", north)
    assert (seen["distribute_method"], seen["application_server"]) == ("static", "as-1")
    for who in ("iberia-admin", "north-admin"):
        settings = await get(world, who, north)
        assert "distribute_method" not in settings
        assert "application_server" not in settings
        assert settings["name"] == "north"
        for field in ("distribute_method", "application_server"):
            assert await status(world, who, "PATCH", north, {field: "hash"}) == 403
    assert await status(world, "root", "PATCH", north, {"distribute_method": "hash"}) == 200
    assert (await get(world, "root", north))["distribute_method"] == "hash"


async def test_a_brand_admin_sees_only_its_brands_clients(world: World) -> None:
    names = {c["name"] for c in await get(world, "iberia-admin", "/api/clients")}
    assert names == {"north", "south"}
    assert {c["name"] for c in await get(world, "albion-admin", "/api/clients")} == {"thames"}
    assert {c["name"] for c in await get(world, "root", "/api/clients")} == {
        "north",
        "south",
        "thames",
    }
    thames = world.clients["thames"]
    assert await status(world, "iberia-admin", "GET", f"/api/clients/{thames}") == 404


async def test_a_client_admin_sees_only_its_client(world: World) -> None:
    assert [c["name"] for c in await get(world, "south-admin", "/api/clients")] == ["south"]
    for name in ("north", "thames"):
        path = f"/api/clients/{world.clients[name]}/cdrs"
        assert await status(world, "south-admin", "GET", path) == 404


async def test_a_restricted_administrator_of_any_level_only_what_its_privileges_allow(
    world: World,
) -> None:
    # A restricted god and a restricted brand admin, beside north's read-only client admin.
    for username, brand, privileges in (
        ("cdr-reader", None, {"billable_calls": "r"}),
        ("iberia-viewer", "iberia", {"client": "r", "recordings": "r"}),
    ):
        await create_platform_admin(
            world.engine, username, "restricted-pass", brand=brand, privileges=privileges
        )
        answer = await world.http.post(
            "/api/login", json={"username": username, "password": "restricted-pass"}
        )
        assert answer.status_code == 200, answer.text
        world.tokens[username] = answer.json()["token"]
    north = f"/api/clients/{world.clients['north']}"
    recording = f"{north}/recordings/{world.recordings['north']}"
    change = {"language": "en"}
    asked = [
        ("GET", north, None),
        ("PATCH", north, change),
        ("GET", f"{north}/cdrs", None),
        ("GET", f"{north}/recordings", None),
        ("DELETE", recording, None),
        ("GET", f"{north}/terminals", None),
        ("GET", "/api/audit", None),
    ]
    seen = {}
    for who in ("cdr-reader", "iberia-viewer", "north-reader"):
        seen[who] = [await status(world, who, *request) for request in asked]
    assert seen == {
        # god's scope, one section's reading: CDRs only.
        "cdr-reader": [403, 403, 200, 403, 403, 403, 403],
        # its brand's clients, read: settings and recordings; nothing changed or removed.
        "iberia-viewer": [200, 403, 403, 200, 403, 403, 403],
        # its client, read: settings, CDRs, recordings and the audit trail; no terminals.
        "north-reader": [200, 403, 200, 200, 403, 403, 200],
    }
    assert await get(world, "cdr-reader", "/api/clients") == []  # no "client" reading
    # Privileges never widen a scope: the brand's viewer still has no thames.
    thames = f"/api/clients/{world.clients['thames']}"
    assert await status(world, "iberia-viewer", "GET", thames) == 404
    # Unrestricted, the same requests go through.
    assert await status(world, "iberia-admin", "DELETE", recording) == 204
    assert (await get(world, "root", north))["language"] == "es"  # no PATCH went through


async def test_a_client_without_a_feature_has_no_section_for_it(world: World) -> None:
    south = world.clients["south"]  # no recordings feature
    for who in ("root", "iberia-admin", "south-admin"):
        assert await status(world, who, "GET", f"/api/clients/{south}/recordings") == 404
    thames = world.clients["thames"]  # has it
    assert await get(world, "thames-admin", f"/api/clients/{thames}/recordings") != []


async def test_hidden_rating_profiles_are_not_shown_to_the_client_admin(world: World) -> None:
    south = f"/api/clients/{world.clients['south']}/rating-profiles"  # show_rating_profiles off
    assert await status(world, "south-admin", "GET", south) == 404
    profiles = await get(world, "iberia-admin", south)
    assert [p["rating_plan_group"] for p in profiles] == ["standard"]
    north = f"/api/clients/{world.clients['north']}/rating-profiles"  # shown
    assert [p["rating_plan_group"] for p in await get(world, "north-admin", north)] == ["standard"]


async def test_hidden_prices_are_not_in_the_client_admins_cdrs(world: World) -> None:
    south = f"/api/clients/{world.clients['south']}/cdrs"  # show_external_call_prices off
    (cdr,) = await get(world, "south-admin", south)
    assert cdr["call_id"] == "call-south"
    assert not {"price", "currency", "rating_plan", "matched_prefix"} & set(cdr)
    csv = await world.http.get(f"{south}?format=csv", headers=await world.as_("south-admin"))
    assert csv.headers["content-type"].startswith("text/csv")
    header, row = csv.text.splitlines()
    assert "price" not in header.split(",")
    assert "0.0123" not in row
    (seen_by_brand,) = await get(world, "iberia-admin", south)
    assert seen_by_brand["price"] == "0.0123"
    north = f"/api/clients/{world.clients['north']}/cdrs"  # shown
    (own,) = await get(world, "north-admin", north)
    assert own["price"] == "0.0123"


async def test_a_client_admin_sees_its_balance_only_where_its_prices_are_shown(
    world: World,
) -> None:
    # As the counters do: south hides its prices (show_external_call_prices off), so its
    # admin reads no balance -- in its settings, in a change's answer, in the audit trail.
    south_id = world.clients["south"]
    south = f"/api/clients/{south_id}"
    prepaid = {"billing_method": "prepaid", "balance": 17.17}
    assert await status(world, "iberia-admin", "PATCH", south, prepaid) == 200
    assert (await get(world, "iberia-admin", south))["balance"] == "17.1700"
    own = await get(world, "south-admin", south)
    assert own["billing_method"] == "prepaid"
    assert "balance" not in own
    changed = await world.http.patch(
        south, headers=await world.as_("south-admin"), json={"language": "en"}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["language"] == "en"
    assert "balance" not in changed.json()
    entries = await get(world, "south-admin", "/api/audit")
    # The two changes, then the provisioning load that made south (by the OS user).
    assert [e["actor_kind"] for e in entries] == ["client", "brand", "cli"]
    assert [e["actor"] for e in entries][:2] == ["south-admin", "iberia-admin"]
    for entry in entries:
        assert "balance" not in (entry["before"] or {})
        assert "balance" not in (entry["after"] or {})
    by_brand = await get(world, "iberia-admin", f"/api/audit?client_id={south_id}")
    assert [e["after"]["balance"] for e in by_brand if e["actor"] == "iberia-admin"] == ["17.17"]
    # north shows its prices: its admin reads its balance.
    assert "balance" in await get(world, "north-admin", f"/api/clients/{world.clients['north']}")


async def test_a_client_admin_removes_a_recording_only_when_the_client_allows_it(
    world: World,
) -> None:
    north = world.clients["north"]
    recording = f"/api/clients/{north}/recordings/{world.recordings['north']}"
    refuse = {"allow_recording_removal": False}
    assert await status(world, "north-admin", "PATCH", f"/api/clients/{north}", refuse) == 403
    assert await status(world, "iberia-admin", "PATCH", f"/api/clients/{north}", refuse) == 200
    assert await status(world, "north-admin", "DELETE", recording) == 403
    assert await status(world, "north-admin", "GET", recording) == 200  # still there
    assert await status(world, "iberia-admin", "DELETE", recording) == 204
    assert await status(world, "root", "GET", recording) == 404
    assert await get(world, "root", f"/api/clients/{north}/recordings") == []


async def test_a_recordings_audio_is_served_to_its_client(world: World) -> None:
    north = world.clients["north"]
    path = f"/api/clients/{north}/recordings/{world.recordings['north']}"
    answer = await world.http.get(path, headers=await world.as_("north-admin"))
    assert answer.content == b"RIFF-north"
    other = f"/api/clients/{north}/recordings/{world.recordings['thames']}"
    assert await status(world, "root", "GET", other) == 404  # thames's, asked as north's


async def test_a_setting_is_validated_as_provisioning_validates_it_all_or_nothing(
    world: World,
) -> None:
    north = f"/api/clients/{world.clients['north']}"
    for body, field in (
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"language": "en", "max_daily_usage_email": "not an address"}, "max_daily_usage_email"),
    ):
        answer = await world.http.patch(north, headers=await world.as_("north-admin"), json=body)
        assert answer.status_code == 422, answer.text
        assert field in answer.json()["detail"]
    answer = await world.http.patch(north, headers=await world.as_("root"), json={"max_calls": -1})
    assert answer.status_code == 422
    assert "max_calls" in answer.json()["detail"]
    unknown = await world.http.patch(north, headers=await world.as_("root"), json={"colour": 1})
    assert unknown.status_code == 422
    assert "colour" in unknown.json()["detail"]
    assert await status(world, "north-admin", "PATCH", north, {"brand": "albion"}) == 403
    assert await status(world, "root", "PATCH", north, {"brand": "albion"}) == 403
    assert await status(world, "root", "PATCH", north, {"name": "north-2"}) == 403
    settings = await get(world, "root", north)
    assert (settings["language"], settings["timezone"], settings["max_calls"]) == (
        "es",
        "Europe/Madrid",
        0,
    )


async def test_a_change_through_the_api_is_audited_with_before_and_after(world: World) -> None:
    north_id = world.clients["north"]
    north = f"/api/clients/{north_id}"
    assert await status(world, "north-admin", "PATCH", north, {"language": "en"}) == 200
    assert (await get(world, "root", north))["language"] == "en"
    (entry, *_) = await get(world, "root", "/api/audit")
    assert (entry["actor_kind"], entry["actor"], entry["action"]) == (
        "client",
        "north-admin",
        "client.update",
    )
    assert (entry["client_id"], entry["before"]["language"], entry["after"]["language"]) == (
        north_id,
        "es",
        "en",
    )
    # Its client and brand read it; another brand and another client do not.
    assert (await get(world, "north-admin", "/api/audit"))[0]["id"] == entry["id"]
    assert entry["before"]["distribute_method"] == "static"
    (seen_by_brand, *_) = await get(world, "iberia-admin", "/api/audit")
    assert seen_by_brand["id"] == entry["id"]
    assert "distribute_method" not in seen_by_brand["before"]  # god's alone, here too
    assert "application_server" not in seen_by_brand["after"]
    for outsider in ("albion-admin", "south-admin"):
        assert entry["id"] not in {e["id"] for e in await get(world, outsider, "/api/audit")}


async def test_a_recording_removal_is_audited(world: World) -> None:
    north = world.clients["north"]
    path = f"/api/clients/{north}/recordings/{world.recordings['north']}"
    assert await status(world, "north-admin", "DELETE", path) == 204
    (entry, *_) = await get(world, "north-admin", "/api/audit")
    assert (entry["action"], entry["actor"], entry["before"]["call_id"]) == (
        "recording.delete",
        "north-admin",
        "call-north",
    )


async def test_provisioning_is_audited_as_the_operating_system_user(world: World) -> None:
    entries = await get(world, "root", "/api/audit")
    provisioned = [e for e in entries if e["action"] == "provision"]
    assert len(provisioned) == 1
    assert provisioned[0]["actor_kind"] == "cli"
    assert provisioned[0]["after"]["created"] > 0
    assert provisioned[0]["actor"]


async def test_the_recordings_section_verb_by_verb(world: World) -> None:
    north = world.clients["north"]
    listing = f"/api/clients/{north}/recordings"
    audio = f"{listing}/{world.recordings['north']}"
    seen = {}
    for verb in "cur" + "d":  # the one that deletes goes last
        who = f"north-rec-{verb}"
        seen[verb] = (
            await status(world, who, "GET", listing),
            await status(world, who, "GET", audio),
            await status(world, who, "DELETE", audio),
        )
    assert seen == {
        "c": (403, 403, 403),
        "r": (200, 200, 403),
        "u": (403, 403, 403),
        "d": (403, 403, 204),
    }


async def test_a_recording_without_its_audio_file_is_404_and_still_removable(
    world: World,
) -> None:
    north = world.clients["north"]
    path = f"/api/clients/{north}/recordings/{world.recordings['north']}"
    for wav in world.folder.rglob("*.wav"):
        wav.unlink()
    assert await status(world, "root", "GET", path) == 404
    assert await status(world, "root", "DELETE", path) == 204
    assert await status(world, "root", "DELETE", path) == 404


async def test_cdrs_by_day_and_the_audit_trail_by_client(world: World) -> None:
    north_id = world.clients["north"]
    cdrs = f"/api/clients/{north_id}/cdrs"
    assert await get(world, "root", f"{cdrs}?since=2026-11-21") == []
    (cdr,) = await get(world, "root", f"{cdrs}?since=2026-11-20&until=2026-11-20")
    assert cdr["start_time"] == "2026-11-20T10:00:00+00:00"
    assert await get(world, "root", f"{cdrs}?until=2026-11-19") == []
    north = f"/api/clients/{north_id}"
    assert await status(world, "root", "PATCH", north, {"language": "en"}) == 200
    (updated, *_) = await get(world, "root", f"/api/audit?client_id={north_id}")
    assert (updated["action"], updated["client_id"]) == ("client.update", north_id)
    thames = world.clients["thames"]
    assert {
        (e["action"], e["client_id"])
        for e in await get(world, "root", f"/api/audit?client_id={thames}")
    } == {("client.provision", thames)}


async def test_a_setting_the_loader_refuses_is_one_line_naming_it(world: World) -> None:
    north = f"/api/clients/{world.clients['north']}"
    answer = await world.http.patch(
        north, headers=await world.as_("north-admin"), json={"outgoing_ddi": "+34910000999"}
    )
    assert answer.status_code == 422
    assert "outgoing_ddi" in answer.json()["detail"]
    assert "\n" not in answer.json()["detail"]
