"""Every endpoint of the API by every role on one client (north, of brand iberia): the
expected status, and nothing of another tenant in any answer -- in a live world where every
client has a live call, a spend today and audited changes (:func:`tests.api_world._busy`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from callcontrol.simulator import Simulator
from tests.api_world import World, world_on

pytest_plugins = ["tests.test_service"]

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
    # A throwaway client of iberia, created and removed by god and iberia's admin (the
    # others remove no client: {created} is then none); north has CDRs, so it is kept.
    "POST /api/clients": (201, 201, 404, 403, 403, 403, 403, 401),
    "DELETE /api/clients/{created}": (204, 204, 404, 404, 404, 404, 404, 401),
    "DELETE /api/clients/{north}": (409, 409, 404, 403, 403, 403, 404, 401),
    "GET /api/brands": (200, 200, 200, 403, 403, 403, 403, 401),
    "GET /api/application-servers": (200, 403, 403, 403, 403, 403, 403, 401),
    "GET /api/clients/{north}/cdrs": (200, 200, 404, 200, 200, 403, 404, 401),
    "GET /api/clients/{north}/cdrs?format=csv": (200, 200, 404, 200, 200, 403, 404, 401),
    "GET /api/clients/{north}/recordings": (200, 200, 404, 200, 200, 403, 404, 401),
    "GET /api/clients/{north}/recordings/{recording}": (200, 200, 404, 200, 200, 403, 404, 401),
    "GET /api/clients/{north}/rating-profiles": (200, 200, 404, 200, 200, 403, 404, 401),
    "DELETE /api/clients/{north}/recordings/{recording}": (204, 204, 404, 204, 403, 403, 404, 401),
    "GET /api/audit": (200, 200, 200, 200, 200, 403, 200, 401),
}
# What a client owns (the sections of the same names; the source filter and the client
# admins are the "client" section's, and only unrestricted administrators change admins):
# listed, created, read, changed, and the created one removed.
OWNED = {
    # path: (section read by the reader, existing key, new item, a change of the existing)
    "terminals": (False, "north-desk", {"name": "north-new", "password": "new-secret-1"},
                  {"codecs": "alaw"}),
    "extensions": (False, "101", {"number": "102", "forward_to": "+34600000102"},
                   {"user": None, "forward_to": "+34600000101"}),
    "ddis": (False, "+34910000100", {"e164": "+34910000199"}, {"record_calls": "inbound"}),
    "authorized-sources": (True, "198.51.100.0/24", {"source": "203.0.113.0/24"},
                           {"source": "198.51.100.0/25"}),
    "admins": (True, "north-rec-c", {"username": "north-new", "password": "north-new-pass"},
               {"email": "rec@north.example.com"}),
    "users": (False, "nora", {"name": "olga"}, {"email": "nora@north.example.com"}),
    "match-lists": (False, "mobiles", {"name": "premium", "patterns": [{"regexp": "^3480"}]},
                    {"patterns": [{"regexp": "^347"}]}),
    "call-acls": (False, "office", {"name": "night", "default_policy": "allow"},
                  {"default_policy": "allow"}),
    "outgoing-ddi-rules": (False, "sales", {"name": "support"},
                           {"default_action": "keep", "forced_ddi": None}),
}  # fmt: skip
CREATE = "POST /api/clients"
BODIES: dict[str, object] = {
    "PATCH /api/clients/{north}": {"language": "en"},
    CREATE: {"brand": "iberia", "name": "matrix-new", "sip_domain": "matrix-new.example.com"},
}
for path, (reader_reads, existing, new, change) in OWNED.items():
    base = f"/api/clients/{{north}}/{path}"
    new_key = next(str(new[k]) for k in ("name", "number", "e164", "source", "username")
                   if k in new)  # fmt: skip
    reader = 200 if reader_reads else 403
    MATRIX[f"GET {base}"] = (200, 200, 404, 200, reader, 403, 404, 401)
    MATRIX[f"POST {base}"] = (201, 201, 404, 201, 403, 403, 404, 401)
    MATRIX[f"GET {base}/{existing}"] = (200, 200, 404, 200, reader, 403, 404, 401)
    MATRIX[f"PATCH {base}/{existing}"] = (200, 200, 404, 200, 403, 403, 404, 401)
    MATRIX[f"DELETE {base}/{new_key}"] = (204, 204, 404, 204, 403, 403, 404, 401)
    BODIES[f"POST {base}"] = new
    BODIES[f"PATCH {base}/{existing}"] = change
# Rating profiles (billing, listed above): god and brand admins write them; a client admin
# reads them at most, when its client shows them.
PROFILES = "/api/clients/{north}/rating-profiles"
EXISTING_PROFILE = f"{PROFILES}/2025-01-01T00:00:00+01:00"
MATRIX[f"POST {PROFILES}"] = (201, 201, 404, 403, 403, 403, 404, 401)
MATRIX[f"GET {EXISTING_PROFILE}"] = (200, 200, 404, 200, 200, 403, 404, 401)
MATRIX[f"PATCH {EXISTING_PROFILE}"] = (200, 200, 404, 403, 403, 403, 404, 401)
MATRIX[f"DELETE {PROFILES}/2026-01-01T00:00:00Z"] = (204, 204, 404, 403, 403, 403, 404, 401)
BODIES[f"POST {PROFILES}"] = {
    "rating_plan_group": "reduced",
    "activation_time": "2026-01-01T01:00:00+01:00",
}
BODIES[f"PATCH {EXISTING_PROFILE}"] = {"rating_plan_group": "reduced"}
# Live calls, on north's call: listed, recorded and hung up; the counters; the events
# (the ticket the role got, else none). Without the billable_calls section the list and the
# counters are empty, not refused.
MATRIX["GET /api/calls"] = (200, 200, 200, 200, 200, 200, 200, 401)
MATRIX["GET /api/counters"] = (200, 200, 200, 200, 200, 200, 200, 401)
MATRIX["POST /api/calls/events/ticket"] = (200, 200, 200, 200, 200, 403, 200, 401)
EVENTS = "GET /api/calls/events?ticket={ticket}"
MATRIX[EVENTS] = (200, 200, 200, 200, 200, 401, 200, 401)
CALL = "/api/calls/as-1/{call}"
MATRIX[f"POST {CALL}/record/start"] = (202, 202, 404, 202, 403, 403, 404, 401)
MATRIX[f"POST {CALL}/record/stop"] = (202, 202, 404, 202, 403, 403, 404, 401)
MATRIX[f"POST {CALL}/hangup"] = (202, 202, 404, 202, 403, 403, 404, 401)  # north's call ends
# Invitations: the world's API sends no e-mail, so a caller allowed to invite gets 503
# (every check passed); only unrestricted administrators invite.
MATRIX["POST /api/clients/{north}/admins/north-reader/invite"] = (
    503, 503, 404, 503, 403, 403, 404, 401)  # fmt: skip
MATRIX["POST /api/admins/iberia-admin/invite"] = (503, 503, 404, 404, 404, 404, 404, 401)
MATRIX["POST /api/set-password"] = (400,) * 8  # a token, not a role: refused alike
BODIES["POST /api/set-password"] = {"token": "not-a-token", "password": "long-enough-1"}
MATRIX["GET /console"] = (200,) * 8
MATRIX["GET /set-password"] = (200,) * 8
MATRIX["POST /api/logout"] = (204, 204, 204, 204, 204, 204, 204, 401)  # last: ends the session
# Whose live calls (and counters) each role sees: the world holds every client's.
SEES = {
    "root": {"north", "south", "thames"},
    "iberia-admin": {"north", "south"},
    "albion-admin": {"thames"},
    "north-admin": {"north"},
    "north-reader": {"north"},
    "north-blind": set(),
    "south-admin": {"south"},
    None: set(),
}
# What an answer to a role must never mention: other tenants' names, domains and
# terminals (in calls, CDRs, recordings, counters and audit entries alike).
FOREIGN = {
    "iberia-admin": ("thames",),
    "albion-admin": ("north", "south"),
    "north-admin": ("thames", "south"),
    "north-reader": ("thames", "south"),
    "north-blind": ("thames", "south"),
    "south-admin": ("north", "thames"),
}


@pytest.fixture
async def world(sqlite_template: Path, tmp_path: Path, sim: Simulator) -> AsyncIterator[World]:
    async with world_on(sqlite_template, tmp_path, sim) as world:
        yield world


async def events(http: httpx.AsyncClient, url: str) -> tuple[int, str]:
    """A stream's status and what it told until its first keep-alive: the events of the
    poll its subscription started (every call it may see) and then a quiet while."""
    told = []
    async with asyncio.timeout(20), http.stream("GET", url) as stream:
        if stream.status_code != 200:
            return stream.status_code, (await stream.aread()).decode()
        async for line in stream.aiter_lines():
            if line == ": ping":
                break
            told.append(line)
    return 200, "\n".join(told)


@pytest.mark.parametrize("role", list(ROLES))
async def test_every_endpoint_answers_each_role_as_the_matrix_says_and_nothing_foreign(
    world: World, role: str
) -> None:
    username = ROLES[role]
    column = list(ROLES).index(role)
    headers = await world.as_(username)
    seen, texts = {}, {}
    ticket = "none"
    created = "0"  # no client has id 0: what a role that created none removes
    for endpoint in MATRIX:
        method, path = endpoint.split(" ", 1)
        url = path.format(
            north=world.clients["north"],
            recording=world.recordings["north"],
            call=world.calls["north"],
            ticket=ticket,
            created=created,
        )
        if endpoint == EVENTS:
            seen[endpoint], text = await events(world.http, url)
        else:
            body = BODIES.get(endpoint)
            answer = await world.http.request(method, url, headers=headers, json=body)
            seen[endpoint], text = answer.status_code, answer.text
            if endpoint == "GET /api/calls" and answer.status_code == 200:
                listed = {call["client"] for call in answer.json()["calls"]}
                assert listed == SEES[username], listed
            if endpoint == "GET /api/counters" and answer.status_code == 200:
                assert {row["client"] for row in answer.json()} == SEES[username]
            if endpoint == CREATE and answer.status_code == 201:
                created = str(answer.json()["id"])
            if endpoint == "POST /api/calls/events/ticket" and answer.status_code == 200:
                ticket = answer.json()["ticket"]
        texts[endpoint] = text
        for foreign in FOREIGN.get(username or "", ()):
            assert foreign not in text.lower(), (endpoint, text)
    assert seen == {endpoint: statuses[column] for endpoint, statuses in MATRIX.items()}
    # The stream told the start of each call the role may see (and of no other).
    told = texts[EVENTS]
    assert {n for n, call in world.calls.items() if f'"id": "{call}"' in told} == (
        SEES[username] if seen[EVENTS] == 200 else set()
    )
