"""The last client stages: call ACLs and outgoing DDI rules, then the references
that close the cycles (client and user -> DDI / rule / ACL) and template choices.

Runs after :func:`models.provisioning.write_client.write_clients`, when every
DDI and match list of the document has an id.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from models.platform import ClientNotificationTemplate
from models.provisioning.schema_client import ClientDoc, DdiRulePatternDoc, Document
from models.provisioning.sync import Values, Written, assign, first, sync
from models.routing import CallAcl, CallAclRule, OutgoingDdiRule, OutgoingDdiRulePattern
from models.tenants import Client


def _ddi(written: Written, e164: str | None) -> int | None:
    return written.ddis[e164[1:]] if e164 else None


async def write_links(session: AsyncSession, document: Document, written: Written) -> None:
    for doc in document.clients:
        _write_rules(doc, written.clients[(doc.brand, doc.name)], written)
    await session.flush()
    for doc in document.clients:
        _link(doc, written.clients[(doc.brand, doc.name)], written)
    await session.flush()


def _write_rules(doc: ClientDoc, client: Client, written: Written) -> None:
    lists = {match_list.name: match_list.id for match_list in client.match_lists}
    acls = sync(
        client.call_acls,
        doc.call_acls,
        lambda row: row.name,
        lambda item: item.name,
        CallAcl,
        lambda item: {"name": item.name, "default_policy": item.default_policy},
        keep_leftovers=written.waves[0],
    )
    for acl in doc.call_acls:
        sync(
            acls[acl.name].rules,
            acl.rules,
            lambda row: row.priority,
            lambda item: item.priority,
            CallAclRule,
            lambda item: {
                "priority": item.priority,
                "match_list_id": lists[item.match_list],
                "policy": item.policy,
            },
        )
    rules = sync(
        client.outgoing_ddi_rules,
        doc.all_rules(),
        lambda row: row.name,
        lambda item: item.name,
        OutgoingDdiRule,
        lambda item: {
            "name": item.name,
            "default_action": item.default_action,
            "forced_ddi_id": _ddi(written, item.forced_ddi),
        },
        keep_leftovers=written.waves[0],
    )
    for rule in doc.all_rules():
        sync(
            rules[rule.name].patterns,
            rule.patterns,
            lambda row: row.priority,
            lambda item: item.priority,
            OutgoingDdiRulePattern,
            lambda item: _pattern_values(item, lists, written),
        )


def _pattern_values(item: DdiRulePatternDoc, lists: dict[str, int], written: Written) -> Values:
    return {
        "priority": item.priority,
        "kind": "prefix" if item.prefix is not None else "destination",
        "prefix": item.prefix,
        "match_list_id": lists[item.destination] if item.destination else None,
        "action": item.action,
        "forced_ddi_id": _ddi(written, item.forced_ddi),
    }


def _link(doc: ClientDoc, client: Client, written: Written) -> None:
    rules = {rule.name: rule.id for rule in client.outgoing_ddi_rules}
    acls = {acl.name: acl.id for acl in client.call_acls}
    own_rule = doc.outgoing_ddi_rule
    assign(
        client,
        {
            "outgoing_ddi_id": _ddi(written, doc.outgoing_ddi),
            "outgoing_ddi_rule_id": rules[own_rule.name] if own_rule else None,
        },
    )
    users = {user.name: user for user in client.users}
    for user in doc.users:
        assign(
            users[user.name],
            {
                "outgoing_ddi_id": _ddi(written, user.outgoing_ddi),
                "outgoing_ddi_rule_id": rules[user.outgoing_ddi_rule]
                if user.outgoing_ddi_rule
                else None,
                "call_acl_id": acls[user.call_acl] if user.call_acl else None,
            },
        )
    brand = written.brands[doc.brand]
    scopes = (
        {template.name: template.id for template in client.templates},
        {template.name: template.id for template in brand.templates},
        {name: template.id for name, template in written.generic_templates.items()},
    )
    choices = {
        kind: next(scope[name] for scope in scopes if name in scope)
        for kind, name in doc.template_choices.items()
    }
    sync(
        client.template_choices,
        choices.items(),
        lambda row: row.type,
        first,
        ClientNotificationTemplate,
        lambda item: {"type": item[0], "template_id": item[1]},
    )
