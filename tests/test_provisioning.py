"""Provisioning documents load, reload idempotently, export and round-trip, on every backend."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

import models
from dialplan.call import CallRequest
from dialplan.decisions import Dial
from dialplan.errors import ProvisioningError
from dialplan.pipeline import Pipeline
from models import (
    CallAcl,
    Client,
    ClientAdmin,
    Ddi,
    Extension,
    MatchListPattern,
    OutgoingDdiRule,
    RatingPlanGroup,
    Terminal,
    User,
)
from models.directory import SqlDirectory
from models.provisioning import (
    DEMO_DATASET,
    dump_yaml,
    export_document,
    load_file,
    load_text,
)
from models.provisioning.passwords import sip_ha1, verify_password
from models.provisioning.syntax import read_yaml


def demo() -> dict[str, Any]:
    data = read_yaml(DEMO_DATASET.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def client_of(document: dict[str, Any], name: str) -> dict[str, Any]:
    return next(client for client in document["clients"] if client["name"] == name)


async def ids(engine: AsyncEngine) -> dict[str, set[tuple[Any, ...]]]:
    """Every row's primary key, per table (but the audit trail, which each changing load
    adds to)."""
    found: dict[str, set[tuple[Any, ...]]] = {}
    async with engine.connect() as connection:
        for table in models.Base.metadata.sorted_tables:
            if table.name == "audit_entries":
                continue
            rows = await connection.execute(select(*table.primary_key.columns))
            found[table.name] = {tuple(row) for row in rows}
    return found


async def wipe(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        for table in reversed(models.Base.metadata.sorted_tables):
            await connection.execute(delete(table))


async def rows(engine: AsyncEngine, model: Any) -> list[Any]:
    async with engine.connect() as connection:
        return list((await connection.execute(select(model.__table__))).all())


async def test_the_demo_dataset_loads_with_brand_defaults_hashed_logins_and_digit_ddis(
    engine: AsyncEngine,
) -> None:
    report = await load_file(engine, DEMO_DATASET)

    assert report.created > 100
    assert (report.updated, report.deleted) == (0, 0)
    assert str(report) == f"{report.created} created, 0 updated, 0 deleted"
    assert report.source == str(DEMO_DATASET)
    clients = {row.name: row for row in await rows(engine, Client)}
    assert set(clients) == {
        "acme-north",
        "acme-south",
        "thames-consulting",
        "hudson-dental",
        "seine-studio",
    }
    assert {client.language for client in clients.values()} == {"es", "en", "fr"}
    north = clients["acme-north"]
    assert (north.language, north.timezone, north.currency, north.country) == (
        "es",
        "Europe/Madrid",
        "EUR",
        "ES",
    )
    hudson = clients["hudson-dental"]
    assert (hudson.language, hudson.timezone, hudson.currency) == (
        "en",
        "America/New_York",
        "USD",
    )
    assert {row.e164 for row in await rows(engine, Ddi)} >= {"34910000100", "442079460100"}
    (admin,) = await rows(engine, ClientAdmin)
    assert admin.password_hash.startswith("scrypt$")
    assert verify_password("demo-admin-password", admin.password_hash)


async def test_loading_the_same_document_twice_changes_nothing_and_keeps_every_id(
    engine: AsyncEngine,
) -> None:
    await load_file(engine, DEMO_DATASET)
    before = await ids(engine)

    report = await load_file(engine, DEMO_DATASET)

    assert (report.created, report.updated, report.deleted) == (0, 0, 0)
    assert str(report) == "no changes"
    assert await ids(engine) == before


async def test_an_export_loads_into_an_empty_database_as_the_same_export(
    engine: AsyncEngine,
) -> None:
    await load_file(engine, DEMO_DATASET)
    exported = await export_document(engine)
    text = dump_yaml(exported)
    assert (await load_text(engine, text, "export.yaml")).changed is False

    await wipe(engine)
    report = await load_text(engine, text, "export.yaml")

    assert report.created > 100
    assert await export_document(engine) == exported
    assert dump_yaml(await export_document(engine)) == text


async def test_items_dropped_from_a_listed_client_or_brand_are_deleted_and_the_rest_kept(
    engine: AsyncEngine,
) -> None:
    document = demo()
    await load_text(engine, dump_yaml(document))
    before = await ids(engine)
    north = client_of(document, "acme-north")
    # Carla leaves: her terminal, extension, DDI and the rule and pattern that forced her DDI go.
    north["users"] = [user for user in north["users"] if user["name"] != "carla"]
    north["terminals"] = [t for t in north["terminals"] if t.get("user") != "carla"]
    north["extensions"] = [e for e in north["extensions"] if e.get("user") != "carla"]
    north["ddis"] = [d for d in north["ddis"] if d["e164"] != "+34910000102"]
    north["outgoing_ddi_rules"] = []
    north["outgoing_ddi_rule"]["patterns"] = north["outgoing_ddi_rule"]["patterns"][1:]
    north["match_lists"][1]["patterns"] = north["match_lists"][1]["patterns"][:1]
    # Bruno may call anything now: the ACL and its match list go.
    north["users"][1].pop("call_acl")
    north["call_acls"] = []
    north["match_lists"] = north["match_lists"][1:]
    north["admins"] = []
    atlantic = document["brands"][1]
    atlantic["rating_plan_groups"] = atlantic["rating_plan_groups"][:1]
    hudson = client_of(document, "hudson-dental")
    hudson.pop("rating_profiles", None)

    report = await load_text(engine, dump_yaml(document))

    assert report.created == 0
    assert report.deleted >= 10
    names = {row.name for row in await rows(engine, User)}
    assert "carla" not in names
    assert "acme-north-carla" not in {row.name for row in await rows(engine, Terminal)}
    assert "103" not in {row.number for row in await rows(engine, Extension)}
    assert "34910000102" not in {row.e164 for row in await rows(engine, Ddi)}
    assert {row.name for row in await rows(engine, OutgoingDdiRule)} == {"acme-north-presentation"}
    assert await rows(engine, CallAcl) == []
    assert await rows(engine, ClientAdmin) == []
    assert len(await rows(engine, MatchListPattern)) == 1
    assert "standard-usd" not in {row.name for row in await rows(engine, RatingPlanGroup)}
    after = await ids(engine)
    assert after["clients"] == before["clients"]
    assert after["users"] < before["users"]
    assert after["ddis"] < before["ddis"]
    assert (await load_text(engine, dump_yaml(document))).changed is False


async def test_a_ddi_and_a_terminal_moved_between_listed_clients_keep_their_ids(
    engine: AsyncEngine,
) -> None:
    document = demo()
    await load_text(engine, dump_yaml(document))
    before = {row.e164: row.id for row in await rows(engine, Ddi)}
    terminal = {row.name: row.id for row in await rows(engine, Terminal)}["acme-north-bruno"]
    north, south = client_of(document, "acme-north"), client_of(document, "acme-south")
    north["outgoing_ddi_rule"]["patterns"][1]["forced_ddi"] = "+34910000100"
    moved = north["ddis"].pop(1)  # bruno's DDI becomes elena's
    moved["user"] = "elena"
    south["ddis"].append(moved)
    phone = north["terminals"].pop(1)  # bruno's phone goes to felix, new at acme-south
    phone["user"] = "felix"
    south["users"].append({"name": "felix"})
    south["terminals"].append(phone)

    report = await load_text(engine, dump_yaml(document))

    assert (report.created, report.updated, report.deleted) == (1, 3, 0)
    south_id = next(row.id for row in await rows(engine, Client) if row.name == "acme-south")
    ddis = {row.e164: (row.id, row.client_id) for row in await rows(engine, Ddi)}
    assert ddis["34910000101"] == (before["34910000101"], south_id)
    terminals = {row.name: (row.id, row.client_id) for row in await rows(engine, Terminal)}
    assert terminals["acme-north-bruno"] == (terminal, south_id)


async def test_a_document_that_lists_one_client_leaves_the_others_alone(
    engine: AsyncEngine,
) -> None:
    document = demo()
    await load_text(engine, dump_yaml(document))
    before = await ids(engine)
    south = copy.deepcopy(client_of(document, "acme-south"))
    south["max_calls"] = 8
    south["users"].append({"name": "felix"})

    report = await load_text(engine, dump_yaml({"clients": [south]}))

    assert (report.created, report.updated, report.deleted) == (1, 1, 0)
    after = await ids(engine)
    assert len(after["users"]) == len(before["users"]) + 1
    assert {t: v for t, v in after.items() if t != "users"} == {
        t: v for t, v in before.items() if t != "users"
    }


async def test_a_changed_admin_password_is_rehashed_and_an_unchanged_one_kept(
    engine: AsyncEngine,
) -> None:
    document = demo()
    await load_text(engine, dump_yaml(document))
    (stored,) = await rows(engine, ClientAdmin)
    client_of(document, "acme-north")["admins"][0]["password"] = "a-new-password"

    assert (await load_text(engine, dump_yaml(document))).updated == 1

    (changed,) = await rows(engine, ClientAdmin)
    assert changed.password_hash != stored.password_hash
    assert verify_password("a-new-password", changed.password_hash)


def sip_passwords(document: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Each terminal's (SIP domain, clear password) as the document gives them."""
    return {
        terminal["name"]: (client["sip_domain"], terminal["password"])
        for client in document["clients"]
        for terminal in client.get("terminals") or []
    }


async def every_stored_text(engine: AsyncEngine) -> list[str]:
    """Every string value of every row of every table."""
    found: list[str] = []
    async with engine.connect() as connection:
        for table in models.Base.metadata.sorted_tables:
            for row in await connection.execute(select(table)):
                found.extend(value for value in row if isinstance(value, str))
    return found


async def test_terminals_passwords_are_stored_and_exported_only_as_their_digest(
    engine: AsyncEngine,
) -> None:
    document = demo()
    passwords = sip_passwords(document)
    await load_text(engine, dump_yaml(document))

    stored = {row.name: row.ha1 for row in await rows(engine, Terminal)}
    assert stored == {
        name: sip_ha1(name, domain, password) for name, (domain, password) in passwords.items()
    }
    texts = await every_stored_text(engine)
    exported = dump_yaml(await export_document(engine))
    for _, password in passwords.values():
        assert not any(password in text for text in texts)
        assert password not in exported
    exported_terminals = [
        terminal for client in read_yaml(exported)["clients"] for terminal in client["terminals"]
    ]
    assert {terminal["name"]: terminal["ha1"] for terminal in exported_terminals} == stored
    assert all("password" not in terminal for terminal in exported_terminals)


async def test_a_terminal_given_by_password_or_by_its_digest_reloads_unchanged(
    engine: AsyncEngine,
) -> None:
    document = demo()
    await load_text(engine, dump_yaml(document))
    before = await ids(engine)
    ana = client_of(document, "acme-north")["terminals"][0]
    ana["ha1"] = sip_ha1(ana["name"], "acme-north.iberia-voice.example.es", ana.pop("password"))

    assert str(await load_text(engine, dump_yaml(document))) == "no changes"
    ana["password"] = "a-new-sip-secret"
    del ana["ha1"]
    report = await load_text(engine, dump_yaml(document))

    assert (report.created, report.updated, report.deleted) == (0, 1, 0)
    assert await ids(engine) == before
    stored = {row.name: row.ha1 for row in await rows(engine, Terminal)}
    assert stored[ana["name"]] == sip_ha1(
        ana["name"], "acme-north.iberia-voice.example.es", "a-new-sip-secret"
    )


async def test_a_changed_sip_domain_needs_the_terminals_passwords_again(
    engine: AsyncEngine,
) -> None:
    await load_file(engine, DEMO_DATASET)
    exported = await export_document(engine)
    north = client_of(exported, "acme-north")
    north["sip_domain"] = "voice.acme-north.example.es"
    index = exported["clients"].index(north)

    with pytest.raises(ProvisioningError) as raised:
        await load_text(engine, dump_yaml(exported))

    assert str(raised.value) == (
        f"clients[{index}].terminals[0].ha1: was computed for SIP domain "
        "'acme-north.iberia-voice.example.es', and the terminal's domain is now "
        "'voice.acme-north.example.es': give its 'password' instead of 'ha1'"
    )
    document = demo()  # the same change, with the passwords: hashed for the new domain
    client_of(document, "acme-north")["sip_domain"] = "voice.acme-north.example.es"
    report = await load_text(engine, dump_yaml(document))

    assert (report.created, report.deleted) == (0, 0)
    assert report.updated == 1 + len(client_of(document, "acme-north")["terminals"])
    stored = {row.name: row.ha1 for row in await rows(engine, Terminal)}
    for name, (domain, password) in sip_passwords(document).items():
        assert stored[name] == sip_ha1(name, domain, password)
    assert stored["acme-north-ana"] == sip_ha1(
        "acme-north-ana", "voice.acme-north.example.es", "ana-demo-secret"
    )


async def test_a_terminal_moved_to_another_domain_needs_its_password_again(
    engine: AsyncEngine,
) -> None:
    await load_file(engine, DEMO_DATASET)
    exported = await export_document(engine)
    north, south = client_of(exported, "acme-north"), client_of(exported, "acme-south")
    phone = north["terminals"].pop(1)
    phone.pop("user")
    south["terminals"].append(phone)

    with pytest.raises(ProvisioningError) as raised:
        await load_text(engine, dump_yaml(exported))

    where = f"clients[{exported['clients'].index(south)}].terminals[2].ha1"
    assert raised.value.path == where
    assert "'acme-south.iberia-voice.example.es'" in raised.value.message
    del phone["ha1"]
    phone["password"] = "bruno-demo-secret"
    assert (await load_text(engine, dump_yaml(exported))).updated == 1
    stored = {row.name: row.ha1 for row in await rows(engine, Terminal)}
    assert stored["acme-north-bruno"] == sip_ha1(
        "acme-north-bruno", "acme-south.iberia-voice.example.es", "bruno-demo-secret"
    )


async def test_a_missing_file_is_one_line_naming_it(engine: AsyncEngine, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(ProvisioningError) as raised:
        await load_file(engine, missing)
    assert str(raised.value) == f"{missing}: no such file"


async def test_an_empty_document_loads_nothing(engine: AsyncEngine) -> None:
    report = await load_text(engine, "# nothing yet\nbrands:\nclients:\n", "empty.yaml")
    assert (str(report), report.source) == ("no changes", "empty.yaml")


async def test_the_complete_example_of_the_documentation_loads_reloads_and_exports_unchanged(
    engine: AsyncEngine,
) -> None:
    guide = Path(__file__).parents[1] / "docs" / "provisioning.md"
    example = guide.read_text(encoding="utf-8").split("```yaml\n")[-1].split("```")[0]

    assert (await load_text(engine, example, "provisioning.md")).created > 50
    assert (await load_text(engine, example, "provisioning.md")).changed is False
    # Its export (brand administrators included, as their hashes) round-trips too.
    exported = dump_yaml(await export_document(engine))
    assert "example-voice-auditor" in exported
    assert "change-me-at-once" not in exported
    assert (await load_text(engine, exported, "export.yaml")).changed is False
    await wipe(engine)
    await load_text(engine, exported, "export.yaml")
    assert dump_yaml(await export_document(engine)) == exported


async def test_rates_differing_only_by_weight_load_reload_export_and_the_heavier_prices(
    engine: AsyncEngine,
) -> None:
    office = {"from": "08:00", "to": "20:00", "days": ["mon", "tue", "wed", "thu", "fri"]}
    document = demo()
    group = document["brands"][0]["rating_plan_groups"][0]
    assert group["name"] == "standard-eur"
    group["rates"] += [
        {"prefix": "33", "destination": "France, light", "price_per_minute": 0.05,
         "weight": 10, "time_window": office},
        {"prefix": "33", "destination": "France, heavy", "price_per_minute": 0.04,
         "weight": 20, "time_window": office},
    ]  # fmt: skip
    await load_text(engine, dump_yaml(document))

    assert (await load_text(engine, dump_yaml(document))).changed is False
    exported = await export_document(engine)
    brands: list[dict[str, Any]] = exported["brands"]  # type: ignore[assignment]
    (iberia,) = [brand for brand in brands if brand["name"] == "iberia-voice"]
    rates = iberia["rating_plan_groups"][0]["rates"]
    french = [rate for rate in rates if rate["prefix"] == "33"]
    assert [(rate["destination"], rate["weight"]) for rate in french] == [
        ("France, heavy", 20),
        ("France, light", 10),
    ]
    wednesday = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)  # 10:00 in Madrid
    result = await Pipeline(SqlDirectory(engine)).run(
        CallRequest("c", "acme-north-ana", "+33142685300", wednesday)
    )
    assert isinstance(result.decision, Dial), result.decision
    assert result.decision.billing is not None
    rate = result.decision.billing.rate
    assert (rate.destination, rate.weight, rate.price_per_minute) == (
        "France, heavy",
        20,
        Decimal("0.04"),
    )
