"""A platform for the API's tests: two brands, three clients, every kind of administrator,
CDRs with prices, recordings with audio and rating profiles -- loaded through the
migrations and a provisioning document -- and an HTTP client over the app in this loop.

A live world (:func:`world_on` with the simulator) also runs the service on the simulated
Asterisk and serves the API on loopback, every client with a live call, a spend today and
audited changes: what the permission matrix must never show another tenant."""

from __future__ import annotations

import contextlib
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import uvicorn
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.api.accounts import create_platform_admin
from callcontrol.api.app import build_app
from callcontrol.service import Service
from callcontrol.simulator import Simulator
from callcontrol.simulator.client import ControlClient, ControlError
from dialplan.daily import spend_day
from models.billing import BillableCall, DailyUsage
from models.cdrs import Cdr
from models.db import create_engine
from models.provisioning import load_text
from models.recordings import RecordingStore, Segment
from models.tenants import Client
from tests.live_world import console_registered, on_loopback
from tests.ports import free_port
from tests.test_service import bridged, until

IBERIA = """
currencies:
  - {code: EUR, name: Euro, symbol: "€"}
brands:
  - name: iberia
    default_language: es
    default_timezone: Europe/Madrid
    default_currency: EUR
    default_country: ES
"""
"""Brand iberia (EUR, Spain) alone: a test's document lists its clients after it."""

DOCUMENT = """
currencies:
  - {code: EUR, name: Euro, symbol: "€"}
  - {code: GBP, name: Pound sterling, symbol: "£"}
application_servers:
  - {name: as-1, address: 192.0.2.11}
brands:
  - name: iberia
    default_language: es
    default_timezone: Europe/Madrid
    default_currency: EUR
    default_country: ES
    features: [billing, recordings, invoices]
    carriers:
      - {name: telco-es, endpoint: carrier-es, host: 192.0.2.50}
    outbound_routes:
      - {carrier: telco-es, prefix: "", priority: 0}
    rating_plan_groups:
      - {name: standard, currency: EUR, rates: [{prefix: "34", price_per_minute: 0.01}]}
      - {name: reduced, currency: EUR, rates: [{prefix: "34", price_per_minute: 0.005}]}
  - name: albion
    default_language: en
    default_timezone: Europe/London
    default_currency: GBP
    default_country: GB
    features: [billing, recordings]
    carriers:
      - {name: telco-uk, endpoint: carrier-uk, host: 192.0.2.60}
    outbound_routes:
      - {carrier: telco-uk, prefix: "", priority: 0}
    rating_plan_groups:
      - {name: uk, currency: GBP, rates: [{prefix: "44", price_per_minute: 0.02}]}
clients:
  - name: north
    brand: iberia
    sip_domain: north.example.com
    features: [billing, recordings, invoices]
    billing_method: postpaid
    allow_recording_removal: true
    invoice:
      tax_id: B-NORTH
      show_invoices: true
      show_rating_profiles: true
      show_external_call_prices: true
    distribute_method: static
    application_server: as-1
    rating_profiles:
      - {rating_plan_group: standard, activation_time: "2025-01-01T00:00:00+01:00"}
    authorized_sources: [198.51.100.0/24]
    users:
      - {name: nora, call_acl: office, outgoing_ddi_rule: sales}
    match_lists:
      - {name: mobiles, patterns: [{regexp: "^346"}, {number: "+34600000001"}]}
    call_acls:
      - {name: office, rules: [{priority: 1, match_list: mobiles, policy: allow}]}
    outgoing_ddi_rule:
      name: main
      patterns: [{priority: 1, prefix: "111*", action: force, forced_ddi: "+34910000100"}]
    outgoing_ddi_rules:
      - {name: sales, default_action: force, forced_ddi: "+34910000100"}
    terminals:
      - {name: north-desk, password: north-desk-secret, user: nora}
    extensions:
      - {number: "101", user: nora}
    ddis:
      - {e164: "+34910000100", extension: "101"}
    admins:
      - {username: north-admin, password: north-admin-pass}
      - username: north-reader
        password: north-reader-pass
        privileges: {client: r, recordings: r, billable_calls: r, rating_profiles: r,
                     invoices: r, audit: r}
      - {username: north-blind, password: north-blind-pass, privileges: {}}
      - {username: north-rec-c, password: north-rec-pass, privileges: {recordings: c}}
      - {username: north-rec-r, password: north-rec-pass, privileges: {recordings: r}}
      - {username: north-rec-u, password: north-rec-pass, privileges: {recordings: u}}
      - {username: north-rec-d, password: north-rec-pass, privileges: {recordings: d}}
      - {username: north-term-c, password: north-term-pass, privileges: {terminals: c}}
      - {username: north-term-r, password: north-term-pass, privileges: {terminals: r}}
      - {username: north-term-u, password: north-term-pass, privileges: {terminals: u}}
      - {username: north-term-d, password: north-term-pass, privileges: {terminals: d}}
      - {username: north-settings, password: north-settings-pass, privileges: {client: crud}}
      - {username: north-acl-c, password: north-acl-pass, privileges: {call_acls: c}}
      - {username: north-acl-r, password: north-acl-pass, privileges: {call_acls: r}}
      - {username: north-acl-u, password: north-acl-pass, privileges: {call_acls: u}}
      - {username: north-acl-d, password: north-acl-pass, privileges: {call_acls: d}}
  - name: south
    brand: iberia
    sip_domain: south.example.com
    features: [billing]
    billing_method: postpaid
    rating_profiles:
      - {rating_plan_group: standard, activation_time: "2025-01-01T00:00:00+01:00"}
    ddis:
      - {e164: "+34910000200"}
    terminals:
      - {name: south-desk, password: south-desk-secret}
    admins:
      - {username: south-admin, password: south-admin-pass}
  - name: thames
    brand: albion
    sip_domain: thames.example.co.uk
    features: [billing, recordings]
    billing_method: postpaid
    invoice: {show_rating_profiles: true, show_external_call_prices: true}
    allow_recording_removal: true
    rating_profiles:
      - {rating_plan_group: uk, activation_time: "2025-01-01T00:00:00+00:00"}
    terminals:
      - {name: thames-desk, password: thames-desk-secret}
    admins:
      - {username: thames-admin, password: thames-admin-pass}
"""

PASSWORDS = {
    "root": "root-password",
    "iberia-admin": "iberia-password",
    "albion-admin": "albion-password",
    "north-admin": "north-admin-pass",
    "north-reader": "north-reader-pass",
    "north-blind": "north-blind-pass",
    **{f"north-rec-{verb}": "north-rec-pass" for verb in "crud"},
    **{f"north-term-{verb}": "north-term-pass" for verb in "crud"},
    **{f"north-acl-{verb}": "north-acl-pass" for verb in "crud"},
    "north-settings": "north-settings-pass",
    "south-admin": "south-admin-pass",
    "thames-admin": "thames-admin-pass",
}
START = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class World:
    engine: AsyncEngine
    http: httpx.AsyncClient
    clock: Clock
    folder: Path
    clients: dict[str, int]
    recordings: dict[str, int]
    database: Path
    tokens: dict[str, str] = field(default_factory=dict)
    calls: dict[str, str] = field(default_factory=dict)
    """A live world's live calls: client name -> call id (on server as-1)."""

    async def login(self, username: str) -> str:
        if username not in self.tokens:
            answer = await self.http.post(
                "/api/login", json={"username": username, "password": PASSWORDS[username]}
            )
            assert answer.status_code == 200, answer.text
            self.tokens[username] = answer.json()["token"]
        return self.tokens[username]

    async def as_(self, username: str | None) -> dict[str, str]:
        """The headers of a request by ``username`` (None: anonymous)."""
        if username is None:
            return {}
        return {"Authorization": f"Bearer {await self.login(username)}"}


async def _populate(engine: AsyncEngine, folder: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Load the world into ``engine`` (its recordings' files in ``folder``): the ids of its
    clients and of its recordings, by name."""
    await load_text(engine, DOCUMENT)
    await create_platform_admin(engine, "root", PASSWORDS["root"])
    await create_platform_admin(engine, "iberia-admin", PASSWORDS["iberia-admin"], brand="iberia")
    await create_platform_admin(engine, "albion-admin", PASSWORDS["albion-admin"], brand="albion")
    async with engine.connect() as connection:
        clients = {
            name: number
            for number, name in (await connection.execute(select(Client.id, Client.name))).all()
        }
    async with engine.begin() as connection:
        for name, number in clients.items():
            cdr = Cdr(
                call_id=f"call-{name}",
                client_id=number,
                caller=f"{name}-caller",
                callee="34910000999",
                direction="outbound",
                start_time=START,
                answer_time=START,
                end_time=START + timedelta(seconds=60),
                duration=60,
                billed_seconds=60,
                price=Decimal("0.0123"),
                currency="EUR",
                rating_plan="standard",
                matched_prefix="34",
                hangup_cause="normal",
            )
            await connection.execute(insert(BillableCall).values(cdr.as_row()))
    store = RecordingStore(engine, folder)
    for name in ("north", "thames"):
        segment = Segment(
            client_id=clients[name],
            client_name=name,
            call_id=f"call-{name}",
            segment=1,
            caller=f"{name}-caller",
            callee="34910000999",
            started_at=START,
            duration=Decimal(3),
        )
        await store.save(segment, b"RIFF-" + name.encode())
    async with engine.connect() as connection:
        from models.platform import Recording

        rows = await connection.execute(select(Recording.client_id, Recording.id))
        by_client = {client_id: number for client_id, number in rows}
    return clients, {name: by_client[clients[name]] for name in ("north", "thames")}


async def build_world(
    engine: AsyncEngine,
    folder: Path,
    database: Path,
    sim: Simulator | None,
    clients: dict[str, int],
    recordings: dict[str, int],
) -> AsyncIterator[World]:
    """The world on ``engine``, already loaded (:func:`_populate`)."""
    clock = Clock()
    if sim is None:
        app = build_app(engine, token_ttl=600, recordings_dir=folder, clock=clock)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            yield World(engine, http, clock, folder, clients, recordings, database)
        return
    async with console_registered(sim, engine, folder) as (service, key):
        app = build_app(
            engine,
            token_ttl=600,
            recordings_dir=folder,
            clock=clock,
            secret_key=key,
            poll_interval=0.2,
        )
        port = free_port(socket.SOCK_STREAM)
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        async with on_loopback(server) as http, ControlClient(sim.url) as control:
            world = World(engine, http, clock, folder, clients, recordings, database)
            await _busy(world, service, control)
            try:
                yield world
            finally:
                for call in world.calls.values():
                    with contextlib.suppress(ControlError):  # hung up by the test already
                        await control.hang_up(call)


CALLS = {
    "north": ("north-desk", "0034600000001"),
    "south": ("south-desk", "0034910000999"),
    "thames": ("thames-desk", "00442079460123"),
}
"""Each client's live call in a live world: (its terminal, the number it dials)."""
THAMES_DDI = "+442079460100"
SPENT = {"north": Decimal("1.11"), "south": Decimal("2.22"), "thames": Decimal("3.33")}
"""Each client's spend today in a live world."""
CHANGES = {
    "north": {"outgoing_ddi": "+34910000100", "on_demand_recording": {"mode": "both", "code": "5"}},
    "south": {"outgoing_ddi": "+34910000200", "billing_method": "prepaid", "balance": 17.17},
    "thames": {
        "outgoing_ddi": THAMES_DDI,
        "billing_method": "pseudoprepaid",
        "balance": 23.23,
        "on_demand_recording": {"mode": "both", "code": "5"},
    },
}
"""What god changes in a live world before the calls: a DDI to present each, a balance for
the two clients other than north, and recording on demand where the feature is (a call
that may be recorded stays in the app, answered; south's is handed to the dialplan)."""


async def _busy(world: World, service: Service, control: ControlClient) -> None:
    """Every client with what other tenants must never see: each changed by god (audited:
    :data:`CHANGES`, and a DDI for thames), a spend today each, a live external call each,
    and thames's call recorded at god's word (audited)."""
    root = await world.as_("root")
    thames = f"/api/clients/{world.clients['thames']}"
    answer = await world.http.post(f"{thames}/ddis", headers=root, json={"e164": THAMES_DDI})
    assert answer.status_code == 201, answer.text
    for name, change in CHANGES.items():
        answer = await world.http.patch(
            f"/api/clients/{world.clients[name]}", headers=root, json=change
        )
        assert answer.status_code == 200, answer.text
    assert service.watcher is not None
    await service.watcher.snapshots.refresh()  # the calls are decided with the changes
    now = datetime.now(UTC)
    async with world.engine.begin() as connection:
        zones = dict((await connection.execute(select(Client.id, Client.timezone))).tuples().all())
        for name, client_id in world.clients.items():
            day = spend_day(now, zones[client_id] or "UTC")  # the day the counters read
            await connection.execute(
                insert(DailyUsage).values(client_id=client_id, day=day, amount=SPENT[name])
            )
    for name, (terminal, number) in CALLS.items():
        call = str((await control.call(terminal, number))["id"])
        await bridged(control, call)
        world.calls[name] = call
    await until(lambda: _listed(world, root, set(world.calls.values())))
    recorded = f"/api/calls/as-1/{world.calls['thames']}/record/start"
    answer = await world.http.post(recorded, headers=root)
    assert answer.status_code == 202, answer.text


async def _listed(world: World, headers: dict[str, str], calls: set[str]) -> bool:
    """The API lists every one of ``calls`` connected, its client known."""
    answer = await world.http.get("/api/calls", headers=headers)
    connected = {
        call["id"]
        for call in answer.json()["calls"]
        if call.get("client_id") and call["state"] in ("answered", "dialplan")
    }
    return calls <= connected


@contextlib.asynccontextmanager
async def world_on(
    template: Path, folder: Path, sim: Simulator | None = None
) -> AsyncIterator[World]:
    """The world on a copy of the migrated SQLite ``template`` in ``folder``; with ``sim``
    a live one: the service on the simulated Asterisk, its console registered, the API on
    loopback (server-sent events need a real server), and every client busy
    (:func:`_busy`: a live call, a spend today, an audited change)."""
    loaded, recorded, clients, recordings = await _populated(template)
    path = folder / "api.db"
    shutil.copy(loaded, path)
    shutil.copytree(recorded, folder / "recordings")
    engine = create_engine(f"sqlite:///{path}")
    try:
        async for world in build_world(
            engine, folder / "recordings", path, sim, clients, recordings
        ):
            yield world
    finally:
        await engine.dispose()


_POPULATED: dict[Path, tuple[Path, Path, dict[str, int], dict[str, int]]] = {}
"""Per migrated template: a copy with the world loaded, its recordings' folder and the ids
of both, built once per test run (loading hashes every admin's password, a second's work)."""


async def _populated(template: Path) -> tuple[Path, Path, dict[str, int], dict[str, int]]:
    known = _POPULATED.get(template)
    if known is not None:
        return known
    folder = template.parent / "api-world"
    folder.mkdir()
    path = folder / "api.db"
    shutil.copy(template, path)
    engine = create_engine(f"sqlite:///{path}")
    try:
        clients, recordings = await _populate(engine, folder / "recordings")
    finally:
        await engine.dispose()
    _POPULATED[template] = (path, folder / "recordings", clients, recordings)
    return _POPULATED[template]
