"""The whole database as a provisioning document.

:func:`export_document` gives a plain ``dict`` ready for
:func:`models.provisioning.syntax.dump_yaml`. It is built through the document
models, so it always validates; values equal to their defaults are left out, and
every list is sorted by its natural key, so the same database always exports the
same text. Loading the export into an empty database and exporting again gives
the same document; loading it into the database it came from changes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import selectinload

from models.admins import PlatformAdmin
from models.billing import Rate
from models.db import session_factory
from models.platform import (
    ApplicationServer,
    EmergencyNumber,
    MediaRelaySet,
    NotificationTemplate,
)
from models.provisioning.export_client import (
    Names,
    export_admin,
    export_client,
    export_template,
)
from models.provisioning.scalars import ALL_DAYS, WEEKDAYS
from models.provisioning.schema import (
    ApplicationServerDoc,
    BrandDoc,
    CarrierDoc,
    CurrencyDoc,
    EmergencyNumberDoc,
    MediaRelayDoc,
    MediaRelaySetDoc,
    OutboundRouteDoc,
    RateDoc,
    RatingPlanGroupDoc,
    TimeWindowDoc,
)
from models.provisioning.schema_client import ClientDoc, Document
from models.provisioning.write_brand import BRAND_LOAD
from models.provisioning.write_client import CLIENT_LOAD
from models.tenants import Brand, Client, ClientAdmin, Currency, Ddi, Terminal


async def export_document(engine: AsyncEngine) -> dict[str, object]:
    """Every brand, client and platform piece, as a document :func:`load_text` accepts."""
    async with session_factory(engine)() as session:
        document = await _read(session)
    return document.model_dump(mode="python", by_alias=True, exclude_defaults=True)


async def export_one_client(engine: AsyncEngine, client_id: int) -> dict[str, Any] | None:
    """The client ``client_id`` as its node of :func:`export_document` (None if unknown)."""
    async with session_factory(engine)() as session:
        found = await client_docs(session, [client_id])
    node = found.get(client_id)
    return (
        None
        if node is None
        else node.model_dump(mode="python", by_alias=True, exclude_defaults=True)
    )


async def client_docs(session: AsyncSession, client_ids: Collection[int]) -> dict[int, ClientDoc]:
    """The clients among ``client_ids`` that exist, as :func:`export_document` writes them,
    read in ``session`` (and its transaction)."""
    if not client_ids:
        return {}
    clients = list(
        await session.scalars(select(Client).where(Client.id.in_(client_ids)).options(*CLIENT_LOAD))
    )
    brand_ids = {client.brand_id for client in clients}
    brands = list(
        await session.scalars(select(Brand).where(Brand.id.in_(brand_ids)).options(*BRAND_LOAD))
    )
    servers = list(await session.scalars(select(ApplicationServer)))
    relays = list(await session.scalars(select(MediaRelaySet)))
    generic = select(NotificationTemplate).where(
        NotificationTemplate.brand_id.is_(None), NotificationTemplate.client_id.is_(None)
    )
    templates = list(await session.scalars(generic))
    names = await _names(session, brands, clients, servers, relays, templates)
    return {client.id: export_client(client, names) for client in clients}


async def _read(session: AsyncSession) -> Document:
    currencies = await session.scalars(select(Currency).order_by(Currency.code))
    servers = list(
        await session.scalars(select(ApplicationServer).order_by(ApplicationServer.name))
    )
    relays = list(
        await session.scalars(
            select(MediaRelaySet)
            .order_by(MediaRelaySet.name)
            .options(selectinload(MediaRelaySet.relays))
        )
    )
    emergency = await session.scalars(
        select(EmergencyNumber).order_by(EmergencyNumber.country, EmergencyNumber.number)
    )
    templates = list(
        await session.scalars(
            select(NotificationTemplate)
            .where(
                NotificationTemplate.brand_id.is_(None), NotificationTemplate.client_id.is_(None)
            )
            .order_by(NotificationTemplate.name)
            .options(selectinload(NotificationTemplate.contents))
        )
    )
    brands = list(await session.scalars(select(Brand).order_by(Brand.name).options(*BRAND_LOAD)))
    clients = list(await session.scalars(select(Client).options(*CLIENT_LOAD)))
    names = await _names(session, brands, clients, servers, relays, templates)
    admins = await _brand_admins(session)
    clients.sort(key=lambda client: (names.brands[client.brand_id], client.name))
    return Document(
        currencies=[CurrencyDoc(code=c.code, name=c.name, symbol=c.symbol) for c in currencies],
        application_servers=[
            ApplicationServerDoc(
                name=s.name,
                address=s.address,
                stasis_app=s.stasis_app,
                sip_port=s.sip_port,
                drained=s.drained,
            )
            for s in servers
        ],
        media_relay_sets=[
            MediaRelaySetDoc(
                name=r.name,
                description=r.description,
                relays=[
                    MediaRelayDoc(control_url=m.control_url, weight=m.weight, enabled=m.enabled)
                    for m in r.relays
                ],
            )
            for r in relays
        ],
        emergency_numbers=[
            EmergencyNumberDoc(country=e.country, number=e.number, description=e.description)
            for e in emergency
        ],
        templates=[export_template(template) for template in templates],
        brands=[_brand(brand, names, admins.get(brand.id)) for brand in brands],
        clients=[export_client(client, names) for client in clients],
    )


async def _names(
    session: AsyncSession,
    brands: list[Brand],
    clients: list[Client],
    servers: list[ApplicationServer],
    relays: list[MediaRelaySet],
    templates: list[NotificationTemplate],
) -> Names:
    """Ids to the names a document uses, and the rows loaded apart from their clients."""
    names = Names()
    names.brands = {brand.id: brand.name for brand in brands}
    names.servers = {server.id: server.name for server in servers}
    names.relay_sets = {relay.id: relay.name for relay in relays}
    names.templates = {template.id: template.name for template in templates}
    for brand in brands:
        names.corporations |= {c.id: c.name for c in brand.corporations}
        names.carriers |= {c.id: c.name for c in brand.carriers}
        names.groups |= {g.id: g.name for g in brand.rating_plan_groups}
        names.templates |= {t.id: t.name for t in brand.templates}
    for client in clients:
        names.clients[client.id] = client.name
        names.templates |= {t.id: t.name for t in client.templates}
    names.ddis = defaultdict(list)
    for ddi in await session.scalars(select(Ddi).order_by(Ddi.e164)):
        names.ddis[ddi.client_id].append(ddi)
    names.ddi_numbers = {ddi.id: f"+{ddi.e164}" for rows in names.ddis.values() for ddi in rows}
    names.terminals = defaultdict(list)
    for terminal in await session.scalars(select(Terminal).order_by(Terminal.name)):
        names.terminals[terminal.client_id].append(terminal)
    names.admins = defaultdict(list)
    admins = select(ClientAdmin).order_by(ClientAdmin.username)
    for admin in await session.scalars(admins.options(selectinload(ClientAdmin.privileges))):
        names.admins[admin.client_id].append(admin)
    return names


async def _brand_admins(session: AsyncSession) -> dict[int, list[PlatformAdmin]]:
    """Each brand's administrators, by username (a brand without any has no entry)."""
    found: dict[int, list[PlatformAdmin]] = defaultdict(list)
    admins = (
        select(PlatformAdmin)
        .where(PlatformAdmin.role == "brand")
        .order_by(PlatformAdmin.username)
        .options(selectinload(PlatformAdmin.privileges))
    )
    for admin in await session.scalars(admins):
        assert admin.brand_id is not None  # a check constraint of the table
        found[admin.brand_id].append(admin)
    return found


def _brand(brand: Brand, names: Names, admins: list[PlatformAdmin] | None) -> BrandDoc:
    """The brand's node; ``admins`` only when it has some (so its ``admins`` key replaces
    them when loaded, and a brand without any reads as before they existed)."""
    routes = sorted(
        brand.outbound_routes,
        key=lambda r: (names.clients.get(r.client_id or 0, ""), r.prefix, r.priority),
    )
    return BrandDoc(
        name=brand.name,
        default_language=brand.default_language,
        default_timezone=brand.default_timezone,
        default_currency=brand.default_currency,
        default_country=brand.default_country,
        features=[feature.feature for feature in brand.features],
        corporations=[corporation.name for corporation in brand.corporations],
        carriers=[
            CarrierDoc(name=c.name, endpoint=c.endpoint, host=c.host, port=c.port)
            for c in brand.carriers
        ],
        outbound_routes=[
            OutboundRouteDoc(
                carrier=names.carriers[route.carrier_id],
                prefix=route.prefix,
                priority=route.priority,
                client=names.clients[route.client_id] if route.client_id else None,
            )
            for route in routes
        ],
        rating_plan_groups=[
            RatingPlanGroupDoc(
                name=group.name,
                currency=group.currency,
                rates=[_rate(rate) for rate in sorted(group.rates, key=_rate_order)],
            )
            for group in brand.rating_plan_groups
        ],
        templates=[export_template(template) for template in brand.templates],
        template_choices={c.type: names.templates[c.template_id] for c in brand.template_choices},
        # Given, even as None, the key would be there (``admins:`` alone is a key given).
        **({"admins": [export_admin(admin) for admin in admins]} if admins else {}),
    )


def _rate_order(rate: Rate) -> tuple[Any, ...]:
    return (
        rate.prefix,
        rate.time_from is not None,
        rate.time_from,
        rate.time_to,
        -rate.weekdays,
        -rate.weight,
    )


def _rate(rate: Rate) -> RateDoc:
    window = None
    if rate.time_from is not None or rate.weekdays != ALL_DAYS:
        window = TimeWindowDoc.model_validate(
            {
                "from": rate.time_from.strftime("%H:%M") if rate.time_from else None,
                "to": rate.time_to.strftime("%H:%M") if rate.time_to else None,
                "days": [day for bit, day in enumerate(WEEKDAYS) if rate.weekdays & (1 << bit)],
            }
        )
    return RateDoc(
        prefix=rate.prefix,
        destination=rate.destination,
        connection_fee=rate.connection_fee,
        price_per_minute=rate.price_per_minute,
        increments=(rate.increment_first, rate.increment_next),
        weight=rate.weight,
        time_window=window,
    )
