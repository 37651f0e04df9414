"""Write the clients of a checked document, in stages that respect the cyclic keys.

Clients point at their DDIs and rules, users at DDIs, rules and ACLs, DDIs at
users and extensions, rules at DDIs. So: client settings first, then users,
match lists, templates, logins and rating profiles; then terminals and
extensions; then DDIs; then ACLs and outgoing DDI rules; and last the
references that close the cycles (:mod:`models.provisioning.write_links`). Each
stage is flushed so the next one has ids. DDIs, terminals and logins are keyed
platform-wide, so they may move between listed clients and keep their ids.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from models.platform import NotificationTemplate
from models.provisioning.passwords import sip_ha1
from models.provisioning.schema_client import (
    ClientDoc,
    Document,
    InvoiceDoc,
    OnDemandRecordingDoc,
    TerminalDoc,
)
from models.provisioning.sync import Values, Written, first, second, sync, upsert
from models.provisioning.write_owned import admin_secrets, write_owned
from models.routing import CallAcl, MatchList, OutgoingDdiRule
from models.tenants import (
    Brand,
    Client,
    ClientAdmin,
    ClientAuthorizedSource,
    ClientFeature,
    ClientGeoipCountry,
    Ddi,
    Extension,
    Terminal,
)

CLIENT_LOAD = (
    selectinload(Client.features),
    selectinload(Client.authorized_sources),
    selectinload(Client.geoip_countries),
    selectinload(Client.users),
    selectinload(Client.extensions),
    selectinload(Client.match_lists).selectinload(MatchList.patterns),
    selectinload(Client.call_acls).selectinload(CallAcl.rules),
    selectinload(Client.outgoing_ddi_rules).selectinload(OutgoingDdiRule.patterns),
    selectinload(Client.rating_profiles),
    selectinload(Client.templates).selectinload(NotificationTemplate.contents),
    selectinload(Client.template_choices),
)


async def write_clients(session: AsyncSession, document: Document, written: Written) -> None:
    """Stages up to DDIs; :func:`models.provisioning.write_links.write_links` finishes."""
    clients = await _write_settings(session, document, written)
    ids = [client.id for client in clients.values()]
    terminals = {
        row.name: row
        for row in await session.scalars(select(Terminal).where(Terminal.client_id.in_(ids)))
    }
    ddis = {
        row.e164: row for row in await session.scalars(select(Ddi).where(Ddi.client_id.in_(ids)))
    }
    admins = {
        row.username: row
        for row in await session.scalars(
            select(ClientAdmin)
            .where(ClientAdmin.client_id.in_(ids))
            .options(selectinload(ClientAdmin.privileges))
        )
    }
    await _detach_terminals(session, document, clients, terminals)
    secrets = await admin_secrets([a for doc in document.clients for a in doc.admins], admins)
    for doc in document.clients:
        client = clients[(doc.brand, doc.name)]
        write_owned(session, doc, client, written, admins, secrets)
    await session.flush()
    for doc in document.clients:
        client = clients[(doc.brand, doc.name)]
        users = {user.name: user.id for user in client.users}
        for terminal in doc.terminals:
            values = {
                "name": terminal.name,
                "ha1": terminal_ha1(terminal, doc.sip_domain),
                "codecs": terminal.codecs,
                "client_id": client.id,
                "user_id": users.get(terminal.user or ""),
            }
            upsert(session, terminals, terminal.name, Terminal, values)
        wanted_extensions = [
            (
                extension.number,
                {
                    "number": extension.number,
                    "route": "user" if extension.user else "number",
                    "user_id": users[extension.user] if extension.user else None,
                    "target_number": extension.forward_to,
                },
            )
            for extension in doc.extensions
        ]
        sync(
            client.extensions,
            wanted_extensions,
            lambda row: row.number,
            first,
            Extension,
            second,
            keep_leftovers=written.waves[2],
        )
    await session.flush()
    for doc in document.clients:
        client = clients[(doc.brand, doc.name)]
        users = {user.name: user.id for user in client.users}
        extensions = {extension.number: extension.id for extension in client.extensions}
        carriers = {carrier.name: carrier.id for carrier in written.brands[doc.brand].carriers}
        for ddi in doc.ddis:
            values = {
                "client_id": client.id,
                "e164": ddi.e164[1:],
                "route": "user" if ddi.user else "extension",
                "user_id": users[ddi.user] if ddi.user else None,
                "extension_id": extensions[ddi.extension] if ddi.extension else None,
                "record_calls": ddi.record_calls,
                "language": ddi.language,
                "carrier_id": carriers[ddi.carrier] if ddi.carrier else None,
            }
            upsert(session, ddis, ddi.e164[1:], Ddi, values)
    await session.flush()
    wanted = {doc_key for doc in document.clients for doc_key in _movable_keys(doc)}
    written.waves[0].extend(row for name, row in admins.items() if ("admin", name) not in wanted)
    written.waves[1].extend(row for e164, row in ddis.items() if ("ddi", e164) not in wanted)
    written.waves[2].extend(
        row for name, row in terminals.items() if ("terminal", name) not in wanted
    )
    written.ddis = {e164: row.id for e164, row in ddis.items()}


def terminal_ha1(terminal: TerminalDoc, sip_domain: str) -> str:
    """The digest to store: given, or of the password with the client's domain as realm."""
    if terminal.ha1 is not None:
        return terminal.ha1
    return sip_ha1(terminal.name, sip_domain, str(terminal.password))


def _movable_keys(doc: ClientDoc) -> list[tuple[str, str]]:
    return (
        [("admin", admin.username) for admin in doc.admins]
        + [("ddi", ddi.e164[1:]) for ddi in doc.ddis]
        + [("terminal", terminal.name) for terminal in doc.terminals]
    )


async def _write_settings(
    session: AsyncSession, document: Document, written: Written
) -> dict[tuple[str, str], Client]:
    brand_names = {written.brands[doc.brand].id: doc.brand for doc in document.clients}
    listed = {(doc.brand, doc.name) for doc in document.clients}
    rows = await session.scalars(
        select(Client)
        .where(Client.brand_id.in_(brand_names), Client.name.in_({name for _, name in listed}))
        .options(*CLIENT_LOAD)
    )
    clients = {(brand_names[row.brand_id], row.name): row for row in rows}
    clients = {key: row for key, row in clients.items() if key in listed}
    for doc in document.clients:
        brand = written.brands[doc.brand]
        client = upsert(
            session, clients, (doc.brand, doc.name), Client, _settings(doc, brand, written)
        )
        sync(
            client.features,
            doc.features,
            lambda row: row.feature,
            str,
            ClientFeature,
            lambda f: {"feature": f},
        )
        sync(
            client.authorized_sources,
            doc.authorized_sources,
            lambda row: row.cidr,
            str,
            ClientAuthorizedSource,
            lambda cidr: {"cidr": cidr},
        )
        sync(
            client.geoip_countries,
            doc.geoip_countries,
            lambda row: row.country,
            str,
            ClientGeoipCountry,
            lambda country: {"country": country},
        )
    await session.flush()
    written.clients = clients
    return clients


def _settings(doc: ClientDoc, brand: Brand, written: Written) -> Values:
    invoice = doc.invoice or InvoiceDoc()
    recording = doc.on_demand_recording or OnDemandRecordingDoc()
    corporations = {corporation.name: corporation.id for corporation in brand.corporations}
    values: Values = {
        "brand_id": brand.id,
        "name": doc.name,
        "sip_domain": doc.sip_domain,
        "corporation_id": corporations[doc.corporation] if doc.corporation else None,
        "language": doc.language or brand.default_language,
        "timezone": doc.timezone or brand.default_timezone,
        "currency": doc.currency or brand.default_currency,
        "country": doc.country or brand.default_country,
        "media_relay_set_id": written.relay_sets.get(doc.media_relay_set or ""),
        "application_server_id": written.servers.get(doc.application_server or ""),
        "on_demand_recording": recording.mode,
        "on_demand_record_code": recording.code,
        "invoice_country": invoice.country,
    }
    values |= doc.model_dump(
        include={"billing_method", "max_calls", "filter_by_ip", "max_daily_usage"}
        | {"max_daily_usage_email", "distribute_method", "allow_recording_removal"}
        | {"low_balance_threshold", "low_balance_email"}
    )
    values |= invoice.model_dump(exclude={"country"})
    if doc.balance is not None:
        values["balance"] = doc.balance
    return values


async def _detach_terminals(
    session: AsyncSession,
    document: Document,
    clients: dict[tuple[str, str], Client],
    terminals: dict[str, Terminal],
) -> None:
    """Free users whose terminal changes: a user has at most one terminal (unique key)."""
    wanted = {
        terminal.name: ((doc.brand, doc.name), terminal.user)
        for doc in document.clients
        for terminal in doc.terminals
    }
    held = {user.id: (key, user.name) for key, client in clients.items() for user in client.users}
    changed = False
    for name, terminal in terminals.items():
        if terminal.user_id is not None and wanted.get(name) != held.get(terminal.user_id):
            terminal.user_id = None
            changed = True
    if changed:
        await session.flush()
