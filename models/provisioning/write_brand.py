"""Write the platform pieces and the brands of a checked document.

Currencies, application servers, media relay sets and generic templates are
upserted and never deleted. A listed brand is made to match the document: its
features, rates and template texts at once; its corporations, carriers, rating
plan groups and templates that the document dropped are deleted last, once no
client points at them (see :data:`models.provisioning.sync.WAVES`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from models.billing import Rate, RatingPlanGroup
from models.platform import (
    ApplicationServer,
    BrandNotificationTemplate,
    EmergencyNumber,
    MediaRelay,
    MediaRelaySet,
    NotificationTemplate,
    NotificationTemplateContent,
)
from models.provisioning.schema import CarrierDoc, RateDoc, TemplateDoc
from models.provisioning.schema_client import Document
from models.provisioning.sync import Values, Written, assign, first, fresh, second, sync, upsert
from models.routing import Carrier, OutboundRoute
from models.tenants import Brand, BrandFeature, Client, Corporation, Currency

BRAND_LOAD = (
    selectinload(Brand.features),
    selectinload(Brand.corporations),
    selectinload(Brand.carriers),
    selectinload(Brand.outbound_routes),
    selectinload(Brand.rating_plan_groups).selectinload(RatingPlanGroup.rates),
    selectinload(Brand.templates).selectinload(NotificationTemplate.contents),
    selectinload(Brand.template_choices),
)


def sync_contents(template: NotificationTemplate, doc: TemplateDoc) -> None:
    sync(
        template.contents,
        doc.contents,
        lambda row: row.language,
        lambda item: item.language,
        NotificationTemplateContent,
        lambda item: item.model_dump(),
    )


def template_values(doc: TemplateDoc) -> Values:
    return {"name": doc.name, "type": doc.type}


async def write_platform(session: AsyncSession, document: Document, written: Written) -> None:
    currencies = {row.code: row for row in await session.scalars(select(Currency))}
    for currency in document.currencies:
        upsert(session, currencies, currency.code, Currency, currency.model_dump())
    servers = {row.name: row for row in await session.scalars(select(ApplicationServer))}
    for server in document.application_servers:
        upsert(session, servers, server.name, ApplicationServer, server.model_dump())
    relay_rows = await session.scalars(
        select(MediaRelaySet).options(selectinload(MediaRelaySet.relays))
    )
    relays = {row.name: row for row in relay_rows}
    for relay_set in document.media_relay_sets:
        set_row = upsert(
            session, relays, relay_set.name, MediaRelaySet, relay_set.model_dump(exclude={"relays"})
        )
        sync(
            set_row.relays,
            relay_set.relays,
            lambda relay: relay.control_url,
            lambda item: item.control_url,
            MediaRelay,
            lambda item: item.model_dump(),
        )
    emergency = {
        (row.country, row.number): row for row in await session.scalars(select(EmergencyNumber))
    }
    for number in document.emergency_numbers:
        key = (number.country, number.number)
        upsert(session, emergency, key, EmergencyNumber, number.model_dump())
    generic_rows = await session.scalars(
        select(NotificationTemplate)
        .where(NotificationTemplate.brand_id.is_(None), NotificationTemplate.client_id.is_(None))
        .options(selectinload(NotificationTemplate.contents))
    )
    generic = {row.name: row for row in generic_rows}
    for template in document.templates:
        row = upsert(
            session, generic, template.name, NotificationTemplate, template_values(template)
        )
        sync_contents(row, template)
    await session.flush()
    written.servers = {name: row.id for name, row in servers.items()}
    written.relay_sets = {name: row.id for name, row in relays.items()}
    written.generic_templates = generic


async def write_brands(session: AsyncSession, document: Document, written: Written) -> None:
    """Upsert listed brands; load the brands clients refer to. Routes come later."""
    names = {brand.name for brand in document.brands} | {c.brand for c in document.clients}
    rows = await session.scalars(select(Brand).where(Brand.name.in_(names)).options(*BRAND_LOAD))
    brands = {row.name: row for row in rows}
    late = written.waves[4]
    for doc in document.brands:
        values = doc.model_dump(
            include={"name", "default_language", "default_timezone"}
            | {"default_currency", "default_country"}
        )
        brand = upsert(session, brands, doc.name, Brand, values)
        sync(brand.features, doc.features, _feature, str, BrandFeature, _feature_values)
        sync(
            brand.corporations,
            doc.corporations,
            _name,
            str,
            Corporation,
            _name_values,
            keep_leftovers=late,
        )
        _sync_carriers(brand, doc.carriers, late)
        groups = sync(
            brand.rating_plan_groups,
            doc.rating_plan_groups,
            _name,
            _name,
            RatingPlanGroup,
            lambda item: {"name": item.name, "currency": item.currency},
            keep_leftovers=late,
        )
        for group in doc.rating_plan_groups:
            sync(
                groups[group.name].rates,
                group.rates,
                _stored_rate_key,
                RateDoc.key,
                Rate,
                _rate_values,
            )
        templates = sync(
            brand.templates,
            doc.templates,
            _name,
            _name,
            NotificationTemplate,
            template_values,
            keep_leftovers=late,
        )
        for template in doc.templates:
            sync_contents(templates[template.name], template)
    await session.flush()
    for doc in document.brands:
        brand = brands[doc.name]
        own = {template.name: template for template in brand.templates}
        choices = {
            kind: (own.get(name) or written.generic_templates[name]).id
            for kind, name in doc.template_choices.items()
        }
        sync(
            brand.template_choices,
            choices.items(),
            lambda row: row.type,
            first,
            BrandNotificationTemplate,
            lambda item: {"type": item[0], "template_id": item[1]},
        )
    written.brands = brands


async def write_routes(session: AsyncSession, document: Document, written: Written) -> None:
    """Outbound routes, once every client they may name exists."""
    ids = {written.brands[doc.name].id for doc in document.brands}
    clients = await session.execute(
        select(Client.brand_id, Client.name, Client.id).where(Client.brand_id.in_(ids))
    )
    client_ids = {(brand_id, name): client_id for brand_id, name, client_id in clients}
    for doc in document.brands:
        brand = written.brands[doc.name]
        carriers = {carrier.name: carrier.id for carrier in brand.carriers}
        routes: list[tuple[tuple[int | None, str, int], Values]] = []
        for route in doc.outbound_routes:
            client_id = client_ids[(brand.id, route.client)] if route.client else None
            values = {
                "client_id": client_id,
                "carrier_id": carriers[route.carrier],
                "prefix": route.prefix,
                "priority": route.priority,
            }
            routes.append(((client_id, route.prefix, route.priority), values))
        sync(
            brand.outbound_routes,
            routes,
            lambda row: (row.client_id, row.prefix, row.priority),
            first,
            OutboundRoute,
            second,
        )
    await session.flush()


def _sync_carriers(brand: Brand, docs: list[CarrierDoc], late: list[Any]) -> None:
    """By name; a carrier renamed with the same endpoint keeps its row (endpoints are unique)."""
    by_name = {carrier.name: carrier for carrier in brand.carriers}
    wanted = {doc.name for doc in docs}
    by_endpoint = {c.endpoint: c for c in brand.carriers if c.name not in wanted}
    for doc in docs:
        row = by_name.pop(doc.name, None) or by_endpoint.pop(doc.endpoint, None)
        if row is None:
            brand.carriers.append(fresh(Carrier, doc.model_dump()))
        else:
            by_name.pop(row.name, None)
            assign(row, doc.model_dump())
    late.extend(by_name.values())


def _feature(row: BrandFeature) -> str:
    return row.feature


def _feature_values(feature: str) -> Values:
    return {"feature": feature}


def _name(row: Any) -> str:
    return str(row.name)


def _name_values(name: str) -> Values:
    return {"name": name}


def _stored_rate_key(row: Rate) -> tuple[object, ...]:
    """:meth:`RateDoc.key` of a stored rate: prefix, time window and weight."""
    return (row.prefix, row.time_from, row.time_to, row.weekdays, row.weight)


def _rate_values(doc: RateDoc) -> Values:
    _, time_from, time_to, weekdays, _ = doc.key()
    return {
        "prefix": doc.prefix,
        "destination": doc.destination,
        "connection_fee": doc.connection_fee,
        "price_per_minute": doc.price_per_minute,
        "increment_first": doc.increments[0],
        "increment_next": doc.increments[1],
        "weight": doc.weight,
        "time_from": time_from,
        "time_to": time_to,
        "weekdays": weekdays,
    }
