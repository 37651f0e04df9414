"""Cross-reference checks of a whole document against itself and the database.

:func:`check_document` runs after the structure is valid and before anything is
written. It raises :class:`~dialplan.errors.ProvisioningError` for the first
problem, naming its path (``clients[2].extensions[0].number``). This module checks
the platform, the brands and what must be unique across clients (SIP domains,
DDIs, terminal names, logins, corporation extensions); one client's own
references are checked by :mod:`models.provisioning.checks_client`.
"""

from __future__ import annotations

from collections.abc import Sequence

from dialplan.errors import shown as quoted
from models.provisioning.checks_admins import GOD_OR_BRAND, check_brand_admins
from models.provisioning.checks_client import (
    ClientContext,
    check_choices,
    check_client,
    check_templates,
    fail,
    unique,
)
from models.provisioning.schema import BrandDoc, RateDoc
from models.provisioning.schema_client import ClientDoc, Document
from models.provisioning.world import BrandFacts, ClientFacts, World, group_by_brand


def brand_facts(brand: BrandDoc) -> BrandFacts:
    return BrandFacts(
        brand.name,
        brand.default_language,
        brand.default_timezone,
        brand.default_currency,
        brand.default_country,
        features=set(brand.features),
        corporations=set(brand.corporations),
        carriers={carrier.name for carrier in brand.carriers},
        rating_groups={group.name: group.currency for group in brand.rating_plan_groups},
        templates={template.name: template.type for template in brand.templates},
    )


def check_document(document: Document, world: World) -> None:
    """Raise ProvisioningError for the first inconsistency; return when the document loads."""
    _check_platform(document, world)
    brands = dict(world.brands)
    brands.update({brand.name: brand_facts(brand) for brand in document.brands})
    listed = {(client.brand, client.name) for client in document.clients}
    unlisted = [c for c in world.clients.values() if c.key not in listed]
    for index, client in enumerate(document.clients):
        if client.brand not in brands:  # first: it explains any later "unknown client"
            fail(f"clients[{index}].brand", f"unknown brand {client.brand!r}")
    _check_brands(document, world, unlisted)
    platform_logins = check_brand_admins(document, world, unlisted)
    unique(
        document.clients,
        lambda c: (c.brand, c.name),
        "clients",
        "name",
        "client (brand, name)",
    )
    context = ClientContext(
        brands=brands,
        currencies=world.currencies | {c.code for c in document.currencies},
        application_servers=world.application_servers
        | {s.name for s in document.application_servers},
        media_relay_sets=world.media_relay_sets | {s.name for s in document.media_relay_sets},
        generic_templates={
            **world.generic_templates,
            **{t.name: t.type for t in document.templates},
        },
        ddi_owners=_ddi_owners(document, world),
    )
    for index, client in enumerate(document.clients):
        check_client(index, client, context)
    _check_across_clients(document.clients, world, unlisted, platform_logins)
    _check_digests(document.clients, world)


def _ddi_owners(document: Document, world: World) -> dict[str, str]:
    owners = {f"+{e164}": world.clients[client_id].name for e164, client_id in world.ddis.items()}
    for client in document.clients:
        owners.update({ddi.e164: client.name for ddi in client.ddis})
    return owners


def _check_platform(document: Document, world: World) -> None:
    unique(document.currencies, lambda c: c.code, "currencies", "code", "currency")
    unique(
        document.application_servers,
        lambda s: s.name,
        "application_servers",
        "name",
        "application server",
    )
    unique(
        document.media_relay_sets,
        lambda s: s.name,
        "media_relay_sets",
        "name",
        "media relay set",
    )
    unique(
        document.emergency_numbers,
        lambda e: (e.country, e.number),
        "emergency_numbers",
        "number",
        "emergency number (country, number)",
    )
    for index, relay_set in enumerate(document.media_relay_sets):
        unique(
            relay_set.relays,
            lambda r: r.control_url,
            f"media_relay_sets[{index}].relays",
            "control_url",
            "media relay",
        )
    check_templates(document.templates, "templates")


def _check_brands(document: Document, world: World, unlisted: list[ClientFacts]) -> None:
    unique(document.brands, lambda b: b.name, "brands", "name", "brand")
    currencies = world.currencies | {c.code for c in document.currencies}
    generic = {**world.generic_templates, **{t.name: t.type for t in document.templates}}
    clients_by_brand = {
        brand: {c.name for c in clients} for brand, clients in group_by_brand(world).items()
    }
    for client in document.clients:
        clients_by_brand.setdefault(client.brand, set()).add(client.name)
    endpoints: dict[str, str] = {}
    for index, brand in enumerate(document.brands):
        path = f"brands[{index}]"
        if brand.default_currency not in currencies:
            fail(f"{path}.default_currency", f"unknown currency {brand.default_currency!r}")
        unique(brand.features, lambda f: f, f"{path}.features", "", "feature")
        unique(brand.corporations, lambda c: c, f"{path}.corporations", "", "corporation")
        unique(brand.carriers, lambda c: c.name, f"{path}.carriers", "name", "carrier")
        for number, carrier in enumerate(brand.carriers):
            here = f"{path}.carriers[{number}].endpoint"
            if carrier.endpoint in endpoints:
                fail(
                    here,
                    f"endpoint {carrier.endpoint!r} is already used at "
                    f"{endpoints[carrier.endpoint]}",
                )
            endpoints[carrier.endpoint] = here
            owner = world.carrier_endpoints.get(carrier.endpoint)
            if (
                owner
                and owner[0] != brand.name
                and owner[0] not in {b.name for b in document.brands}
            ):
                fail(
                    here,
                    f"endpoint {carrier.endpoint!r} is used by carrier {owner[1]!r} "
                    f"of brand {owner[0]!r}",
                )
        carriers = {carrier.name for carrier in brand.carriers}
        routes = brand.outbound_routes
        unique(
            routes,
            lambda r: (r.client, r.prefix, r.priority),
            f"{path}.outbound_routes",
            "",
            "route (client, prefix, priority)",
        )
        for number, route in enumerate(routes):
            here = f"{path}.outbound_routes[{number}]"
            if route.carrier not in carriers:
                fail(
                    f"{here}.carrier", f"unknown carrier {route.carrier!r} of brand {brand.name!r}"
                )
            if route.client is not None and route.client not in clients_by_brand.get(
                brand.name, set()
            ):
                fail(f"{here}.client", f"unknown client {route.client!r} of brand {brand.name!r}")
        _check_rating_groups(brand, path, currencies)
        check_templates(brand.templates, f"{path}.templates")
        own = {template.name: template.type for template in brand.templates}
        check_choices(brand.template_choices, f"{path}.template_choices", own, generic)
        _check_still_used(brand, path, [c for c in unlisted if c.brand == brand.name])


def _check_rating_groups(brand: BrandDoc, path: str, currencies: set[str]) -> None:
    groups = brand.rating_plan_groups
    unique(groups, lambda g: g.name, f"{path}.rating_plan_groups", "name", "group")
    for index, group in enumerate(groups):
        here = f"{path}.rating_plan_groups[{index}]"
        if group.currency not in currencies:
            fail(f"{here}.currency", f"unknown currency {group.currency!r}")
        _unique_rates(group.rates, f"{here}.rates")


def _unique_rates(rates: Sequence[RateDoc], path: str) -> None:
    """A rate is identified by prefix, time window and weight (DESIGN §3.7); the error
    reads as the rate was written (days and times, not the stored bitmask)."""
    seen: dict[tuple[object, ...], int] = {}
    for index, rate in enumerate(rates):
        first = seen.setdefault(rate.key(), index)
        if first != index:
            fail(
                f"{path}[{index}]",
                f"duplicate rate {rate.describe()}, already at {path}[{first}]",
            )


def _check_still_used(brand: BrandDoc, path: str, unlisted: list[ClientFacts]) -> None:
    """A brand item the document drops must not be in use by a client it does not list."""
    facts = brand_facts(brand)
    for client in unlisted:
        corporation = {client.corporation} if client.corporation else set()
        uses: dict[str, set[str]] = {
            "features": client.features - facts.features,
            "corporations": corporation - facts.corporations,
            "rating_plan_groups": client.rating_groups - set(facts.rating_groups),
            "templates": client.brand_templates - set(facts.templates),
            "carriers": client.carriers - facts.carriers,
        }
        for section, missing in uses.items():
            if missing:
                item = sorted(missing)[0]
                fail(
                    f"{path}.{section}",
                    f"{item!r} is still used by client {client.name!r}, which this document "
                    "does not list; list the client too or keep the item",
                )


def _check_across_clients(
    clients: Sequence[ClientDoc],
    world: World,
    unlisted: list[ClientFacts],
    platform_logins: set[str],
) -> None:
    """SIP domains, DDIs, terminal names and logins are unique on the platform; a client
    admin takes no login of a god or brand administrator (``platform_logins``)."""
    others = {facts.id: facts.name for facts in unlisted}
    kinds = {
        "domain": ("the domain", {f.sip_domain: f.id for f in unlisted}),
        "ddi": ("a DDI", world.ddis),
        "terminal": ("a terminal", world.terminals),
        "admin": ("a login", world.admins),
    }
    owners: dict[str, dict[str, str]] = {kind: {} for kind in kinds}
    for index, client in enumerate(clients):
        entries = [("domain", "sip_domain", client.sip_domain, client.sip_domain)]
        entries += [
            ("ddi", f"ddis[{i}].e164", d.e164[1:], d.e164) for i, d in enumerate(client.ddis)
        ]
        entries += [
            ("terminal", f"terminals[{i}].name", t.name, t.name)
            for i, t in enumerate(client.terminals)
        ]
        entries += [
            ("admin", f"admins[{i}].username", a.username, a.username)
            for i, a in enumerate(client.admins)
        ]
        for kind, where, key, shown in entries:
            if kind == "admin" and key in platform_logins:
                # One login namespace: a name must say which administrator logs in.
                fail(f"clients[{index}].{where}", f"{shown} is already {GOD_OR_BRAND}")
            what, stored = kinds[kind]
            owner = owners[kind].get(key) or others.get(stored.get(key, 0))
            if owner is not None:
                fail(f"clients[{index}].{where}", f"{shown} is already {what} of client {owner!r}")
            owners[kind][key] = client.name
    _check_corporations(clients, unlisted)


def _check_digests(clients: Sequence[ClientDoc], world: World) -> None:
    """A stored HA1 holds its realm, the SIP domain: when a terminal's domain changes (its
    client's domain changed, or it moved to another client), the document must give its
    password again -- an unchanged ``ha1`` would no longer let the terminal log in."""
    for index, client in enumerate(clients):
        for number, terminal in enumerate(client.terminals):
            owner = world.terminals.get(terminal.name)
            if owner is None or terminal.ha1 != world.terminal_digests.get(terminal.name):
                continue
            old = world.clients[owner].sip_domain
            if old != client.sip_domain:
                fail(
                    f"clients[{index}].terminals[{number}].ha1",
                    f"was computed for SIP domain {quoted(old)}, and the terminal's domain is "
                    f"now {quoted(client.sip_domain)}: give its 'password' instead of 'ha1'",
                )


def _check_corporations(clients: Sequence[ClientDoc], unlisted: list[ClientFacts]) -> None:
    """Within a corporation an extension number belongs to one client, so that
    inter-VPBX dialling is unambiguous."""
    owners: dict[tuple[str, str, str], str] = {}
    for facts in unlisted:
        if facts.corporation is not None:
            for number in facts.extensions:
                owners[(facts.brand, facts.corporation, number)] = facts.name
    for index, client in enumerate(clients):
        if client.corporation is None:
            continue
        for rank, extension in enumerate(client.extensions):
            key = (client.brand, client.corporation, extension.number)
            if key in owners:
                fail(
                    f"clients[{index}].extensions[{rank}].number",
                    f"{extension.number} is already an extension of client {owners[key]!r} "
                    f"in corporation {client.corporation!r}",
                )
        for extension in client.extensions:
            owners[(client.brand, client.corporation, extension.number)] = client.name
