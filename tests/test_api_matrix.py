"""Every endpoint of the API by every role on one client (north, of brand iberia): the
expected status, and nothing of another tenant in any answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.api_world import World, world_on

ROLES = {
    "god": "root",
    "brand admin": "iberia-admin",
    "other brand's admin": "albion-admin",
    "client admin": "north-admin",
    "read-only client admin": "north-reader",
    "client admin without the sections": "north-blind",
    "other client's admin": "south-admin",
    "anonymous": None,
}
# Endpoint -> status per role, in the order of ROLES.
MATRIX: dict[str, tuple[int, ...]] = {
    "GET /api/clients": (200, 200, 200, 200, 200, 200, 200, 401),
    "GET /api/clients/{north}": (200, 200, 404, 200, 200, 403, 404, 401),
    "PATCH /api/clients/{north}": (200, 200, 404, 200, 403, 403, 404, 401),
    "GET /api/clients/{north}/cdrs": (200, 200, 404, 200, 200, 403, 404, 401),
    "GET /api/clients/{north}/cdrs?format=csv": (200, 200, 404, 200, 200, 403, 404, 401),
    "GET /api/clients/{north}/recordings": (200, 200, 404, 200, 200, 403, 404, 401),
    "GET /api/clients/{north}/recordings/{recording}": (200, 200, 404, 200, 200, 403, 404, 401),
    "GET /api/clients/{north}/rating-profiles": (200, 200, 404, 200, 200, 403, 404, 401),
    "DELETE /api/clients/{north}/recordings/{recording}": (204, 204, 404, 204, 403, 403, 404, 401),
    "GET /api/audit": (200, 200, 200, 200, 200, 403, 200, 401),
}
# What an answer to a role must never mention: other tenants' names and domains.
FOREIGN = {
    "iberia-admin": ("thames",),
    "albion-admin": ("north", "south"),
    "north-admin": ("thames", "south"),
    "north-reader": ("thames", "south"),
    "north-blind": ("thames", "south"),
    "south-admin": ("north", "thames"),
}


@pytest.fixture
async def world(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[World]:
    async with world_on(sqlite_template, tmp_path) as world:
        yield world


@pytest.mark.parametrize("role", list(ROLES))
async def test_every_endpoint_answers_each_role_as_the_matrix_says_and_nothing_foreign(
    world: World, role: str
) -> None:
    username = ROLES[role]
    column = list(ROLES).index(role)
    headers = await world.as_(username)
    seen = {}
    for endpoint in MATRIX:
        method, path = endpoint.split(" ")
        url = path.format(north=world.clients["north"], recording=world.recordings["north"])
        body = {"language": "en"} if method == "PATCH" else None
        answer = await world.http.request(method, url, headers=headers, json=body)
        seen[endpoint] = answer.status_code
        for foreign in FOREIGN.get(username or "", ()):
            assert foreign not in answer.text.lower(), (endpoint, answer.text)
    assert seen == {endpoint: statuses[column] for endpoint, statuses in MATRIX.items()}
