"""Write what a client owns that needs no DDI: users, match lists, templates,
logins and rating profiles (one stage of :mod:`models.provisioning.write_client`).

Users, match lists and templates the document dropped are handed to the last
deletion waves, since terminals, extensions and rules may still point at them
until their own stage has run; patterns, texts, restrictions and profiles are
leaves and go at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from sqlalchemy.ext.asyncio import AsyncSession

from models.admins import SECTIONS, VERBS, AdminPrivilege, PlatformAdmin
from models.billing import RatingProfile
from models.platform import NotificationTemplate
from models.provisioning.passwords import hash_password, verify_password
from models.provisioning.schema import AdminDoc
from models.provisioning.schema_client import ClientDoc
from models.provisioning.sync import Values, Written, sync, upsert
from models.provisioning.write_brand import sync_contents, template_values
from models.routing import MatchList, MatchListPattern
from models.tenants import Client, ClientAdmin, User


def write_owned(
    session: AsyncSession,
    doc: ClientDoc,
    client: Client,
    written: Written,
    admins: dict[str, ClientAdmin],
    secrets: Mapping[str, str],
) -> None:
    """Users, match lists, templates, logins (``secrets``: their password hashes, by
    username, from :func:`admin_secrets`) and rating profiles of one client."""
    sync(
        client.users,
        doc.users,
        lambda row: row.name,
        lambda item: item.name,
        User,
        lambda item: item.model_dump(include={"name", "email", "language", "timezone"}),
        keep_leftovers=written.waves[3],
    )
    lists = sync(
        client.match_lists,
        doc.match_lists,
        lambda row: row.name,
        lambda item: item.name,
        MatchList,
        lambda item: {"name": item.name},
        keep_leftovers=written.waves[3],
    )
    for match_list in doc.match_lists:
        patterns = [
            ("number", p.number[1:]) if p.number else ("regexp", str(p.regexp))
            for p in match_list.patterns
        ]
        sync(
            lists[match_list.name].patterns,
            patterns,
            lambda row: (row.kind, row.value),
            lambda item: item,
            MatchListPattern,
            lambda item: {"kind": item[0], "value": item[1]},
        )
    templates = sync(
        client.templates,
        doc.templates,
        lambda row: row.name,
        lambda item: item.name,
        NotificationTemplate,
        template_values,
        keep_leftovers=written.waves[3],
    )
    for template in doc.templates:
        sync_contents(templates[template.name], template)
    groups = {group.name: group.id for group in written.brands[doc.brand].rating_plan_groups}
    sync(
        client.rating_profiles,
        doc.rating_profiles,
        lambda row: row.activation_time,
        lambda item: item.activation_time,
        RatingProfile,
        lambda item: {
            "activation_time": item.activation_time,
            "rating_plan_group_id": groups[item.rating_plan_group],
        },
    )
    for admin in doc.admins:
        values = {"client_id": client.id, **admin_values(admin, secrets[admin.username])}
        row = upsert(session, admins, admin.username, ClientAdmin, values)
        sync_privileges(row.privileges, admin)


async def admin_secrets(
    admins: Iterable[AdminDoc], stored: Mapping[str, ClientAdmin | PlatformAdmin]
) -> dict[str, str]:
    """Each login's ``password_hash``, by username: the one given, else the stored hash when
    it verifies the given password (a reload changes nothing), else a new scrypt hash.
    scrypt takes tens of milliseconds a password, and a document may hold many: the work
    is done on a thread, never on the event loop (a tenant's admins must not stall it)."""
    pairs = [
        (admin, stored[admin.username].password_hash if admin.username in stored else None)
        for admin in admins
    ]
    if all(admin.password_hash is not None for admin, _ in pairs):
        return {admin.username: str(admin.password_hash) for admin, _ in pairs}
    return await asyncio.to_thread(lambda: {a.username: _secret(a, hashed) for a, hashed in pairs})


def _secret(admin: AdminDoc, previous: str | None) -> str:
    if admin.password_hash is not None:
        return admin.password_hash
    if previous is not None and verify_password(str(admin.password), previous):
        return previous
    return hash_password(str(admin.password))


def admin_values(admin: AdminDoc, secret: str) -> Values:
    """A login's columns, with its ``password_hash`` from :func:`admin_secrets`."""
    return {
        "username": admin.username,
        "email": admin.email,
        "active": admin.active,
        "password_hash": secret,
        "restricted": is_restricted(admin),
    }


def sync_privileges(privileges: list[AdminPrivilege], admin: AdminDoc) -> None:
    """A stored login's privilege rows as ``admin`` grants them (none when unrestricted)."""
    sync(
        privileges,
        sorted(granted(admin).items()) if is_restricted(admin) else [],
        lambda privilege: privilege.section,
        lambda item: item[0],
        AdminPrivilege,
        lambda item: {"section": item[0], **privilege_values(item[1])},
    )


def is_restricted(admin: AdminDoc) -> bool:
    return bool(admin.restricted_sections) or admin.privileges is not None


def granted(admin: AdminDoc) -> dict[str, str]:
    """Each section's verbs (``"crud"`` letters) for a restricted admin: DESIGN §3.13."""
    denied = set(admin.restricted_sections)
    given = admin.privileges
    return {
        section: "" if section in denied else ("crud" if given is None else given.get(section, ""))
        for section in SECTIONS
    }


def privilege_values(letters: str) -> Values:
    return {f"can_{verb}": verb[0] in letters for verb in VERBS}
