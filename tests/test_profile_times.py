"""Rating profiles are exported on their client's clock (tests/cases/times.py), on every
backend, and the export loads back as "no changes"."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from sqlalchemy.ext.asyncio import AsyncEngine

from models.provisioning import DEMO_DATASET, dump_yaml, export_document, load_text
from tests.cases.times import PROFILE_CASES, ProfileCase


def with_profile(client: str, activation_time: str) -> str:
    """The demo, ``client`` rated by its plan group from ``activation_time``."""
    document: dict[str, Any] = yaml.safe_load(DEMO_DATASET.read_text(encoding="utf-8"))
    [found] = [entry for entry in document["clients"] if entry["name"] == client]
    [profile] = found["rating_profiles"]
    profile["activation_time"] = activation_time
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False)


@pytest.mark.parametrize("case", PROFILE_CASES, ids=[case.name for case in PROFILE_CASES])
async def test_a_profile_is_exported_on_its_clients_clock(
    engine: AsyncEngine, case: ProfileCase
) -> None:
    await load_text(engine, with_profile(case.client, case.loaded))
    exported = dump_yaml(await export_document(engine))
    document = yaml.safe_load(exported)
    [client] = [entry for entry in document["clients"] if entry["name"] == case.client]
    [profile] = client["rating_profiles"]
    assert f"activation_time: {case.exported}\n" in exported
    assert profile["activation_time"].isoformat() == case.exported
    assert str(await load_text(engine, exported)) == "no changes"
