"""Checks of one client's own references, and the helpers every check uses.

A client may only refer to its own users, DDIs, extensions, match lists, ACLs and
outgoing DDI rules, and to what its brand offers (features, corporations,
carriers, rating plan groups, templates). The first problem raises
:class:`~dialplan.errors.ProvisioningError` with its path.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import NoReturn, TypeVar

from dialplan.errors import ProvisioningError
from models.provisioning.schema import AdminDoc, TemplateDoc
from models.provisioning.schema_client import ClientDoc, DdiRuleDoc
from models.provisioning.world import BrandFacts

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


def fail(path: str, message: str) -> NoReturn:
    raise ProvisioningError(path, message)


def unique(
    items: Sequence[T], key: Callable[[T], K], at: str, field: str, what: str
) -> dict[K, int]:
    """Index of each key; a second item with the same key is an error at ``at[i].field``."""

    def path(index: int) -> str:
        return f"{at}[{index}].{field}" if field else f"{at}[{index}]"

    seen: dict[K, int] = {}
    for index, item in enumerate(items):
        value = key(item)
        if value in seen:
            fail(path(index), f"duplicate {what} {value!r}, already at {path(seen[value])}")
        seen[value] = index
    return seen


def check_admins(admins: Sequence[AdminDoc], path: str) -> None:
    """One list of admins (a client's or a brand's): logins and denied sections unique."""
    unique(admins, lambda a: a.username, path, "username", "login")
    for number, admin in enumerate(admins):
        where = f"{path}[{number}].restricted_sections"
        unique(admin.restricted_sections, lambda s: s, where, "", "section")


def check_templates(templates: Sequence[TemplateDoc], path: str) -> None:
    unique(templates, lambda t: t.name, f"{path}", "name", "template")
    for index, template in enumerate(templates):
        here = f"{path}[{index}].contents"
        unique(template.contents, lambda c: c.language, f"{here}", "language", "language")


def check_choices(choices: dict[str, str], path: str, *scopes: dict[str, str]) -> None:
    """Each ``type: name`` names a template of that type in the first scope that has it."""
    for kind, name in choices.items():
        found = next((scope[name] for scope in scopes if name in scope), None)
        if found is None:
            fail(f"{path}.{kind}", f"unknown template {name!r}")
        if found != kind:
            fail(f"{path}.{kind}", f"template {name!r} is of type {found!r}, not {kind!r}")


@dataclass(frozen=True)
class ClientContext:
    """What a client may refer to outside itself."""

    brands: dict[str, BrandFacts]
    currencies: set[str]
    application_servers: set[str]
    media_relay_sets: set[str]
    generic_templates: dict[str, str]
    ddi_owners: dict[str, str]  # "+E164" -> client name, from the document and the database


def check_client(index: int, client: ClientDoc, context: ClientContext) -> None:
    path = f"clients[{index}]"
    brand = context.brands.get(client.brand)
    if brand is None:
        fail(f"{path}.brand", f"unknown brand {client.brand!r}")
    _check_settings(path, client, brand, context)
    _check_people(path, client)
    _check_numbers(path, client, brand, context)
    _check_lists(path, client)
    _check_rules(path, client, context)
    _check_billing(path, client, brand)
    check_admins(client.admins, f"{path}.admins")
    check_templates(client.templates, f"{path}.templates")
    own = {template.name: template.type for template in client.templates}
    scopes = (own, brand.templates, context.generic_templates)
    check_choices(client.template_choices, f"{path}.template_choices", *scopes)


def _check_settings(
    path: str, client: ClientDoc, brand: BrandFacts, context: ClientContext
) -> None:
    if client.corporation is not None and client.corporation not in brand.corporations:
        fail(
            f"{path}.corporation",
            f"unknown corporation {client.corporation!r} of brand {brand.name!r}",
        )
    currency = client.currency or brand.currency
    if currency not in context.currencies:
        fail(f"{path}.currency", f"unknown currency {currency!r}")
    unique(client.features, lambda f: f, f"{path}.features", "", "feature")
    for number, feature in enumerate(client.features):
        if feature not in brand.features:
            fail(
                f"{path}.features[{number}]",
                f"feature {feature!r} is not enabled on brand {brand.name!r}",
            )
    if client.distribute_method == "rr":
        for feature in ("queues", "conferences"):
            if feature in client.features:
                fail(
                    f"{path}.distribute_method",
                    f"'rr' spreads calls over servers, so it cannot be used with feature "
                    f"{feature!r}; use 'hash'",
                )
    if client.distribute_method == "static" and client.application_server is None:
        fail(f"{path}.application_server", "is required when distribute_method is 'static'")
    server = client.application_server
    if server is not None and server not in context.application_servers:
        fail(f"{path}.application_server", f"unknown application server {server!r}")
    relays = client.media_relay_set
    if relays is not None and relays not in context.media_relay_sets:
        fail(f"{path}.media_relay_set", f"unknown media relay set {relays!r}")
    recording = client.on_demand_recording
    if recording and recording.mode != "off" and "recordings" not in client.features:
        fail(f"{path}.on_demand_recording.mode", "needs the client feature 'recordings'")
    unique(
        client.authorized_sources,
        lambda s: s,
        f"{path}.authorized_sources",
        "",
        "network",
    )
    unique(client.geoip_countries, lambda c: c, f"{path}.geoip_countries", "", "country")


def _check_people(path: str, client: ClientDoc) -> None:
    users = unique(client.users, lambda u: u.name, f"{path}.users", "name", "user")
    unique(client.terminals, lambda t: t.name, f"{path}.terminals", "name", "terminal")
    holders: dict[str, str] = {}
    for number, terminal in enumerate(client.terminals):
        if terminal.user is None:
            continue
        if terminal.user not in users:
            fail(f"{path}.terminals[{number}].user", f"unknown user {terminal.user!r}")
        if terminal.user in holders:
            fail(
                f"{path}.terminals[{number}].user",
                f"user {terminal.user!r} already has terminal {holders[terminal.user]!r}",
            )
        holders[terminal.user] = terminal.name
    unique(
        client.extensions,
        lambda e: e.number,
        f"{path}.extensions",
        "number",
        "extension",
    )
    for number, extension in enumerate(client.extensions):
        if extension.user is not None and extension.user not in users:
            fail(f"{path}.extensions[{number}].user", f"unknown user {extension.user!r}")


def _check_numbers(path: str, client: ClientDoc, brand: BrandFacts, context: ClientContext) -> None:
    users = {user.name for user in client.users}
    extensions = {extension.number for extension in client.extensions}
    unique(client.ddis, lambda d: d.e164, f"{path}.ddis", "e164", "DDI")
    for number, ddi in enumerate(client.ddis):
        here = f"{path}.ddis[{number}]"
        if ddi.user is not None and ddi.user not in users:
            fail(f"{here}.user", f"unknown user {ddi.user!r}")
        if ddi.extension is not None and ddi.extension not in extensions:
            fail(f"{here}.extension", f"unknown extension {ddi.extension!r}")
        if ddi.carrier is not None and ddi.carrier not in brand.carriers:
            fail(f"{here}.carrier", f"unknown carrier {ddi.carrier!r} of brand {brand.name!r}")
    own = {ddi.e164 for ddi in client.ddis}
    references = [(f"{path}.outgoing_ddi", client.outgoing_ddi)]
    references += [
        (f"{path}.users[{i}].outgoing_ddi", u.outgoing_ddi) for i, u in enumerate(client.users)
    ]
    for rule_path, rule in _rules(path, client):
        references.append((f"{rule_path}.forced_ddi", rule.forced_ddi))
        for number, pattern in enumerate(rule.patterns):
            references.append((f"{rule_path}.patterns[{number}].forced_ddi", pattern.forced_ddi))
    for where, e164 in references:
        if e164 is None or e164 in own:
            continue
        owner = context.ddi_owners.get(e164)
        if owner is not None and owner != client.name:
            fail(where, f"{e164} is a DDI of client {owner!r}, not of this client")
        fail(where, f"{e164} is not a DDI of this client")


def _check_lists(path: str, client: ClientDoc) -> None:
    lists = client.match_lists
    unique(lists, lambda m: m.name, f"{path}.match_lists", "name", "match list")
    for number, match_list in enumerate(lists):
        here = f"{path}.match_lists[{number}].patterns"
        unique(match_list.patterns, lambda p: (p.number, p.regexp), f"{here}", "", "pattern")
    names = {match_list.name for match_list in lists}
    acls = client.call_acls
    unique(acls, lambda a: a.name, f"{path}.call_acls", "name", "call ACL")
    for number, acl in enumerate(acls):
        here = f"{path}.call_acls[{number}].rules"
        unique(acl.rules, lambda r: r.priority, f"{here}", "priority", "priority")
        for rank, rule in enumerate(acl.rules):
            if rule.match_list not in names:
                fail(f"{here}[{rank}].match_list", f"unknown match list {rule.match_list!r}")
    acl_names = {acl.name for acl in acls}
    for number, user in enumerate(client.users):
        if user.call_acl is not None and user.call_acl not in acl_names:
            fail(f"{path}.users[{number}].call_acl", f"unknown call ACL {user.call_acl!r}")


def _rules(path: str, client: ClientDoc) -> list[tuple[str, DdiRuleDoc]]:
    found = (
        [(f"{path}.outgoing_ddi_rule", client.outgoing_ddi_rule)]
        if client.outgoing_ddi_rule
        else []
    )
    return found + [
        (f"{path}.outgoing_ddi_rules[{i}]", r) for i, r in enumerate(client.outgoing_ddi_rules)
    ]


def _check_rules(path: str, client: ClientDoc, context: ClientContext) -> None:
    rules = _rules(path, client)
    seen: dict[str, str] = {}
    for rule_path, rule in rules:
        if rule.name in seen:
            fail(f"{rule_path}.name", f"duplicate rule {rule.name!r}, already at {seen[rule.name]}")
        seen[rule.name] = f"{rule_path}.name"
    lists = {match_list.name for match_list in client.match_lists}
    for rule_path, rule in rules:
        if rule.default_action == "keep" and rule.forced_ddi is not None:
            fail(f"{rule_path}.forced_ddi", "is only used with default_action 'force'")
        here = f"{rule_path}.patterns"
        unique(rule.patterns, lambda p: p.priority, f"{here}", "priority", "priority")
        for number, pattern in enumerate(rule.patterns):
            if pattern.destination is not None and pattern.destination not in lists:
                fail(f"{here}[{number}].destination", f"unknown match list {pattern.destination!r}")
            if pattern.action == "keep" and pattern.forced_ddi is not None:
                fail(f"{here}[{number}].forced_ddi", "is only used with action 'force'")
    names = {rule.name for _, rule in rules}
    for number, user in enumerate(client.users):
        if user.outgoing_ddi_rule is not None and user.outgoing_ddi_rule not in names:
            fail(
                f"{path}.users[{number}].outgoing_ddi_rule",
                f"unknown outgoing DDI rule {user.outgoing_ddi_rule!r}",
            )


def _check_billing(path: str, client: ClientDoc, brand: BrandFacts) -> None:
    if client.low_balance_threshold is not None and client.billing_method not in (
        "prepaid",
        "pseudoprepaid",
    ):
        fail(
            f"{path}.low_balance_threshold",
            f"only a prepaid or pseudoprepaid client has a balance to watch,"
            f" not a {client.billing_method!r} one",
        )
    profiles = client.rating_profiles
    unique(
        profiles,
        lambda p: p.activation_time,
        f"{path}.rating_profiles",
        "activation_time",
        "activation time",
    )
    currency = client.currency or brand.currency
    for number, profile in enumerate(profiles):
        here = f"{path}.rating_profiles[{number}].rating_plan_group"
        group = brand.rating_groups.get(profile.rating_plan_group)
        if group is None:
            fail(
                here,
                f"unknown rating plan group {profile.rating_plan_group!r} of brand {brand.name!r}",
            )
        if group != currency:
            fail(
                here,
                f"group {profile.rating_plan_group!r} prices in {group}, "
                f"the client pays in {currency}",
            )
