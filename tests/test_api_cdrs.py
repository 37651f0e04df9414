"""CDRs through the API (issue 14): the filters and pages of ``/api/clients/{id}/cdrs``,
always within the one client the path names."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from models.billing import BillableCall
from models.cdrs import Cdr
from tests.api_world import START, World, world_on


@pytest.fixture
async def world(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[World]:
    async with world_on(sqlite_template, tmp_path) as world:
        yield world


async def cdrs(world: World, who: str, client: str, query: str) -> Any:
    path = f"/api/clients/{world.clients[client]}/cdrs?{query}"
    answer = await world.http.get(path, headers=await world.as_(who))
    assert answer.status_code == 200, answer.text
    return answer.json()


async def more_calls(world: World) -> None:
    """North gets an answered inbound call and two refused outbound ones, after the
    world's own answered outbound call (``call-north``)."""
    rows = []
    for n, (direction, answered, reason, caller, callee) in enumerate(
        [
            ("inbound", True, None, "34600000001", "+34910000001"),
            ("outbound", False, "daily_limit_reached", "north-caller", "34910000002"),
            ("outbound", False, "max_calls_reached", "north-caller", "34600000001"),
        ],
        start=1,
    ):
        start = START + timedelta(minutes=n)
        rows.append(
            Cdr(
                call_id=f"north-{n}",
                client_id=world.clients["north"],
                caller=caller,
                callee=callee,
                direction=direction,
                start_time=start,
                answer_time=start if answered else None,
                end_time=start + timedelta(seconds=30),
                duration=30 if answered else 0,
                billed_seconds=30 if answered else 0,
                price=Decimal("0.01") if answered else None,
                currency="EUR" if answered else None,
                hangup_cause="normal" if answered else "rejected",
                outcome_reason=reason,
            ).as_row()
        )
    async with world.engine.begin() as connection:
        await connection.execute(insert(BillableCall), rows)


def ids(found: list[dict[str, Any]]) -> list[str]:
    return [cdr["call_id"] for cdr in found]


async def test_cdrs_are_filtered_by_direction_outcome_answer_and_number(world: World) -> None:
    await more_calls(world)
    assert ids(await cdrs(world, "root", "north", "")) == [
        "call-north",
        "north-1",
        "north-2",
        "north-3",
    ]
    assert ids(await cdrs(world, "root", "north", "direction=inbound")) == ["north-1"]
    assert ids(await cdrs(world, "root", "north", "outcome=max_calls_reached")) == ["north-3"]
    assert ids(await cdrs(world, "root", "north", "answered=false")) == ["north-2", "north-3"]
    assert ids(await cdrs(world, "root", "north", "answered=true&direction=outbound")) == [
        "call-north"
    ]
    # A number matches the caller or the callee.
    assert ids(await cdrs(world, "root", "north", "number=34600000001")) == [
        "north-1",
        "north-3",
    ]
    # The client admin gets the same filters, on its own client only.
    assert ids(await cdrs(world, "north-admin", "north", "outcome=daily_limit_reached")) == [
        "north-2"
    ]
    assert await cdrs(world, "root", "thames", "outcome=max_calls_reached") == []


async def test_cdrs_come_in_pages_and_a_bad_filter_is_refused(world: World) -> None:
    await more_calls(world)
    pages = [
        ids(await cdrs(world, "root", "north", f"limit=3&offset={offset}")) for offset in (0, 3, 6)
    ]
    assert pages == [["call-north", "north-1", "north-2"], ["north-3"], []]
    headers = await world.as_("root")
    path = f"/api/clients/{world.clients['north']}/cdrs"
    for query in ("outcome=bored", "direction=sideways", "offset=-1", "answered=maybe"):
        answer = await world.http.get(f"{path}?{query}", headers=headers)
        assert answer.status_code == 422, (query, answer.text)
    csv = await world.http.get(f"{path}?format=csv&direction=inbound", headers=headers)
    assert csv.status_code == 200
    lines = csv.text.splitlines()
    assert len(lines) == 2
    assert "north-1" in lines[1]
