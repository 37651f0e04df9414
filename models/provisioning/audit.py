"""A provisioning load's audit of each client it changed (:func:`models.provisioning.load_text`).

Beside the load's own entry (``provision``: how many rows), each listed client whose
document node the load changed gets an entry of its own, :data:`PROVISIONED_CLIENT`,
scoped to its brand and to it, so its brand's and its own administrators read it. It keeps
what changed: each changed field before and after; for a list of named items (terminals,
users, rating profiles...) only the items that changed, by name, whole (``null`` on the
side where the item is absent). Secrets and their digests are masked (:data:`MASK`), as
the API's own entries keep them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from models.admins import AuditedBy, record
from models.provisioning.export import client_docs
from models.tenants import Brand, Client

PROVISIONED_CLIENT = "client.provision"
MASK = "********"
SECRETS: frozenset[str] = frozenset({"password", "ha1", "password_hash"})
"""Fields of a client's document holding a secret or its digest, wherever they are."""
ITEM_KEYS: dict[str, str] = {
    "users": "name",
    "terminals": "name",
    "extensions": "number",
    "ddis": "e164",
    "match_lists": "name",
    "call_acls": "name",
    "outgoing_ddi_rules": "name",
    "rating_profiles": "activation_time",
    "admins": "username",
    "templates": "name",
}
"""The lists of a client's document whose items have names, and the field naming them."""


@dataclass(frozen=True, slots=True)
class Seen:
    """A client as a load found or left it: its ids and its document node (JSON values,
    defaults left out)."""

    client_id: int
    brand_id: int
    node: dict[str, Any]


Nodes = dict[tuple[str, str], Seen]
"""Clients by (brand name, client name)."""


def masked_item(item: Any, secrets: Collection[str] = SECRETS) -> Any:
    """``item`` with each field among ``secrets`` that is set masked, at any depth."""
    if isinstance(item, dict):
        return {
            k: MASK if k in secrets and v is not None else masked_item(v, secrets)
            for k, v in item.items()
        }
    if isinstance(item, list):
        return [masked_item(v, secrets) for v in item]
    return item


async def client_nodes(connection: AsyncConnection, listed: Iterable[tuple[str, str]]) -> Nodes:
    """The clients among ``listed`` (brand name, client name) that exist, read in
    ``connection``'s transaction by a session of their own (the load's session keeps its
    rows as it wrote them)."""
    wanted = set(listed)
    if not wanted:
        return {}
    found = select(Client.id, Client.brand_id, Brand.name, Client.name).join(
        Brand, Brand.id == Client.brand_id
    )
    rows = (
        await connection.execute(found.where(tuple_(Brand.name, Client.name).in_(wanted)))
    ).all()
    session = AsyncSession(bind=connection, expire_on_commit=False)
    try:
        docs = await client_docs(session, [row[0] for row in rows])
    finally:
        await session.close()
    return {
        (brand, name): Seen(
            client_id,
            brand_id,
            docs[client_id].model_dump(mode="json", by_alias=True, exclude_defaults=True),
        )
        for client_id, brand_id, brand, name in rows
    }


def changed(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """What differs between two nodes of a client: (before, after), each by field; empty
    when nothing does."""
    old_side: dict[str, Any] = {}
    new_side: dict[str, Any] = {}
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        key = ITEM_KEYS.get(name)
        if key is None:
            old_side[name], new_side[name] = masked_item(old), masked_item(new)
            continue
        olds = {str(item[key]): item for item in old or []}
        news = {str(item[key]): item for item in new or []}
        names = sorted(n for n in olds.keys() | news.keys() if olds.get(n) != news.get(n))
        old_side[name] = {n: masked_item(olds.get(n)) for n in names}
        new_side[name] = {n: masked_item(news.get(n)) for n in names}
    return old_side, new_side


async def audit_clients(
    connection: AsyncConnection, by: AuditedBy, before: Nodes, after: Nodes
) -> None:
    """One :data:`PROVISIONED_CLIENT` entry per client of ``after`` whose node differs from
    ``before`` (a client new to ``before``: ``before`` is null), in ``connection``'s
    transaction."""
    for key in sorted(after):
        seen, was = after[key], before.get(key)
        old_side, new_side = changed(was.node if was is not None else {}, seen.node)
        if not new_side:
            continue
        note = by.note(
            PROVISIONED_CLIENT,
            str(seen.client_id),
            brand_id=seen.brand_id,
            client_id=seen.client_id,
            before=old_side if was is not None else None,
            after=new_side,
        )
        await record(connection, note)
