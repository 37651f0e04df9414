"""A provisioning load's audit, on every backend: its own entry with the counts, and one
entry per client it changed -- the client's brand and id, each changed field or item before
and after, secrets masked -- in the load's transaction."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from dialplan.errors import ProvisioningError
from models import Brand, Client, ClientAdmin, Terminal
from models.admins import os_user
from models.provisioning import dump_yaml, load_text
from tests.conftest import audit_entries
from tests.test_provisioning import client_of, demo, rows


async def client_ids(engine: AsyncEngine) -> dict[str, tuple[int, int]]:
    """Each client's (brand id, client id), by name."""
    async with engine.connect() as connection:
        found = await connection.execute(select(Client.name, Client.brand_id, Client.id))
        return {name: (brand_id, client_id) for name, brand_id, client_id in found}


async def test_a_first_load_audits_each_new_client_for_its_brand(engine: AsyncEngine) -> None:
    await load_text(engine, dump_yaml(demo()))

    (summary, *per_client) = await audit_entries(engine)
    assert (summary["action"], summary["actor_kind"], summary["actor"]) == (
        "provision",
        "cli",
        os_user(),
    )
    assert (summary["brand_id"], summary["client_id"]) == (None, None)
    ids = await client_ids(engine)
    assert {(e["brand_id"], e["client_id"]) for e in per_client} == set(ids.values())
    by_client = {e["client_id"]: e for e in per_client}
    for name, (_, client_id) in ids.items():
        entry = by_client[client_id]
        assert (entry["action"], entry["actor_kind"], entry["actor"]) == (
            "client.provision",
            "cli",
            os_user(),
        )
        assert (entry["target"], entry["before"]) == (str(client_id), None)
        assert entry["after"]["name"] == name
    north = by_client[ids["acme-north"][1]]["after"]
    assert set(north["terminals"]) == {"acme-north-ana", "acme-north-bruno", "acme-north-carla"}
    assert north["terminals"]["acme-north-ana"]["ha1"] == "********"
    assert north["admins"]["acme-north-admin"]["password_hash"] == "********"
    stored = [row.ha1 for row in await rows(engine, Terminal)]
    stored += [row.password_hash for row in await rows(engine, ClientAdmin)]
    for entry in per_client:
        assert not any(secret in str(entry) for secret in stored)


async def test_a_reload_audits_only_the_clients_it_changed_with_before_and_after(
    engine: AsyncEngine,
) -> None:
    document = demo()
    await load_text(engine, dump_yaml(document))
    loaded = len(await audit_entries(engine))
    await load_text(engine, dump_yaml(document))
    assert len(await audit_entries(engine)) == loaded  # nothing changed, nothing told

    north, south = client_of(document, "acme-north"), client_of(document, "acme-south")
    phone = north["terminals"].pop(1)  # bruno's phone goes to felix, new at acme-south
    phone["user"] = "felix"
    south["users"].append({"name": "felix"})
    south["terminals"].append(phone)
    north["admins"][0]["password"] = "a-new-password"
    south["max_calls"] = 7
    await load_text(engine, dump_yaml(document))

    (summary, *per_client) = (await audit_entries(engine))[loaded:]
    assert summary["action"] == "provision"
    ids = await client_ids(engine)
    assert [(e["action"], e["brand_id"], e["client_id"]) for e in per_client] == [
        ("client.provision", *ids["acme-north"]),
        ("client.provision", *ids["acme-south"]),
    ]
    north_entry, south_entry = per_client
    masked = "********"
    assert north_entry["before"]["terminals"]["acme-north-bruno"]["user"] == "bruno"
    assert north_entry["after"]["terminals"] == {"acme-north-bruno": None}
    assert north_entry["before"]["admins"]["acme-north-admin"]["password_hash"] == masked
    assert north_entry["after"]["admins"]["acme-north-admin"]["password_hash"] == masked
    assert set(north_entry["after"]) == {"terminals", "admins"}
    assert south_entry["before"]["terminals"] == {"acme-north-bruno": None}
    moved = south_entry["after"]["terminals"]["acme-north-bruno"]
    assert (moved["user"], moved["ha1"]) == ("felix", masked)
    assert south_entry["before"]["users"] == {"felix": None}
    assert south_entry["after"]["users"] == {"felix": {"name": "felix"}}
    assert (south_entry["before"]["max_calls"], south_entry["after"]["max_calls"]) == (
        client_of(demo(), "acme-south").get("max_calls"),
        7,
    )
    assert "a-new-password" not in str(per_client)


async def test_a_refused_load_audits_nothing(engine: AsyncEngine) -> None:
    document = demo()
    await load_text(engine, dump_yaml(document))
    loaded = await audit_entries(engine)
    client_of(document, "acme-south")["max_calls"] = 9
    client_of(document, "acme-north")["terminals"][0]["user"] = "nobody"
    with pytest.raises(ProvisioningError):
        await load_text(engine, dump_yaml(document))
    assert await audit_entries(engine) == loaded
    async with engine.connect() as connection:
        brands = (await connection.execute(select(Brand.name))).scalars().all()
    assert "iberia-voice" in brands
