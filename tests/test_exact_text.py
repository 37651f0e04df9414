"""Names and numbers compare exactly on every backend (migration 0006 on MariaDB): case,
accents and trailing spaces make different texts, as on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from models import MatchList, Terminal
from models.counters import client_counters
from models.migrate import current_revision, downgrade, head, upgrade_async
from models.provisioning import DEMO_DATASET, load_text
from models.provisioning.syntax import dump_yaml, read_yaml


def demo() -> dict[str, Any]:
    data = read_yaml(DEMO_DATASET.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def north(document: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in document["clients"] if c["name"] == "acme-north")


async def test_names_that_differ_in_case_accent_or_a_trailing_space_are_different_rows(
    engine: AsyncEngine,
) -> None:
    document = demo()
    client = north(document)
    premium = next(m for m in client["match_lists"] if m["name"] == "premium")
    for name in ("PREMIUM", "prémium"):
        client["match_lists"].append({**copy.deepcopy(premium), "name": name})
    client["terminals"].append({"name": "ACME-NORTH-ANA", "password": "another-secret"})

    await load_text(engine, dump_yaml(document))

    async with engine.connect() as connection:
        lists = await connection.scalars(select(MatchList.name).where(MatchList.name == "premium"))
        assert list(lists) == ["premium"]
        terminals = await connection.scalars(
            select(Terminal.name).where(Terminal.name == "acme-north-ana")
        )
        assert list(terminals) == ["acme-north-ana"]
        spaced = await connection.scalars(
            select(Terminal.name).where(Terminal.name == "acme-north-ana ")
        )
        assert list(spaced) == []
        # a literal compared by the database itself, not by a bound parameter's type
        same = await connection.scalar(
            text("SELECT COUNT(*) FROM terminals WHERE name = 'ACME-NORTH-ANA'")
        )
        assert same == 1


async def test_a_client_named_with_another_case_has_no_counters(engine: AsyncEngine) -> None:
    await load_text(engine, DEMO_DATASET.read_text(encoding="utf-8"))

    assert [c.client for c in await client_counters(engine, client="acme-north")] == ["acme-north"]
    assert await client_counters(engine, client="ACME-NORTH") == []
    assert await client_counters(engine, client="acme-north ") == []


async def test_the_migration_goes_down_and_up_again_keeping_the_rows(
    db_url: str, engine: AsyncEngine
) -> None:
    demo_text = DEMO_DATASET.read_text(encoding="utf-8")
    await load_text(engine, demo_text)
    kept = ("clients", "terminals", "match_lists", "extensions", "ddis", "rates")
    before = await _counts(engine, kept)

    await asyncio.to_thread(downgrade, db_url, "0005")
    assert await current_revision(db_url) == "0005"
    await upgrade_async(db_url)

    assert await current_revision(db_url) == head()
    assert await _counts(engine, kept) == before
    # what later revisions add (emergency numbers, low-balance settings) comes back on load
    await load_text(engine, demo_text)
    assert str(await load_text(engine, demo_text)) == "no changes"
    assert await client_counters(engine, client="ACME-NORTH") == []


async def _counts(engine: AsyncEngine, tables: tuple[str, ...]) -> dict[str, int]:
    async with engine.connect() as connection:
        return {
            table: int(await connection.scalar(text(f"SELECT COUNT(*) FROM {table}")) or 0)
            for table in tables
        }
