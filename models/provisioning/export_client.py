"""One stored client as a document node (see :mod:`models.provisioning.export`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from models.admins import SECTIONS, VERBS, PlatformAdmin
from models.platform import NotificationTemplate
from models.provisioning.schema import AdminDoc, TemplateContentDoc, TemplateDoc
from models.provisioning.schema_client import (
    CallAclDoc,
    CallAclRuleDoc,
    ClientDoc,
    DdiDoc,
    DdiRuleDoc,
    DdiRulePatternDoc,
    ExtensionDoc,
    InvoiceDoc,
    MatchListDoc,
    MatchPatternDoc,
    OnDemandRecordingDoc,
    RatingProfileDoc,
    TerminalDoc,
    UserDoc,
)
from models.routing import OutgoingDdiRule
from models.tenants import Client, ClientAdmin, Ddi, Terminal
from models.vocabulary import ADMIN_SECTIONS


@dataclass
class Names:
    """Ids to names across the database, and the rows kept apart from their clients."""

    brands: dict[int, str] = field(default_factory=dict)
    clients: dict[int, str] = field(default_factory=dict)
    servers: dict[int, str] = field(default_factory=dict)
    relay_sets: dict[int, str] = field(default_factory=dict)
    corporations: dict[int, str] = field(default_factory=dict)
    carriers: dict[int, str] = field(default_factory=dict)
    groups: dict[int, str] = field(default_factory=dict)
    templates: dict[int, str] = field(default_factory=dict)
    ddi_numbers: dict[int, str] = field(default_factory=dict)  # id -> "+E164"
    ddis: dict[int, list[Ddi]] = field(default_factory=dict)  # by client id
    terminals: dict[int, list[Terminal]] = field(default_factory=dict)
    admins: dict[int, list[ClientAdmin]] = field(default_factory=dict)

    def ddi(self, ddi_id: int | None) -> str | None:
        return self.ddi_numbers[ddi_id] if ddi_id is not None else None


def export_template(template: NotificationTemplate) -> TemplateDoc:
    return TemplateDoc(
        name=template.name,
        type=template.type,
        contents=[
            TemplateContentDoc(
                language=c.language,
                from_name=c.from_name,
                from_address=c.from_address,
                subject=c.subject,
                body=c.body,
                body_type=c.body_type,
            )
            for c in template.contents
        ],
    )


def export_client(client: Client, names: Names) -> ClientDoc:
    users = {user.id: user.name for user in client.users}
    extensions = {extension.id: extension.number for extension in client.extensions}
    lists = {match_list.id: match_list.name for match_list in client.match_lists}
    acls = {acl.id: acl.name for acl in client.call_acls}
    rules = {rule.id: rule.name for rule in client.outgoing_ddi_rules}
    own_rule = next(
        (r for r in client.outgoing_ddi_rules if r.id == client.outgoing_ddi_rule_id), None
    )
    invoice = InvoiceDoc(
        tax_id=client.tax_id,
        postal_address=client.postal_address,
        postal_code=client.postal_code,
        town=client.town,
        province=client.province,
        country=client.invoice_country,
        show_invoices=client.show_invoices,
        show_rating_profiles=client.show_rating_profiles,
        show_external_call_prices=client.show_external_call_prices,
    )
    recording = OnDemandRecordingDoc(
        mode=client.on_demand_recording, code=client.on_demand_record_code
    )
    return ClientDoc(
        name=client.name,
        brand=names.brands[client.brand_id],
        sip_domain=client.sip_domain,
        corporation=names.corporations[client.corporation_id] if client.corporation_id else None,
        language=client.language,
        timezone=client.timezone,
        currency=client.currency,
        country=client.country,
        features=[feature.feature for feature in client.features],
        billing_method=client.billing_method,
        balance=client.balance if client.balance else None,
        max_calls=client.max_calls,
        filter_by_ip=client.filter_by_ip,
        authorized_sources=[source.cidr for source in client.authorized_sources],
        geoip_countries=[country.country for country in client.geoip_countries],
        max_daily_usage=client.max_daily_usage,
        max_daily_usage_email=client.max_daily_usage_email,
        low_balance_threshold=client.low_balance_threshold,
        low_balance_email=client.low_balance_email,
        invoice=invoice if invoice != InvoiceDoc() else None,
        outgoing_ddi=names.ddi(client.outgoing_ddi_id),
        outgoing_ddi_rule=_rule(own_rule, lists, names) if own_rule else None,
        outgoing_ddi_rules=[
            _rule(rule, lists, names) for rule in client.outgoing_ddi_rules if rule is not own_rule
        ],
        media_relay_set=names.relay_sets.get(client.media_relay_set_id or 0),
        distribute_method=client.distribute_method,
        application_server=names.servers.get(client.application_server_id or 0),
        on_demand_recording=recording if recording != OnDemandRecordingDoc() else None,
        allow_recording_removal=client.allow_recording_removal,
        users=[
            UserDoc(
                name=user.name,
                email=user.email,
                language=user.language,
                timezone=user.timezone,
                outgoing_ddi=names.ddi(user.outgoing_ddi_id),
                outgoing_ddi_rule=rules.get(user.outgoing_ddi_rule_id or 0),
                call_acl=acls.get(user.call_acl_id or 0),
            )
            for user in client.users
        ],
        terminals=[
            TerminalDoc(
                name=terminal.name,
                ha1=terminal.ha1,
                user=users.get(terminal.user_id or 0),
                codecs=terminal.codecs,
            )
            for terminal in names.terminals.get(client.id, [])
        ],
        extensions=[
            ExtensionDoc(
                number=extension.number,
                user=users.get(extension.user_id or 0),
                forward_to=extension.target_number if extension.route == "number" else None,
            )
            for extension in client.extensions
        ],
        ddis=[
            DdiDoc(
                e164=f"+{ddi.e164}",
                user=users.get(ddi.user_id or 0) if ddi.route == "user" else None,
                extension=extensions.get(ddi.extension_id or 0)
                if ddi.route == "extension"
                else None,
                record_calls=ddi.record_calls,
                language=ddi.language,
                carrier=names.carriers.get(ddi.carrier_id or 0),
            )
            for ddi in names.ddis.get(client.id, [])
        ],
        match_lists=[
            MatchListDoc(
                name=match_list.name,
                patterns=[
                    MatchPatternDoc(number=f"+{p.value}")
                    if p.kind == "number"
                    else MatchPatternDoc(regexp=p.value)
                    for p in sorted(match_list.patterns, key=lambda p: (p.kind, p.value))
                ],
            )
            for match_list in client.match_lists
        ],
        call_acls=[
            CallAclDoc(
                name=acl.name,
                default_policy=acl.default_policy,
                rules=[
                    CallAclRuleDoc(
                        priority=rule.priority,
                        match_list=lists[rule.match_list_id],
                        policy=rule.policy,
                    )
                    for rule in acl.rules
                ],
            )
            for acl in client.call_acls
        ],
        rating_profiles=[
            RatingProfileDoc(
                rating_plan_group=names.groups[profile.rating_plan_group_id],
                activation_time=in_zone(profile.activation_time, client.timezone),
            )
            for profile in client.rating_profiles
        ],
        admins=[export_admin(admin) for admin in names.admins.get(client.id, [])],
        templates=[export_template(template) for template in client.templates],
        template_choices={c.type: names.templates[c.template_id] for c in client.template_choices},
    )


def export_admin(admin: ClientAdmin | PlatformAdmin) -> AdminDoc:
    """A client admin or a brand administrator as the document writes it: its hash, never
    a password."""
    return AdminDoc(
        username=admin.username,
        email=admin.email,
        password_hash=admin.password_hash,
        active=admin.active,
        **_access(admin),
    )


def _access(admin: ClientAdmin | PlatformAdmin) -> dict[str, Any]:
    """A restricted admin's privileges as the document writes them: a deny-list when every
    section is all or nothing, else each usable section's verbs."""
    if not admin.restricted:
        return {}
    letters = {p.section: "".join(v[0] for v in VERBS if v in p.verbs()) for p in admin.privileges}
    verbs = {section: letters.get(section, "") for section in SECTIONS}
    beyond = [verbs[section] for section in SECTIONS if section not in ADMIN_SECTIONS]
    if set(verbs.values()) <= {"", "crud"} and set(beyond) == {"crud"}:
        return {"restricted_sections": [s for s in ADMIN_SECTIONS if not verbs[s]]}
    return {"privileges": {section: v for section, v in verbs.items() if v}}


def _rule(rule: OutgoingDdiRule, lists: dict[int, str], names: Names) -> DdiRuleDoc:
    return DdiRuleDoc(
        name=rule.name,
        default_action=rule.default_action,
        forced_ddi=names.ddi(rule.forced_ddi_id),
        patterns=[
            DdiRulePatternDoc(
                priority=pattern.priority,
                prefix=pattern.prefix,
                destination=lists[pattern.match_list_id] if pattern.match_list_id else None,
                action=pattern.action,
                forced_ddi=names.ddi(pattern.forced_ddi_id),
            )
            for pattern in rule.patterns
        ],
    )


def in_zone(moment: datetime, zone: str) -> datetime:
    """``moment`` on the wall clock of ``zone`` (a client's timezone): the same instant,
    written as its operator wrote it (``2026-01-01T00:00:00+01:00`` in Europe/Madrid, not
    ``2025-12-31T23:00:00+00:00``). UTC for a zone this machine does not know."""
    where: tzinfo
    try:
        where = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        where = UTC
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(where)
