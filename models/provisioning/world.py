"""What the database already holds, as far as checking a document needs to know.

A document may name things it does not define (a brand defined by an earlier
load, a currency, an application server), and must not take a DDI, terminal name
or login that a client it does not list already owns. :func:`read_world` reads
those facts with a handful of column queries -- no ORM objects -- inside the
loading transaction, so the check and the write see the same database.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from models.admins import PlatformAdmin
from models.billing import RatingPlanGroup, RatingProfile
from models.platform import (
    ApplicationServer,
    ClientNotificationTemplate,
    MediaRelaySet,
    NotificationTemplate,
)
from models.routing import Carrier
from models.tenants import (
    Brand,
    BrandFeature,
    Client,
    ClientAdmin,
    ClientFeature,
    Corporation,
    Currency,
    Ddi,
    Extension,
    Terminal,
)


@dataclass
class BrandFacts:
    """What clients may refer to in a brand: from the document when listed, else the database."""

    name: str
    language: str
    timezone: str
    currency: str
    country: str
    features: set[str] = field(default_factory=set)
    corporations: set[str] = field(default_factory=set)
    carriers: set[str] = field(default_factory=set)
    rating_groups: dict[str, str] = field(default_factory=dict)  # name -> currency
    templates: dict[str, str] = field(default_factory=dict)  # name -> type


@dataclass
class ClientFacts:
    """A stored client, with what it uses of its brand."""

    id: int
    brand: str
    name: str
    sip_domain: str
    corporation: str | None
    features: set[str] = field(default_factory=set)
    rating_groups: set[str] = field(default_factory=set)
    brand_templates: set[str] = field(default_factory=set)
    carriers: set[str] = field(default_factory=set)
    extensions: set[str] = field(default_factory=set)

    @property
    def key(self) -> tuple[str, str]:
        return (self.brand, self.name)


@dataclass
class World:
    currencies: set[str] = field(default_factory=set)
    application_servers: set[str] = field(default_factory=set)
    media_relay_sets: set[str] = field(default_factory=set)
    generic_templates: dict[str, str] = field(default_factory=dict)  # name -> type
    brands: dict[str, BrandFacts] = field(default_factory=dict)
    clients: dict[int, ClientFacts] = field(default_factory=dict)
    ddis: dict[str, int] = field(default_factory=dict)  # e164 digits -> client id
    terminals: dict[str, int] = field(default_factory=dict)  # name -> client id
    terminal_digests: dict[str, str] = field(default_factory=dict)  # name -> stored HA1
    admins: dict[str, int] = field(default_factory=dict)  # username -> client id
    platform_logins: set[str] = field(default_factory=set)  # god and brand admins' usernames
    brand_admins: dict[str, str] = field(default_factory=dict)  # username -> brand name
    carrier_endpoints: dict[str, tuple[str, str]] = field(default_factory=dict)


async def read_world(session: AsyncSession) -> World:
    """The facts of :class:`World`, read in the caller's transaction."""
    world = World()
    world.currencies = set((await session.scalars(select(Currency.code))).all())
    world.application_servers = set((await session.scalars(select(ApplicationServer.name))).all())
    world.media_relay_sets = set((await session.scalars(select(MediaRelaySet.name))).all())
    await _read_brands(session, world)
    await _read_clients(session, world)
    return world


async def _read_brands(session: AsyncSession, world: World) -> None:
    names: dict[int, str] = {}
    for brand in (await session.execute(select(Brand))).scalars():
        names[brand.id] = brand.name
        world.brands[brand.name] = BrandFacts(
            brand.name,
            brand.default_language,
            brand.default_timezone,
            brand.default_currency,
            brand.default_country,
        )
    for brand_id, feature in await session.execute(
        select(BrandFeature.brand_id, BrandFeature.feature)
    ):
        world.brands[names[brand_id]].features.add(feature)
    for brand_id, name in await session.execute(select(Corporation.brand_id, Corporation.name)):
        world.brands[names[brand_id]].corporations.add(name)
    carriers = select(Carrier.brand_id, Carrier.name, Carrier.endpoint)
    for brand_id, name, endpoint in await session.execute(carriers):
        world.brands[names[brand_id]].carriers.add(name)
        world.carrier_endpoints[endpoint] = (names[brand_id], name)
    groups = select(RatingPlanGroup.brand_id, RatingPlanGroup.name, RatingPlanGroup.currency)
    for brand_id, name, currency in await session.execute(groups):
        world.brands[names[brand_id]].rating_groups[name] = currency
    templates = select(
        NotificationTemplate.brand_id, NotificationTemplate.name, NotificationTemplate.type
    ).where(NotificationTemplate.client_id.is_(None))
    for brand_id, name, kind in await session.execute(templates):
        if brand_id is None:
            world.generic_templates[name] = kind
        else:
            world.brands[names[brand_id]].templates[name] = kind


async def _read_clients(session: AsyncSession, world: World) -> None:
    corporations = await _pairs(session, Corporation.id, Corporation.name)
    brands = await _pairs(session, Brand.id, Brand.name)
    rows = select(Client.id, Client.brand_id, Client.name, Client.sip_domain, Client.corporation_id)
    for client_id, brand_id, name, domain, corporation_id in await session.execute(rows):
        corporation = corporations.get(corporation_id) if corporation_id else None
        world.clients[client_id] = ClientFacts(
            client_id, brands[brand_id], name, domain, corporation
        )
    clients = world.clients
    for client_id, feature in await session.execute(
        select(ClientFeature.client_id, ClientFeature.feature)
    ):
        clients[client_id].features.add(feature)
    profiles = select(RatingProfile.client_id, RatingPlanGroup.name).join(
        RatingPlanGroup, RatingProfile.rating_plan_group_id == RatingPlanGroup.id
    )
    for client_id, group in await session.execute(profiles):
        clients[client_id].rating_groups.add(group)
    choices = (
        select(ClientNotificationTemplate.client_id, NotificationTemplate.name)
        .join(
            NotificationTemplate, ClientNotificationTemplate.template_id == NotificationTemplate.id
        )
        .where(NotificationTemplate.brand_id.is_not(None))
    )
    for client_id, template in await session.execute(choices):
        clients[client_id].brand_templates.add(template)
    carriers = await _pairs(session, Carrier.id, Carrier.name)
    for e164, client_id, carrier_id in await session.execute(
        select(Ddi.e164, Ddi.client_id, Ddi.carrier_id)
    ):
        world.ddis[e164] = client_id
        if carrier_id is not None:
            clients[client_id].carriers.add(carriers[carrier_id])
    for client_id, number in await session.execute(select(Extension.client_id, Extension.number)):
        clients[client_id].extensions.add(number)
    for name, client_id, ha1 in await session.execute(
        select(Terminal.name, Terminal.client_id, Terminal.ha1)
    ):
        world.terminals[name] = client_id
        world.terminal_digests[name] = ha1
    logins = select(PlatformAdmin.username, PlatformAdmin.brand_id)
    for username, brand_id in await session.execute(logins):
        world.platform_logins.add(username)
        if brand_id is not None:
            world.brand_admins[username] = brands[brand_id]
    world.admins = {
        name: client_id
        for name, client_id in await session.execute(
            select(ClientAdmin.username, ClientAdmin.client_id)
        )
    }


async def _pairs(
    session: AsyncSession, key: InstrumentedAttribute[int], value: InstrumentedAttribute[str]
) -> dict[int, str]:
    return {row[0]: row[1] for row in await session.execute(select(key, value))}


def group_by_brand(world: World) -> dict[str, list[ClientFacts]]:
    """Stored clients per brand name."""
    grouped: dict[str, list[ClientFacts]] = defaultdict(list)
    for client in world.clients.values():
        grouped[client.brand].append(client)
    return grouped
